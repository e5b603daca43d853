"""Monte-Carlo tree search over reasoning steps (RFTT §3.2, §3.3).

A tree node is one reasoning step: the functional token that chose it (`action`, e.g.
"next_step") and what the environment generated for it (`state`: in RFTT, an engine
branch holding the step's text). One rollout walks from the root to a leaf:

    select    at each node, children never visited come first, in the order the
              environment ranked them (in RL mode: the model's probability of each next
              functional token); once all were tried, the child with the highest UCT
              score  Q(child) + c * sqrt(ln N(node) / N(child)),  c = 2
    expand    a node reached for the first time gets all its children at once (the
              allowed transitions of its function), as the paper's search does
    generate  a newly selected child's step is produced by the environment
    backprop  the leaf's reward is added to every node on the path (discount 1)

The search is pluggable: an `Environment` says which children a node has, generates
steps and scores leaves. Many problems are searched at once in lockstep: each level of
a rollout is one `generate` call for every problem's new step, so the engine advances
all of them in one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


@dataclass(eq=False)
class TreeNode:
    action: str | None  # the functional token that led here; None at the root
    parent: TreeNode | None = None
    prior: float = 1.0  # the environment's score for this child (ranking only)
    depth: int = 0
    state: Any = None  # set by Environment.generate; None until then
    terminal: bool = False  # set by Environment.generate (e.g. an <output> step)
    children: list[TreeNode] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    reward: float | None = None  # set when the node ends a rollout

    @property
    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def path(self) -> list[TreeNode]:
        node, out = self, []
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def leaves(self) -> list[TreeNode]:
        """Every node that ended a rollout (has a reward), depth first."""
        out = [self] if self.reward is not None else []
        for child in self.children:
            out.extend(child.leaves())
        return out


class Environment(Protocol):
    def children(self, nodes: Sequence[TreeNode]) -> list[list[tuple[str, float]]]:
        """For each node, its children as (action, prior), best first. Empty: a leaf."""

    def generate(self, nodes: Sequence[TreeNode]) -> None:
        """Produces each node's step: sets node.state and node.terminal (one batch)."""

    def reward(self, leaves: Sequence[TreeNode]) -> list[float]:
        """Scores the leaves that ended this rollout (terminal or at the depth limit)."""


def uct_score(child: TreeNode, parent_visits: int, c: float) -> float:
    """Upper confidence bound for trees (Kocsis & Szepesvári, 2006)."""
    return child.value + c * math.sqrt(math.log(parent_visits) / child.visits)


def select_child(node: TreeNode, c: float) -> TreeNode:
    for child in node.children:  # unexplored first, in the environment's ranking
        if child.visits == 0:
            return child
    return max(node.children, key=lambda ch: uct_score(ch, node.visits, c))


def rollout(roots: Sequence[TreeNode], env: Environment, max_depth: int, c: float = 2.0) -> list[TreeNode]:
    """One rollout in every tree, in lockstep; returns the leaf each one ended at."""
    frontier = list(roots)
    done: list[TreeNode | None] = [None] * len(roots)
    active = list(range(len(roots)))
    while active:
        fresh = [frontier[i] for i in active if frontier[i].state is None]
        if fresh:
            env.generate(fresh)
        expandable = [
            frontier[i] for i in active
            if not frontier[i].terminal and not frontier[i].children and frontier[i].depth < max_depth
        ]
        if expandable:
            for node, kids in zip(expandable, env.children(expandable), strict=True):
                node.children = [TreeNode(a, node, p, node.depth + 1) for a, p in kids]
        still = []
        for i in active:
            node = frontier[i]
            if node.terminal or node.depth >= max_depth or not node.children:
                done[i] = node
            else:
                frontier[i] = select_child(node, c)
                still.append(i)
        active = still
    leaves = [leaf for leaf in done if leaf is not None]
    for leaf, r in zip(leaves, env.reward(leaves), strict=True):
        leaf.reward = r
        for node in leaf.path():  # backpropagation, discount 1 (paper §3.2)
            node.visits += 1
            node.value_sum += r
    return leaves


def search(roots: Sequence[TreeNode], env: Environment, rollouts: int, max_depth: int, c: float = 2.0,
           progress=None) -> list[TreeNode]:
    """`rollouts` rollouts in every tree; returns the roots (now holding the trees)."""
    for _ in range(rollouts):
        rollout(roots, env, max_depth, c)
        if progress is not None:
            progress.update(1)
    return list(roots)
