"""The serving forward: a flat batch of new tokens against a shared KV pool.

In one engine step, hundreds of tree branches each add one token (decode) or a few
(extend: a prompt, a forced functional tag), and every branch attends to a different
list of cached KV slots, most of them shared with its siblings. So the engine runs the
decoder's packed forward (`Transformer.packed_hidden_states`) on the new tokens flattened
into one ``[N]`` vector with a position each, and the attention rule is a callback it
builds from its token tree (search/attention_batch.py):

    attend(layer, q [N, Hq, D], k [N, Hkv, D], v [N, Hkv, D]) -> o [N, Hq, D]

The callback stores k and v into that layer's pool slots and runs the decode, extend or
cascade kernel over the right slots. The decoder knows nothing about the engine's token
tree; the engine knows nothing about layers' insides. Same blocks as the training path, so a greedy
rollout here equals a greedy full recompute.
"""

from __future__ import annotations

import torch

from .layers import Attend
from .transformer import Transformer


@torch.no_grad()
def serving_logits(
    model: Transformer, tokens: torch.Tensor, positions: torch.Tensor, attend: Attend, last_index: torch.Tensor
) -> torch.Tensor:
    """tokens, positions: int64[N] -> logits only where the engine samples: rows
    `last_index` of the flat batch -> [B, vocab] fp32."""
    hidden = model.packed_hidden_states(tokens, positions, attend)[last_index]  # [B, H]
    return (hidden @ model.lm_head_weight.T).float()
