"""python -m train.sft: the loss mask, the loss normalisation, the run end to end,
resuming after a kill, and the same command under torchrun with 2 gloo processes."""

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from model import load_model
from rftt.data import generate_arithmetic
from rftt.prompts import solve_prompt_ids
from rftt.solution_steps import reference_rows, solution_steps
from rftt.steps import RL_TRANSITIONS, ROOT, parse_steps
from train.model_io import load_base_model
from train.sequences import Sequence, collate, encode_sft_example
from train.sft import train_step

REPO = Path(__file__).resolve().parents[1]
# A small run: 8 reference rows, batch 4, 2 epochs -> 4 optimiser steps, a checkpoint every 2.
SMALL = ["--preset", "tiny", "--train-problems", "8", "--epochs", "2", "--batch-size", "4",
         "--checkpoint-every", "2", "--no-eval"]


def test_collate_masks_everything_but_the_response():
    seqs = [Sequence([10, 11, 12, 20, 21, 2], prompt_len=3), Sequence([30, 40, 2], prompt_len=1)]
    batch = collate(seqs, pad_id=0)
    assert batch.inputs.tolist() == [[10, 11, 12, 20, 21], [30, 40, 0, 0, 0]]
    assert batch.targets.tolist() == [[11, 12, 20, 21, 2], [40, 2, 0, 0, 0]]
    # targets 20, 21, 2 (the response and its EOS) carry the loss; prompt targets and padding do not
    assert batch.loss_mask.tolist() == [[False, False, True, True, True], [True, True, False, False, False]]
    assert batch.num_loss_tokens == 5
    with pytest.raises(ValueError, match="prompt"):
        collate([Sequence([1, 2, 3], prompt_len=3)], pad_id=0)


@pytest.fixture(scope="module")
def tiny():
    return load_base_model("tiny", torch.device("cpu"), seed=0)


def test_an_sft_example_is_the_solver_prompt_then_the_response_and_eos(tiny):
    _, tok = tiny
    (row,) = reference_rows(generate_arithmetic(1, "train", seed=3))
    seq = encode_sft_example(tok, row["question"], row["response"])
    prompt = solve_prompt_ids(tok, row["question"])
    assert seq.tokens[:seq.prompt_len] == prompt
    assert seq.tokens[seq.prompt_len:] == tok.encode(row["response"]) + [tok.eos_token_id]
    assert tok.token_to_id("<next_step>") in seq.tokens  # the functional tokens are single tokens


def test_reference_solutions_are_well_formed_trajectories():
    for problem in generate_arithmetic(30, "train", seed=1):
        steps = solution_steps(problem)
        functions = [ROOT] + [s.function for s in steps]
        assert all(b in RL_TRANSITIONS[a] for a, b in zip(functions, functions[1:])), functions
        parsed = parse_steps(reference_rows([problem])[0]["response"])
        assert parsed.ok and parsed.steps == steps
        assert steps[-1].function == "output" and f"\\boxed{{{problem.answer}}}" in steps[-1].content


def test_loss_is_normalised_by_the_steps_tokens_not_per_micro_batch(tiny):
    """The update is the same whether the step runs as one micro-batch or four: every
    response token weighs the same. (A per-micro-batch mean would weigh short ones more.)"""
    model, tok = tiny
    rows = reference_rows(generate_arithmetic(4, "train", seed=5))
    seqs = [encode_sft_example(tok, r["question"], r["response"]) for r in rows]
    assert len({len(s.tokens) - s.prompt_len for s in seqs}) > 1  # unequal lengths: the case that matters
    results = []
    for micro, packed in ((4, False), (1, False), (4, True), (1, True)):
        m = load_base_model("tiny", torch.device("cpu"), seed=0)[0]
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        stats = train_step(m, opt, sched, seqs, Namespace(micro_batch_size=micro, grad_clip=1e9, tree_packing=packed),
                           tok.eos_token_id, torch.device("cpu"))
        results.append((stats, {n: before[n] - p.detach() for n, p in m.named_parameters()}))
    s4, g4 = results[0]
    for s1, g1 in results[1:]:  # one micro-batch or four, padded rows or packed trees
        assert s4["tokens"] == s1["tokens"] == sum(len(s.tokens) - s.prompt_len for s in seqs)
        assert abs(s4["loss"] - s1["loss"]) < 1e-5
        for name in g4:
            torch.testing.assert_close(g1[name], g4[name], rtol=1e-4, atol=1e-7)
    # and the loss is the mean negative log-likelihood of the response tokens
    batch = collate(seqs, tok.eos_token_id)
    with torch.no_grad():
        m = load_base_model("tiny", torch.device("cpu"), seed=0)[0]
        logp = m(batch.inputs).log_softmax(-1).gather(-1, batch.targets[..., None])[..., 0]
    assert abs(s4["loss"] + float(logp[batch.loss_mask].mean())) < 1e-4


def _run(args, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "train.sft", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def _weights(run_dir: Path) -> dict:
    model, _ = load_model(run_dir / "final")
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "whole"
    _run([*SMALL, "--out", str(out)])
    return out


def test_the_run_writes_data_metrics_checkpoints_and_an_export(uninterrupted):
    out = uninterrupted
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["sft_rows"] == 8 and summary["kinds"] == {"reference": 8}
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert all(x["loss"] > 0 and x["tokens"] > 0 and x["lr"] > 0 for x in lines)
    assert (out / "checkpoints" / "step_00000004").is_dir()
    model, tok = load_model(out / "final")
    assert tok.token_to_id("<verify>") is not None and model.config.vocab_size >= len(tok)


def test_a_killed_run_resumes_to_the_same_weights(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    first = _run([*SMALL, "--out", str(out), "--stop-after", "2"], check=False)
    assert first.returncode == 3, first.stderr[-2000:]  # stopped as if killed, right after step 2's checkpoint
    assert not (out / "final").exists()
    second = _run([*SMALL, "--out", str(out)])
    assert "resuming from" in second.stderr and "step 2 of 4" in second.stderr
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    expected, got = _weights(uninterrupted), _weights(out)
    base = _weights_base()
    assert max((expected[n] - base[n]).abs().max().item() for n in expected) > 1e-3  # training moved the weights
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_torchrun_with_two_gloo_processes_matches_one_process(uninterrupted, tmp_path):
    """FSDP2 over 2 CPU ranks: each rank trains on half of every step's rows; with the
    loss normalised by the global token count the result is the single-process one."""
    out = tmp_path / "fsdp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train.sft",
         *SMALL, "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected, got = _weights(uninterrupted), _weights(out)
    assert max((got[n] - expected[n]).abs().max().item() for n in expected) < 1e-4
    changed = max((got[n] - _weights_base()[n]).abs().max().item() for n in expected)
    assert changed > 1e-3  # and training did move the weights


def _weights_base() -> dict:
    model, _ = load_base_model("tiny", torch.device("cpu"), seed=0)
    return {n: p.detach() for n, p in model.named_parameters()}
