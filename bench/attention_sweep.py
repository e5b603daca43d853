"""Launch-setting sweep of the two decode attention kernels, on the GPU that will run them.

    python bench/attention_sweep.py [--json] [--budget-s 240]

The kernels' launch settings (keys per inner-loop block, warps, software-pipeline stages,
flash-decoding splits; for cascade also the query tile's rows) were first chosen from
ptxas's register report, without a GPU. This script times the *public* functions,
`tree_decode_attention` and `cascade_decode_attention`, end to end (partial kernel + the
LSE merge, as a model layer calls them) for every setting of a small grid, by replacing
the functions that pick the settings (`decode_launch_settings`, `choose_num_kv_splits`,
`cascade_launch_settings`, `query_tile_rows`) for the duration of one measurement. Every
setting's output is compared with the PyTorch reference before it is timed; a setting
that fails to compile (shared memory, registers) is reported, not fatal.

Workloads (bf16, D = 128, random data, as in bench/kernels.py):
- decode: 64 sequences x 2048 tokens at random pool slots, Llama-3-8B heads (32 q / 8 kv)
  and Qwen2.5-7B heads (28 / 4): the "75 % of copy bandwidth" target's shape;
- cascade: B branches sharing one prefix node + 128-512 private tokens each, B x prefix =
  64 x 2048 (the "3x tree_decode" target's shape), 32 x 1024 and 128 x 1024.

Each row: time (triton.testing.do_bench median), the floor of bytes the call must move
(bench/kernels.py's definition), GB/s and fraction of a device-to-device copy measured in
the same run. The JSON's `best` lists each workload's fastest correct setting and the
current default's time beside it. On CPU (tests only) the same code runs tiny shapes
through Triton's interpreter (TRITON_INTERPRET=1, RFTT_KERNELS=triton) and times nothing
that means anything.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from pathlib import Path

# This file lives in bench/, next to bench/kernels.py: that folder must not shadow the
# `kernels` package, and the repository root must be importable when run as a script.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

import torch  # noqa: E402

import kernels.cascade_attention as cascade_mod  # noqa: E402
import kernels.decode_attention as decode_mod  # noqa: E402
from kernels.attention_reference import (  # noqa: E402
    cascade_decode_attention_reference,
    tree_decode_attention_reference,
)
from kernels.cascade_metadata import build_cascade_metadata  # noqa: E402

HEAD_CONFIGS = {"llama3-8b": (32, 8, 128), "qwen2.5-7b": (28, 4, 128)}  # (Hq, Hkv, D)
DECODE_GRID = dict(block_n=(32, 64, 128), num_warps=(4, 8), num_stages=(1, 2, 3, 4), splits=(None, 2, 4, 8))
CASCADE_GRID = dict(tile_rows=(64, 128), block_n=(32, 64), num_warps=(4, 8), num_stages=(2, 3))
TOLERANCE = 2e-2  # bf16 outputs against the fp32-accumulating reference


@contextlib.contextmanager
def patched(module, **replacements):
    """Module attributes replaced for the duration of one measurement."""
    saved = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def time_ms(fn, device: torch.device) -> float:
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def copy_gbps(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    src = torch.empty(1 << 30, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    return 2 * src.numel() / (time_ms(lambda: dst.copy_(src), device) * 1e6)


def measure(fn, expected: torch.Tensor, floor_bytes: int, device: torch.device, settings: dict) -> dict:
    """One setting: correctness first, then the time (a compile error is a result too)."""
    row = dict(settings)
    try:
        diff = (fn().float() - expected.float()).abs().max().item()
    except Exception as err:  # noqa: BLE001 - out of resources etc.: the setting is out
        return row | dict(error=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    row["max_abs_diff"] = diff
    if not diff <= TOLERANCE:
        return row | dict(error=f"max|diff| {diff:.2e} > {TOLERANCE}")
    row["ms"] = time_ms(fn, device)
    row["gbps"] = floor_bytes / (row["ms"] * 1e6)
    return row


# ----------------------------------------------------------------------------- decode


def decode_workload(batch: int, length: int, heads: tuple[int, int, int], device, dtype, gen):
    hq, hkv, d = heads
    k_pool = torch.randn(batch * length, hkv, d, generator=gen).to(device, dtype)
    v_pool = torch.randn(batch * length, hkv, d, generator=gen).to(device, dtype)
    indices = torch.randperm(batch * length, generator=gen).to(device, torch.int32)
    indptr = torch.arange(0, (batch + 1) * length, length, dtype=torch.int32, device=device)
    q = torch.randn(batch, hq, d, generator=gen).to(device, dtype)
    floor = 2 * k_pool.numel() * k_pool.element_size() + indices.numel() * 4 + 2 * q.numel() * q.element_size()
    return (q, k_pool, v_pool, indptr, indices), floor


def sweep_decode(args_tuple, floor: int, grid: dict, device, deadline: float) -> list[dict]:
    q, k_pool, v_pool, indptr, indices = args_tuple
    expected = tree_decode_attention_reference(*args_tuple)
    default_splits = decode_mod.choose_num_kv_splits(q.shape[0], k_pool.shape[1], indices.numel(), device)
    default = decode_mod.decode_launch_settings(q.shape[1] // k_pool.shape[1], q.shape[2], q.dtype, device)
    rows = [measure(lambda: decode_mod.tree_decode_attention(*args_tuple), expected, floor, device,
                    dict(default=True, block_n=default["BLOCK_N"], num_warps=default["num_warps"],
                         num_stages=default["num_stages"], splits=default_splits))]
    original = decode_mod.decode_launch_settings
    for block_n, warps, stages, splits in itertools.product(*grid.values()):
        if time.monotonic() > deadline:
            rows.append(dict(error="budget spent: the rest of the grid was not run"))
            break
        settings = dict(block_n=block_n, num_warps=warps, num_stages=stages, splits=splits or default_splits)

        def launch(group, head_dim, dtype, dev, _s=settings):
            return original(group, head_dim, dtype, dev) | dict(
                BLOCK_N=_s["block_n"], num_warps=_s["num_warps"], num_stages=_s["num_stages"])

        with patched(decode_mod, decode_launch_settings=launch,
                     choose_num_kv_splits=lambda *a, _n=settings["splits"]: _n):
            rows.append(measure(lambda: decode_mod.tree_decode_attention(*args_tuple), expected, floor,
                                device, settings))
    return rows


# ---------------------------------------------------------------------------- cascade


def cascade_workload(num_branches: int, prefix_len: int, heads, device, dtype, gen, private=(128, 513)):
    """One shared prefix node + a private node per branch (bench/kernels.py's tree)."""
    hq, hkv, d = heads
    own = torch.randint(private[0], private[1], (num_branches,), generator=gen).tolist()
    total = prefix_len + sum(own)
    order = torch.randperm(total, generator=gen)
    node_slots, start = [order[:prefix_len]], prefix_len
    for n in own:
        node_slots.append(order[start:start + n])
        start += n
    meta = build_cascade_metadata([[0, 1 + b] for b in range(num_branches)],
                                  [s.to(device) for s in node_slots], device)
    k_pool = torch.randn(total, hkv, d, generator=gen).to(device, dtype)
    v_pool = torch.randn(total, hkv, d, generator=gen).to(device, dtype)
    q = torch.randn(num_branches, hq, d, generator=gen).to(device, dtype)
    floor = 2 * k_pool.numel() * k_pool.element_size() + total * 4 + 2 * q.numel() * q.element_size()
    return (q, k_pool, v_pool, meta), floor


def sweep_cascade(args_tuple, floor: int, grid: dict, device, deadline: float) -> list[dict]:
    q, k_pool, v_pool, meta = args_tuple
    expected = cascade_decode_attention_reference(*args_tuple)
    group, head_dim = q.shape[1] // k_pool.shape[1], q.shape[2]
    default = cascade_mod.cascade_launch_settings(group, head_dim, q.dtype, device)
    indptr, indices = meta.branch_kv_lists()
    flat = lambda: decode_mod.tree_decode_attention(q, k_pool, v_pool, indptr, indices)  # noqa: E731
    rows = [measure(flat, expected, floor, device, dict(kernel="tree_decode (default settings)")),
            measure(lambda: cascade_mod.cascade_decode_attention(*args_tuple), expected, floor, device,
                    dict(default=True, tile_rows=cascade_mod.query_tile_rows(q.dtype, device),
                         block_n=default["BLOCK_N"], num_warps=default["num_warps"],
                         num_stages=default["num_stages"]))]
    original = cascade_mod.cascade_launch_settings
    for tile_rows, block_n, warps, stages in itertools.product(*grid.values()):
        if time.monotonic() > deadline:
            rows.append(dict(error="budget spent: the rest of the grid was not run"))
            break
        settings = dict(tile_rows=tile_rows, block_n=block_n, num_warps=warps, num_stages=stages)
        per_tile, _ = cascade_mod.queries_per_tile(group, tile_rows)

        def launch(g, hd, dtype, dev, _s=settings, _t=per_tile):
            return original(g, hd, dtype, dev) | dict(
                QUERIES_PER_TILE=_t, BLOCK_N=_s["block_n"], num_warps=_s["num_warps"],
                num_stages=_s["num_stages"])

        with patched(cascade_mod, cascade_launch_settings=launch,
                     query_tile_rows=lambda dtype, dev, _r=tile_rows: _r):
            rows.append(measure(lambda: cascade_mod.cascade_decode_attention(*args_tuple), expected, floor,
                                device, settings))
    return rows


# ------------------------------------------------------------------------------- main


def workloads(device: torch.device):
    """(kind, name, builder) for the GPU shapes; tiny ones elsewhere (interpreter)."""
    if device.type == "cuda":
        decode = [(64, 2048)]
        cascade = [(64, 2048), (32, 1024), (128, 1024)]
        heads = HEAD_CONFIGS
    else:
        decode, cascade, heads = [(2, 48)], [(3, 40)], {"tiny": (4, 2, 16)}
    out = []
    for name, h in heads.items():
        out += [("decode", f"{name} B={b} L={n}", lambda g, b=b, n=n, h=h: decode_workload(b, n, h, device, torch.bfloat16, g))
                for b, n in decode]
        out += [("cascade", f"{name} {b}br x {p} prefix", lambda g, b=b, p=p, h=h: cascade_workload(
                 b, p, h, device, torch.bfloat16, g, private=(128, 513) if device.type == "cuda" else (2, 9)))
                for b, p in cascade]
    return out


def best_rows(results: list[dict]) -> list[dict]:
    """Per workload: the fastest correct setting and the default's time."""
    out = []
    for w in results:
        timed = [r for r in w["rows"] if "ms" in r and r.get("kernel") is None]
        default = next((r for r in timed if r.get("default")), None)
        if not timed:
            continue
        fastest = min(timed, key=lambda r: r["ms"])
        out.append(dict(kind=w["kind"], workload=w["workload"], best=fastest,
                        default_ms=default["ms"] if default else None,
                        speedup_over_default=default["ms"] / fastest["ms"] if default else None))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="stop starting new settings after this many seconds (default 240)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="last stdout line: a JSON object")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    deadline = time.monotonic() + args.budget_s
    copy = copy_gbps(device)
    gen = torch.Generator().manual_seed(args.seed)
    results = []
    for kind, name, build in workloads(device):
        inputs, floor = build(gen)
        sweep = sweep_decode if kind == "decode" else sweep_cascade
        grid = DECODE_GRID if kind == "decode" else CASCADE_GRID
        if device.type != "cuda":  # the interpreter: two settings prove the plumbing
            grid = {k: v[:1] if i else v[:2] for i, (k, v) in enumerate(grid.items())}
        rows = sweep(inputs, floor, grid, device, deadline)
        for r in rows:
            if copy and "gbps" in r:
                r["fraction_of_copy"] = r["gbps"] / copy
        results.append(dict(kind=kind, workload=name, floor_bytes=floor, rows=rows))
        print(f"[sweep] {kind} {name}: {sum('ms' in r for r in rows)} timed, "
              f"{sum('error' in r for r in rows)} out", file=sys.stderr, flush=True)
        del inputs
    report = dict(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                  copy_gbps=copy, dtype="bfloat16", results=results, best=best_rows(results))
    if args.json:
        print(json.dumps(report))
    else:
        for b in report["best"]:
            frac = b["best"].get("fraction_of_copy")
            print(f"{b['kind']:<8} {b['workload']:<30} best {b['best']['ms'] * 1e3:8.1f} us "
                  f"({'' if frac is None else f'{100 * frac:.1f} % of copy, '}"
                  f"default {b['default_ms'] * 1e3:.1f} us): "
                  + ", ".join(f"{k}={v}" for k, v in b["best"].items()
                              if k in ("tile_rows", "block_n", "num_warps", "num_stages", "splits")))
    return report


if __name__ == "__main__":
    main()
