"""The generation engine: many branches of many problems advanced in one batch.

A search tree's branches share their ancestors' text (the problem, the steps so far).
The engine keeps that text's KV once, in the token tree (search/token_tree.py), and
every step runs the decoder's serving forward (model/serving.py) on just the new tokens:

    prefill(prompts)        one root per prompt; all prompts' tokens in one extend pass
    fork(branch)            a child that shares every slot of its parent's path (O(1))
    extend(branches, ids)   append forced tokens (a prompt, a functional tag) to each branch
    decode(branches, ...)   sample one token per branch per step until a stop

With ``share_prefix=False`` a fork instead copies its parent's tokens into a fresh root
and recomputes them: the baseline that tree sharing is measured against, and a check
that sharing changes nothing but the cost (greedy outputs are identical).

A branch's next-token logits are kept between calls, so a fork inherits its parent's
and the first sampled token of a child costs no forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from kernels.cascade_metadata import build_cascade_metadata
from model.serving import serving_logits
from model.transformer import Transformer

from .attention_batch import AttentionBatch
from .kv_pool import KVPool
from .sampling import SamplingParams, sample
from .token_tree import Node, TokenTree


@dataclass
class Branch:
    node: Node  # the open leaf this branch grows
    seed: int  # its sampling stream (search/sampling.py): draws depend on nothing else
    next_logits: torch.Tensor  # fp32[vocab]: the distribution of its next token
    generated: list[int] = field(default_factory=list)  # tokens sampled by decode
    logprobs: list[float] = field(default_factory=list)  # their log-probs (tempered policy)
    stop_reason: str | None = None  # "stop" (a stop token) or "length"; None while running


def _own_rows(logits: torch.Tensor) -> list[torch.Tensor]:
    """logits: [B, V] -> B rows, each in memory of its own. A row *view* would keep the
    whole [B, V] tensor alive for as long as its branch lives: the finished leaves of a
    search or of 192 sampled answers, each stopping at another step, then pin one batch
    tensor per step (0.5B model: 192 x 152k fp32 logits = 117 MB each, ~10 GB in all)."""
    return [row.clone() for row in logits]


def _indptr(counts: list[int]) -> torch.Tensor:
    return torch.tensor([0] + counts, dtype=torch.int64).cumsum(0).to(torch.int32)


class Engine:
    def __init__(self, model: Transformer, num_slots: int = 1 << 16, share_prefix: bool = True,
                 cascade: bool | None = None):
        cfg = model.config
        weight = model.embed_tokens.weight
        self.model = model
        self.device = weight.device
        self.share_prefix = share_prefix
        # Cascade decode reads a shared node's KV once for all branches below it: on a GPU
        # (the Triton kernel) a saving in memory traffic, which bounds a decode step; on a
        # CPU (the batched two-level reference) a saving in gathered KV. False: flat
        # per-branch slot lists (each branch re-reads its whole path).
        self.cascade = share_prefix if cascade is None else cascade
        self.pool = KVPool(num_slots, cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, weight.dtype, weight.device)
        self.tree = TokenTree(self.pool)
        self.tokens_computed = 0  # tokens run through the model: what sharing saves
        self.cascade_steps = 0  # decode steps that read shared nodes once (cascade kernel)

    @classmethod
    def for_search(cls, model: Transformer, prompt_tokens: int, branches: int, branch_tokens: int,
                   **kwargs) -> Engine:
        """An engine whose pool holds a whole search at once: `prompt_tokens` of prompts
        (all of them together) and `branches` paths that each add up to `branch_tokens`
        tokens. Greedy decoding is one branch a prompt; an MCTS rollout adds at most one
        path (a step a tree level), and forks share their prefix, so a search of R
        rollouts a problem over P problems needs no more than P·R branches."""
        return cls(model, num_slots=max(1, prompt_tokens + branches * branch_tokens), **kwargs)

    # ---- one forward over the pool -----------------------------------------------------
    def _run(self, tokens, positions, batch: AttentionBatch, last_index) -> torch.Tensor:
        d = self.device
        batch.new_slots = batch.new_slots.to(d)
        batch.kv_indptr, batch.kv_indices = batch.kv_indptr.to(d), batch.kv_indices.to(d)
        if batch.qo_indptr is not None:
            batch.qo_indptr = batch.qo_indptr.to(d)
        self.tokens_computed += tokens.numel()
        return serving_logits(self.model, tokens.to(d), positions.to(d), batch, last_index.to(d))

    # ---- building branches -------------------------------------------------------------
    def prefill(self, prompts: list[list[int]], seeds: list[int]) -> list[Branch]:
        """One root per prompt, all run in one extend pass."""
        if any(len(p) == 0 for p in prompts):
            raise ValueError("a prompt must have at least one token (its logits start the branch)")
        nodes = [self.tree.add_root(p) for p in prompts]
        counts = [len(p) for p in prompts]
        qo_indptr = _indptr(counts)
        empty = torch.zeros(len(prompts) + 1, dtype=torch.int32)
        batch = AttentionBatch(
            self.pool.k, self.pool.v, torch.cat([n.slots.long() for n in nodes]), empty,
            torch.empty(0, dtype=torch.int32), qo_indptr=qo_indptr,
        )
        tokens = torch.cat([torch.as_tensor(p, dtype=torch.int64) for p in prompts])
        positions = torch.cat([torch.arange(c) for c in counts])
        logits = self._run(tokens, positions, batch, qo_indptr[1:].long() - 1)
        return [Branch(n, s, row) for row, n, s in zip(_own_rows(logits), nodes, seeds)]

    def fork(self, branch: Branch, seed: int) -> Branch:
        """A new branch continuing `branch`'s text; `branch` itself stops growing."""
        if self.share_prefix:
            child = self.tree.fork(branch.node)
            return Branch(child, seed, branch.next_logits, list(branch.generated), list(branch.logprobs))
        # No sharing: a private copy of the whole path, recomputed from scratch.
        tokens = self.tree.path_tokens(branch.node).tolist()
        self.tree.finish(branch.node)
        (copy,) = self.prefill([tokens], [seed])
        copy.generated, copy.logprobs = list(branch.generated), list(branch.logprobs)
        return copy

    def extend(self, branches: list[Branch], token_lists: list[list[int]]) -> None:
        """Appends forced tokens to each branch (e.g. a functional tag) in one pass."""
        pairs = [(b, ids) for b, ids in zip(branches, token_lists, strict=True) if ids]
        if not pairs:
            return
        nodes = [b.node for b, _ in pairs]
        counts = [len(ids) for _, ids in pairs]
        kv_indptr, kv_indices = self.tree.paths_csr(nodes)  # the cached prefix, before appending
        starts = self.tree.next_positions(nodes)
        positions = torch.cat([torch.arange(s, s + c) for s, c in zip(starts.tolist(), counts)])
        tokens = torch.cat([torch.as_tensor(ids, dtype=torch.int64) for _, ids in pairs])
        new_slots = self.tree.append_many(nodes, counts, tokens)
        qo_indptr = _indptr(counts)
        batch = AttentionBatch(self.pool.k, self.pool.v, new_slots, kv_indptr, kv_indices, qo_indptr=qo_indptr)
        logits = self._run(tokens, positions, batch, qo_indptr[1:].long() - 1)
        for (b, _), row in zip(pairs, _own_rows(logits)):
            b.next_logits = row

    def decode(
        self, branches: list[Branch], params: SamplingParams, max_new_tokens: int, stop_ids: set[int] = frozenset(),
        on_finish: Callable[[Branch], None] | None = None,
    ) -> list[Branch]:
        """Samples until each branch emits a stop token or `max_new_tokens` more tokens;
        `on_finish(branch)` is called as each one stops (e.g. to advance a progress bar)."""
        active = [b for b in branches if b.stop_reason is None]
        budget = {id(b): max_new_tokens for b in active}
        while active:
            nodes = [b.node for b in active]
            positions = self.tree.next_positions(nodes)  # where the sampled tokens go
            seeds = torch.tensor([b.seed for b in active], dtype=torch.int64)
            logits = torch.stack([b.next_logits for b in active]).to(self.device)
            tokens, logprobs = sample(logits, params, seeds.to(self.device), positions.to(self.device))
            tokens, logprobs = tokens.cpu(), logprobs.cpu()
            new_slots = self.tree.append_many(nodes, 1, tokens)
            batch = self._decode_batch(nodes, new_slots)
            next_logits = self._run(tokens, positions, batch, torch.arange(len(active)))
            still = []
            for i, b in enumerate(active):
                token = int(tokens[i])
                b.generated.append(token)
                b.logprobs.append(float(logprobs[i]))
                b.next_logits = next_logits[i]  # a view: replaced next step while the branch runs
                budget[id(b)] -= 1
                if token in stop_ids:
                    b.stop_reason = "stop"
                elif budget[id(b)] == 0:
                    b.stop_reason = "length"
                else:
                    still.append(b)
                    continue
                b.next_logits = b.next_logits.clone()  # a stopped branch keeps its row, not the batch's
                if on_finish is not None:
                    on_finish(b)
            active = still
        return branches

    def _decode_batch(self, nodes: list[Node], new_slots: torch.Tensor) -> AttentionBatch:
        """Where branches share tree nodes, the cascade description that reads each shared
        node's KV once for all of them; otherwise flat per-branch slot lists."""
        if self.share_prefix and self.cascade:
            groups = self.tree.branch_groups(nodes)  # (node, rows below it), parents first
            if any(len(rows) > 1 for _, rows in groups):
                branch_nodes: list[list[int]] = [[] for _ in nodes]
                for local_id, (_, rows) in enumerate(groups):
                    for row in rows.tolist():
                        branch_nodes[row].append(local_id)
                node_slots = [node.slots for node, _ in groups]
                self.cascade_steps += 1
                no_lists = torch.empty(0, dtype=torch.int32)  # the cascade metadata replaces them
                return AttentionBatch(
                    self.pool.k, self.pool.v, new_slots, no_lists, no_lists,
                    cascade=build_cascade_metadata(branch_nodes, node_slots, self.device),
                )
        kv_indptr, kv_indices = self.tree.paths_csr(nodes)  # including the new tokens
        return AttentionBatch(self.pool.k, self.pool.v, new_slots, kv_indptr, kv_indices)

    def text_tokens(self, branch: Branch) -> list[int]:
        """Every token of the branch's path: prompt, forced and sampled."""
        return self.tree.path_tokens(branch.node).tolist()
