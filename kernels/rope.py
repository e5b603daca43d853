"""Rotary position embedding for queries and keys at arbitrary positions.

RoPE (Su et al., 2021) encodes position by rotating channel pairs: in Hugging Face's
"rotate_half" layout channel i pairs with channel i + D/2 and the pair turns by the angle
`position · inv_freq[i]`:

    out[i]       = x[i] · cos − x[i + D/2] · sin
    out[i + D/2] = x[i + D/2] · cos + x[i] · sin

In tree search every token carries its own position (two branches of the tree can be at
different depths in one batch), so the kernel takes one position per token rather than a
`[T]` range. One program handles one token: it computes the D/2 angles once in fp32,
takes cos and sin (arithmetic is cheap next to the memory traffic, and there is no
cos/sin cache to index), and applies them to all Hq query heads and all Hkv key heads of that token as two
`[heads, D/2]` tiles — the first and second halves of each head are loaded separately so
the pairing is just elementwise arithmetic between the two tiles.

Everything is computed in fp32 and rounded once to the input dtype (see
`apply_rope_reference` for how that compares with Hugging Face's rounding). Forward
only: `apply_rope` uses the differentiable reference whenever autograd is recording.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import use_triton
from .ops_reference import apply_rope_reference, check_rope_inputs


@triton.jit
def _rotate_heads(x_ptr, out_ptr, x_stride_head, out_stride_head, n_heads, half, cos, sin,
                  BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr):
    """Rotates every head of one token. x_ptr/out_ptr point at the token's first head."""
    heads = tl.arange(0, BLOCK_H)[:, None]  # [BLOCK_H, 1]
    dims = tl.arange(0, BLOCK_HALF)[None, :]  # [1, BLOCK_HALF]
    mask = (heads < n_heads) & (dims < half)
    first = x_ptr + heads * x_stride_head + dims  # channels [0, D/2)
    x1 = tl.load(first, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(first + half, mask=mask, other=0.0).to(tl.float32)  # channels [D/2, D)
    out = out_ptr + heads * out_stride_head + dims
    tl.store(out, (x1 * cos - x2 * sin).to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out + half, (x2 * cos + x1 * sin).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    q_ptr, k_ptr, q_out_ptr, k_out_ptr, positions_ptr, inv_freq_ptr,
    q_stride_token, q_stride_head, k_stride_token, k_stride_head,
    q_out_stride_token, q_out_stride_head, k_out_stride_token, k_out_stride_head,
    n_q_heads, n_k_heads, half,
    BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    position = tl.load(positions_ptr + token).to(tl.float32)
    i = tl.arange(0, BLOCK_HALF)
    inv_freq = tl.load(inv_freq_ptr + i, mask=i < half, other=0.0)
    angle = position * inv_freq  # [BLOCK_HALF] fp32: one rounding, as in Hugging Face
    cos = tl.cos(angle)[None, :]  # [1, BLOCK_HALF], broadcast over heads
    sin = tl.sin(angle)[None, :]
    _rotate_heads(q_ptr + token * q_stride_token, q_out_ptr + token * q_out_stride_token,
                  q_stride_head, q_out_stride_head, n_q_heads, half, cos, sin, BLOCK_HQ, BLOCK_HALF)
    _rotate_heads(k_ptr + token * k_stride_token, k_out_ptr + token * k_out_stride_token,
                  k_stride_head, k_out_stride_head, n_k_heads, half, cos, sin, BLOCK_HK, BLOCK_HALF)


def rope_launch_settings(n_q_heads: int, n_k_heads: int, head_dim: int) -> dict:
    """Constexprs of `_rope_kernel` (Triton's default warps): every head of a token in
    one tile."""
    return dict(BLOCK_HQ=triton.next_power_of_2(n_q_heads), BLOCK_HK=triton.next_power_of_2(n_k_heads),
                BLOCK_HALF=triton.next_power_of_2(head_dim // 2))


def apply_rope_triton(q, k, positions, inv_freq):
    check_rope_inputs(q, k, positions, inv_freq)
    q = q if q.stride(2) == 1 else q.contiguous()  # the kernel assumes unit stride along D
    k = k if k.stride(2) == 1 else k.contiguous()
    q_out, k_out = torch.empty(q.shape, dtype=q.dtype, device=q.device), torch.empty(k.shape, dtype=k.dtype, device=k.device)
    n_tokens, n_q_heads, head_dim = q.shape
    if n_tokens == 0:
        return q_out, k_out
    _rope_kernel[(n_tokens,)](
        q, k, q_out, k_out, positions, inv_freq.to(device=q.device, dtype=torch.float32).contiguous(),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1),
        q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1),
        n_q_heads, k.shape[1], head_dim // 2,
        **rope_launch_settings(n_q_heads, k.shape[1], head_dim),
    )
    return q_out, k_out


def apply_rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor):
    """Rotates q: [N, Hq, D] and k: [N, Hkv, D] by positions: int[N] with inv_freq: fp32[D/2].

    Returns new (q_rot, k_rot) in the input dtypes (Hugging Face "rotate_half" layout).
    """
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    if use_triton(q) and not needs_grad:
        return apply_rope_triton(q, k, positions, inv_freq)
    return apply_rope_reference(q, k, positions, inv_freq)
