"""The token tree: search branches that share their common prefix's KV slots.

A node owns a *span*: the slots (and token ids) of the tokens it added. A branch is the
path from a root to a leaf; its KV is the concatenation of the spans along that path, so
every branch below a node reads that node's slots and nothing is copied on fork.

    root: prompt tokens            slots [0..40)
    ├── child: "<analysis> ..."    slots [40..90)
    │   └── leaf: "<next_step> .." slots [90..95)   path = [0..40) + [40..90) + [90..95)
    └── child: "<clarify> ..."     slots [95..130)

Ownership and reference counts. Every slot in the tree is owned by exactly one node, and
its pool reference count is 1 (the count counts *owners*, not the branches reading it).
Forking is then O(1) (no incref of thousands of ancestor slots), pruning a node decrefs
each of its own slots exactly once, and "how much could eviction free" is the sum of span
lengths, where no shared slot can be counted twice (the failures tree caches are known for:
freeing shared pages still referenced, double frees, evictable accounting counting shared
pages twice).
Which branches still need a node is tracked per node instead, by `active_below`.

Node life cycle.
- *Open*: a leaf tokens are still appended to (a decoding branch). `add_root` and `fork`
  create open nodes.
- *Finished*: its span is frozen. `finish` closes a branch that is done but worth keeping
  as a cache (a prompt prefix later rollouts fork from); `fork` also closes its parent,
  because a node's children start right after its last token, so it can never grow again.
- An *active branch* is the path to an open node. `active_below` counts the open nodes in
  a node's subtree; a node with `active_below > 0` is on an active branch's path and is
  never evicted.
- *Dead*: pruned, evicted, or dropped by a weight update. Any operation on a dead node
  raises `DeadNodeError` saying which, rather than reading slots that may belong to
  someone else by now.

Pruning cascades: `prune(node)` frees the whole subtree, open descendants included, and
those become dead. (Refusing instead would force PPO to finish every branch only to drop
it; a caller still holding a pruned branch gets a clear error on its next use.)

Eviction: when an allocation does not fit, finished leaves with no active branch below
them are evicted least recently used first; evicting a leaf can make its parent such a
leaf, which then competes too. If that still does not free enough, `KVPoolExhausted` says
how many slots were needed, free and evictable. An allocation that fails allocates
nothing.

Weight version: RL changes the weights between iterations, and KV computed by the old
weights must never be attended to again (rollouts that attend to stale KV sample from a
policy that no longer exists, and learning collapses). Every node records the version it was created under;
`bump_weight_version` drops every node and frees its slots, and operations on those nodes
fail with a stale-weights error.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

import torch

from .kv_pool import KVPool, KVPoolExhausted, _require

UNKNOWN_TOKEN = -1  # token id recorded when slots are appended by count, not by ids


class DeadNodeError(RuntimeError):
    """An operation named a node that was pruned, evicted or dropped by a weight update."""


class Node:
    """One span of a branch. Read `slots`/`tokens`, never write them (they are views)."""

    def __init__(self, node_id: int, parent: Node | None, weight_version: int):
        self.id = node_id
        self.parent = parent
        self.children: dict[int, Node] = {}  # by id, in creation order
        # Position of this span's first token: the number of tokens above it in the path.
        self.start = parent.end if parent is not None else 0
        self.depth = parent.depth + 1 if parent is not None else 0  # in nodes, root = 0
        self.weight_version = weight_version
        self.finished = False
        self.active_below = 0  # open nodes in this subtree, itself included
        self.last_used = 0  # tick of the tree's clock; the LRU key for eviction
        self.dead_reason: str | None = None
        # Growable buffers (capacity doubles): appending one token per decode step stays
        # O(1) amortised instead of re-concatenating a span that may be thousands long.
        # Slots are kept as int32, the kernels' index type, so building the CSR is one
        # concatenation with no conversion pass over hundreds of thousands of indices.
        self._slot_buffer = torch.empty(0, dtype=torch.int32)
        self._token_buffer = torch.empty(0, dtype=torch.int64)
        self.length = 0

    @property
    def alive(self) -> bool:
        return self.dead_reason is None

    @property
    def slots(self) -> torch.Tensor:  # int32[length], the KV slots this node owns
        # A dead node's slots may already belong to another branch: refuse, loudly.
        if not self.alive:
            raise DeadNodeError(f"{self} is dead ({self.dead_reason}); its slots may be reused")
        return self._slot_buffer[: self.length]

    @property
    def tokens(self) -> torch.Tensor:  # int64[length], their token ids
        return self._token_buffer[: self.length]

    @property
    def end(self) -> int:
        """Tokens in the path up to and including this node = position of the next token."""
        return self.start + self.length

    def __repr__(self) -> str:
        state = self.dead_reason or ("finished" if self.finished else "open")
        return (
            f"Node(id={self.id}, parent={None if self.parent is None else self.parent.id}, "
            f"span=[{self.start}, {self.end}), children={list(self.children)}, {state})"
        )

    def _extend(self, slots: torch.Tensor, tokens: torch.Tensor) -> None:
        needed = self.length + slots.numel()
        if needed > self._slot_buffer.numel():
            capacity = max(16, needed, 2 * self._slot_buffer.numel())
            for name in ("_slot_buffer", "_token_buffer"):
                grown = torch.empty(capacity, dtype=getattr(self, name).dtype)
                grown[: self.length] = getattr(self, name)[: self.length]
                setattr(self, name, grown)
        self._slot_buffer[self.length : needed] = slots
        self._token_buffer[self.length : needed] = tokens
        self.length = needed


class TokenTree:
    """A forest of token trees (one root per prompt) over one KVPool."""

    def __init__(self, pool: KVPool):
        self.pool = pool
        self.weight_version = 0
        self.roots: dict[int, Node] = {}
        self._live: dict[int, Node] = {}  # every live node by id
        self._next_id = 0
        self._clock = 0

    # ---- building branches -------------------------------------------------------------

    def add_root(self, tokens: Sequence[int] | torch.Tensor) -> Node:
        """A new open root holding `tokens` (e.g. a prompt); its slots are allocated now."""
        tokens = _as_token_tensor(tokens)
        slots = self._alloc(tokens.numel())
        root = self._new_node(parent=None)
        self.roots[root.id] = root
        root._extend(slots, tokens)
        self._set_open(root)
        return root

    def fork(self, parent: Node) -> Node:
        """A new open, empty child of `parent`; its branch shares all of parent's path.

        Closes `parent` if it was open: its children start after its last token, so it
        can never grow again.
        """
        self._check_alive(parent)
        if not parent.finished:
            self._set_finished(parent)
        child = self._new_node(parent=parent)
        parent.children[child.id] = child
        self._set_open(child)
        self._touch(parent)
        return child

    def append(self, node: Node, tokens: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Adds tokens to an open node; returns their new slots, int64[n].

        `tokens` is the token ids, or just a count n (ids then recorded as UNKNOWN_TOKEN).
        """
        if isinstance(tokens, int):
            return self.append_many([node], [tokens])
        tokens = _as_token_tensor(tokens)
        return self.append_many([node], [tokens.numel()], tokens)

    def append_many(
        self,
        nodes: Sequence[Node],
        counts: int | Sequence[int] | torch.Tensor,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Appends counts[i] tokens to nodes[i] for all i with one allocation.

        counts: an int (the same for every node, e.g. 1 per decode step) or int[B].
        tokens: int64[sum(counts)] ids in node order, or None (UNKNOWN_TOKEN).
        Returns the new slots, int64[sum(counts)], in the same order: where this step's
        K/V are stored. Either every node grows or (on exhaustion) none does.
        """
        if isinstance(counts, int):
            counts = [counts] * len(nodes)
        counts = torch.as_tensor(counts, dtype=torch.int64).reshape(-1).tolist()
        if len(counts) != len(nodes):
            raise ValueError(f"{len(nodes)} nodes but {len(counts)} counts")
        if any(c < 0 for c in counts):
            raise ValueError(f"negative token count in {counts}")
        for node in nodes:  # all checks before the allocation, so a bad call leaks nothing
            self._check_alive(node)
            if node.finished:
                raise ValueError(
                    f"append to finished {node}: a finished span is frozen; fork a child"
                )
        total = sum(counts)
        if tokens is None:
            tokens = torch.full((total,), UNKNOWN_TOKEN, dtype=torch.int64)
        else:
            tokens = _as_token_tensor(tokens)
            if tokens.numel() != total:
                raise ValueError(f"{tokens.numel()} token ids for {total} new tokens")

        # Open nodes are on active branches, so the eviction inside _alloc cannot take them.
        slots = self._alloc(total)
        for node, node_slots, node_tokens in zip(nodes, slots.split(counts), tokens.split(counts)):
            node._extend(node_slots, node_tokens)
            self._touch(node)
        return slots

    def finish(self, node: Node) -> None:
        """Marks a branch done; its nodes stay cached until pruned or evicted.

        Finishing twice is harmless: the open count is only dropped once.
        """
        self._check_alive(node)
        if not node.finished:
            self._set_finished(node)
        self._touch(node)

    # ---- reading branches ---------------------------------------------------------------

    def path_nodes(self, node: Node) -> list[Node]:
        """The nodes from the root down to `node`."""
        self._check_alive(node)
        path = []
        while node is not None:
            path.append(node)
            node = node.parent
        path.reverse()
        return path

    def path_slots(self, node: Node) -> torch.Tensor:
        """The branch's KV slots, int32[node.end], root first."""
        return torch.cat([n.slots for n in self._used_path(node)])

    def path_tokens(self, node: Node) -> torch.Tensor:
        """The branch's token ids, int64[node.end], root first."""
        return torch.cat([n.tokens for n in self.path_nodes(node)])

    def paths_csr(self, nodes: Sequence[Node]) -> tuple[torch.Tensor, torch.Tensor]:
        """The branches of `nodes` as the attention kernels' CSR.

        Returns kv_indptr: int32[B+1] and kv_indices: int32[nnz], where
        kv_indices[kv_indptr[b]:kv_indptr[b+1]] == path_slots(nodes[b]). One torch.cat
        over the spans; no per-token Python.
        """
        spans = [n.slots for node in nodes for n in self._used_path(node)]
        lengths = torch.tensor([0] + [node.end for node in nodes], dtype=torch.int64)
        kv_indptr = lengths.cumsum(0).to(torch.int32)
        kv_indices = torch.cat(spans) if spans else torch.empty(0, dtype=torch.int32)
        return kv_indptr, kv_indices

    def next_positions(self, nodes: Sequence[Node]) -> torch.Tensor:
        """int64[B]: the position (RoPE index) of each branch's next token."""
        for node in nodes:
            self._check_alive(node)
        return torch.tensor([node.end for node in nodes], dtype=torch.int64)

    def branch_groups(self, leaves: Sequence[Node]) -> list[tuple[Node, torch.Tensor]]:
        """For shared-prefix (cascade) attention: every node on the leaves' paths, once,
        with the rows b (indices into `leaves`) whose branch passes through it.

        Parents come before their children. A node with several rows is KV that cascade
        attention reads once for all of them.
        """
        rows_of: dict[int, list[int]] = {}
        node_of: dict[int, Node] = {}
        for row, leaf in enumerate(leaves):
            for n in self._used_path(leaf):
                rows_of.setdefault(n.id, []).append(row)
                node_of[n.id] = n
        ordered = sorted(node_of.values(), key=lambda n: (n.depth, n.id))
        return [(n, torch.tensor(rows_of[n.id], dtype=torch.int64)) for n in ordered]

    def live_nodes(self) -> Iterator[Node]:
        return iter(self._live.values())

    # ---- releasing ----------------------------------------------------------------------

    def prune(self, node: Node) -> None:
        """Frees `node` and its whole subtree (open descendants included: they die too).

        Each slot is released exactly once, by its one owner, in a single decref.
        """
        self._check_alive(node)
        self._remove_subtree(node, reason="pruned")

    def clear(self) -> None:
        """Prunes every root: the pool is all free again (end of a PPO iteration)."""
        for root in list(self.roots.values()):
            self._remove_subtree(root, reason="pruned")

    def bump_weight_version(self) -> int:
        """Call whenever the weights the KV was computed with change (train.ppo: once per
        iteration, after its PPO update and before the next rollouts). Drops all KV.

        Returns the new version. Nodes created before the bump are dead: using them raises
        DeadNodeError naming the stale version.
        """
        old = self.weight_version
        for root in list(self.roots.values()):
            self._remove_subtree(root, reason=f"stale: computed under weight version {old}")
        self.weight_version = old + 1
        return self.weight_version

    def num_evictable(self) -> int:
        """Slots that eviction could free now: spans of nodes with no active branch below.

        Each slot has one owner, so a slot shared by many finished branches counts once.
        """
        return sum(n.length for n in self._live.values() if n.active_below == 0)

    def evict(self, num_slots: int) -> int:
        """Evicts finished, unreferenced leaves, least recently used first, until at least
        `num_slots` slots have been freed or nothing evictable is left. Returns slots freed.
        """
        heap = [
            (n.last_used, n.id, n)
            for n in self._live.values()
            if not n.children and n.active_below == 0
        ]
        heapq.heapify(heap)
        freed = 0
        while freed < num_slots and heap:
            _, _, leaf = heapq.heappop(heap)
            parent = leaf.parent
            freed += leaf.length
            self._remove_subtree(leaf, reason="evicted")
            # The parent may now be a leaf with no active branch: it can go next.
            if parent is not None and not parent.children and parent.active_below == 0:
                heapq.heappush(heap, (parent.last_used, parent.id, parent))
        return freed

    # ---- checking -----------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raises AssertionError unless the tree and the pool agree exactly."""
        self.pool.check_invariants()
        reached: list[Node] = []
        stack = list(self.roots.values())
        for root in stack:
            _require(root.parent is None, f"root {root} has a parent")
        while stack:
            node = stack.pop()
            reached.append(node)
            _require(node.alive, f"dead {node} is still in the tree")
            _require(self._live.get(node.id) is node, f"{node} missing from the live index")
            # Stale KV (from before an RL weight update) must be unreachable.
            _require(
                node.weight_version == self.weight_version,
                f"{node} is from weight version {node.weight_version}, tree is at "
                f"{self.weight_version}",
            )
            expected_start = node.parent.end if node.parent is not None else 0
            _require(node.start == expected_start, f"{node} does not start where its parent ends")
            _require(
                node.depth == (node.parent.depth + 1 if node.parent is not None else 0),
                f"{node} has a wrong depth",
            )
            _require(
                node.length <= node._slot_buffer.numel()
                and node._slot_buffer.numel() == node._token_buffer.numel(),
                f"{node}: slots and tokens buffers disagree",
            )
            # A node with children is frozen: growing it would shift its children's positions.
            _require(not node.children or node.finished, f"open {node} has children")
            _require(node.last_used <= self._clock, f"{node} used in the future")
            open_below = (0 if node.finished else 1) + sum(
                c.active_below for c in node.children.values()
            )
            # Wrong counts would let eviction take a node an active branch still reads.
            _require(node.active_below == open_below, f"{node}: active_below is wrong")
            for child in node.children.values():
                _require(child.parent is node, f"{child} lists the wrong parent")
                stack.append(child)
        _require(len(reached) == len(self._live), "live nodes unreachable from any root")

        owned = [n.slots for n in reached]
        owned = torch.cat(owned).long() if owned else torch.empty(0, dtype=torch.int64)
        # One owner per slot: the condition for freeing each slot exactly once.
        _require(owned.unique().numel() == owned.numel(), "a slot is owned by two nodes")
        _require(bool((self.pool.refcount[owned] == 1).all()), "an owned slot's refcount is not 1")
        # Nothing held outside the tree: every other slot is free (none leaked).
        _require(
            self.pool.num_used == owned.numel(),
            f"pool holds {self.pool.num_used} slots but the tree owns {owned.numel()}",
        )

    # ---- internals ----------------------------------------------------------------------

    def _alloc(self, n: int) -> torch.Tensor:
        if n > self.pool.num_free:
            self.evict(n - self.pool.num_free)
        if n > self.pool.num_free:
            active = self.pool.num_used - self.num_evictable()
            raise KVPoolExhausted(
                f"KV pool exhausted: {n} slots needed, {self.pool.num_free} free of "
                f"{self.pool.num_slots} after evicting every finished unreferenced branch; "
                f"{active} are held by active branches. Finish or prune branches, or give "
                f"the pool more slots.",
                needed=n,
                free=self.pool.num_free,
            )
        return self.pool.alloc(n)

    def _new_node(self, parent: Node | None) -> Node:
        node = Node(self._next_id, parent, self.weight_version)
        self._next_id += 1
        self._live[node.id] = node
        self._touch(node)
        return node

    def _set_open(self, node: Node) -> None:
        node.finished = False
        self._add_active(node, +1)

    def _set_finished(self, node: Node) -> None:
        node.finished = True
        self._add_active(node, -1)

    def _add_active(self, node: Node | None, delta: int) -> None:
        while node is not None:
            node.active_below += delta
            node = node.parent

    def _touch(self, node: Node) -> None:
        self._clock += 1
        node.last_used = self._clock

    def _used_path(self, node: Node) -> list[Node]:
        """path_nodes, marking the path as recently used (reading a branch uses it)."""
        path = self.path_nodes(node)
        self._clock += 1
        for n in path:
            n.last_used = self._clock
        return path

    def _check_alive(self, node: Node) -> None:
        if not node.alive:
            raise DeadNodeError(f"{node} is dead ({node.dead_reason}); its slots may be reused")
        if self._live.get(node.id) is not node:
            raise DeadNodeError(f"{node} does not belong to this tree")

    def _remove_subtree(self, node: Node, reason: str) -> None:
        subtree = [node]
        for n in subtree:  # breadth-first; the list grows as we walk it
            subtree.extend(n.children.values())
        # Free first: decref checks everything before changing anything, so if it raises
        # the tree is still intact and consistent with the pool.
        self.pool.decref(torch.cat([n.slots for n in subtree]))
        self._add_active(node.parent, -node.active_below)
        if node.parent is not None:
            del node.parent.children[node.id]
        else:
            del self.roots[node.id]
        for n in subtree:
            n.dead_reason = reason
            del self._live[n.id]


def _as_token_tensor(tokens: Sequence[int] | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(tokens, dtype=torch.int64).reshape(-1).cpu()
