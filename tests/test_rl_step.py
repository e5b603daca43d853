"""bench/rl_step.py on the tiny random model: its JSON report, and the packed and per-path
variants agreeing on the same samples. Timings are reported, never asserted."""

import json

import bench.rl_step as rl_step

TINY = ["--model", "tiny", "--problems", "2", "--rollouts", "3", "--depth", "2", "--max-step-tokens", "6",
        "--parallel-rollouts", "2", "--json"]
REQUIRED = ("rollout_tokens_per_s_batched", "rollout_tokens_per_s_serial", "train_tokens_per_s_packed",
            "train_tokens_per_s_per_path", "grad_max_rel_diff", "device", "model",
            "peak_memory_mb_after_per_path", "peak_memory_mb_after_packed")


def test_json_report_and_packed_equals_per_path(capsys):
    result = rl_step.main(TINY)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == json.loads(json.dumps(result))
    assert all(k in report for k in REQUIRED), sorted(set(REQUIRED) - report.keys())
    assert report["model"] == "tiny" and report["device"] == "cpu"
    assert report["rollout_samples_batched"] == report["train_samples"] > 0
    # Packing computes each shared prefix once: strictly fewer tokens than the per-path sum.
    assert report["tokens_computed_packed"] < report["tokens_computed_per_path"]
    assert report["grad_max_rel_diff"] <= 1e-5 and report["loss_rel_diff"] <= 1e-5
    assert report["old_logprob_max_abs_diff"] <= 1e-5


def test_random_weights_need_only_config_and_tokenizer(tmp_path, capsys):
    """--random-weights: a directory without weight files runs, labelled as such; the
    packed and per-path variants still agree on its samples."""
    from tests.tiny_models import write_checkpoint

    write_checkpoint(tmp_path, "qwen2", seed=3)
    for weights in tmp_path.glob("*.safetensors"):
        weights.unlink()
    args = [str(tmp_path) if a == "tiny" else a for a in TINY] + ["--random-weights"]
    report = rl_step.main(args)
    assert report["model"] == f"{tmp_path} (random weights)"
    assert report["rollout_samples_batched"] == report["train_samples"] > 0
    assert report["grad_max_rel_diff"] <= 1e-5 and report["loss_rel_diff"] <= 1e-5
