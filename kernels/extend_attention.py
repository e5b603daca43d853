"""Extend attention: a chunk of new tokens per sequence over its cached prefix + itself.

The problem. A step that adds several tokens to each sequence (the prompt, or a step of
text forced into a branch) has ragged new tokens: sequence b's are rows
qo_indptr[b]:qo_indptr[b+1] of q: [Nq, Hq, D], with their own K/V in k, v: [Nq, Hkv, D]
(not read back from the pool). Each new token attends to

1. every cached slot of its sequence, kv_indices[kv_indptr[b]:kv_indptr[b+1]] of the
   pools (possibly none): no mask, the keys are gathered through the index list;
2. the new tokens of its sequence up to and including itself: a causal mask, the keys
   are contiguous rows of k.

This is FlashAttention with two key sources (the split SGLang's extend kernel makes):
program (h, m, b) holds BLOCK_M consecutive new tokens of sequence b for query head h,
and runs one online softmax first over the prefix (stage 1, the same loop as decode:
kernels/decode_attention.py `attend_to_slots`) and then over the new tokens (stage 2),
stopping at the block's last row: keys after it are masked for every row. Stage 1 needs
no partial results to merge, because a query block sees the whole prefix in one program.

Unlike decode, this is compute-bound for long chunks, so each program works for one
query head: GQA heads of a group re-read the same K/V, but from L2: heads are the grid's
first (fastest-varying) dimension, so a group's programs run side by side. The grid needs the longest chunk,
`max_extend_len`; pass it when it is known on the host, otherwise it costs one sync.

Rows beyond a sequence's new tokens are masked loads and never stored. A row's first
key blocks may all be masked (stage 2 with no prefix and BLOCK_N < BLOCK_M), so the
online softmax uses decode's "safe max" guard against -inf - -inf.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.attention_reference import (
    check_extend_inputs,
    default_sm_scale,
    extend_attention_reference,
)
from kernels.decode_attention import (
    FP32_KV_BLOCK,
    FP32_QUERY_ROWS,
    LOG2E,
    attend_to_slots,
    check_head_dim,
    compute_dtype,
    exact_fp32_tiles,
    kv_block_size,
    online_softmax_step,
    tile_dot,
)
from kernels.dispatch import use_triton


def query_block_size(head_dim: int, device: torch.device) -> int:
    """New tokens per program. Small on CPU: the interpreter is slow per element."""
    if device.type != "cuda":
        return 16
    return 64 if head_dim <= 128 else 32


def extend_launch_settings(group: int, head_dim: int, dtype: torch.dtype,
                           device: torch.device) -> dict:
    """Constexprs and launch options of `_extend_kernel` for q of this dtype on this
    device type (the ahead-of-time compile test builds the same launches from it)."""
    block_m, block_n = query_block_size(head_dim, device), kv_block_size(head_dim, device)
    if exact_fp32_tiles(dtype, device):
        block_m, block_n = min(block_m, FP32_QUERY_ROWS), FP32_KV_BLOCK
    return dict(GROUP=group, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
                COMPUTE_DTYPE=compute_dtype(dtype, device),
                # 8 warps: a [64, D] fp32 accumulator + [64, 64] scores spill at 4 warps
                # for D = 128 (ptxas, sm_90); no GPU timing yet.
                num_warps=8, num_stages=2)


@triton.jit
def _extend_kernel(q_ptr, k_ptr, v_ptr, k_pool_ptr, v_pool_ptr, qo_indptr_ptr, kv_indptr_ptr,
                   kv_indices_ptr, o_ptr, qk_scale,
                   stride_q_tok, stride_q_head, stride_k_tok, stride_k_head, stride_v_tok,
                   stride_v_head, stride_kp_slot, stride_kp_head, stride_vp_slot,
                   stride_vp_head, stride_o_tok, stride_o_head,
                   GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, COMPUTE_DTYPE: tl.constexpr):
    head = tl.program_id(0)  # innermost: a KV group's heads run side by side, sharing L2
    q_block = tl.program_id(1)
    seq = tl.program_id(2)
    kv_head = head // GROUP

    new_start = tl.load(qo_indptr_ptr + seq)
    num_new = tl.load(qo_indptr_ptr + seq + 1) - new_start
    if q_block * BLOCK_M >= num_new:  # the grid covers the longest chunk, not this one
        return

    rows = q_block * BLOCK_M + tl.arange(0, BLOCK_M)  # positions among the new tokens
    row_valid = rows < num_new
    dims = tl.arange(0, HEAD_DIM)
    q_rows = (new_start + rows).to(tl.int64)
    q = tl.load(q_ptr + q_rows[:, None] * stride_q_tok + head * stride_q_head + dims[None, :],
                mask=row_valid[:, None], other=0.0).to(COMPUTE_DTYPE)  # [BLOCK_M, D]

    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)

    # Stage 1: the cached prefix, gathered through the slot list, every key visible.
    cached_start = tl.load(kv_indptr_ptr + seq)
    num_cached = tl.load(kv_indptr_ptr + seq + 1) - cached_start
    acc, row_max, row_sum = attend_to_slots(
        q, acc, row_max, row_sum, k_pool_ptr + kv_head * stride_kp_head,
        v_pool_ptr + kv_head * stride_vp_head, stride_kp_slot, stride_vp_slot,
        kv_indices_ptr + cached_start, 0, num_cached, qk_scale, HEAD_DIM, BLOCK_N,
        COMPUTE_DTYPE)

    # Stage 2: the new tokens themselves, causal; none after this block's last row.
    causal_end = tl.minimum((q_block + 1) * BLOCK_M, num_new)
    for start in range(0, causal_end, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_valid = cols < num_new
        k_rows = (new_start + cols).to(tl.int64)
        k = tl.load(k_ptr + k_rows[:, None] * stride_k_tok + kv_head * stride_k_head
                    + dims[None, :], mask=col_valid[:, None], other=0.0).to(COMPUTE_DTYPE)
        v = tl.load(v_ptr + k_rows[:, None] * stride_v_tok + kv_head * stride_v_head
                    + dims[None, :], mask=col_valid[:, None], other=0.0).to(COMPUTE_DTYPE)
        scores = tile_dot(q, tl.trans(k), COMPUTE_DTYPE) * qk_scale  # [BLOCK_M, BLOCK_N]
        visible = (cols[None, :] <= rows[:, None]) & col_valid[None, :]
        scores = tl.where(visible, scores, float("-inf"))
        acc, row_max, row_sum = online_softmax_step(scores, v, acc, row_max, row_sum,
                                                    COMPUTE_DTYPE)

    # Every valid row saw at least itself, so row_sum > 0 there; padding rows are not stored.
    out = acc / tl.where(row_sum > 0.0, row_sum, 1.0)[:, None]
    tl.store(o_ptr + q_rows[:, None] * stride_o_tok + head * stride_o_head + dims[None, :],
             out.to(o_ptr.dtype.element_ty), mask=row_valid[:, None])


def extend_attention_triton(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices,
                            sm_scale=None, *, max_extend_len=None):
    """Triton version of extend_attention (same arguments; see the public one)."""
    group = check_extend_inputs(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices)
    num_tokens, num_q_heads, head_dim = q.shape
    check_head_dim(head_dim)
    num_seqs = qo_indptr.numel() - 1
    out = torch.empty_like(q)
    if num_tokens == 0 or num_seqs == 0:
        return out
    if max_extend_len is None:  # one device-to-host sync; callers that know it pass it
        max_extend_len = int((qo_indptr[1:] - qo_indptr[:-1]).max().item())
    settings = extend_launch_settings(group, head_dim, q.dtype, q.device)
    grid = (num_q_heads, triton.cdiv(max_extend_len, settings["BLOCK_M"]), num_seqs)
    _extend_kernel[grid](
        q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices, out,
        default_sm_scale(head_dim, sm_scale) * LOG2E,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_pool.stride(0), k_pool.stride(1), v_pool.stride(0), v_pool.stride(1),
        out.stride(0), out.stride(1), **settings)
    return out


def extend_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     k_pool: torch.Tensor, v_pool: torch.Tensor, qo_indptr: torch.Tensor,
                     kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float | None = None, *,
                     max_extend_len: int | None = None) -> torch.Tensor:
    """Attention of ragged new tokens over their cached prefix and, causally, each other.

    q: [Nq, Hq, D]; k, v: [Nq, Hkv, D] (the new tokens' K/V); k_pool, v_pool:
    [num_slots, Hkv, D]; qo_indptr: int32 [B+1] (sequence b's new tokens are rows
    qo_indptr[b]:qo_indptr[b+1]); kv_indptr: int32 [B+1], kv_indices: int32 [nnz]
    (sequence b's cached slots, NOT including the new tokens; may be empty).
    max_extend_len: the longest new-token chunk, if known on the host (Triton only;
    saves a sync). Returns o: [Nq, Hq, D] in q's dtype.
    """
    if use_triton(q):
        return extend_attention_triton(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr,
                                       kv_indices, sm_scale, max_extend_len=max_extend_len)
    return extend_attention_reference(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr,
                                      kv_indices, sm_scale)
