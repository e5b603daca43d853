"""Rotary-embedding frequencies, shared by the decoder and the RoPE kernel.

RoPE (Su et al., 2021) rotates each pair of channels (i, i + D/2) of a query or key by
the angle ``position * inv_freq[i]``. Llama 3.1 stretches the low frequencies so a model
trained on 8k tokens reads 128k ("llama3" rope_scaling): wavelengths shorter than
``original_max_position_embeddings / high_freq_factor`` are kept, longer than
``original_max_position_embeddings / low_freq_factor`` are divided by ``factor``, and the
band in between is interpolated smoothly between the two.
"""

from __future__ import annotations

import math

import torch


def rope_inv_freq(head_dim: int, theta: float, rope_scaling: dict | None = None) -> torch.Tensor:
    """Returns ``inv_freq: fp32[head_dim // 2]``."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    inv_freq = 1.0 / (theta**exponents)  # fp64 so the scaled bands round like the reference
    if rope_scaling is not None:
        kind = rope_scaling.get("rope_type", rope_scaling.get("type"))
        if kind == "llama3":
            inv_freq = _llama3_scaled(inv_freq, rope_scaling)
        elif kind not in (None, "default"):
            raise ValueError(f"unsupported rope_scaling type {kind!r} (supported: llama3, default)")
    return inv_freq.to(torch.float32)


def _llama3_scaled(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    factor = float(s["factor"])
    low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    old_context = float(s["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    smooth = (old_context / wavelen - low) / (high - low)
    interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    in_band = (wavelen <= low_freq_wavelen) & (wavelen >= high_freq_wavelen)
    return torch.where(in_band, interpolated, out)
