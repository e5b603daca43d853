"""Kernels: a Triton version and a PyTorch reference of each, behind one entry point.

Each entry point runs Triton on CUDA tensors and the reference otherwise;
`RFTT_KERNELS=reference|triton` forces one (see kernels/dispatch.py). With
`RFTT_KERNELS=triton TRITON_INTERPRET=1` the Triton kernels run on CPU tensors.

Attention over a KV pool `[num_slots, Hkv, D]` addressed by CSR slot lists:
    tree_decode_attention     one new token per sequence (flash-decoding, split-KV)
    extend_attention          ragged new tokens: cached prefix + causal over the new ones
    cascade_decode_attention  tree-aware: a shared node's KV read once for all its branches
Fused ops:
    store_kv, rms_norm, apply_rope, fused_logprobs (chunked, with backward)
"""

from .cascade_attention import cascade_decode_attention
from .cascade_metadata import CascadeMetadata, build_cascade_metadata, cascade_metadata_from_branches
from .decode_attention import tree_decode_attention
from .extend_attention import extend_attention
from .fused_logprobs import fused_logprobs
from .rms_norm import rms_norm
from .rope import apply_rope
from .rope_freqs import rope_inv_freq
from .store_kv import store_kv

__all__ = [
    "CascadeMetadata", "apply_rope", "build_cascade_metadata", "cascade_decode_attention",
    "cascade_metadata_from_branches", "extend_attention", "fused_logprobs", "rms_norm",
    "rope_inv_freq", "store_kv", "tree_decode_attention",
]
