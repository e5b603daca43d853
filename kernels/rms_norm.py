"""RMSNorm, one row per program (forward only: the serving path).

    y = weight * (x / sqrt(mean(x²) + eps))        (Zhang & Sennrich, 2019)

A row of a Llama-family model is at most a few thousand channels, so the whole row fits
in one block of registers: each program loads its row once, reduces the sum of squares
in fp32, scales, multiplies by the weight and stores. One read and one write of x — the
three or four passes of the eager PyTorch version (square, mean, rsqrt-multiply, cast,
weight-multiply) become one, which is all the speed-up there is in a memory-bound op.

Rounding follows Hugging Face's LlamaRMSNorm exactly: the normalised row is cast to x's
dtype *before* the weight multiply. The product of two bf16 (or fp16) numbers is exact
in fp32, so `round(fp32(w) · fp32(round(x̂)))` here equals PyTorch's bf16 multiply bit for
bit on a GPU. (Triton's CPU interpreter truncates fp32→bf16 instead of rounding, so there
bf16 results can be an ulp off.)

Training uses the differentiable reference; `rms_norm` falls back to it whenever autograd
is recording, so the Triton path never silently drops a gradient.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import use_triton
from .ops_reference import check_rms_norm_inputs, rms_norm_reference


@triton.jit
def _rms_norm_kernel(x_ptr, weight_ptr, y_ptr, x_stride_row, y_stride_row, hidden, eps, BLOCK_H: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_H)
    mask = cols < hidden

    x = tl.load(x_ptr + row * x_stride_row + cols, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_H]
    mean_square = tl.sum(x * x, axis=0) / hidden  # padding lanes are 0 and do not count
    normed = x * tl.math.rsqrt(mean_square + eps)
    normed = normed.to(x_ptr.dtype.element_ty).to(tl.float32)  # Hugging Face's cast before the weight
    weight = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * y_stride_row + cols, (weight * normed).to(y_ptr.dtype.element_ty), mask=mask)


def rms_norm_launch_settings(hidden: int) -> dict:
    """Constexprs and launch options of `_rms_norm_kernel`: the whole row in one block,
    ~8 elements per thread."""
    block_h = triton.next_power_of_2(hidden)
    return dict(BLOCK_H=block_h, num_warps=min(max(block_h // 256, 1), 8))


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    check_rms_norm_inputs(x, weight)
    hidden = x.shape[-1]
    rows = x.reshape(-1, hidden)  # [M, H]: a view whenever the leading dims allow it
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    y = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    if rows.shape[0] > 0:
        _rms_norm_kernel[(rows.shape[0],)](
            rows, weight.contiguous(), y, rows.stride(0), y.stride(0), hidden, eps,
            **rms_norm_launch_settings(hidden),
        )
    return y.view(x.shape)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x: [..., H]; weight: [H] -> y: [..., H] in x's dtype (Hugging Face LlamaRMSNorm)."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if use_triton(x) and not needs_grad:
        return rms_norm_triton(x, weight, eps)
    return rms_norm_reference(x, weight, eps)
