"""Tree decode attention: flash-decoding over a paged (page size 1) KV pool.

The problem. At a decode step every sequence (every branch of the search tree) has one
new query token, q: [B, Hq, D], and attends to the slots of its KV list,
`kv_indices[kv_indptr[b]:kv_indptr[b+1]]` of the pools `k_pool, v_pool: [slots, Hkv, D]`.
The work is a matrix-vector product per head: every K/V byte is used for a handful of
multiply-adds, so the kernel is bound by memory bandwidth, and what matters is (1) reading
each K/V row once, (2) keeping every SM busy while doing so.

(1) Grouped-query attention. The Hq // Hkv query heads of one KV group read the same
K/V rows, so one program takes all of them: the query tile is [ROWS, D] with one row per
query head of the group, and K/V are loaded once per group instead of once per head.
We compute with `tl.dot` and pad the group to ROWS >= 16 rows (tl.dot's smallest tile):
the padded rows are masked loads, so they cost no memory traffic, and the tensor cores
do the extra arithmetic for free in a bandwidth-bound kernel. A broadcast-multiply-sum
would avoid the padding but runs on the CUDA cores and needs [ROWS, BLOCK_N, D]
temporaries; one code path with tl.dot for every group size (1 to 128) is simpler.

(2) Split-KV (flash-decoding, Dao et al. 2023). With few long sequences, batch x KV
heads programs do not fill the GPU. So the KV list of each sequence is also cut into
`num_splits` contiguous pieces, grid = (B, Hkv, num_splits). Each program runs the online
softmax of FlashAttention over its piece and writes a *partial* result: the normalised
output o_s (fp32) and the log-sum-exp lse_s of its scores. A second kernel merges the
partials of each query head exactly:

    lse = log(sum_s exp(lse_s)),   o = sum_s exp(lse_s - lse) * o_s.

The same merge kernel serves the cascade (shared-prefix) kernel, whose partials come
from tree nodes instead of pieces of one list; so it takes the partials in CSR form
(query b owns rows part_indptr[b]:part_indptr[b+1] of o_part: [P, Hq, D]).

Numerics. Scores are computed in base 2 (scale folded with log2(e), then exp2, which
is what the hardware provides); the stored lse is converted back to natural log so the
partials mean the same thing as in kernels/attention_reference.py. Accumulation is fp32.
Rows that see no key at all (padding rows, an empty split) keep max = -inf; the update
uses a "safe" max of 0 for them so exp2(-inf - -inf) = NaN never appears, and they
produce o = 0, lse = -inf, which drops out of the merge.

Triton's interpreter (CPU tests) gets bf16 arithmetic wrong, so there the tiles are
upcast to fp32 right after loading; on a GPU, 16-bit inputs stay 16-bit for the tensor
cores (fp32 accumulation), and fp32 inputs use exact fp32 dots (input_precision="ieee",
not tf32), so fp32 results match the reference to ~1e-6.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from kernels.attention_reference import (
    check_decode_inputs,
    default_sm_scale,
    tree_decode_attention_reference,
)
from kernels.dispatch import use_triton

LOG2E = 1.4426950408889634

# A split shorter than this does too little work to pay for its partial result's write.
MIN_TOKENS_PER_SPLIT = 256
MAX_KV_SPLITS = 64

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


# ------------------------------------------------------------------ launch parameters


def compute_dtype(dtype: torch.dtype, device: torch.device):
    """The dtype tiles are computed in after loading (see the module docstring)."""
    if device.type != "cuda":  # Triton's interpreter: bf16 arithmetic is wrong there.
        return tl.float32
    return _TL_DTYPES[dtype]


def kv_block_size(head_dim: int, device: torch.device) -> int:
    """Keys per inner-loop iteration. Small on CPU: the interpreter is slow per element."""
    if device.type != "cuda":
        return 16
    return 64 if head_dim <= 128 else 32


# fp32 tiles on a GPU use exact fp32 dots, which run on the FMA units (no tensor cores)
# in a layout where each thread holds whole D-long rows of both operands: registers grow
# with tile rows x key block x D. ptxas (triton 3.9, sm_80 and sm_90) spills extend's and
# cascade's 64-row fp32 tiles (D = 128 at any key block, D = 64 at 64 keys), and fits
# 32 query rows against 16-key blocks. fp32 is the exact path, not the fast one, so its
# tiles shrink rather than its precision. (Decode's 16-row tile fits at the 16-bit sizes.)
FP32_QUERY_ROWS = 32
FP32_KV_BLOCK = 16


def exact_fp32_tiles(dtype: torch.dtype, device: torch.device) -> bool:
    """True where tiles are fp32 and multiplied on the GPU's FMA units (see above)."""
    return device.type == "cuda" and dtype == torch.float32


def kv_loop_num_warps(head_dim: int, dtype: torch.dtype, device: torch.device) -> int:
    """Warps for the decode and cascade programs.

    16-bit: 4, measured (bench/attention_sweep.py on an H200, bf16, D = 128; bench/
    RESULTS.md): decode of 64 x 2k tokens went from 56 % to 89 % of copy bandwidth
    (Llama-3-8B heads) and from 53 % to 77 % (Qwen2.5-7B); the cascade's geometric mean
    over six trees improved too. Likely why (not profiled): fewer warps a program let
    more programs share an SM, so more gathered K/V rows are in flight.
    Exact fp32 (FMA dots, whole rows a thread): from ptxas's register report, not timed;
    at head_dim 128 4 warps spilled, 8 fit."""
    if exact_fp32_tiles(dtype, device):
        return 4 if head_dim <= 64 else 8
    return 4


def decode_launch_settings(group: int, head_dim: int, dtype: torch.dtype,
                           device: torch.device) -> dict:
    """Constexprs and launch options of `_decode_partial_kernel` for q of this dtype on
    this device type (the ahead-of-time compile test builds the same launches from it).
    Two pipeline stages: 2, 3 and 4 timed within 1 % of each other on the H200."""
    return dict(GROUP=group, ROWS=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim,
                BLOCK_N=kv_block_size(head_dim, device),
                COMPUTE_DTYPE=compute_dtype(dtype, device),
                num_warps=kv_loop_num_warps(head_dim, dtype, device), num_stages=2)


def merge_launch_settings(head_dim: int) -> dict:
    """Constexprs and launch options of `_merge_partials_kernel`."""
    return dict(HEAD_DIM=head_dim, BLOCK_P=16, num_warps=1 if head_dim <= 64 else 2)


def check_head_dim(head_dim: int) -> None:
    if head_dim < 16 or head_dim & (head_dim - 1):
        raise ValueError(f"head_dim must be a power of two >= 16, got {head_dim}")


@functools.lru_cache(maxsize=None)
def sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def target_programs(device: torch.device) -> int:
    """How many programs fill the device: two waves on CUDA; 1 elsewhere (the
    interpreter runs programs one after another, so splitting only costs time)."""
    if device.type != "cuda":
        return 1
    return 2 * sm_count(device.index if device.index is not None else torch.cuda.current_device())


def choose_num_kv_splits(batch: int, num_kv_heads: int, total_kv_tokens: int,
                         device: torch.device) -> int:
    """Flash-decoding's split count, from sizes known on the host (no device sync).

    Enough splits that batch x heads x splits programs fill the GPU, but none shorter
    than MIN_TOKENS_PER_SPLIT on average (the mean length stands in for the lengths,
    which live on the device)."""
    if batch == 0:
        return 1
    wanted = math.ceil(target_programs(device) / (batch * num_kv_heads))
    affordable = max(1, (total_kv_tokens // batch) // MIN_TOKENS_PER_SPLIT)
    return max(1, min(wanted, affordable, MAX_KV_SPLITS))


# --------------------------------------------------------------- shared Triton pieces


@triton.jit
def tile_dot(a, b, COMPUTE_DTYPE: tl.constexpr):
    """a @ b with fp32 accumulation. fp32 tiles get exact fp32 products (not the tf32
    default), so fp32 results match the reference; 16-bit tiles use the tensor cores."""
    if COMPUTE_DTYPE == tl.float32:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def online_softmax_step(scores, v, acc, row_max, row_sum, COMPUTE_DTYPE: tl.constexpr):
    """One FlashAttention update. scores: [ROWS, BLOCK_N] in log2 units (-inf = masked);
    v: [BLOCK_N, D]; acc: [ROWS, D] fp32 (unnormalised output); row_max, row_sum: [ROWS]."""
    new_max = tl.maximum(row_max, tl.max(scores, 1))
    # A row that has seen only masked keys keeps max = -inf; subtracting a safe 0 instead
    # keeps exp2(-inf - -inf) = NaN out of acc (the row's p are all exp2(-inf) = 0).
    safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)
    rescale = tl.exp2(row_max - safe_max)
    p = tl.exp2(scores - safe_max[:, None])
    row_sum = row_sum * rescale + tl.sum(p, 1)
    acc = acc * rescale[:, None] + tile_dot(p.to(COMPUTE_DTYPE), v, COMPUTE_DTYPE)
    return acc, new_max, row_sum


@triton.jit
def attend_to_slots(q, acc, row_max, row_sum, k_head_ptr, v_head_ptr, stride_k_slot,
                    stride_v_slot, slots_ptr, lo, hi, qk_scale, HEAD_DIM: tl.constexpr,
                    BLOCK_N: tl.constexpr, COMPUTE_DTYPE: tl.constexpr):
    """Runs the online softmax of q: [ROWS, D] over the keys whose pool slots are
    slots_ptr[lo:hi]. k_head_ptr/v_head_ptr point at the pools already offset to this
    program's KV head, so a slot s is row `s * stride_slot` from them."""
    dims = tl.arange(0, HEAD_DIM)
    for start in range(lo, hi, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        in_range = cols < hi
        # int64: slot * stride overflows int32 once a pool holds more than 2^31 elements.
        slots = tl.load(slots_ptr + cols, mask=in_range, other=0).to(tl.int64)
        k = tl.load(k_head_ptr + slots[:, None] * stride_k_slot + dims[None, :],
                    mask=in_range[:, None], other=0.0).to(COMPUTE_DTYPE)  # [BLOCK_N, D]
        v = tl.load(v_head_ptr + slots[:, None] * stride_v_slot + dims[None, :],
                    mask=in_range[:, None], other=0.0).to(COMPUTE_DTYPE)
        scores = tile_dot(q, tl.trans(k), COMPUTE_DTYPE) * qk_scale  # [ROWS, BLOCK_N]
        scores = tl.where(in_range[None, :], scores, float("-inf"))
        acc, row_max, row_sum = online_softmax_step(scores, v, acc, row_max, row_sum,
                                                    COMPUTE_DTYPE)
    return acc, row_max, row_sum


@triton.jit
def store_partial(o_part_ptr, lse_part_ptr, part_rows, heads, row_valid, acc, row_max,
                  row_sum, stride_op_row, stride_op_head, stride_lse_row,
                  HEAD_DIM: tl.constexpr):
    """Writes the partial (o, lse) of each valid row: o_part[part_rows, heads, :] and
    lse_part[part_rows, heads] (natural log; -inf and o = 0 for a row that saw no key)."""
    dims = tl.arange(0, HEAD_DIM)
    saw_keys = row_sum > 0.0
    safe_sum = tl.where(saw_keys, row_sum, 1.0)
    o = acc / safe_sum[:, None]
    lse = tl.where(saw_keys, (row_max + tl.log2(safe_sum)) * 0.6931471805599453, float("-inf"))
    part_rows = part_rows.to(tl.int64)
    tl.store(o_part_ptr + part_rows[:, None] * stride_op_row + heads[:, None] * stride_op_head
             + dims[None, :], o, mask=row_valid[:, None])
    tl.store(lse_part_ptr + part_rows * stride_lse_row + heads, lse, mask=row_valid)


# -------------------------------------------------------------------------- kernels


@triton.jit
def _decode_partial_kernel(q_ptr, k_pool_ptr, v_pool_ptr, kv_indptr_ptr, kv_indices_ptr,
                           o_part_ptr, lse_part_ptr, qk_scale,
                           stride_q_seq, stride_q_head, stride_k_slot, stride_k_head,
                           stride_v_slot, stride_v_head, stride_op_row, stride_op_head,
                           stride_lse_row, GROUP: tl.constexpr, ROWS: tl.constexpr,
                           HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
                           COMPUTE_DTYPE: tl.constexpr):
    """Stage 1. Program (seq, kv_head, split): all GROUP query heads of kv_head, over one
    piece of seq's KV list. Writes partial row seq * num_splits + split."""
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    num_splits = tl.num_programs(2)

    seq_start = tl.load(kv_indptr_ptr + seq)
    seq_len = tl.load(kv_indptr_ptr + seq + 1) - seq_start
    # Pieces are whole blocks (except the last), so no block straddles two programs.
    split_len = tl.cdiv(tl.cdiv(seq_len, num_splits), BLOCK_N) * BLOCK_N
    lo = split * split_len
    hi = tl.minimum(lo + split_len, seq_len)  # lo >= hi: an empty piece (o = 0, lse = -inf)

    rows = tl.arange(0, ROWS)  # one row per query head of the group, padded to ROWS
    row_valid = rows < GROUP
    heads = kv_head * GROUP + rows
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + seq.to(tl.int64) * stride_q_seq + heads[:, None] * stride_q_head
                + dims[None, :], mask=row_valid[:, None], other=0.0).to(COMPUTE_DTYPE)

    acc = tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32)
    row_max = tl.full([ROWS], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([ROWS], dtype=tl.float32)
    acc, row_max, row_sum = attend_to_slots(
        q, acc, row_max, row_sum, k_pool_ptr + kv_head * stride_k_head,
        v_pool_ptr + kv_head * stride_v_head, stride_k_slot, stride_v_slot,
        kv_indices_ptr + seq_start, lo, hi, qk_scale, HEAD_DIM, BLOCK_N, COMPUTE_DTYPE)

    part_rows = tl.zeros([ROWS], dtype=tl.int32) + seq * num_splits + split
    store_partial(o_part_ptr, lse_part_ptr, part_rows, heads, row_valid, acc, row_max,
                  row_sum, stride_op_row, stride_op_head, stride_lse_row, HEAD_DIM)


@triton.jit
def _merge_partials_kernel(o_part_ptr, lse_part_ptr, part_indptr_ptr, out_ptr,
                           stride_op_row, stride_op_head, stride_lse_row, stride_out_row,
                           stride_out_head, HEAD_DIM: tl.constexpr, BLOCK_P: tl.constexpr):
    """Stage 2. Program (query, head) merges partial rows part_indptr[query:query+2] by
    log-sum-exp, in two passes: the largest lse first (so no running rescale is needed),
    then the weighted sum of the partial outputs."""
    query = tl.program_id(0)
    head = tl.program_id(1)
    first = tl.load(part_indptr_ptr + query)
    last = tl.load(part_indptr_ptr + query + 1)
    dims = tl.arange(0, HEAD_DIM)

    lse_max = tl.full([BLOCK_P], float("-inf"), dtype=tl.float32)
    for start in range(first, last, BLOCK_P):
        parts = start + tl.arange(0, BLOCK_P)
        lse = tl.load(lse_part_ptr + parts.to(tl.int64) * stride_lse_row + head,
                      mask=parts < last, other=float("-inf"))
        lse_max = tl.maximum(lse_max, lse)
    top = tl.max(lse_max, 0)
    top = tl.where(top == float("-inf"), 0.0, top)  # every partial empty: weights all 0

    weight_sum = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for start in range(first, last, BLOCK_P):
        parts = start + tl.arange(0, BLOCK_P)
        in_range = parts < last
        rows = parts.to(tl.int64)
        lse = tl.load(lse_part_ptr + rows * stride_lse_row + head, mask=in_range,
                      other=float("-inf"))
        weight = tl.exp2((lse - top) * 1.4426950408889634)  # exp(lse - top), [BLOCK_P]
        o = tl.load(o_part_ptr + rows[:, None] * stride_op_row + head * stride_op_head
                    + dims[None, :], mask=in_range[:, None], other=0.0)  # [BLOCK_P, D]
        acc += tl.sum(weight[:, None] * o, 0)
        weight_sum += weight
    total = tl.sum(weight_sum, 0)
    out = acc / tl.where(total > 0.0, total, 1.0)  # no partial saw a key: output 0
    tl.store(out_ptr + query.to(tl.int64) * stride_out_row + head * stride_out_head + dims,
             out.to(out_ptr.dtype.element_ty))


# ------------------------------------------------------------------------ launchers


def merge_attention_partials(o_part: torch.Tensor, lse_part: torch.Tensor,
                             part_indptr: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Triton LSE merge. o_part: [P, Hq, D] fp32; lse_part: [P, Hq] fp32 (natural log);
    part_indptr: int32 [B+1]; writes and returns out: [B, Hq, D] (any float dtype)."""
    num_queries, num_heads, head_dim = out.shape
    if num_queries == 0:
        return out
    _merge_partials_kernel[(num_queries, num_heads)](
        o_part, lse_part, part_indptr, out,
        o_part.stride(0), o_part.stride(1), lse_part.stride(0), out.stride(0), out.stride(1),
        **merge_launch_settings(head_dim))
    return out


def tree_decode_attention_triton(q, k_pool, v_pool, kv_indptr, kv_indices, sm_scale=None,
                                 *, num_kv_splits=None):
    """Triton version of tree_decode_attention (same arguments; see the public one)."""
    group = check_decode_inputs(q, k_pool, v_pool, kv_indptr, kv_indices)
    batch, num_q_heads, head_dim = q.shape
    num_kv_heads = k_pool.shape[1]
    check_head_dim(head_dim)
    if num_kv_splits is None:
        num_kv_splits = choose_num_kv_splits(batch, num_kv_heads, kv_indices.numel(), q.device)
    if num_kv_splits < 1:
        raise ValueError(f"num_kv_splits must be >= 1, got {num_kv_splits}")
    out = torch.empty_like(q)
    if batch == 0:
        return out
    # Partials: row b * num_kv_splits + s holds split s of sequence b.
    o_part = torch.empty(batch * num_kv_splits, num_q_heads, head_dim,
                         dtype=torch.float32, device=q.device)
    lse_part = torch.empty(batch * num_kv_splits, num_q_heads, dtype=torch.float32,
                           device=q.device)
    qk_scale = default_sm_scale(head_dim, sm_scale) * LOG2E
    _decode_partial_kernel[(batch, num_kv_heads, num_kv_splits)](
        q, k_pool, v_pool, kv_indptr, kv_indices, o_part, lse_part, qk_scale,
        q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1),
        v_pool.stride(0), v_pool.stride(1), o_part.stride(0), o_part.stride(1),
        lse_part.stride(0), **decode_launch_settings(group, head_dim, q.dtype, q.device))
    part_indptr = torch.arange(0, (batch + 1) * num_kv_splits, num_kv_splits,
                               dtype=torch.int32, device=q.device)
    return merge_attention_partials(o_part, lse_part, part_indptr, out)


def tree_decode_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                          kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                          sm_scale: float | None = None, *,
                          num_kv_splits: int | None = None) -> torch.Tensor:
    """Decode attention over paged, tree-shared KV.

    q: [B, Hq, D] (one new token per sequence; its own K/V already stored in the pool);
    k_pool, v_pool: [num_slots, Hkv, D], Hq a multiple of Hkv; kv_indptr: int32 [B+1];
    kv_indices: int32 [nnz]: sequence b attends to slots kv_indices[kv_indptr[b]:
    kv_indptr[b+1]]. sm_scale defaults to 1/sqrt(D). num_kv_splits overrides the
    flash-decoding split count (Triton only). Returns o: [B, Hq, D] in q's dtype;
    a sequence with no slots gets zeros.
    """
    if use_triton(q):
        return tree_decode_attention_triton(q, k_pool, v_pool, kv_indptr, kv_indices,
                                            sm_scale, num_kv_splits=num_kv_splits)
    return tree_decode_attention_reference(q, k_pool, v_pool, kv_indptr, kv_indices, sm_scale)
