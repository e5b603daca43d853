"""python -m train.ppo: KL is zero against itself, reward rises on a learnable toy task,
a killed run resumes to the same weights, and 2 gloo processes run the same command."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import load_model
from rftt.tokens import add_functional_tokens
from tests.tiny_models import write_checkpoint
from tests.toy_rewards import lowercase_fraction
from train.advantages import kl_estimate
from train.ppo import import_reward_fn, main, micro_batches, split_evenly

REPO = Path(__file__).resolve().parents[1]
TOY_REWARD = "tests.toy_rewards:lowercase_fraction"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ppo") / "tiny"
    write_checkpoint(path, "llama3", seed=1)
    return path


def _toy(checkpoint, out, iterations, *extra):
    return ["--model", str(checkpoint), "--out", str(out), "--iterations", str(iterations),
            "--problems-per-iteration", "8", "--rollouts", "2", "--depth", "2", "--max-step-tokens", "16",
            "--lr", "5e-3", "--mini-batches", "1", "--micro-batch-size", "16", "--temperature", "1.0",
            "--warmup-iterations", "0", "--reward-fn", TOY_REWARD, *extra]


def _metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _resident_gb():
    """This process's resident memory now, GB (Linux's /proc; 0 elsewhere: no check)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return 0.0
    kib = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS:"))
    return round(kib * 1024 / 1e9, 2)


def _weights(path):
    model, _ = load_model(path)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_kl_to_the_reference_is_zero_when_they_are_the_same_model(checkpoint):
    model, tok = load_model(checkpoint)
    add_functional_tokens(model, tok)
    reference = copy.deepcopy(model)
    tokens = torch.randint(0, 300, (3, 17), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 300, (3, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logp, _ = model(tokens, targets=targets, temperature=0.7)
        ref, _ = reference(tokens, targets=targets, temperature=0.7)
    for kind in ("k1", "k3"):
        assert torch.equal(kl_estimate(logp, ref, kind), torch.zeros_like(logp))


def test_reward_rises_on_a_toy_task(checkpoint, tmp_path):
    """REINFORCE++ with PPO-clip, the paper's defaults otherwise, on a reward the tiny
    model can learn: the share of lowercase letters in the text it samples."""
    resident_before = _resident_gb()
    main(_toy(checkpoint, tmp_path / "run", 10))
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(1, 11))
    # Each phase's CPU time is logged beside its wall time, and the peak resident memory
    # is a high-water mark in GB: never below what the process held before the run.
    assert all(r["cpu_seconds"].keys() == {"rollouts", "logprobs", "update"} for r in rows)
    assert all(v >= 0 for r in rows for phase in r["cpu_seconds"].values() for v in phase.values())
    assert all(sum(r["cpu_seconds"]["update"].values()) > 0 for r in rows)
    peaks = [r["peak_rss_gb"] for r in rows]
    assert peaks == sorted(peaks) and peaks[0] >= resident_before
    assert rows[0]["kl"] == 0.0  # before the first update the policy is the reference
    first, last = [r["reward"] for r in rows[:3]], [r["reward"] for r in rows[-3:]]
    print("reward by iteration:", [round(r["reward"], 3) for r in rows])
    assert sum(last) / 3 > sum(first) / 3 + 0.03, (first, last)
    assert all(r["samples"] > 0 and r["response_length"] > 0 and r["functions"] for r in rows)
    assert 0 <= rows[-1]["clip_fraction"] <= 1 and rows[-1]["entropy"] > 0
    trees = json.loads((tmp_path / "run" / "samples" / "iteration_00010.json").read_text())
    assert len(trees) == 8 and all(t["leaves"] for t in trees)
    assert all(t["tree"]["visits"] == 2 for t in trees)  # --rollouts 2, the nested tree beside the leaves
    for i in range(1, 11):  # every iteration writes its trees and the page that shows them
        page = (tmp_path / "run" / "samples" / f"iteration_{i:05d}.html").read_text()
        assert (tmp_path / "run" / "samples" / f"iteration_{i:05d}.json").exists() and "data-node-id" in page


@pytest.mark.parametrize("estimator", ["gae", "grpo"])
def test_other_estimators_run_and_move_the_weights(checkpoint, tmp_path, estimator):
    main(_toy(checkpoint, tmp_path / estimator, 2, "--estimator", estimator, "--kl", "k3"))
    before, after = _weights(checkpoint), _weights(tmp_path / estimator / "final")
    assert max((after[n] - before[n]).abs().max().item() for n in before) > 1e-4


def test_a_killed_run_resumes_to_the_same_weights(checkpoint, tmp_path):
    main(_toy(checkpoint, tmp_path / "whole", 3))
    with pytest.raises(SystemExit) as stopped:
        main(_toy(checkpoint, tmp_path / "killed", 3, "--stop-after", "2"))
    assert stopped.value.code == 3 and not (tmp_path / "killed" / "final").exists()
    main(_toy(checkpoint, tmp_path / "killed", 3))
    assert [r["step"] for r in _metrics(tmp_path / "killed")] == [1, 2, 3]
    expected, got = _weights(tmp_path / "whole" / "final"), _weights(tmp_path / "killed" / "final")
    before = _weights(checkpoint)  # the toy reward (not tiny's outcome reward, always 0) makes them move
    assert max((expected[n] - before[n]).abs().max().item() for n in before) > 1e-4
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_torchrun_with_two_gloo_processes(checkpoint, tmp_path):
    """Rollouts data-parallel (each rank searches half the problems), FSDP2 training."""
    out = tmp_path / "fsdp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train.ppo",
         *_toy(checkpoint, out, 2)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["samples"] >= 8  # both ranks' samples are counted (4 problems each)
    before, after = _weights(checkpoint), _weights(out / "final")
    assert max((after[n] - before[n]).abs().max().item() for n in before) > 1e-4


def test_batching_helpers_and_reward_import():
    assert split_evenly(list(range(5)), 3) == [[0, 1], [2, 3], [4]]
    assert split_evenly([1], 3) == [[1], [], []]
    assert micro_batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    rows = {0: 5, 1: 5, 2: 12, 3: 3, 4: 3, 5: 3}  # a sample's rows; a chunk's are their sum here
    capped = micro_batches(list(range(6)), 3, max_tokens=10, tokens_of=lambda c: sum(rows[i] for i in c))
    assert capped == [[0, 1], [2], [3, 4, 5]]  # 12 rows over the cap run alone; the size still caps at 3
    assert import_reward_fn(TOY_REWARD) is lowercase_fraction
    with pytest.raises(SystemExit, match="cannot import"):
        import_reward_fn("rftt.rewards:no_such_reward")


def test_sampling_ablation_draws_whole_answers_instead_of_a_tree(checkpoint, tmp_path):
    """--rollout-search sampling: --rollouts answers a problem, each from the solver
    prompt, capped at the search's path budget; seeded (the same command, the same run)."""
    for out in ("a", "b"):
        main(_toy(checkpoint, tmp_path / out, 1, "--rollout-search", "sampling", "--rollouts", "3"))
    timings = {"time", "rollout_tokens_per_s", "train_tokens_per_s", "seconds", "cpu_seconds", "peak_rss_gb"}
    rows, again = ([{k: v for k, v in r.items() if k not in timings} for r in _metrics(tmp_path / out)]
                   for out in ("a", "b"))
    assert rows[0]["samples"] == 8 * 3  # exactly the rollouts: no tree merges duplicate paths
    assert rows == again and rows[0]["grad_norm"] > 0
    trees = json.loads(next((tmp_path / "a" / "samples").glob("iteration_*.json")).read_text())
    assert len(trees) == 8 and all(len(t["leaves"]) == 3 and "tree" not in t for t in trees)
    assert not list((tmp_path / "a" / "samples").glob("*.html"))  # no tree, no page


def test_the_function_floor_reaches_the_search(checkpoint, tmp_path, monkeypatch):
    """--min-function-prob is handed to the rollout search; unset, the preset's floor
    (default 0.05, the measured RL setting; tiny 0: every allowed function)."""
    import train.ppo as ppo

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["min_function_prob"])
        return real(*args, **kwargs)

    real = ppo.collect_rollouts
    monkeypatch.setattr(ppo, "collect_rollouts", spy)
    main(_toy(checkpoint, tmp_path / "floor", 1, "--min-function-prob", "0.3"))
    main(_toy(checkpoint, tmp_path / "default", 1))
    main(_toy(checkpoint, tmp_path / "tiny", 1, "--preset", "tiny"))
    assert seen == [0.3, 0.05, 0.0]
    with pytest.raises(SystemExit):
        main(_toy(checkpoint, tmp_path / "bad", 1, "--min-function-prob", "1.5"))


def test_the_rollout_pool_is_freed_before_the_update(checkpoint, tmp_path, monkeypatch):
    """Each iteration searches in an engine of its own, gone by the time the log-probs and
    the update run: its K/V pool (GBs for the 0.5B default) is not held beside the
    optimiser's state, and no later rollout can read KV cached from older weights."""
    import gc
    import weakref

    import train.ppo as ppo

    pools, alive_at_scoring = [], []
    real_for_search, real_score = ppo.Engine.for_search, ppo.score_samples

    def for_search(*args, **kwargs):
        engine = real_for_search(*args, **kwargs)
        pools.append(weakref.ref(engine.pool))
        return engine

    def score(*args, **kwargs):
        gc.collect()  # only reference cycles would need it; none should hold the pool
        alive_at_scoring.append([ref() is not None for ref in pools])
        return real_score(*args, **kwargs)

    monkeypatch.setattr(ppo.Engine, "for_search", for_search)
    monkeypatch.setattr(ppo, "score_samples", score)
    main(_toy(checkpoint, tmp_path / "run", 2))
    assert alive_at_scoring == [[False], [False, False]]  # one engine an iteration, each freed
