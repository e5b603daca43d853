"""bench/step_size.py on the tiny random model: one AdamW step moves the log-probs more
the larger the learning rate, and almost not at all at a tiny one."""

import json

import bench.step_size as step_size


def test_the_step_grows_with_the_learning_rate(capsys):
    result = step_size.main(["--model", "tiny", "--lr", "1e-7,1e-4,1e-2", "--sequences", "4", "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(result))
    steps = result["steps"]
    assert [s["lr"] for s in steps] == [1e-7, 1e-4, 1e-2] and result["response_tokens"] > 0
    moved = [s["mean_abs_dlogp"] for s in steps]
    assert moved[0] < 1e-3 < moved[1] < moved[2]
    assert all(0 <= s["outside_clip"] <= 1 and s["approx_kl"] >= 0 for s in steps)
