"""The serving forward: a flat batch of new tokens against a shared KV pool.

The training path (transformer.py) runs dense ``[B, T]`` sequences. Serving is different:
in one engine step, hundreds of tree branches each add one token (decode) or a few
(extend: a prompt, a forced functional tag), and every branch attends to a different
list of cached KV slots, most of them shared with its siblings. So the serving forward
takes the new tokens flattened into one ``[N]`` vector with a position each, and hands
attention to a callback the engine builds from its token tree:

    attend(layer, q [N, Hq, D], k [N, Hkv, D], v [N, Hkv, D]) -> o [N, Hq, D]

The callback stores k and v into that layer's pool slots and runs the decode, extend or
cascade kernel over the right slots. The decoder knows nothing about trees; the engine
knows nothing about layers' insides. Same weights as the training path, so a greedy
rollout here equals a greedy full recompute.
"""

from __future__ import annotations

from typing import Callable

import torch

from kernels.rms_norm import rms_norm
from kernels.rope import apply_rope

from .transformer import Transformer

AttendFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def serving_hidden(model: Transformer, tokens: torch.Tensor, positions: torch.Tensor, attend: AttendFn) -> torch.Tensor:
    """tokens, positions: int64[N] -> final normed hidden states [N, hidden]."""
    x = model.embed_tokens(tokens)  # [N, H]
    for layer_index, block in enumerate(model.layers):
        attn = block.self_attn
        h = rms_norm(x, block.input_layernorm.weight, block.input_layernorm.eps)
        q, k, v = attn.project_qkv(h)  # [N, Hq, D], [N, Hkv, D], [N, Hkv, D]
        q, k = apply_rope(q, k, positions, model.inv_freq)
        o = attend(layer_index, q, k, v)  # [N, Hq, D]
        x = x + attn.o_proj(o.reshape(o.shape[0], -1))
        h = rms_norm(x, block.post_attention_layernorm.weight, block.post_attention_layernorm.eps)
        x = x + block.mlp(h)
    return rms_norm(x, model.norm.weight, model.norm.eps)


@torch.no_grad()
def serving_logits(
    model: Transformer, tokens: torch.Tensor, positions: torch.Tensor, attend: AttendFn, last_index: torch.Tensor
) -> torch.Tensor:
    """Logits only where the engine samples: rows `last_index` of the flat batch -> [B, vocab] fp32."""
    hidden = serving_hidden(model, tokens, positions, attend)[last_index]  # [B, H]
    return (hidden @ model.lm_head_weight.T).float()

