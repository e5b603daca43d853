"""The building blocks of a Llama-family decoder layer.

Pre-norm residual block (Llama, Qwen2/2.5/3, SmolLM2 are all this shape):

    h = x + Attention(RMSNorm(x))      # grouped-query attention with RoPE
    y = h + SwiGLU(RMSNorm(h))

These modules hold the weights (named exactly like Hugging Face's, so loading and export
are a prefix away) and run on a *packed* batch: the tokens of any number of sequences
flattened to x: [N, hidden], each with its own position. What a packed batch needs to
say besides positions is who attends to whom, and that is the only thing that differs
between the model's uses, so the block takes it as an argument, `attend`:

    attend(layer, q [N, Hq, D], k [N, Hkv, D], v [N, Hkv, D]) -> o [N, Hq, D]

- training on dense sequences: `CausalAttention` below (each row of a [B, T] batch);
- serving: the engine's KV-pool step (search/attention_batch.py), which stores k and v in
  the layer's pool and attends over cached slots with the decode/extend/cascade kernels;
- tree-packed training: `TreeAttention` (model/tree_packing.py), ancestors only.

RMSNorm and RoPE go through the kernels' dispatchers: Triton where it pays (CUDA, no
autograd), the differentiable PyTorch reference otherwise.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kernels.rms_norm import rms_norm
from kernels.rope import apply_rope

from .config import ModelConfig

Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich, 2019): no mean subtraction, no bias.

    Computed in fp32 and cast back before the weight multiply, the order Hugging Face
    uses, so bf16 models round the same way (kernels/rms_norm.py).
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class CausalAttention:
    """Attention of a dense [B, T] batch packed to N = B·T rows: each row causal over itself."""

    def __init__(self, batch: int):
        self.batch = batch

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        N, Hq, D = q.shape
        # SDPA wants heads before time: [B, H, T, D] (views, no copies); enable_gqa
        # broadcasts each K/V head over its group of query heads without repeating it.
        q, k, v = (t.view(self.batch, N // self.batch, t.shape[1], D).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # [B, Hq, T, D]
        return o.transpose(1, 2).reshape(N, Hq, D)


class Attention(nn.Module):
    """Grouped-query attention (Ainslie et al., 2023): Hq query heads share Hkv K/V heads."""

    def __init__(self, cfg: ModelConfig, layer_index: int):
        super().__init__()
        self.layer_index = layer_index  # which KV pool a serving `attend` reads and writes
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=cfg.o_bias)
        if cfg.qk_norm:  # Qwen3: normalise each head's q and k before RoPE (stabilises logits)
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, attend: Attend) -> torch.Tensor:
        """x: [N, hidden]; positions: int64[N] -> [N, hidden]."""
        N = x.shape[0]
        q = self.q_proj(x).view(N, self.n_heads, self.head_dim)  # [N, Hq, D]
        k = self.k_proj(x).view(N, self.n_kv_heads, self.head_dim)  # [N, Hkv, D]
        v = self.v_proj(x).view(N, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, k, positions, inv_freq)  # one position per token: tree depths work too
        o = attend(self.layer_index, q, k, v)  # [N, Hq, D]
        return self.o_proj(o.reshape(N, self.n_heads * self.head_dim))


class SwiGLU(nn.Module):
    """The gated MLP of Llama (Shazeer, 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """One decoder layer. FSDP2 shards the model one Block at a time."""

    def __init__(self, cfg: ModelConfig, layer_index: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer_index)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, attend: Attend) -> torch.Tensor:
        """x: [N, hidden]; positions: int64[N] -> [N, hidden]."""
        h = x + self.self_attn(self.input_layernorm(x), positions, inv_freq, attend)
        return h + self.mlp(self.post_attention_layernorm(h))
