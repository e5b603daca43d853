"""The oracle for `parallel_rollouts=1`: the search as it was before waves (commit 290288c).

One rollout per tree at a time, plain UCT with no notion of in-flight rollouts. Kept
here, apart from search/mcts.py, so that tests can run both and compare every node,
token and environment call: with one rollout per wave the batched search must be this
algorithm exactly.
"""

from __future__ import annotations

import math

from search.mcts import TreeNode


def _uct(child: TreeNode, parent_visits: int, c: float) -> float:
    return child.value + c * math.sqrt(math.log(parent_visits) / child.visits)


def _select(node: TreeNode, c: float) -> TreeNode:
    for child in node.children:
        if child.visits == 0:
            return child
    return max(node.children, key=lambda ch: _uct(ch, node.visits, c))


def sequential_rollout(roots, env, max_depth: int, c: float = 2.0) -> list[TreeNode]:
    frontier = list(roots)
    done = [None] * len(roots)
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
                frontier[i] = _select(node, c)
                still.append(i)
        active = still
    leaves = [leaf for leaf in done if leaf is not None]
    for leaf, r in zip(leaves, env.reward(leaves), strict=True):
        leaf.reward = r
        for node in leaf.path():
            node.visits += 1
            node.value_sum += r
    return leaves


def sequential_search(roots, env, rollouts: int, max_depth: int, c: float = 2.0) -> list[TreeNode]:
    for _ in range(rollouts):
        sequential_rollout(roots, env, max_depth, c)
    return list(roots)


def actions(node: TreeNode) -> tuple:
    """A node's address in its tree: the actions from the root down to it."""
    return tuple(n.action for n in node.path()[1:])


class CallLog:
    """Wraps an environment and records every call: which nodes, in which order."""

    def __init__(self, env):
        self.env, self.calls = env, []

    def children(self, nodes):
        self.calls.append(("children", [actions(n) for n in nodes]))
        return self.env.children(nodes)

    def generate(self, nodes):
        self.calls.append(("generate", [actions(n) for n in nodes]))
        return self.env.generate(nodes)

    def reward(self, leaves):
        self.calls.append(("reward", [actions(n) for n in leaves]))
        return self.env.reward(leaves)


def fingerprint(node: TreeNode, step_of) -> tuple:
    """Everything the search decided about a tree, depth first; `step_of(node)` reads
    what the environment generated (e.g. the step's tokens)."""
    mine = (node.action, node.depth, node.prior, node.terminal, node.visits, node.value_sum, node.reward,
            node.in_flight, None if node.state is None else step_of(node))
    return (mine, tuple(fingerprint(child, step_of) for child in node.children))
