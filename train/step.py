"""What every training forward and optimiser step shares, in SFT and in RL alike."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import torch


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the matmuls in bf16, the losses in fp32); nothing on a CPU,
    where bf16 arithmetic is emulated and slower than fp32."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def clip_and_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, max_norm: float,
                  what: str = "") -> torch.Tensor:
    """Clips the gradient to `max_norm`, steps the optimiser unless the norm is NaN/inf,
    and zeroes the gradient. Returns the norm before clipping (a full tensor under FSDP).
    A non-finite gradient would poison AdamW's moments for good: that step is skipped
    with a warning naming `what` (e.g. "at iteration 3")."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    if torch.isfinite(grad_norm):
        optimizer.step()
    else:
        where = f" {what}" if what else ""
        print(f"warning: non-finite gradient norm {float(grad_norm)}{where}; step skipped", file=sys.stderr)
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
