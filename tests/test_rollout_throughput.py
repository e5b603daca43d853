"""bench/rollout_throughput.py: its JSON report and its workload, on a tiny random model.

Timings are never asserted (they are measurements, not pass/fail); what is checked is the
report's shape, the KV accounting against a hand count, that every method generates the
same number of tokens, and that sharing changes nothing but the cost.
"""

import importlib.util
import json

import pytest
import torch

import bench.rollout_throughput as rt
from model.config import ModelConfig
from model.loading import random_model

HAS_HF = importlib.util.find_spec("transformers") is not None

# P=2 trees, b=2, d=2, L=3, prompt 8 shared + 16 per-problem ids = 24 tokens.
TINY = ["--config", "tiny", "--problems", "2", "--branching", "2", "--depth", "2",
        "--step-tokens", "3", "--prompt-tokens", "8", "--seed", "5"]  # CPU: 1 thread by default


def test_json_report(capsys):
    threads = torch.get_num_threads()
    result = rt.main(TINY + ["--json"])
    assert torch.get_num_threads() == threads  # main() restores the thread count
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report == json.loads(json.dumps(result))
    for key in ("device", "model", "tokens_per_s_shared", "tokens_per_s_unshared", "tokens_per_s_hf",
                "kv_bytes_unique", "kv_bytes_logical"):
        assert key in report
    assert report["device"] == "cpu" and "tiny" in report["model"] and report["cpu_threads"] == 1
    assert "achieved_bw_fraction" not in report  # CUDA only
    for key in ("tokens_per_s_shared", "tokens_per_s_unshared"):
        assert isinstance(report[key], float) and report[key] > 0

    # tiny: 2 layers x 2 kv heads x head_dim 16 x (K and V) x 4 bytes (fp32) = 512 B a token
    per_token = 2 * 2 * 16 * 2 * 4
    assert report["kv_bytes_per_token"] == per_token
    prompt, leaves = 8 + 16, 2 * 2**2
    generated = 3 * (2 * 2 + 2 * 4)  # L * (branches at level 1 + at level 2)
    assert report["workload"]["generated_tokens"] == generated
    assert report["kv_bytes_unique"] == (2 * prompt + generated) * per_token
    assert report["kv_bytes_logical"] == leaves * (prompt + 2 * 3) * per_token
    assert report["kv_bytes_unique"] < report["kv_bytes_logical"]

    assert report["generated_tokens_shared"] == report["generated_tokens_unshared"] == generated
    assert report["tokens_computed_shared"] < report["tokens_computed_unshared"]
    if HAS_HF:
        assert report["generated_tokens_hf"] == generated
        assert isinstance(report["tokens_per_s_hf"], float) and report["tokens_per_s_hf"] > 0
    else:
        assert report["tokens_per_s_hf"] is None


def test_no_hf_is_null(capsys):
    report = rt.main(TINY + ["--depth", "1", "--no-hf", "--json"])
    assert report["tokens_per_s_hf"] is None and report["hf_note"] == "--no-hf"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tokens_per_s_hf"] is None


def test_unknown_config_lists_the_known_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        rt.main(["--config", "gpt-5", "--json"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for name in rt.CONFIGS:
        assert name in err


def test_bad_workload_flag(capsys):
    with pytest.raises(SystemExit):
        rt.main(["--config", "tiny", "--branching", "0"])
    assert "argument --branching: must be > 0, got 0" in capsys.readouterr().err


def test_sharing_on_and_off_generate_the_same_tree():
    config = ModelConfig.from_dict(dict(rt.CONFIGS["tiny"]))
    model = random_model(config, seed=3).eval()
    w = rt.make_workload(config.vocab_size, problems=2, branching=3, depth=2, step_tokens=4,
                         prompt_tokens=8, seed=7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster on a busy CPU
    try:
        with torch.inference_mode():
            on = rt.rollout_tokens(model, w, share=True)
            off = rt.rollout_tokens(model, w, share=False)
    finally:
        torch.set_num_threads(threads)
    assert len(on) == w.leaves == 18
    assert all(len(t) == w.prompt_len + 2 * 4 for t in on)
    assert on == off
    assert len({tuple(t) for t in on}) > 1  # the seeds make the branches differ
