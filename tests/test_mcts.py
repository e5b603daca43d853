"""MCTS bookkeeping on a toy problem whose answer is known."""

import math

import pytest

from search.mcts import TreeNode, rollout, search, select_child, uct_score

ACTIONS = ("a", "b", "c")
SECRET = ("b", "c", "a")  # the only rewarded path


class ToyEnv:
    """States are action strings; depth 3 ends a path; reward 1 only on SECRET, 0.1 for
    paths that start right (partial credit), 0 otherwise. Counts calls to check batching."""

    def __init__(self):
        self.generate_calls = []

    def children(self, nodes):
        return [[(a, 1.0 / (i + 1)) for i, a in enumerate(ACTIONS)] for _ in nodes]

    def generate(self, nodes):
        self.generate_calls.append(len(nodes))
        for n in nodes:
            n.state = tuple(x.action for x in n.path()[1:])
            n.terminal = len(n.state) == 3

    def reward(self, leaves):
        return [1.0 if n.state == SECRET else (0.1 if n.state[:1] == SECRET[:1] else 0.0) for n in leaves]


def _check_bookkeeping(node):
    """visits = rollouts that ended here + children's visits; the value adds up the same way.
    A node that got children never ends a rollout (it is expanded when first reached)."""
    ended_here = node.visits - sum(c.visits for c in node.children)
    assert ended_here >= 0 and (ended_here == 0 or not node.children)
    expected_value = sum(c.value_sum for c in node.children) + ended_here * (node.reward or 0.0)
    assert math.isclose(node.value_sum, expected_value, abs_tol=1e-9)
    for c in node.children:
        assert c.parent is node and c.depth == node.depth + 1
        _check_bookkeeping(c)


def test_uct_formula():
    parent = TreeNode(None, visits=10)
    child = TreeNode("a", parent, visits=4, value_sum=2.0)
    assert uct_score(child, 10, 2.0) == pytest.approx(0.5 + 2.0 * math.sqrt(math.log(10) / 4))


def test_unexplored_children_first_in_rank_order():
    parent = TreeNode(None, visits=3)
    parent.children = [TreeNode(a, parent) for a in ACTIONS]
    parent.children[0].visits, parent.children[0].value_sum = 3, 3.0
    assert select_child(parent, 2.0).action == "b"


def test_visit_counts_and_values_add_up_and_the_answer_is_found():
    env = ToyEnv()
    roots = [TreeNode(None) for _ in range(3)]  # three problems searched in lockstep
    search(roots, env, rollouts=60, max_depth=3)
    for root in roots:
        assert root.visits == 60
        _check_bookkeeping(root)
        best = max(root.children, key=lambda c: c.visits)
        assert best.action == SECRET[0]
        leaves = root.leaves()
        assert any(leaf.state == SECRET and leaf.reward == 1.0 for leaf in leaves)
        assert all(leaf.terminal or leaf.depth == 3 for leaf in leaves)
    # lockstep: every generate call covered the three problems together
    assert all(n % 3 == 0 for n in env.generate_calls)


def test_depth_limit_stops_non_terminal_paths():
    env = ToyEnv()
    root = TreeNode(None)
    leaves = rollout([root], env, max_depth=2)
    assert leaves[0].depth == 2 and not leaves[0].terminal and leaves[0].reward is not None
