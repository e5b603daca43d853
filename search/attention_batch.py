"""The `attend` callback of one engine step: store new K/V in the pool, attend over slots.

The decoder's serving forward (model/serving.py) calls ``attend(layer, q, k, v)`` once per
layer with the step's new tokens flattened to ``[N, ...]``. This object holds the step's
attention metadata, built once per step from the token tree and shared by all layers:

- ``new_slots: int64[N]`` — where each new token's K/V goes in every layer's pool;
- extend (several new tokens per branch, e.g. a prompt or a forced functional tag):
  ``qo_indptr[B+1]`` groups the N new tokens by branch, and ``kv_indptr``/``kv_indices``
  list each branch's *cached* slots (not the new ones): the extend kernel attends to the
  prefix and causally within the new tokens;
- decode (exactly one new token per branch): the K/V are stored first and
  ``kv_indptr``/``kv_indices`` list every slot of the branch *including* the new one;
- cascade decode (branches that share tree nodes): ``cascade`` describes the step node
  by node, so each shared node's KV is read once for all the branches below it
  (kernels/cascade_metadata.py); it gives the same result as the flat decode lists,
  which are then left empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.cascade_attention import cascade_decode_attention
from kernels.cascade_metadata import CascadeMetadata
from kernels.decode_attention import tree_decode_attention
from kernels.extend_attention import extend_attention
from kernels.store_kv import store_kv


@dataclass
class AttentionBatch:
    k_pool: torch.Tensor  # [layers, slots, Hkv, D]
    v_pool: torch.Tensor
    new_slots: torch.Tensor  # int64[N]
    kv_indptr: torch.Tensor  # int32[B+1]
    kv_indices: torch.Tensor  # int32[nnz]
    qo_indptr: torch.Tensor | None = None  # int32[B+1]: extend; None: decode (one token per branch)
    cascade: CascadeMetadata | None = None  # decode over shared tree nodes

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k_pool, v_pool = self.k_pool[layer], self.v_pool[layer]
        store_kv(k_pool, v_pool, self.new_slots, k, v)
        if self.cascade is not None:
            return cascade_decode_attention(q, k_pool, v_pool, self.cascade)
        if self.qo_indptr is None:
            return tree_decode_attention(q, k_pool, v_pool, self.kv_indptr, self.kv_indices)
        return extend_attention(q, k, v, k_pool, v_pool, self.qo_indptr, self.kv_indptr, self.kv_indices)
