"""Cascade (shared-prefix) decode attention: read each tree node's KV once.

Why. In tree search, B branches share long prefixes: a 4k-token prompt, the steps common
to a subtree. tree_decode_attention (kernels/decode_attention.py) reads the shared KV once
*per branch*: B matrix-vector products over the same rows. The cascade idea (Hydragen,
Juravsky et al. 2024; FlashInfer's cascade attention; DeFT, Yao et al. 2024) reads a
node's KV once for *all* the queries below it: one matrix-matrix product, B times less
KV traffic on the shared part, and tensor cores with real work to do.

How. Attention over a branch's KV list is attention over the union of its nodes' spans,
so it is the log-sum-exp merge of one partial (o, lse) per node on the path (the same
identity flash-decoding uses to merge pieces of one list; see decode_attention.py):

1. Partials. A work item is (node, a chunk of the node's KV, a tile of the node's
   queries); grid = (items, Hkv). Its program stacks QUERIES_PER_TILE queries x the GQA
   group's heads into one [ROWS, D] query tile (row r = query r // GROUP_PAD, head
   r % GROUP_PAD), streams the chunk's K/V through the same online softmax as decode
   (`attend_to_slots`), and writes one partial per (query, head). Long nodes with few
   queries are cut into several chunks so they still fill the GPU; a node with one
   query is exactly a flash-decoding split.
2. Merge. Partials are laid out query-major, so query b's partials are the contiguous
   rows query_part_indptr[b]:query_part_indptr[b+1]: decode's merge kernel combines
   them.

Launch plan (host side, cached on the metadata; every layer of a step reuses it):
`items: int32 [W, 5]` = (kv_start, kv_end, q_start, q_end, chunk) as absolute offsets
into node_kv_indices / node_q_indices; `pair_part_start: int32 [nnz_q]`, the partial
row of (node, query) pair p for chunk 0 (chunk c writes row + c); `query_part_indptr`.

Choosing chunks. Chunking a node trades parallelism against partial traffic: a chunk
with nq queries writes (and the merge re-reads) nq x Hq x D fp32 values, against
chunk x Hkv x D x 2 K/V values read. So a node's chunk is never shorter than
PARTIAL_TRAFFIC_FACTOR x nq x GROUP tokens (partials at most ~1/4 of the KV bytes), and
a global chunk length is halved from "no split" until the launch fills the device or
reaches MIN_CHUNK_TOKENS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.attention_reference import (
    cascade_decode_attention_reference,
    check_index_tensor,
    check_kv_pools,
    default_sm_scale,
)
from kernels.cascade_metadata import CascadeMetadata
from kernels.decode_attention import (
    FP32_KV_BLOCK,
    FP32_QUERY_ROWS,
    LOG2E,
    attend_to_slots,
    check_head_dim,
    compute_dtype,
    exact_fp32_tiles,
    kv_block_size,
    kv_loop_num_warps,
    merge_attention_partials,
    store_partial,
    target_programs,
)
from kernels.dispatch import use_triton

QUERY_TILE_ROWS = 64           # rows (queries x group heads) of one program's query tile
MIN_CHUNK_TOKENS = 128
PARTIAL_TRAFFIC_FACTOR = 8


@dataclass
class CascadePlan:
    items: torch.Tensor             # int32 [W, 5]: kv_start, kv_end, q_start, q_end, chunk
    pair_part_start: torch.Tensor   # int32 [nnz_q]
    query_part_indptr: torch.Tensor  # int32 [B+1]
    num_partials: int


def query_tile_rows(dtype: torch.dtype, device: torch.device) -> int:
    """Rows of a program's query tile: fewer for exact fp32 dots on a GPU (registers)."""
    return FP32_QUERY_ROWS if exact_fp32_tiles(dtype, device) else QUERY_TILE_ROWS


def queries_per_tile(group: int, tile_rows: int = QUERY_TILE_ROWS) -> tuple[int, int]:
    """(queries per tile, group padded to a power of two): ROWS = their product >= 16."""
    group_pad = triton.next_power_of_2(group)
    per_tile = max(1, tile_rows // group_pad)
    return per_tile, group_pad


def cascade_launch_settings(group: int, head_dim: int, dtype: torch.dtype,
                            device: torch.device) -> dict:
    """Constexprs and launch options of `_cascade_partial_kernel` for q of this dtype on
    this device type (the ahead-of-time compile test builds the same launches from it).
    16-bit: 4 warps and 3 stages, the best geometric mean over six trees in
    bench/attention_sweep.py on an H200 (bf16, D = 128; 64-row tiles and 64-key blocks
    kept); exact fp32: 2 stages, not timed."""
    exact = exact_fp32_tiles(dtype, device)
    per_tile, group_pad = queries_per_tile(group, query_tile_rows(dtype, device))
    block_n = FP32_KV_BLOCK if exact else kv_block_size(head_dim, device)
    return dict(GROUP=group, GROUP_PAD=group_pad, QUERIES_PER_TILE=per_tile,
                HEAD_DIM=head_dim, BLOCK_N=block_n,
                COMPUTE_DTYPE=compute_dtype(dtype, device),
                num_warps=kv_loop_num_warps(head_dim, dtype, device), num_stages=2 if exact else 3)


def node_chunk_lengths(meta: CascadeMetadata, per_tile: int, group: int, num_kv_heads: int,
                       device: torch.device, chunk_tokens: int | None) -> torch.Tensor:
    """Per-node KV chunk length (int64 [N]); chunk_tokens forces one length for all."""
    kv_lens = meta.host_kv_indptr.diff()
    q_counts = meta.host_q_indptr.diff()
    if chunk_tokens is not None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        return torch.full_like(kv_lens, chunk_tokens)
    tiles = (q_counts + per_tile - 1) // per_tile
    floor = PARTIAL_TRAFFIC_FACTOR * q_counts * group  # keeps partial traffic small
    target = target_programs(device)
    chunk = int(kv_lens.max()) if kv_lens.numel() else 1
    while True:
        lengths = torch.maximum(floor, torch.full_like(floor, chunk))
        programs = num_kv_heads * int((tiles * ((kv_lens + lengths - 1) // lengths)).sum())
        if programs >= target or chunk <= MIN_CHUNK_TOKENS:
            return lengths
        chunk = max(MIN_CHUNK_TOKENS, chunk // 2)


def plan_cascade(meta: CascadeMetadata, group: int, num_kv_heads: int,
                 chunk_tokens: int | None = None,
                 tile_rows: int = QUERY_TILE_ROWS) -> CascadePlan:
    """The work items and partial layout for one head configuration and query tile size
    (cached on meta)."""
    key = (group, num_kv_heads, chunk_tokens, tile_rows)
    if key in meta.plans:
        return meta.plans[key]
    per_tile, _ = queries_per_tile(group, tile_rows)
    device = meta.device
    kv_ptr, q_ptr = meta.host_kv_indptr, meta.host_q_indptr
    kv_lens, q_counts = kv_ptr.diff(), q_ptr.diff()
    lengths = node_chunk_lengths(meta, per_tile, group, num_kv_heads, device, chunk_tokens)
    chunks = (kv_lens + lengths - 1) // lengths           # [N]
    tiles = (q_counts + per_tile - 1) // per_tile         # [N]

    # Items of node n: chunk-major, tile-minor, numbered consecutively.
    per_node = chunks * tiles
    node = torch.repeat_interleave(torch.arange(per_node.numel()), per_node)  # [W]
    first_item = per_node.cumsum(0) - per_node
    local = torch.arange(node.numel()) - first_item[node]
    chunk, tile = local // tiles[node], local % tiles[node]
    kv_start = kv_ptr[node] + chunk * lengths[node]
    kv_end = torch.minimum(kv_start + lengths[node], kv_ptr[node + 1])
    q_start = q_ptr[node] + tile * per_tile
    q_end = torch.minimum(q_start + per_tile, q_ptr[node + 1])
    items = torch.stack([kv_start, kv_end, q_start, q_end, chunk], dim=1)

    # Partials, query-major: pair p (node n, query b) owns chunks[n] consecutive rows.
    pair_node = torch.repeat_interleave(torch.arange(q_counts.numel()), q_counts)
    pair_chunks = chunks[pair_node]
    pair_query = meta.host_q_indices
    order = torch.sort(pair_query, stable=True).indices
    sorted_chunks = pair_chunks[order]
    pair_part_start = torch.empty_like(pair_chunks)
    pair_part_start[order] = sorted_chunks.cumsum(0) - sorted_chunks
    per_query = torch.zeros(meta.num_queries, dtype=torch.int64).index_add_(0, pair_query, pair_chunks)
    query_part_indptr = torch.cat([torch.zeros(1, dtype=torch.int64), per_query.cumsum(0)])

    plan = CascadePlan(
        items=items.to(device=device, dtype=torch.int32).contiguous(),
        pair_part_start=pair_part_start.to(device=device, dtype=torch.int32),
        query_part_indptr=query_part_indptr.to(device=device, dtype=torch.int32),
        num_partials=int(query_part_indptr[-1]),
    )
    meta.plans[key] = plan
    return plan


@triton.jit
def _cascade_partial_kernel(q_ptr, k_pool_ptr, v_pool_ptr, node_kv_indices_ptr,
                            node_q_indices_ptr, pair_part_start_ptr, items_ptr,
                            o_part_ptr, lse_part_ptr, qk_scale,
                            stride_q_seq, stride_q_head, stride_k_slot, stride_k_head,
                            stride_v_slot, stride_v_head, stride_op_row, stride_op_head,
                            stride_lse_row, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr,
                            QUERIES_PER_TILE: tl.constexpr, HEAD_DIM: tl.constexpr,
                            BLOCK_N: tl.constexpr, COMPUTE_DTYPE: tl.constexpr):
    """Program (item, kv_head): the item's query tile x the group's heads, over the
    item's chunk of one node's KV. Writes partial rows pair_part_start[pair] + chunk."""
    item = tl.program_id(0)
    kv_head = tl.program_id(1)
    kv_start = tl.load(items_ptr + item * 5 + 0)
    kv_end = tl.load(items_ptr + item * 5 + 1)
    q_start = tl.load(items_ptr + item * 5 + 2)
    q_end = tl.load(items_ptr + item * 5 + 3)
    chunk = tl.load(items_ptr + item * 5 + 4)

    ROWS: tl.constexpr = QUERIES_PER_TILE * GROUP_PAD
    rows = tl.arange(0, ROWS)
    pair = q_start + rows // GROUP_PAD        # which (node, query) pair the row belongs to
    member = rows % GROUP_PAD                 # which head of the KV group
    row_valid = (pair < q_end) & (member < GROUP)
    query = tl.load(node_q_indices_ptr + pair, mask=row_valid, other=0).to(tl.int64)
    heads = kv_head * GROUP + member
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + query[:, None] * stride_q_seq + heads[:, None] * stride_q_head
                + dims[None, :], mask=row_valid[:, None], other=0.0).to(COMPUTE_DTYPE)

    acc = tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32)
    row_max = tl.full([ROWS], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([ROWS], dtype=tl.float32)
    # Each K/V block is loaded once and used by every query of the tile: the point.
    acc, row_max, row_sum = attend_to_slots(
        q, acc, row_max, row_sum, k_pool_ptr + kv_head * stride_k_head,
        v_pool_ptr + kv_head * stride_v_head, stride_k_slot, stride_v_slot,
        node_kv_indices_ptr, kv_start, kv_end, qk_scale, HEAD_DIM, BLOCK_N, COMPUTE_DTYPE)

    part_rows = tl.load(pair_part_start_ptr + pair, mask=row_valid, other=0) + chunk
    store_partial(o_part_ptr, lse_part_ptr, part_rows, heads, row_valid, acc, row_max,
                  row_sum, stride_op_row, stride_op_head, stride_lse_row, HEAD_DIM)


def check_cascade_inputs(q, k_pool, v_pool, meta) -> int:
    if q.dim() != 3:
        raise ValueError(f"q must be [B, Hq, D] (one new token per branch), got {tuple(q.shape)}")
    group = check_kv_pools(q, k_pool, v_pool)
    if not isinstance(meta, CascadeMetadata):
        raise TypeError(f"meta must be a CascadeMetadata, got {type(meta).__name__}")
    if meta.num_queries != q.shape[0]:
        raise ValueError(f"meta describes {meta.num_queries} branches, q has {q.shape[0]} rows")
    for name in ("node_kv_indptr", "node_kv_indices", "node_q_indptr", "node_q_indices"):
        check_index_tensor(f"meta.{name}", getattr(meta, name), q.device)
    return group


def cascade_decode_attention_triton(q, k_pool, v_pool, meta, sm_scale=None, *,
                                    chunk_tokens=None):
    """Triton version of cascade_decode_attention (same arguments; see the public one)."""
    group = check_cascade_inputs(q, k_pool, v_pool, meta)
    num_queries, num_q_heads, head_dim = q.shape
    num_kv_heads = k_pool.shape[1]
    check_head_dim(head_dim)
    plan = plan_cascade(meta, group, num_kv_heads, chunk_tokens,
                        tile_rows=query_tile_rows(q.dtype, q.device))
    out = torch.empty_like(q)
    o_part = torch.empty(plan.num_partials, num_q_heads, head_dim, dtype=torch.float32,
                         device=q.device)
    lse_part = torch.empty(plan.num_partials, num_q_heads, dtype=torch.float32, device=q.device)
    num_items = plan.items.shape[0]
    if num_items:
        _cascade_partial_kernel[(num_items, num_kv_heads)](
            q, k_pool, v_pool, meta.node_kv_indices, meta.node_q_indices,
            plan.pair_part_start, plan.items, o_part, lse_part,
            default_sm_scale(head_dim, sm_scale) * LOG2E,
            q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1),
            v_pool.stride(0), v_pool.stride(1), o_part.stride(0), o_part.stride(1),
            lse_part.stride(0), **cascade_launch_settings(group, head_dim, q.dtype, q.device))
    return merge_attention_partials(o_part, lse_part, plan.query_part_indptr, out)


def cascade_decode_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor,
                             meta: CascadeMetadata, sm_scale: float | None = None, *,
                             chunk_tokens: int | None = None) -> torch.Tensor:
    """Decode attention for tree branches, reading each shared node's KV once.

    q: [B, Hq, D], row b the new token of branch b; k_pool, v_pool: [num_slots, Hkv, D];
    meta: CascadeMetadata (kernels/cascade_metadata.py) for the same B branches.
    chunk_tokens forces the KV chunk length of every node (Triton only; tests).
    Returns o: [B, Hq, D] in q's dtype, equal to tree_decode_attention on the branches'
    KV lists (meta.branch_kv_lists()); a branch with no KV gets zeros.
    """
    if use_triton(q):
        return cascade_decode_attention_triton(q, k_pool, v_pool, meta, sm_scale,
                                               chunk_tokens=chunk_tokens)
    check_cascade_inputs(q, k_pool, v_pool, meta)
    return cascade_decode_attention_reference(q, k_pool, v_pool, meta, sm_scale)
