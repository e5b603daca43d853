"""Kernel benchmarks: time, bytes moved, and bandwidth against a measured ceiling.

    python bench/kernels.py [--quick] [--json]

Every row reports the time of one call (CUDA: `triton.testing.do_bench` median), the
*floor* of bytes the call must move (each input read once, the output written once; for
tree attention the unique KV of the tree, whichever kernel runs), the bandwidth that
floor implies at the measured time, and its fraction of the copy bandwidth measured in
the same run (a large device-to-device copy, bytes read + written). A decode step is
bandwidth-bound, so "% of copy" is how close a kernel is to the physical limit.

Workloads: decode of 64 sequences x 2k tokens; the tree workload the search produces,
8/32/128 branches sharing a 1k or 4k prefix and 64 sharing 2k, with 128-512 private
tokens each, cascade vs tree_decode on the same tree; a prefill-sized extend; the colleague kernels
(store_kv, rms_norm, rope, fused_logprobs, skipped with a note if missing). Head
configurations of Llama-3-8B (32 q / 8 kv heads) and Qwen2.5-7B (28 / 4), D = 128,
random data.

Without CUDA the script times the PyTorch references at reduced sizes (always --quick)
so that it runs anywhere in well under a minute; those numbers say nothing about GPUs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# This file is bench/kernels.py: its folder must not shadow the `kernels` package.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

import torch  # noqa: E402

ON_CUDA = torch.cuda.is_available()
if not ON_CUDA:
    # The references are the CPU path; never the (very slow) Triton interpreter here.
    os.environ["RFTT_KERNELS"] = "reference"

from kernels.cascade_attention import cascade_decode_attention  # noqa: E402
from kernels.cascade_metadata import build_cascade_metadata  # noqa: E402
from kernels.decode_attention import tree_decode_attention  # noqa: E402
from kernels.extend_attention import extend_attention  # noqa: E402

DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
DTYPE = torch.bfloat16
HEAD_CONFIGS = {"llama3-8b": (32, 8, 128), "qwen2.5-7b": (28, 4, 128)}  # (Hq, Hkv, D)


@dataclass
class Row:
    kernel: str
    shape: str
    ms: float | None = None
    floor_bytes: int = 0
    flops: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)

    def gbps(self) -> float | None:
        return self.floor_bytes / (self.ms * 1e6) if self.ms else None


# ------------------------------------------------------------------------ timing


def time_ms(fn, quick: bool) -> float:
    if ON_CUDA:
        import triton.testing

        return triton.testing.do_bench(fn, warmup=10 if quick else 25, rep=40 if quick else 100,
                                       return_mode="median")
    fn()  # warm-up
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def copy_bandwidth_gbps(quick: bool) -> float:
    """Ceiling: a large contiguous copy, counting bytes read + written."""
    n_bytes = (256 if quick else 1024) * 2**20 if ON_CUDA else 64 * 2**20
    src = torch.empty(n_bytes, dtype=torch.uint8, device=DEVICE).random_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), quick)
    return 2 * n_bytes / (ms * 1e6)


# --------------------------------------------------------------------- inputs


def randn(*shape, dtype=DTYPE):
    return torch.randn(*shape, device=DEVICE, dtype=dtype)


def pools(num_slots, num_kv_heads, head_dim):
    return randn(num_slots, num_kv_heads, head_dim), randn(num_slots, num_kv_heads, head_dim)


def csr(lists):
    lengths = torch.tensor([0] + [len(x) for x in lists])
    indptr = lengths.cumsum(0).to(device=DEVICE, dtype=torch.int32)
    indices = torch.cat([torch.as_tensor(x) for x in lists]).to(device=DEVICE, dtype=torch.int32)
    return indptr, indices


def elt(dtype=DTYPE) -> int:
    return torch.empty(0, dtype=dtype).element_size()


# ---------------------------------------------------------------- attention rows


def decode_rows(quick: bool) -> list[Row]:
    batch, length = (64, 2048) if ON_CUDA else (16, 512)
    rows = []
    for name, (hq, hkv, d) in HEAD_CONFIGS.items():
        k_pool, v_pool = pools(batch * length, hkv, d)
        slots = torch.randperm(batch * length).view(batch, length).tolist()
        indptr, indices = csr(slots)
        q = randn(batch, hq, d)
        ms = time_ms(lambda: tree_decode_attention(q, k_pool, v_pool, indptr, indices), quick)
        kv_bytes = batch * length * hkv * d * elt() * 2
        floor = kv_bytes + batch * length * 4 + 2 * q.numel() * elt()
        rows.append(Row("tree_decode", f"{name} B={batch} L={length}", ms, floor,
                        4 * batch * length * hq * d))
    return rows


def tree_workload(num_branches, prefix_len, gen):
    """One shared prefix node + a private node of 128-512 tokens per branch."""
    private = torch.randint(128, 513, (num_branches,), generator=gen).tolist()
    total = prefix_len + sum(private)
    order = torch.randperm(total, generator=gen)
    node_slots = [order[:prefix_len]]
    start = prefix_len
    for n in private:
        node_slots.append(order[start:start + n])
        start += n
    branch_nodes = [[0, 1 + b] for b in range(num_branches)]
    return total, branch_nodes, node_slots


def tree_rows(quick: bool) -> list[Row]:
    if ON_CUDA:
        shapes = [(b, p) for p in (1024, 4096) for b in (8, 32, 128)] + [(64, 2048)]  # the last: the 3x target's tree
        heads = HEAD_CONFIGS if not quick else {"llama3-8b": HEAD_CONFIGS["llama3-8b"]}
    else:
        shapes, heads = [(8, 1024), (32, 1024)], {"llama3-8b": HEAD_CONFIGS["llama3-8b"]}
    rows = []
    gen = torch.Generator().manual_seed(0)
    for name, (hq, hkv, d) in heads.items():
        for num_branches, prefix_len in shapes:
            unique, branch_nodes, node_slots = tree_workload(num_branches, prefix_len, gen)
            k_pool, v_pool = pools(unique, hkv, d)
            start = time.perf_counter()
            meta = build_cascade_metadata(branch_nodes, [s.to(DEVICE) for s in node_slots], DEVICE)
            build_ms = (time.perf_counter() - start) * 1e3
            indptr, indices = meta.branch_kv_lists()
            q = randn(num_branches, hq, d)
            shape = f"{name} {num_branches}br x {prefix_len} prefix"
            floor = unique * hkv * d * elt() * 2 + unique * 4 + 2 * q.numel() * elt()
            read_ratio = indices.numel() / unique
            flops = 4 * indices.numel() * hq * d
            cascade = lambda: cascade_decode_attention(q, k_pool, v_pool, meta)  # noqa: E731
            flat = lambda: tree_decode_attention(q, k_pool, v_pool, indptr, indices)  # noqa: E731
            ms_cascade, ms_flat = time_ms(cascade, quick), time_ms(flat, quick)
            diff = (cascade().float() - flat().float()).abs().max().item()
            rows.append(Row("cascade", shape, ms_cascade, floor, flops,
                            f"{ms_flat / ms_cascade:.2f}x vs tree_decode; max|diff| {diff:.1e}; "
                            f"meta {build_ms:.1f} ms"))
            rows.append(Row("tree_decode", shape, ms_flat, floor, flops,
                            f"reads {read_ratio:.1f}x the unique KV"))
    return rows


def extend_rows(quick: bool) -> list[Row]:
    seqs, new, cached = (8, 512, 1024) if ON_CUDA else (2, 128, 256)
    hq, hkv, d = HEAD_CONFIGS["llama3-8b"]
    k_pool, v_pool = pools(seqs * cached, hkv, d)
    kv_indptr, kv_indices = csr(torch.randperm(seqs * cached).view(seqs, cached).tolist())
    qo_indptr = torch.arange(0, (seqs + 1) * new, new, dtype=torch.int32, device=DEVICE)
    q, k, v = randn(seqs * new, hq, d), randn(seqs * new, hkv, d), randn(seqs * new, hkv, d)
    fn = lambda: extend_attention(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices,  # noqa: E731
                                  max_extend_len=new)
    floor = (2 * q.numel() + k.numel() + v.numel()) * elt() + seqs * cached * (hkv * d * elt() * 2 + 4)
    # Causal half of the new x new block plus the full new x cached block; QK and PV.
    flops = 4 * seqs * hq * d * (new * cached + new * (new + 1) // 2)
    return [Row("extend", f"llama3-8b {seqs} seqs x {new} new + {cached} cached",
                time_ms(fn, quick), floor, flops, "compute-bound: see TFLOP/s")]


# ------------------------------------------------------------- colleague kernels


def optional(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        return err


def missing(kernel: str, err) -> Row:
    return Row(kernel, "-", note=f"skipped: {err}")


def store_kv_rows(quick: bool) -> list[Row]:
    store_kv = optional("kernels.store_kv", "store_kv")
    if isinstance(store_kv, Exception):
        return [missing("store_kv", store_kv)]
    tokens = 8192 if ON_CUDA else 1024
    _, hkv, d = HEAD_CONFIGS["llama3-8b"]
    k_pool, v_pool = pools(4 * tokens, hkv, d)
    slots = torch.randperm(4 * tokens, device=DEVICE)[:tokens].to(torch.int32)
    k, v = randn(tokens, hkv, d), randn(tokens, hkv, d)
    ms = time_ms(lambda: store_kv(k_pool, v_pool, slots, k, v), quick)
    return [Row("store_kv", f"{tokens} tokens x {hkv}x{d}", ms, 2 * 2 * k.numel() * elt() + 4 * tokens)]


def rms_norm_rows(quick: bool) -> list[Row]:
    rms_norm = optional("kernels.rms_norm", "rms_norm")
    if isinstance(rms_norm, Exception):
        return [missing("rms_norm", rms_norm)]
    tokens, hidden = (8192, 4096) if ON_CUDA else (1024, 4096)
    x, weight = randn(tokens, hidden), randn(hidden)
    ms = time_ms(lambda: rms_norm(x, weight, 1e-5), quick)
    return [Row("rms_norm", f"{tokens} x {hidden}", ms, (2 * x.numel() + hidden) * elt())]


def rope_rows(quick: bool) -> list[Row]:
    apply_rope = optional("kernels.rope", "apply_rope")
    if isinstance(apply_rope, Exception):
        return [missing("rope", apply_rope)]
    tokens = 8192 if ON_CUDA else 1024
    hq, hkv, d = HEAD_CONFIGS["llama3-8b"]
    q, k = randn(tokens, hq, d), randn(tokens, hkv, d)
    positions = torch.arange(tokens, device=DEVICE)
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, d, 2, device=DEVICE, dtype=torch.float32) / d))
    ms = time_ms(lambda: apply_rope(q, k, positions, inv_freq), quick)
    floor = 2 * (q.numel() + k.numel()) * elt() + tokens * positions.element_size()
    return [Row("rope", f"{tokens} tokens, {hq}/{hkv} heads x {d}", ms, floor)]


def naive_logprobs(hidden, weight, targets, temperature=1.0):
    """What fused_logprobs avoids: [N, V] fp32 logits, log-softmax, gather, entropy."""
    logp = torch.log_softmax((hidden @ weight.T).float() / temperature, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, targets[:, None])[:, 0], entropy


def peak_extra_bytes(fn) -> int:
    """Peak CUDA memory above what was allocated before fn (forward + backward)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def fused_logprobs_rows(quick: bool) -> list[Row]:
    fused_logprobs = optional("kernels.fused_logprobs", "fused_logprobs")
    if isinstance(fused_logprobs, Exception):
        return [missing("fused_logprobs", fused_logprobs)]
    tokens, hidden, vocab = (4096, 3584, 152064) if ON_CUDA else (256, 256, 8192)
    h = randn(tokens, hidden).requires_grad_()
    weight = (randn(vocab, hidden) * 0.02).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device=DEVICE)
    floor = (h.numel() + weight.numel()) * elt() + tokens * (8 + 4 + 4)
    flops = 2 * tokens * vocab * hidden
    shape = f"N={tokens} H={hidden} V={vocab}"
    rows = []
    for name, fn in (("fused_logprobs", fused_logprobs), ("naive_logprobs", naive_logprobs)):
        with torch.no_grad():
            ms = time_ms(lambda: fn(h, weight, targets, 1.0), quick)
        row = Row(name, shape + " fwd", ms, floor, flops)
        if ON_CUDA:
            def fwd_bwd():
                logprobs, entropy = fn(h, weight, targets, 1.0)
                (logprobs.sum() + 0.01 * entropy.sum()).backward()
                h.grad = weight.grad = None
            peak = peak_extra_bytes(fwd_bwd)
            row.extra["peak_extra_bytes_fwd_bwd"] = peak
            row.note = f"peak extra memory fwd+bwd {peak / 2**30:.2f} GiB"
        rows.append(row)
    return rows


# ----------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    quick = args.quick or not ON_CUDA
    torch.manual_seed(0)

    device = torch.cuda.get_device_name() if ON_CUDA else "CPU (timing the PyTorch references)"
    ceiling = copy_bandwidth_gbps(quick)
    rows: list[Row] = []
    for section in (decode_rows, tree_rows, extend_rows, store_kv_rows, rms_norm_rows,
                    rope_rows, fused_logprobs_rows):
        rows += section(quick)

    if args.json:
        print(json.dumps({"device": device, "copy_gbps": ceiling, "rows": [
            {**asdict(r), "gbps": r.gbps(), "fraction_of_copy": (r.gbps() or 0) / ceiling,
             "tflops": r.flops / (r.ms * 1e9) if r.ms and r.flops else None} for r in rows]},
            indent=1))
        return
    print(f"device: {device}; copy bandwidth (read + write): {ceiling:.1f} GB/s")
    header = f"{'kernel':<15} {'shape':<40} {'ms':>9} {'floor MB':>9} {'GB/s':>8} {'% copy':>7} {'TFLOP/s':>8}  note"
    print(header)
    print("-" * len(header))
    for r in rows:
        if r.ms is None:
            print(f"{r.kernel:<15} {r.shape:<40} {'':>9} {'':>9} {'':>8} {'':>7} {'':>8}  {r.note}")
            continue
        tflops = f"{r.flops / (r.ms * 1e9):8.2f}" if r.flops else f"{'':>8}"
        print(f"{r.kernel:<15} {r.shape:<40} {r.ms:9.3f} {r.floor_bytes / 1e6:9.1f} "
              f"{r.gbps():8.1f} {100 * r.gbps() / ceiling:6.1f}% {tflops}  {r.note}")


if __name__ == "__main__":
    main()
