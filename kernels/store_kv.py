"""Writing new keys and values into the KV pool (a scatter through slot indices).

The KV pool of a layer is `[num_slots, Hkv, D]`; a sequence or tree branch is just a list
of slot numbers (page size 1: a branch can fork after any token), so after each forward step the
new tokens' K and V rows must land at arbitrary, non-contiguous slots. That is a scatter:

    k_pool[slots[i]] = k[i];  v_pool[slots[i]] = v[i]

The kernel runs one program per token. Each program reads the token's slot number, then
copies its whole `[Hkv, D]` block of K and of V (a few KB: one contiguous burst per
pool row), casting to the pool's dtype on the way. K and V go in the same program so the
slot number is loaded once and both writes are in flight together. It is pure bandwidth:
read 2·N·Hkv·D elements, write as many.

Slot offsets are computed in int64: a pool with num_slots·Hkv·D > 2^31 elements is normal
(a 1M-slot pool of 8 heads × 128 dims is 2^30 per tensor already).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import use_triton
from .ops_reference import check_store_kv_inputs, store_kv_reference


@triton.jit
def _store_kv_kernel(
    k_pool_ptr, v_pool_ptr, slots_ptr, k_ptr, v_ptr,
    pool_stride_slot, pool_stride_head,
    k_stride_token, k_stride_head, v_stride_token, v_stride_head,
    n_heads, head_dim,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    token = tl.program_id(0)
    slot = tl.load(slots_ptr + token).to(tl.int64)
    heads = tl.arange(0, BLOCK_H)[:, None]  # [BLOCK_H, 1]
    dims = tl.arange(0, BLOCK_D)[None, :]  # [1, BLOCK_D]
    mask = (heads < n_heads) & (dims < head_dim)
    token = token.to(tl.int64)

    k = tl.load(k_ptr + token * k_stride_token + heads * k_stride_head + dims, mask=mask)
    v = tl.load(v_ptr + token * v_stride_token + heads * v_stride_head + dims, mask=mask)
    row = slot * pool_stride_slot + heads * pool_stride_head + dims  # [BLOCK_H, BLOCK_D]
    tl.store(k_pool_ptr + row, k.to(k_pool_ptr.dtype.element_ty), mask=mask)
    tl.store(v_pool_ptr + row, v.to(v_pool_ptr.dtype.element_ty), mask=mask)


def store_kv_launch_settings(n_heads: int, head_dim: int) -> dict:
    """Constexprs of `_store_kv_kernel` (Triton's default warps): a token's [Hkv, D] block."""
    return dict(BLOCK_H=triton.next_power_of_2(n_heads), BLOCK_D=triton.next_power_of_2(head_dim))


def store_kv_triton(k_pool, v_pool, slots, k, v) -> None:
    check_store_kv_inputs(k_pool, v_pool, slots, k, v)
    # The kernel walks the head and dim axes with one stride each and assumes unit stride
    # along D (true of every pool and of q/k/v projections split by view).
    if k_pool.stride() != v_pool.stride() or k_pool.stride(2) != 1:
        raise ValueError("k_pool and v_pool must share one layout with contiguous head_dim")
    k = k if k.stride(2) == 1 else k.contiguous()
    v = v if v.stride(2) == 1 else v.contiguous()
    n_tokens, n_heads, head_dim = k.shape
    if n_tokens == 0:
        return
    _store_kv_kernel[(n_tokens,)](
        k_pool, v_pool, slots, k, v,
        k_pool.stride(0), k_pool.stride(1),
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        n_heads, head_dim,
        **store_kv_launch_settings(n_heads, head_dim),
    )


def store_kv(k_pool: torch.Tensor, v_pool: torch.Tensor, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """k_pool[slots] = k; v_pool[slots] = v, in place, cast to the pool dtype.

    k_pool, v_pool: [num_slots, Hkv, D]; slots: int32/int64[N], distinct; k, v: [N, Hkv, D].
    Slot values are range-checked on CPU only: checking them on the GPU would cost a host
    sync per layer per decode step.
    """
    if use_triton(k_pool):
        store_kv_triton(k_pool, v_pool, slots, k, v)
    else:
        store_kv_reference(k_pool, v_pool, slots, k, v)
