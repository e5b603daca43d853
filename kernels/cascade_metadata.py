"""The tree description the cascade (shared-prefix) attention kernel reads.

A decode step of the tree search has B branches, each a root-to-leaf path of tree nodes;
node n owns a contiguous span of the token sequence, stored in pool slots
`node_slots[n]` (page size 1, so a node may start at any token). Query row b of q is the
new token of branch b, and branch b's KV list is the concatenation of its nodes' slots,
the new token's own slot included (so the new token lives in a node of the path,
normally the leaf, which only that branch uses).

Cascade attention (Hydragen; FlashInfer's cascade; DeFT) computes attention node by
node: all the queries below a node attend to its KV in one matrix-matrix product, and
every (node, query) pair yields a partial (o, lse) that merges exactly by log-sum-exp.
So the metadata is two CSR maps over the nodes that matter (at least one slot and at
least one query):

    node_kv_indptr: int32 [N+1], node_kv_indices: int32 [nnz_kv]
        node n's slots are node_kv_indices[node_kv_indptr[n]:node_kv_indptr[n+1]]
        (each shared slot appears once: this is the *unique* KV of the step);
    node_q_indptr:  int32 [N+1], node_q_indices:  int32 [nnz_q]
        the query rows below node n are node_q_indices[node_q_indptr[n]:...[n+1]]
        (nnz_q = total path length = the number of (node, query) pairs).

Host copies of the lengths and of the query lists ride along, so the kernel can plan
its launch (kernels/cascade_attention.py) without a device-to-host copy; the plan is
cached on the metadata, which the engine builds once per decode step and every layer
reuses.

How the engine builds it, per step: keep for each tree node its slot span (a device
tensor, or a list); list each live branch's path of node ids (root first); call
`build_cascade_metadata(branch_nodes, node_slots, device)`. Cost: one pass over the
paths plus one concatenation of the node spans, O(nodes + path lengths) Python work and
O(unique slots) device copying. `cascade_metadata_from_branches` does the same from
plain per-branch slot lists by finding the shared prefixes itself (tests, benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class CascadeMetadata:
    node_kv_indptr: torch.Tensor    # int32 [N+1], on the device
    node_kv_indices: torch.Tensor   # int32 [nnz_kv], on the device: pool slots
    node_q_indptr: torch.Tensor     # int32 [N+1], on the device
    node_q_indices: torch.Tensor    # int32 [nnz_q], on the device: rows of q
    num_queries: int                # B: the rows of q (branches)
    # Host (CPU, int64) copies for launch planning without device syncs.
    host_kv_indptr: torch.Tensor    # [N+1]
    host_q_indptr: torch.Tensor     # [N+1]
    host_q_indices: torch.Tensor    # [nnz_q]
    # Launch plans of kernels/cascade_attention.py, keyed by their parameters.
    plans: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_nodes(self) -> int:
        return self.host_kv_indptr.numel() - 1

    @property
    def device(self) -> torch.device:
        return self.node_kv_indices.device

    def branch_kv_lists(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same tree as flat per-branch KV lists (kv_indptr, kv_indices) for
        tree_decode_attention: each branch's nodes' slots, in node order."""
        pieces: list[list[torch.Tensor]] = [[] for _ in range(self.num_queries)]
        kv, qp, qi = self.host_kv_indptr.tolist(), self.host_q_indptr.tolist(), self.host_q_indices.tolist()
        for n in range(self.num_nodes):
            for b in qi[qp[n]:qp[n + 1]]:
                pieces[b].append(self.node_kv_indices[kv[n]:kv[n + 1]])
        lengths = [sum(p.numel() for p in ps) for ps in pieces]
        indptr = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0).to(torch.int32)
        flat = [p for ps in pieces for p in ps]
        indices = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.int32, device=self.device)
        return indptr.to(self.device), indices


def _as_slot_tensor(slots, device: torch.device, name: str) -> torch.Tensor:
    if isinstance(slots, torch.Tensor):
        if slots.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(slots.shape)}")
        if slots.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{name} must hold integer slots, got {slots.dtype}")
        return slots.to(device=device, dtype=torch.int32)
    return torch.tensor(list(slots), dtype=torch.int32, device=device)


def build_cascade_metadata(branch_nodes: Sequence[Sequence[int]],
                           node_slots: Sequence[torch.Tensor | Sequence[int]],
                           device: torch.device | str) -> CascadeMetadata:
    """Metadata from a token tree.

    branch_nodes[b]: the node ids on branch b's root-to-leaf path (query row b of q);
    node_slots[n]: node n's pool slots, in token order. Nodes with no slots or no branch
    through them are left out. Branch b's KV list is the concatenation of its nodes'
    slots in path order (the order does not change attention, only which slots).
    """
    device = torch.device(device)
    queries_of_node: list[list[int]] = [[] for _ in node_slots]
    for b, path in enumerate(branch_nodes):
        seen = set()
        for n in path:
            if not 0 <= n < len(node_slots):
                raise ValueError(f"branch_nodes[{b}] names node {n}, but node_slots has "
                                 f"{len(node_slots)} nodes")
            if n in seen:
                raise ValueError(f"branch_nodes[{b}] visits node {n} twice")
            seen.add(n)
            queries_of_node[n].append(b)

    spans, query_lists = [], []
    for n, slots in enumerate(node_slots):
        span = _as_slot_tensor(slots, device, f"node_slots[{n}]")
        if span.numel() and queries_of_node[n]:
            spans.append(span)
            query_lists.append(queries_of_node[n])

    kv_lengths = torch.tensor([0] + [s.numel() for s in spans], dtype=torch.int64)
    q_lengths = torch.tensor([0] + [len(q) for q in query_lists], dtype=torch.int64)
    host_kv_indptr, host_q_indptr = kv_lengths.cumsum(0), q_lengths.cumsum(0)
    host_q_indices = torch.tensor([b for q in query_lists for b in q], dtype=torch.int64)
    node_kv_indices = torch.cat(spans) if spans else torch.zeros(0, dtype=torch.int32, device=device)
    return CascadeMetadata(
        node_kv_indptr=host_kv_indptr.to(device=device, dtype=torch.int32),
        node_kv_indices=node_kv_indices,
        node_q_indptr=host_q_indptr.to(device=device, dtype=torch.int32),
        node_q_indices=host_q_indices.to(device=device, dtype=torch.int32),
        num_queries=len(branch_nodes),
        host_kv_indptr=host_kv_indptr,
        host_q_indptr=host_q_indptr,
        host_q_indices=host_q_indices,
    )


def split_branches_into_nodes(branch_slots: Sequence[Sequence[int]]):
    """Finds the token tree of branches given as plain slot lists (a radix tree over
    slot ids: branches that share a slot at the same position share the KV there).

    Returns (branch_nodes, node_slots) for build_cascade_metadata. A node is a maximal
    run of positions where the same set of branches agree; a branch that is a prefix
    of another simply ends at a shared node.
    """
    branches = [list(map(int, s)) for s in branch_slots]
    branch_nodes: list[list[int]] = [[] for _ in branches]
    node_slots: list[list[int]] = []
    # Work list of (branch ids that agree on positions [0, depth), depth).
    stack = [(list(range(len(branches))), 0)]
    while stack:
        group, depth = stack.pop()
        group = [b for b in group if len(branches[b]) > depth]
        if not group:
            continue
        first = branches[group[0]]
        end = min(len(branches[b]) for b in group)
        for b in group[1:]:  # the group's common run starting at depth
            other = branches[b]
            pos = depth
            while pos < end and other[pos] == first[pos]:
                pos += 1
            end = pos
        if end > depth:
            node_slots.append(first[depth:end])
            for b in group:
                branch_nodes[b].append(len(node_slots) - 1)
        by_next_slot: dict[int, list[int]] = {}
        for b in group:
            if len(branches[b]) > end:
                by_next_slot.setdefault(branches[b][end], []).append(b)
        stack.extend((members, end) for members in by_next_slot.values())
    return branch_nodes, node_slots


def cascade_metadata_from_branches(branch_slots: Sequence[Sequence[int]],
                                   device: torch.device | str) -> CascadeMetadata:
    """Metadata from per-branch slot lists, detecting the shared prefixes."""
    branch_nodes, node_slots = split_branches_into_nodes(branch_slots)
    return build_cascade_metadata(branch_nodes, node_slots, device)
