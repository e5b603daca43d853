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
a wave is one `generate` call for every rollout's new step, so the engine advances all
of them in one batch.

Waves and virtual loss. A wave runs `parallel_rollouts` (P) rollouts of every tree at
once, so a decode batch holds problems x P branches instead of one per problem. A narrow
decode step is bound by reading the weights, so a wider one costs much less per token
(fp32 matmul on 2 CPU cores: 3 GFLOP/s at 1 row, 10 at 8, 37 at 64; the functional-token
search of SmolLM2-135M on 8 problems x 16 rollouts, 16-token steps: 43 sampled tokens per
CPU-second at P = 1, 76 at P = 4, 100 at P = 8). For the P rollouts of one tree to spread
out, a rollout that has selected a node but not yet returned its reward counts there as a
visit that lost (reward 0): *virtual loss*, from tree parallelisation (Chaslot, Winands &
van den Herik, 2008, "Parallel Monte-Carlo Tree Search"). The rules, all deterministic:

  - rollouts select in a fixed order (tree by tree, then rollout index), level by level;
    a selection sees the in-flight visits of every rollout that selected before it;
  - "unexplored" means no visits and no rollout in flight; once none is left, UCT runs
    on N = visits + in-flight (in-flight rewards count as 0), and the parent's N is its
    visits plus the in-flight rollouts below it;
  - two rollouts may still select the same child (when P exceeds the children, or UCT
    prefers it): a new child's step is generated once and shared, and virtual loss makes
    them diverge below it; if it ends the path, both end there and both count;
  - once a tree is fully explored (every path ends in a leaf already generated), a
    rollout walks to an existing leaf: no generation, the leaf is scored again and its
    path gets one more visit, so a tree gets exactly its budget of visits;
  - rewards and backpropagation happen when the whole wave has ended.

With P = 1 no other rollout is ever in flight and this is plain sequential MCTS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence


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
    in_flight: int = 0  # rollouts of the running wave that selected this node (virtual loss)

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
    """Upper confidence bound for trees (Kocsis & Szepesvári, 2006); in-flight rollouts
    count as visits with reward 0 (virtual loss)."""
    n = child.visits + child.in_flight
    return child.value_sum / n + c * math.sqrt(math.log(parent_visits) / n)


def select_child(node: TreeNode, c: float) -> TreeNode:
    for child in node.children:  # unexplored first, in the environment's ranking
        if child.visits == 0 and child.in_flight == 0:
            return child
    parent_visits = node.visits + sum(ch.in_flight for ch in node.children)
    return max(node.children, key=lambda ch: uct_score(ch, parent_visits, c))


def _distinct(nodes: Iterable[TreeNode]) -> list[TreeNode]:
    """Each node once, in order of first appearance (rollouts may share a node)."""
    seen: set[int] = set()
    out = []
    for node in nodes:
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)
    return out


def rollout(roots: Sequence[TreeNode], env: Environment, max_depth: int, c: float = 2.0,
            parallel_rollouts: int = 1, on_level: Callable[[], None] | None = None) -> list[TreeNode]:
    """One wave: `parallel_rollouts` rollouts in every tree, all in lockstep; returns the
    leaf each rollout ended at, tree by tree (a tree's rollouts in selection order).
    `on_level` is called after each tree level is generated (at most max_depth + 1 times)."""
    if parallel_rollouts < 1:
        raise ValueError(f"parallel_rollouts must be >= 1, got {parallel_rollouts}")
    frontier = [root for root in roots for _ in range(parallel_rollouts)]  # one entry per rollout
    done: list[TreeNode | None] = [None] * len(frontier)
    active = list(range(len(frontier)))
    while active:  # one tree level per pass: every active rollout is at the same depth
        fresh = _distinct(frontier[i] for i in active if frontier[i].state is None)
        if fresh:
            env.generate(fresh)
        if on_level is not None:
            on_level()
        expandable = _distinct(
            frontier[i] for i in active
            if not frontier[i].terminal and not frontier[i].children and frontier[i].depth < max_depth
        )
        if expandable:
            for node, kids in zip(expandable, env.children(expandable), strict=True):
                node.children = [TreeNode(a, node, p, node.depth + 1) for a, p in kids]
        still = []
        for i in active:  # in order: a later rollout sees the earlier ones' virtual loss
            node = frontier[i]
            if node.terminal or node.depth >= max_depth or not node.children:
                done[i] = node
            else:
                child = select_child(node, c)
                child.in_flight += 1
                frontier[i] = child
                still.append(i)
        active = still
    leaves = [leaf for leaf in done if leaf is not None]
    scored = _distinct(leaves)  # a leaf two rollouts ended at is scored once
    reward_of = {id(leaf): r for leaf, r in zip(scored, env.reward(scored), strict=True)}
    for leaf in leaves:
        r = reward_of[id(leaf)]
        leaf.reward = r
        for node in leaf.path():  # backpropagation, discount 1 (paper §3.2)
            if node.parent is not None:
                node.in_flight -= 1  # the virtual loss becomes the real result
            node.visits += 1
            node.value_sum += r
    return leaves


def wave_sizes(rollouts: int, parallel_rollouts: int, pause_at: Iterable[int] = ()) -> list[int]:
    """How many rollouts of each tree every wave runs: waves of `parallel_rollouts`, the
    last one smaller if the budget says so, and no wave crossing a count in `pause_at`
    (so a caller can read the trees after exactly that many rollouts)."""
    if parallel_rollouts < 1:
        raise ValueError(f"parallel_rollouts must be >= 1, got {parallel_rollouts}")
    stops = sorted({p for p in pause_at if 0 < p < rollouts} | {rollouts}) if rollouts > 0 else []
    sizes, done = [], 0
    for stop in stops:
        while done < stop:
            sizes.append(min(parallel_rollouts, stop - done))
            done += sizes[-1]
    return sizes


# tqdm's bar_format for a bar that counts rollouts in the fractions search() reports.
ROLLOUT_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} rollouts [{elapsed}<{remaining}]"


def search(roots: Sequence[TreeNode], env: Environment, rollouts: int, max_depth: int, c: float = 2.0,
           progress=None, parallel_rollouts: int = 1) -> list[TreeNode]:
    """`rollouts` rollouts in every tree, in waves of up to `parallel_rollouts`; returns
    the roots (now holding the trees). `progress` (a tqdm bar counting rollouts; format
    ROLLOUT_BAR_FORMAT) moves a fraction of a wave per tree level, so a search of one wave
    does not sit at 0 until it ends."""
    done = 0 if progress is None else progress.n  # the bar may have counted earlier work
    for size in wave_sizes(rollouts, parallel_rollouts):
        per_level = size / (max_depth + 1)  # a wave runs at most max_depth + 1 levels
        end = done + size

        def level_done(end=end, per_level=per_level):  # never past the wave's end: shares of
            progress.update(min(per_level, end - progress.n))  # 0.8 can add up to 4.000000000000001

        rollout(roots, env, max_depth, c, size, on_level=None if progress is None else level_done)
        done = end
        if progress is not None:
            progress.update(done - progress.n)  # the wave is over, whatever levels it did not need
    return list(roots)
