"""train.ppo and train.sft train on packed trees by default: the same losses and gradients
as training every path as its own padded row (fp32, ≤ 1e-5 relative), for every model
family and advantage estimator, in one process and under torchrun with 2 gloo processes."""

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from model import load_model
from tests.packed_ppo_case import make_models, one_update, search_shaped_samples
from tests.tiny_models import FAMILIES, relative_error, write_checkpoint
from train.advantages import ESTIMATORS
from train.ppo import forward_rows
from train.sequences import Sequence
from train.sft import train_step

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    for i, family in enumerate(sorted(FAMILIES)):
        out[family] = tmp_path_factory.mktemp(family)
        write_checkpoint(out[family], family, seed=60 + i)
    return out


def _grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(packed: dict, dense: dict, label) -> None:
    assert packed.keys() == dense.keys(), label
    for name, ref in dense.items():
        assert ref.abs().max() > 0, (label, name)  # every parameter is exercised
        assert relative_error(packed[name], ref) <= TOL, (label, name, relative_error(packed[name], ref))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ppo_update_packed_equals_per_path(checkpoints, family, estimator):
    samples = search_shaped_samples()
    policy = load_model(checkpoints[family])[0]
    model, reference = make_models(policy, estimator)
    runs = {}
    for packed in (False, True):
        runs[packed] = one_update(model, reference, samples, list(range(len(samples))), estimator, packed)
        runs[packed]["grads"] = _grads(model)
    dense, packed = runs[False], runs[True]
    mask = dense["mask"].bool()
    assert torch.equal(packed["mask"], dense["mask"])
    for key in ("old_logp", "ref_logp", "old_values"):
        if dense[key][mask].abs().max() > 0:
            assert relative_error(packed[key][mask], dense[key][mask]) <= TOL, key
    assert dense["clipped"] > 0 and packed["clipped"] == dense["clipped"]  # the clip is exercised, identically
    assert abs(packed["loss"] - dense["loss"]) <= TOL * max(abs(dense["loss"]), 1e-3)
    _assert_same_grads(packed["grads"], dense["grads"], (family, estimator))


@pytest.mark.parametrize("packed", [False, True])
def test_a_token_cap_cuts_micro_batches_by_rows_and_leaves_the_update_unchanged(checkpoints, packed):
    """--micro-batch-tokens: micro-batches end at the cap (a sample alone over it runs
    alone); the loss is a sum over the mini-batch, so the gradients are those of the
    uncapped update."""
    samples = search_shaped_samples()
    policy = load_model(checkpoints["llama3"])[0]
    model, reference = make_models(policy, "reinforce++")
    everything = list(range(len(samples)))
    uncapped = one_update(model, reference, samples, everything, "reinforce++", packed=False)
    uncapped["grads"] = _grads(model)
    cap = 24
    capped = one_update(model, reference, samples, everything, "reinforce++", packed=packed, micro_batch_tokens=cap)
    cuts = capped["micro_batches"]
    assert sorted(i for c in cuts for i in c) == everything and len(cuts) > len(uncapped["micro_batches"])
    assert all(forward_rows(samples, c, packed) <= cap or len(c) == 1 for c in cuts)
    assert any(len(c) > 1 for c in cuts)  # the cap did not simply make every sample its own
    assert abs(capped["loss"] - uncapped["loss"]) <= TOL * max(abs(uncapped["loss"]), 1e-3)
    _assert_same_grads(_grads(model), uncapped["grads"], ("cap", packed))


class GradientRecorder(torch.optim.Optimizer):
    """An optimiser that keeps each parameter's gradient at `step` and changes nothing:
    the gradient itself, not a weight difference (1.0 - g rounds g to 1e-7 absolute)."""

    def __init__(self, named_parameters):
        self.names = dict(named_parameters)
        super().__init__(list(self.names.values()), {"lr": 0.0})
        self.grads = {}

    def step(self, closure=None):
        self.grads = {n: p.grad.clone() for n, p in self.names.items() if p.grad is not None}


def _sft_step(checkpoint, sequences, micro_batch_size: int, packed: bool):
    model = load_model(checkpoint)[0]
    recorder = GradientRecorder(model.named_parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(recorder, lambda s: 1.0)
    stats = train_step(model, recorder, sched, sequences, Namespace(micro_batch_size=micro_batch_size, grad_clip=1e9,
                                                                    tree_packing=packed), 2, torch.device("cpu"))
    return stats, recorder.grads


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sft_step_packed_equals_per_path(checkpoints, family):
    """Rows sharing prefixes (a merge and its correct twin share their first steps) in
    micro-batches of 3: the same loss and the same gradients either way."""
    sequences = [s.sequence for s in search_shaped_samples()]
    dense_stats, dense = _sft_step(checkpoints[family], sequences, 3, packed=False)
    packed_stats, packed = _sft_step(checkpoints[family], sequences, 3, packed=True)
    assert packed_stats["tokens"] == dense_stats["tokens"]
    assert abs(packed_stats["loss"] - dense_stats["loss"]) <= TOL * dense_stats["loss"]
    _assert_same_grads(packed, dense, family)


def test_a_sequence_shorter_than_the_rest_keeps_its_layout(checkpoints):
    """A one-token response next to long ones: packed rows are right-padded exactly as
    the dense batch (the loss mask must not reach past a path's end)."""
    prompt = [5, 6, 7]
    seqs = [Sequence(prompt + [9], 3), Sequence(prompt + [9, 10, 11, 12, 13], 3), Sequence(prompt + [8, 4], 3)]
    stats = [_sft_step(checkpoints["qwen2"], seqs, 3, packed)[0] for packed in (False, True)]
    assert stats[0]["tokens"] == stats[1]["tokens"] == 1 + 5 + 2
    assert abs(stats[0]["loss"] - stats[1]["loss"]) <= TOL * stats[0]["loss"]


def test_ppo_update_under_torchrun_packed_equals_per_path(checkpoints, tmp_path):
    """FSDP2 over 2 gloo ranks, each with one problem's samples: for every estimator the
    gathered gradients of the packed update equal the per-path update's."""
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "tests" / "packed_ppo_worker.py"), str(checkpoints["llama3"]), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert sorted(result) == sorted(ESTIMATORS)
    for estimator, r in result.items():
        assert r["ranks_with_samples"] == 2, estimator
        assert r["loss_rel_diff"] <= TOL, (estimator, r)
        assert r["grad_max_rel_diff"] <= TOL, (estimator, r)
        assert r["parameters_with_zero_grad"] == [], (estimator, r)
