"""bench/attention_sweep.py on CPU: the Triton kernels in the interpreter at tiny shapes.
It checks the sweep's plumbing (every setting's output checked against the reference, a
setting that cannot launch reported instead of raised); its timings mean nothing here."""

import itertools
import json

import bench.attention_sweep as sweep


def test_every_setting_is_checked_against_the_reference(monkeypatch, capsys):
    monkeypatch.setenv("RFTT_KERNELS", "triton")
    report = sweep.main(["--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(report))
    decode, cascade = report["results"]
    assert (decode["kind"], cascade["kind"]) == ("decode", "cascade")
    for w in report["results"]:
        settings = [r for r in w["rows"] if "kernel" not in r]
        assert len(settings) == 1 + 2  # the default, then two grid points (block_n 32, 64)
        assert all("error" not in r and r["max_abs_diff"] <= sweep.TOLERANCE for r in w["rows"])
    assert [b["kind"] for b in report["best"]] == ["decode", "cascade"]


def test_a_setting_that_cannot_launch_is_a_row_not_a_crash(monkeypatch):
    monkeypatch.setenv("RFTT_KERNELS", "triton")
    import torch

    device = torch.device("cpu")
    (kind, _, build), = [w for w in sweep.workloads(device) if w[0] == "decode"]
    inputs, floor = build(torch.Generator().manual_seed(0))
    grid = dict(block_n=(3, 16), num_warps=(4,), num_stages=(1,), splits=(None,))  # 3: not a power of two
    rows = sweep.sweep_decode(inputs, floor, grid, device, deadline=float("inf"))
    assert len(rows) == 1 + len(list(itertools.product(*grid.values())))
    assert "error" in rows[1] and "ms" not in rows[1]
    assert "error" not in rows[2] and rows[2]["max_abs_diff"] <= sweep.TOLERANCE
