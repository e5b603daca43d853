"""Tree packing: many paths that share prefixes, run as one sequence, each token once.

A problem's search paths (prompt, then steps) share the prompt and their early steps.
Run separately, every path recomputes the shared tokens; packed, the paths form a trie
and each trie node is one row of a single sequence (Tree Training, arXiv 2511.00413):

    paths   A B C D          packed  A B C D E F G        parents  -1 0 1 2 1 4 4
            A B E F                  0 1 2 3 2 3 3 (positions)
            A B E G

- the order is depth-first, children in the order the paths first show them, so every
  subtree is a contiguous range of rows: token j's descendants are rows j+1 .. end[j]-1;
- a token's position is its depth, the index it has on each of its paths, so RoPE
  sees exactly what a separate pass sees;
- token i attends to j iff j is an ancestor of i or i itself: j <= i < end[j]. Row i's
  hidden state is then the one the separate pass computes for i's path.

Seeing the same tokens at the same positions, every row equals its separate-pass row (up
to rounding), and because a shared row is one computation, its gradient is the sum of
what the paths through it would send back: a per-path loss Σ_p w_p·f(logp_p) becomes a
per-token loss with each token's weights summed over its paths (`sum_over_paths`), or
stays as it is on the per-path layout that `per_path` gathers from the packed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PackedTree:
    tokens: torch.Tensor  # int64[N]: each trie node once, depth-first
    positions: torch.Tensor  # int64[N]: depth (0 for a root), the token's index on its paths
    parents: torch.Tensor  # int64[N]: row of the token before it on its paths; -1 for a root
    subtree_ends: torch.Tensor  # int64[N]: token j's descendants are rows j+1 .. subtree_ends[j]-1
    path_indices: list[torch.Tensor]  # int64[L_p] each: path p is tokens[path_indices[p]]

    def attention_mask(self) -> torch.Tensor:
        """bool[N, N]: row i may attend to column j iff j is an ancestor of i or i itself."""
        rows = torch.arange(self.tokens.shape[0], device=self.tokens.device)
        return (rows[None, :] <= rows[:, None]) & (rows[:, None] < self.subtree_ends[None, :])

    def sum_over_paths(self, per_path: Sequence[torch.Tensor | float]) -> torch.Tensor:
        """Per-path values -> fp32[N], each token's sum over the paths through it: the
        weight of a shared token in a packed loss. A path's value is a float (all its
        tokens) or [L_p], aligned with its tokens (entry 0, the root, predicts nothing)."""
        out = torch.zeros(self.tokens.shape[0], dtype=torch.float32, device=self.tokens.device)
        for rows, value in zip(self.path_indices, per_path, strict=True):
            out.index_add_(0, rows, torch.as_tensor(value, dtype=torch.float32, device=out.device).expand(rows.shape))
        return out

    def per_path(self, values: torch.Tensor, pad: float = 0.0) -> torch.Tensor:
        """Per-token values [N] (e.g. the log-probs of `model(tree=...)`) -> [P, T] in the
        layout of a dense batch of the paths, right-padded with `pad`: entry (p, t) is the
        prediction of path p's token t + 1, as `model(tokens[:, :-1], targets=tokens[:, 1:])`
        gives it; T = longest path - 1. Autograd adds up what the paths send back to a
        shared token, so any per-path loss on this is exact as it stands."""
        width = max(len(rows) for rows in self.path_indices) - 1
        index = torch.zeros(len(self.path_indices), width, dtype=torch.int64, device=values.device)
        valid = torch.zeros(index.shape, dtype=torch.bool, device=values.device)
        for p, rows in enumerate(self.path_indices):
            index[p, :len(rows) - 1] = rows[1:]
            valid[p, :len(rows) - 1] = True
        return torch.where(valid, values[index], torch.as_tensor(pad, dtype=values.dtype, device=values.device))

    def to(self, device) -> PackedTree:
        return PackedTree(self.tokens.to(device), self.positions.to(device), self.parents.to(device),
                          self.subtree_ends.to(device), [p.to(device) for p in self.path_indices])


def pack_paths(paths: Sequence[Sequence[int]]) -> PackedTree:
    """Token-id paths (sharing prefixes or not; duplicates allowed) -> their packed trie."""
    if any(len(p) == 0 for p in paths):
        raise ValueError("every path needs at least one token")
    # Trie with node 0 a virtual root above the first tokens; nodes numbered as created.
    children: list[dict[int, int]] = [{}]
    node_token: list[int] = [-1]
    path_nodes = []
    for path in paths:
        node, nodes = 0, []
        for token in path:
            token = int(token)
            child = children[node].get(token)
            if child is None:  # dicts keep insertion order: children in first-seen order
                child = len(node_token)
                children[node][token] = child
                children.append({})
                node_token.append(token)
            node = child
            nodes.append(node)
        path_nodes.append(nodes)

    # Depth-first pre-order with an explicit stack (paths run to thousands of tokens).
    n = len(node_token) - 1
    row_of = [0] * (n + 1)
    tokens, positions, parents = [0] * n, [0] * n, [0] * n
    stack = [(c, -1, 0) for c in reversed(children[0].values())]  # (node, parent row, depth)
    row = 0
    while stack:
        node, parent_row, depth = stack.pop()
        row_of[node] = row
        tokens[row], positions[row], parents[row] = node_token[node], depth, parent_row
        stack.extend((c, row, depth + 1) for c in reversed(children[node].values()))
        row += 1
    # Subtree sizes, children before parents (reverse pre-order), give each range's end.
    size = [1] * n
    for r in range(n - 1, -1, -1):
        if parents[r] >= 0:
            size[parents[r]] += size[r]

    return PackedTree(
        tokens=_int64(tokens), positions=_int64(positions), parents=_int64(parents),
        subtree_ends=torch.arange(n, dtype=torch.int64) + _int64(size),
        path_indices=[_int64([row_of[x] for x in nodes]) for nodes in path_nodes],
    )


def _int64(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


class TreeAttention:
    """The `attend` of a packed tree (model/layers.py): each token over its ancestors.

    Plain SDPA with a boolean mask, on CPU and CUDA alike. One layer's attention, forward
    + backward, N = 2000, 14 q / 2 kv heads of 64, fp32, 2 busy CPU cores (torch 2.13):
    bool mask 1.7 s, additive float mask 1.65 s, K/V repeated instead of enable_gqa 1.7 s,
    matmul + masked softmax by hand 3.5 s; a causal pass of the same N 1.0 s (SDPA skips
    no masked block inside the lower triangle). FlexAttention with a block mask would skip
    the blocks where sibling branches cannot see each other, but torch 2.13 has no CPU
    backward for it; it is the CUDA upgrade once it can be tested there. The mask is N²
    bytes (4 MB at N = 2000): split trees of tens of thousands of tokens into subtrees.
    """

    def __init__(self, mask: torch.Tensor):
        self.mask = mask  # bool[N, N], shared by every layer

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # [N, H, D] -> [1, H, N, D] (views); enable_gqa broadcasts each K/V head over its group.
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, enable_gqa=True)  # [1, Hq, N, D]
        return o[0].transpose(0, 1)  # [N, Hq, D]
