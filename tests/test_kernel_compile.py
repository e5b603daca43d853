"""Every Triton kernel compiles for sm_80 and sm_90, without spilling registers.

The CPU tests run the kernels in Triton's interpreter, which accepts code the GPU compiler
rejects (a `tl.dot` tile under 16, a layout conversion it cannot lower) and says nothing
about registers. Triton compiles ahead of time without a GPU: source -> TTIR -> TTGIR ->
LLVM IR -> PTX, then the ptxas inside the triton wheel turns the PTX into a cubin for the
target architecture. This test does exactly that for every kernel at the launches the
code makes for the supported models (head_dim 64 and 128; fp16, bf16 and fp32), and fails
on a compile error or on any byte of register spill that ptxas reports.

What is compiled follows the code, not a copy of it: constexprs, num_warps and
num_stages come from each launcher's `*_launch_settings` function (asked for a CUDA
device, which needs no GPU to name). Argument types and the divisibility hints Triton
attaches at launch are derived from example values the way Triton's launcher derives
them (see `argument_spec`), so the compiled code is the code a launch on a GPU would JIT.

A kernel decorated while TRITON_INTERPRET=1 is an interpreter function that cannot be
compiled, and conftest.py sets that flag for the whole session; so the compiles run in a
child process without it (this file run as a script), with a fresh TRITON_CACHE_DIR so a
cached cubin cannot hide a failure, and ptxas's report printed for every kernel
(TRITON_DUMP_PTXAS_LOG=1).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ARCHS = (80, 90)  # A100; H100/H200
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
CUDA = torch.device("cuda")  # only its type is read: no GPU needed


@dataclass(frozen=True)
class ModelShape:
    """The head layout of a supported model family, as the kernels see it."""
    name: str
    q_heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int


# The kernels' code depends on head_dim and, through the padded GQA group, on index
# arithmetic; register pressure follows the tiles (head_dim, query rows, key block), which
# do not depend on the group. So: the default model (head_dim 64) and the paper's two
# families at head_dim 128, padded groups 8 and 4.
MODELS = (
    ModelShape("Qwen2.5-0.5B", 14, 2, 64, 896, 151936),       # group 7 -> 8
    ModelShape("Llama-3.1-8B", 32, 8, 128, 4096, 128256),     # group 4
    ModelShape("Qwen2.5-7B", 28, 4, 128, 3584, 152064),       # group 7 -> 8
)


# ------------------------------------------------------------- the launches to compile


class Ptr:
    """A tensor argument: only its element type matters (allocations are 16-byte aligned)."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def launches(model: ModelShape, dtype: torch.dtype) -> list[tuple[str, str, dict, dict]]:
    """(module, kernel, example arguments by name, launch settings) for every kernel launch
    the code makes for `model` in `dtype`. Tensors are contiguous, as the callers pass them."""
    from kernels.cascade_attention import cascade_launch_settings
    from kernels.decode_attention import decode_launch_settings, merge_launch_settings
    from kernels.extend_attention import extend_launch_settings
    from kernels.fused_logprobs import logprobs_launch_settings
    from kernels.rms_norm import rms_norm_launch_settings
    from kernels.rope import rope_launch_settings
    from kernels.store_kv import store_kv_launch_settings

    hq, hkv, d = model.q_heads, model.kv_heads, model.head_dim
    group = hq // hkv
    x, f32, i32, i64 = Ptr(dtype), Ptr(torch.float32), Ptr(torch.int32), Ptr(torch.int64)
    q_rows, kv_rows = hq * d, hkv * d  # strides of [N, Hq, D] and [slots, Hkv, D]

    decode_args = dict(
        q_ptr=x, k_pool_ptr=x, v_pool_ptr=x, kv_indptr_ptr=i32, kv_indices_ptr=i32,
        o_part_ptr=f32, lse_part_ptr=f32, qk_scale=0.1, stride_q_seq=q_rows, stride_q_head=d,
        stride_k_slot=kv_rows, stride_k_head=d, stride_v_slot=kv_rows, stride_v_head=d,
        stride_op_row=q_rows, stride_op_head=d, stride_lse_row=hq)
    merge_args = dict(
        o_part_ptr=f32, lse_part_ptr=f32, part_indptr_ptr=i32, out_ptr=x, stride_op_row=q_rows,
        stride_op_head=d, stride_lse_row=hq, stride_out_row=q_rows, stride_out_head=d)
    extend_args = dict(
        q_ptr=x, k_ptr=x, v_ptr=x, k_pool_ptr=x, v_pool_ptr=x, qo_indptr_ptr=i32,
        kv_indptr_ptr=i32, kv_indices_ptr=i32, o_ptr=x, qk_scale=0.1,
        stride_q_tok=q_rows, stride_q_head=d, stride_k_tok=kv_rows, stride_k_head=d,
        stride_v_tok=kv_rows, stride_v_head=d, stride_kp_slot=kv_rows, stride_kp_head=d,
        stride_vp_slot=kv_rows, stride_vp_head=d, stride_o_tok=q_rows, stride_o_head=d)
    cascade_args = dict(
        q_ptr=x, k_pool_ptr=x, v_pool_ptr=x, node_kv_indices_ptr=i32, node_q_indices_ptr=i32,
        pair_part_start_ptr=i32, items_ptr=i32, o_part_ptr=f32, lse_part_ptr=f32,
        qk_scale=0.1, stride_q_seq=q_rows, stride_q_head=d, stride_k_slot=kv_rows,
        stride_k_head=d, stride_v_slot=kv_rows, stride_v_head=d, stride_op_row=q_rows,
        stride_op_head=d, stride_lse_row=hq)
    rms_args = dict(x_ptr=x, weight_ptr=x, y_ptr=x, x_stride_row=model.hidden,
                    y_stride_row=model.hidden, hidden=model.hidden, eps=1e-6)
    rope_args = dict(
        q_ptr=x, k_ptr=x, q_out_ptr=x, k_out_ptr=x, positions_ptr=i64, inv_freq_ptr=f32,
        q_stride_token=q_rows, q_stride_head=d, k_stride_token=kv_rows, k_stride_head=d,
        q_out_stride_token=q_rows, q_out_stride_head=d, k_out_stride_token=kv_rows,
        k_out_stride_head=d, n_q_heads=hq, n_k_heads=hkv, half=d // 2)
    store_args = dict(
        k_pool_ptr=x, v_pool_ptr=x, slots_ptr=i64, k_ptr=x, v_ptr=x, pool_stride_slot=kv_rows,
        pool_stride_head=d, k_stride_token=kv_rows, k_stride_head=d, v_stride_token=kv_rows,
        v_stride_head=d, n_heads=hkv, head_dim=d)
    stats_args = dict(logits_ptr=x, logits_stride_row=model.vocab, targets_ptr=i64,
                      logprobs_ptr=f32, entropy_ptr=f32, lse_ptr=f32, vocab=model.vocab,
                      temperature=1.0)
    grad_args = dict(logits_ptr=x, logits_stride_row=model.vocab, targets_ptr=i64, lse_ptr=f32,
                     entropy_ptr=f32, grad_logprobs_ptr=f32, grad_entropy_ptr=f32,
                     vocab=model.vocab, temperature=1.0)
    return [
        ("kernels.decode_attention", "_decode_partial_kernel", decode_args,
         decode_launch_settings(group, d, dtype, CUDA)),
        ("kernels.decode_attention", "_merge_partials_kernel", merge_args,
         merge_launch_settings(d)),
        ("kernels.extend_attention", "_extend_kernel", extend_args,
         extend_launch_settings(group, d, dtype, CUDA)),
        ("kernels.cascade_attention", "_cascade_partial_kernel", cascade_args,
         cascade_launch_settings(group, d, dtype, CUDA)),
        ("kernels.rms_norm", "_rms_norm_kernel", rms_args, rms_norm_launch_settings(model.hidden)),
        ("kernels.rope", "_rope_kernel", rope_args, rope_launch_settings(hq, hkv, d)),
        ("kernels.store_kv", "_store_kv_kernel", store_args, store_kv_launch_settings(hkv, d)),
        ("kernels.fused_logprobs", "_chunk_stats_kernel", stats_args,
         logprobs_launch_settings(model.vocab)),
        ("kernels.fused_logprobs", "_chunk_grad_kernel", grad_args,
         logprobs_launch_settings(model.vocab)),
    ]


_TRITON_TYPES = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32",
                 torch.int32: "*i32", torch.int64: "*i64"}


def argument_spec(value) -> tuple[str, bool]:
    """(Triton type, divisible by 16) of a runtime argument, as Triton's launcher
    specialises it: a 16-byte-aligned pointer or an int multiple of 16 is marked
    divisible (which lets loads vectorise), and an int equal to 1 becomes a constant."""
    if isinstance(value, Ptr):
        return _TRITON_TYPES[value.dtype], True
    if isinstance(value, float):
        return "fp32", False
    if value == 1:
        return "constexpr", False
    return ("i32" if -2**31 <= value < 2**31 else "i64"), value % 16 == 0


def compile_jobs() -> list[dict]:
    """Every distinct compile: launches of all models and dtypes, deduplicated, per arch."""
    jobs, seen = [], set()
    for model in MODELS:
        for dtype in DTYPES:
            for module, kernel, args, settings in launches(model, dtype):
                options = {k: settings[k] for k in ("num_warps", "num_stages") if k in settings}
                constexprs = {k: v for k, v in settings.items() if k not in options}
                specs = {name: argument_spec(value) for name, value in args.items()}
                constexprs.update({n: args[n] for n, (t, _) in specs.items() if t == "constexpr"})
                for arch in ARCHS:
                    key = (kernel, str(sorted(specs.items())), str(sorted(constexprs.items())),
                           str(sorted(options.items())), arch)
                    if key in seen:
                        continue
                    seen.add(key)
                    jobs.append(dict(module=module, kernel=kernel, specs=specs,
                                     constexprs=constexprs, options=options, arch=arch,
                                     label=f"{kernel} sm_{arch} {model.name} {dtype} {constexprs} {options}"))
    return jobs


# ------------------------------------------------------------- the child process


SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
REGISTERS = re.compile(r"Used (\d+) registers")


def compile_one(job: dict) -> dict:
    """Compiles one job; returns the label with ptxas's registers and spill bytes, or the error."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(job["module"]), job["kernel"])
    specs, constexprs = job["specs"], job["constexprs"]
    if set(fn.arg_names) != set(specs) | set(constexprs):  # the kernel's parameters changed
        return dict(label=job["label"], error=f"parameters {fn.arg_names} != described "
                    f"{sorted(set(specs) | set(constexprs))}")
    # In the kernel's parameter order, as the launcher builds it; hints by position.
    signature = {name: specs[name][0] if name in specs else "constexpr" for name in fn.arg_names}
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]]
             for name, (_, divisible) in specs.items() if divisible}
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # ptxas -v's report, printed by Triton
            compiled = triton.compile(
                ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                target=GPUTarget("cuda", job["arch"], 32), options=job["options"])
    except Exception as error:  # noqa: BLE001 - any compiler failure is the test's finding
        return dict(label=job["label"], error=f"{type(error).__name__}: {error}"[-2000:])
    report = log.getvalue()
    spills = [int(a) + int(b) for a, b in SPILL.findall(report)]
    registers = [int(r) for r in REGISTERS.findall(report)]
    if not spills or not registers or "cubin" not in compiled.asm:
        return dict(label=job["label"], error=f"no ptxas report or cubin: {report[-500:]!r}")
    return dict(label=job["label"], registers=max(registers), spill_bytes=sum(spills))


def compile_all(workers: int) -> list[dict]:
    jobs = compile_jobs()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(compile_one, jobs))


# ------------------------------------------------------------- the test


def test_every_kernel_compiles_for_sm80_and_sm90_without_spills(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "triton-cache"), TRITON_DUMP_PTXAS_LOG="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
               TRITON_DEFAULT_FP_FUSION="1")  # the default today, set to silence its warning
    child = subprocess.run([sys.executable, __file__], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    # Every kernel of the package, both architectures and all three dtypes were compiled.
    labels = " ".join(r["label"] for r in results)
    for kernel in ("_decode_partial_kernel", "_merge_partials_kernel", "_extend_kernel",
                   "_cascade_partial_kernel", "_rms_norm_kernel", "_rope_kernel",
                   "_store_kv_kernel", "_chunk_stats_kernel", "_chunk_grad_kernel"):
        for arch in ARCHS:
            assert f"{kernel} sm_{arch}" in labels
    failures = [f"{r['label']}: {r['error']}" for r in results if "error" in r]
    assert not failures, "\n".join(failures)
    spilled = [f"{r['label']}: {r['spill_bytes']} bytes spilled, {r['registers']} registers"
               for r in results if r["spill_bytes"]]
    assert not spilled, "\n".join(spilled)
    most = {}  # for `pytest -s`: the register high-water mark of each kernel and arch
    for r in results:
        key = " ".join(r["label"].split()[:2])
        most[key] = max(most.get(key, 0), r["registers"])
    print(f"\n{len(results)} compiles, no spills; most registers a thread:",
          ", ".join(f"{k} {v}" for k, v in sorted(most.items())))


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("run without TRITON_INTERPRET: interpreted kernels cannot be compiled")
    print(json.dumps(compile_all(workers=int(os.environ.get("AOT_WORKERS", "2")))))
