"""MCTS bookkeeping on a toy problem whose answer is known."""

import math

import pytest

from search.mcts import TreeNode, rollout, search, select_child, uct_score, wave_sizes
from tests.sequential_mcts import CallLog, fingerprint, sequential_search

ACTIONS = ("a", "b", "c")
SECRET = ("b", "c", "a")  # the only rewarded path


class ToyEnv:
    """States are action strings; depth 3 ends a path; reward 1 only on SECRET, 0.1 for
    paths that start right (partial credit), 0 otherwise. Counts calls to check batching
    and remembers every node it generated (none may be generated twice)."""

    def __init__(self, actions=ACTIONS, depth=3):
        self.actions, self.depth = actions, depth
        self.generate_calls = []
        self.generated = []

    def children(self, nodes):
        return [[(a, 1.0 / (i + 1)) for i, a in enumerate(self.actions)] for _ in nodes]

    def generate(self, nodes):
        self.generate_calls.append(len(nodes))
        for n in nodes:
            assert n.state is None, "a node's step is generated once"
            n.state = tuple(x.action for x in n.path()[1:])
            n.terminal = len(n.state) == self.depth
            self.generated.append(n)

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


def _all_nodes(node):
    out = [node]
    for child in node.children:
        out.extend(_all_nodes(child))
    return out


def _toy_state(node):
    return node.state


# ---- waves of parallel rollouts (virtual loss) ------------------------------------------

def test_one_rollout_per_wave_is_the_sequential_search():
    """parallel_rollouts=1 makes the same trees and the same environment calls, in the same
    order, as the search before waves (tests/sequential_mcts.py)."""
    old_env, new_env = CallLog(ToyEnv()), CallLog(ToyEnv())
    old = sequential_search([TreeNode(None) for _ in range(3)], old_env, rollouts=40, max_depth=3)
    new = search([TreeNode(None) for _ in range(3)], new_env, rollouts=40, max_depth=3, parallel_rollouts=1)
    assert [fingerprint(r, _toy_state) for r in new] == [fingerprint(r, _toy_state) for r in old]
    assert new_env.calls == old_env.calls
    # also with a depth limit that cuts paths (non-terminal leaves) and c != 2
    old_env, new_env = CallLog(ToyEnv()), CallLog(ToyEnv())
    old = sequential_search([TreeNode(None)], old_env, rollouts=9, max_depth=2, c=0.5)
    new = search([TreeNode(None)], new_env, rollouts=9, max_depth=2, c=0.5)
    assert fingerprint(new[0], _toy_state) == fingerprint(old[0], _toy_state) and new_env.calls == old_env.calls


def test_wave_sizes_respect_the_budget_and_pauses():
    assert wave_sizes(10, 4) == [4, 4, 2]
    assert wave_sizes(3, 8) == [3]  # P larger than the budget: one smaller wave
    assert wave_sizes(5, 1) == [1] * 5
    assert wave_sizes(16, 4, pause_at=(1, 4, 16)) == [1, 3, 4, 4, 4]
    assert wave_sizes(0, 4) == []
    with pytest.raises(ValueError, match="parallel_rollouts"):
        wave_sizes(4, 0)


@pytest.mark.parametrize("parallel", [2, 4, 7])
def test_parallel_waves_keep_the_budget_and_the_books(parallel):
    env = CallLog(ToyEnv())
    roots = [TreeNode(None) for _ in range(3)]
    search(roots, env, rollouts=30, max_depth=3, parallel_rollouts=parallel)
    waves = wave_sizes(30, parallel)
    scored = [len(leaves) for kind, leaves in env.calls if kind == "reward"]
    assert len(scored) == len(waves)  # one reward call a wave, each leaf at most once
    assert all(0 < n <= 3 * size for n, size in zip(scored, waves))
    for root in roots:
        assert root.visits == 30  # exactly the budget, however the waves were cut
        _check_bookkeeping(root)
        assert all(n.in_flight == 0 for n in _all_nodes(root))  # every virtual loss was undone
        assert max(root.children, key=lambda c: c.visits).action == SECRET[0]
        assert any(leaf.state == SECRET and leaf.reward == 1.0 for leaf in root.leaves())
    assert len(set(map(id, env.env.generated))) == len(env.env.generated)  # no step generated twice


def test_parallel_waves_are_deterministic():
    runs = []
    for _ in range(2):
        env = CallLog(ToyEnv())
        roots = search([TreeNode(None) for _ in range(2)], env, rollouts=13, max_depth=3, parallel_rollouts=4)
        runs.append(([fingerprint(r, _toy_state) for r in roots], env.calls))
    assert runs[0] == runs[1]


def test_virtual_loss_spreads_a_wave_over_the_children():
    env = ToyEnv()
    root = TreeNode(None)
    leaves = rollout([root], env, max_depth=3, parallel_rollouts=3)
    assert [leaf.state[0] for leaf in leaves] == list(ACTIONS)  # three rollouts, three first steps
    assert [c.visits for c in root.children] == [1, 1, 1]


def test_rollouts_that_select_the_same_new_child_share_its_step_and_diverge_below():
    """Five rollouts, three children: two children are selected twice in the wave; each is
    generated once, and virtual loss sends its two rollouts to different grandchildren."""
    env = ToyEnv()
    root = TreeNode(None)
    leaves = rollout([root], env, max_depth=3, parallel_rollouts=5)
    assert env.generate_calls[:2] == [1, 3]  # the root, then its three children (not five)
    assert sorted(c.visits for c in root.children) == [1, 2, 2]
    assert len({id(leaf) for leaf in leaves}) == 5  # five different paths
    assert root.visits == 5 and all(n.in_flight == 0 for n in _all_nodes(root))
    _check_bookkeeping(root)


def test_a_fully_explored_tree_revisits_leaves_until_its_budget_is_spent():
    """Two actions, depth 2: four paths. Ten rollouts in waves of six: the second wave finds
    nothing new; rollouts that end at the same leaf in one wave count once each."""
    env = CallLog(ToyEnv(actions=("a", "b"), depth=2))
    (root,) = search([TreeNode(None)], env, rollouts=10, max_depth=5, parallel_rollouts=6)
    nodes = _all_nodes(root)
    assert len(nodes) == 7 and len(env.env.generated) == 7  # each generated once
    assert root.visits == 10 and sum(leaf.visits for leaf in root.leaves()) == 10
    assert len(root.leaves()) == 4 and all(leaf.terminal for leaf in root.leaves())
    rewards = [leaves for kind, leaves in env.calls if kind == "reward"]
    assert [len(r) for r in rewards] == [4, 4]  # six and four rollouts; four distinct leaves each
    _check_bookkeeping(root)


@pytest.mark.parametrize("rollouts, depth", [(4, 3), (6, 3), (16, 4), (16, 2)])
def test_search_progress_moves_within_a_wave_and_ends_on_the_rollout_count(rollouts, depth):
    """Waves of 4 rollouts: the bar moves at each tree level (at most depth + 1 of them, a
    share of the wave each), never past the wave's end (5 shares of 0.8 add
    up to more than 4 in floating point, and tqdm warns at a fraction above 1), and stands
    at exactly the rollout count at the end."""
    seen = []

    class Bar:
        n = 0.0

        def update(self, k):
            self.n += k
            seen.append(self.n)

    env = ToyEnv(depth=depth)
    bar = Bar()
    search([TreeNode(None)], env, rollouts=rollouts, max_depth=depth, progress=bar, parallel_rollouts=4)
    assert bar.n == rollouts
    assert len(seen) >= 2 and 0 < seen[0] < 4  # moved before the first wave ended
    assert max(seen) <= rollouts
    assert all(a <= b for a, b in zip(seen, seen[1:]))
