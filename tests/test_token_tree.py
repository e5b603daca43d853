"""TokenTree: branches sharing KV slots; fork, append, prune, LRU eviction, weight versions."""

import random

import pytest
import torch

from search.kv_pool import KVPool, KVPoolExhausted
from search.token_tree import UNKNOWN_TOKEN, DeadNodeError, TokenTree


def make_tree(num_slots=64):
    tree = TokenTree(KVPool(num_slots))
    return tree, tree.pool


# ---- building branches -------------------------------------------------------------------


def test_root_owns_its_prompt():
    tree, pool = make_tree()
    root = tree.add_root([5, 6, 7])
    assert root.tokens.tolist() == [5, 6, 7]
    assert root.slots.numel() == 3 and pool.num_used == 3
    assert (root.start, root.end, root.depth) == (0, 3, 0)
    assert not root.finished and root.weight_version == 0
    tree.check_invariants()


def test_fork_shares_the_parent_path_without_new_slots():
    tree, pool = make_tree()
    root = tree.add_root([1, 2, 3])
    left, right = tree.fork(root), tree.fork(root)
    assert pool.num_used == 3  # forking copies nothing
    assert left.start == right.start == 3 and left.depth == 1
    assert root.finished  # a node with children is frozen
    tree.append(left, [10])
    tree.append(right, [20, 21])
    assert tree.path_tokens(left).tolist() == [1, 2, 3, 10]
    assert tree.path_tokens(right).tolist() == [1, 2, 3, 20, 21]
    assert tree.path_slots(left)[:3].tolist() == tree.path_slots(right)[:3].tolist()
    tree.check_invariants()


def test_fork_of_a_finished_node_reuses_a_cached_prefix():
    tree, _ = make_tree()
    prompt = tree.add_root([1, 2])
    tree.finish(prompt)
    later = tree.fork(prompt)
    tree.append(later, [3])
    assert tree.path_tokens(later).tolist() == [1, 2, 3]
    tree.check_invariants()


def test_append_by_count_records_unknown_tokens():
    tree, _ = make_tree()
    root = tree.add_root([1])
    slots = tree.append(root, 3)
    assert slots.numel() == 3 and slots.dtype == torch.int64
    assert root.tokens.tolist() == [1, UNKNOWN_TOKEN, UNKNOWN_TOKEN, UNKNOWN_TOKEN]
    tree.check_invariants()


def test_append_returns_fresh_slots_and_moves_the_next_position():
    tree, _ = make_tree()
    root = tree.add_root([1, 2])
    assert tree.next_positions([root]).tolist() == [2]
    slots = tree.append(root, [3, 4])
    assert root.slots[-2:].tolist() == slots.tolist()
    assert tree.next_positions([root]).tolist() == [4]


def test_long_spans_grow_past_the_initial_buffer():
    tree, _ = make_tree(num_slots=1000)
    root = tree.add_root([0])
    for token in range(1, 700):
        tree.append(root, [token])
    assert tree.path_tokens(root).tolist() == list(range(700))
    tree.check_invariants()


def test_append_to_a_frozen_node_is_refused():
    tree, pool = make_tree()
    root = tree.add_root([1])
    child = tree.fork(root)
    with pytest.raises(ValueError, match="finished"):
        tree.append(root, 1)  # has children: growing it would shift theirs
    tree.finish(child)
    with pytest.raises(ValueError, match="finished"):
        tree.append(child, 1)
    assert pool.num_used == 1
    tree.check_invariants()


def test_append_many_allocates_once_in_node_order():
    tree, _ = make_tree()
    root = tree.add_root([0])
    a, b, c = tree.fork(root), tree.fork(root), tree.fork(root)
    slots = tree.append_many([a, b, c], [2, 0, 1], torch.tensor([10, 11, 30]))
    assert slots.numel() == 3
    assert a.slots.tolist() == slots[:2].tolist() and c.slots.tolist() == slots[2:].tolist()
    assert b.length == 0
    assert a.tokens.tolist() == [10, 11] and c.tokens.tolist() == [30]
    one_each = tree.append_many([a, b, c], 1)  # a decode step
    assert [n.length for n in (a, b, c)] == [3, 1, 2] and one_each.numel() == 3
    tree.check_invariants()


def test_append_many_checks_its_arguments():
    tree, _ = make_tree()
    root = tree.add_root([0])
    leaf = tree.fork(root)
    with pytest.raises(ValueError, match="counts"):
        tree.append_many([leaf], [1, 2])
    with pytest.raises(ValueError, match="token ids"):
        tree.append_many([leaf], [2], torch.tensor([1]))
    with pytest.raises(ValueError, match="negative"):
        tree.append_many([leaf], [-1])


def test_a_failed_append_many_grows_nothing_and_leaks_nothing():
    tree, pool = make_tree(num_slots=6)
    root = tree.add_root([0, 1])
    a, b = tree.fork(root), tree.fork(root)
    with pytest.raises(KVPoolExhausted):
        tree.append_many([a, b], [3, 2])
    assert a.length == b.length == 0 and pool.num_free == 4
    tree.check_invariants()


# ---- reading branches --------------------------------------------------------------------


def test_paths_csr_is_the_concatenation_of_path_slots():
    tree, _ = make_tree()
    root = tree.add_root([1, 2, 3])
    a = tree.fork(root)
    tree.append(a, [4, 5])
    aa = tree.fork(a)
    tree.append(aa, [6])
    b = tree.fork(root)
    leaves = [aa, b, a]
    kv_indptr, kv_indices = tree.paths_csr(leaves)
    assert kv_indptr.dtype == kv_indices.dtype == torch.int32
    assert kv_indptr.tolist() == [0, 6, 9, 14]
    expected = torch.cat([tree.path_slots(n) for n in leaves])
    assert kv_indices.tolist() == expected.tolist()


def test_paths_csr_of_no_branches_is_empty():
    tree, _ = make_tree()
    kv_indptr, kv_indices = tree.paths_csr([])
    assert kv_indptr.tolist() == [0] and kv_indices.numel() == 0


def test_branch_groups_list_each_shared_node_once_with_its_rows():
    tree, _ = make_tree()
    root = tree.add_root([1, 2])
    a, b = tree.fork(root), tree.fork(root)
    a1, a2 = tree.fork(a), tree.fork(a)
    groups = tree.branch_groups([a1, b, a2])
    as_ids = [(node.id, rows.tolist()) for node, rows in groups]
    assert as_ids == [(root.id, [0, 1, 2]), (a.id, [0, 2]), (b.id, [1]), (a1.id, [0]), (a2.id, [2])]


# ---- finishing, pruning, evicting -------------------------------------------------------


def test_finish_twice_is_harmless():
    tree, _ = make_tree()
    root = tree.add_root([1])
    tree.finish(root)
    tree.finish(root)
    assert root.active_below == 0
    tree.check_invariants()


def test_prune_frees_the_subtree_exactly_once_and_cascades_to_open_branches():
    tree, pool = make_tree()
    root = tree.add_root([1, 2])
    a, b = tree.fork(root), tree.fork(root)
    tree.append(a, [3, 4])
    a1 = tree.fork(a)
    tree.append(a1, [5])  # a1 is an open branch below a
    tree.append(b, [6])
    tree.prune(a)
    assert pool.num_used == 3  # root's 2 + b's 1
    assert not a.alive and not a1.alive and list(root.children) == [b.id]
    tree.check_invariants()
    for dead in (a, a1):
        with pytest.raises(DeadNodeError, match="pruned"):
            tree.append(dead, 1)
    with pytest.raises(DeadNodeError):
        tree.prune(a)  # a second release path cannot free anything twice
    with pytest.raises(DeadNodeError):
        a1.slots  # a dead node's slots may belong to someone else now
    tree.prune(root)
    assert pool.num_free == pool.num_slots
    tree.check_invariants()


def test_clear_returns_the_pool_to_all_free():
    tree, pool = make_tree()
    for prompt in ([1, 2], [3], [4, 5, 6]):
        tree.append(tree.fork(tree.add_root(prompt)), [7])
    tree.clear()
    assert pool.num_free == pool.num_slots and not tree.roots
    tree.check_invariants()


def test_num_evictable_counts_shared_slots_once():
    tree, _ = make_tree()
    root = tree.add_root([1, 2, 3, 4])
    leaves = [tree.fork(root) for _ in range(3)]
    for leaf in leaves:
        tree.append(leaf, [9])
    assert tree.num_evictable() == 0  # all on active branches
    tree.finish(leaves[0])
    assert tree.num_evictable() == 1
    for leaf in leaves[1:]:
        tree.finish(leaf)
    assert tree.num_evictable() == 4 + 3  # the shared root counted once, not three times


def test_eviction_takes_least_recently_used_finished_leaves_first():
    tree, pool = make_tree(num_slots=10)
    root = tree.add_root([0, 1])
    old, new = tree.fork(root), tree.fork(root)
    tree.append(old, [2, 3])
    tree.append(new, [4, 5])
    tree.finish(old)
    tree.finish(new)
    tree.path_slots(new)  # reading a branch counts as using it
    active = tree.fork(root)
    tree.append(active, [6, 7, 8, 9])
    assert pool.num_free == 0
    tree.append(active, [10])  # needs one slot: evicts `old`, the least recently used
    assert not old.alive and "evicted" in old.dead_reason
    assert new.alive and root.alive
    tree.check_invariants()


def test_eviction_climbs_to_parents_that_become_unreferenced_leaves():
    tree, pool = make_tree(num_slots=8)
    root = tree.add_root([0, 1, 2])
    mid = tree.fork(root)
    tree.append(mid, [3, 4])
    leaf = tree.fork(mid)
    tree.append(leaf, [5])
    tree.finish(leaf)  # the whole branch is now a finished cache of 6 slots
    newcomer = tree.add_root([9] * 7)  # needs 7 of 8: the leaf, then mid, then root go
    assert not (leaf.alive or mid.alive or root.alive)
    assert newcomer.alive and pool.num_used == 7
    tree.check_invariants()


def test_eviction_never_touches_an_active_branch():
    tree, _ = make_tree(num_slots=8)
    root = tree.add_root([0, 1, 2])
    running = tree.fork(root)
    tree.append(running, [3, 4])
    done = tree.fork(root)
    tree.append(done, [5])
    tree.finish(done)
    with pytest.raises(KVPoolExhausted) as info:
        tree.append(running, [6, 7, 8, 9])  # 2 free + 1 evictable < 4
    message = str(info.value)
    assert "4 slots needed" in message and "3 free of 8" in message
    assert "5 are held by active branches" in message
    assert running.alive and root.alive and running.length == 2
    assert not done.alive  # evicted while trying, which is fine: it was a finished cache
    tree.check_invariants()


def test_explicit_evict_reports_slots_freed():
    tree, pool = make_tree()
    for prompt in ([1, 2], [3, 4, 5]):
        tree.finish(tree.add_root(prompt))
    assert tree.evict(1) == 2  # whole leaves only: the older one
    assert tree.evict(100) == 3  # then whatever is left
    assert pool.num_free == pool.num_slots
    tree.check_invariants()


# ---- weight versions ---------------------------------------------------------------------


def test_bump_weight_version_drops_all_kv_from_old_weights():
    tree, pool = make_tree()
    root = tree.add_root([1, 2])
    leaf = tree.fork(root)
    tree.append(leaf, [3])
    assert tree.bump_weight_version() == 1
    assert pool.num_free == pool.num_slots
    for stale in (root, leaf):
        with pytest.raises(DeadNodeError, match="weight version 0"):
            tree.fork(stale)
    with pytest.raises(DeadNodeError, match="weight version 0"):
        tree.paths_csr([leaf])
    fresh = tree.add_root([1, 2])
    assert fresh.weight_version == 1
    tree.check_invariants()


def test_a_node_from_another_tree_is_refused():
    tree, _ = make_tree()
    other, _ = make_tree()
    stranger = other.add_root([1])
    tree.add_root([1])  # same id 0 here
    with pytest.raises(DeadNodeError, match="does not belong"):
        tree.append(stranger, 1)


# ---- the invariant checker catches corruption -------------------------------------------


def test_check_invariants_catches_a_slot_freed_under_its_owner():
    tree, pool = make_tree()
    root = tree.add_root([1, 2])
    pool.decref(root.slots[:1])  # a release path the tree does not know about
    with pytest.raises(AssertionError, match="refcount|pool holds"):
        tree.check_invariants()


def test_check_invariants_catches_wrong_active_counts():
    tree, _ = make_tree()
    root = tree.add_root([1])
    tree.fork(root)
    root.active_below = 0  # would let eviction take an active branch's prefix
    with pytest.raises(AssertionError, match="active_below"):
        tree.check_invariants()


# ---- the stress test ---------------------------------------------------------------------


def _check_kv_contents(tree):
    """Every live node's slots hold (in the pool's K storage) the tokens it wrote there.

    A slot handed to a second node while still owned would have been overwritten.
    """
    live = list(tree.live_nodes())
    if not live:
        return
    slots = torch.cat([n.slots for n in live])
    tokens = torch.cat([n.tokens for n in live])
    assert torch.equal(tree.pool.k[0, slots, 0, 0].long(), tokens)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_operations_keep_tree_and_pool_consistent(seed):
    rng = random.Random(seed)
    # One layer, one head, head_dim 1: each slot's K stores the token id written there.
    pool = KVPool(200, num_layers=1, n_kv_heads=1, head_dim=1, dtype=torch.float64)
    tree = TokenTree(pool)
    next_token = 0
    span_tokens: dict[int, list[int]] = {}  # shadow: node id -> its span's token ids
    parent_of: dict[int, int | None] = {}
    expected_open: set[int] = set()  # must survive everything but prune and bump
    every_node = []  # live and dead

    def new_tokens(n):
        nonlocal next_token
        ids = list(range(next_token, next_token + n))
        next_token += n
        return ids

    def store(slots, ids):
        pool.k[0, slots, 0, 0] = torch.tensor(ids, dtype=torch.float64)

    def shadow_path(node_id):
        ids = []
        while node_id is not None:
            ids = span_tokens[node_id] + ids
            node_id = parent_of[node_id]
        return ids

    def subtree_ids(node):
        out, stack = [], [node]
        while stack:
            n = stack.pop()
            out.append(n.id)
            stack.extend(n.children.values())
        return out

    for _ in range(2500):
        live = list(tree.live_nodes())
        open_nodes = [n for n in live if not n.finished]
        op = rng.choices(
            ["root", "fork", "append", "append_count", "append_many", "finish", "prune",
             "evict", "bump", "dead", "csr"],
            weights=[6, 14, 16, 3, 16, 10, 6, 3, 0.4, 3, 4],
        )[0]
        try:
            if op == "root":
                ids = new_tokens(rng.randint(0, 12))
                root = tree.add_root(ids)
                store(root.slots, ids)
                span_tokens[root.id], parent_of[root.id] = ids, None
                expected_open.add(root.id)
                every_node.append(root)
            elif op == "fork" and live:
                parent = rng.choice(live)
                child = tree.fork(parent)
                span_tokens[child.id], parent_of[child.id] = [], parent.id
                expected_open.discard(parent.id)
                expected_open.add(child.id)
                every_node.append(child)
            elif op == "append" and open_nodes:
                node = rng.choice(open_nodes)
                ids = new_tokens(rng.randint(0, 8))
                before = node.length
                try:
                    store(tree.append(node, ids), ids)
                    span_tokens[node.id] += ids
                except KVPoolExhausted:
                    assert node.length == before
            elif op == "append_count" and open_nodes:
                node = rng.choice(open_nodes)
                n = rng.randint(0, 3)
                store(tree.append(node, n), [UNKNOWN_TOKEN] * n)
                span_tokens[node.id] += [UNKNOWN_TOKEN] * n
            elif op == "append_many" and open_nodes:
                nodes = rng.sample(open_nodes, rng.randint(1, len(open_nodes)))
                counts = [rng.randint(0, 3) for _ in nodes]
                ids = new_tokens(sum(counts))
                before = [n.length for n in nodes]
                try:
                    store(tree.append_many(nodes, counts, torch.tensor(ids)), ids)
                    start = 0
                    for node, count in zip(nodes, counts):
                        span_tokens[node.id] += ids[start : start + count]
                        start += count
                except KVPoolExhausted:
                    assert [n.length for n in nodes] == before  # all or nothing
            elif op == "finish" and live:
                node = rng.choice(live)
                tree.finish(node)
                expected_open.discard(node.id)
            elif op == "prune" and live:
                node = rng.choice(live)
                expected_open -= set(subtree_ids(node))
                tree.prune(node)
            elif op == "evict":
                evictable = tree.num_evictable()
                freed = tree.evict(rng.randint(0, 40))
                assert freed <= evictable
            elif op == "bump":
                tree.bump_weight_version()
                expected_open.clear()
            elif op == "dead":
                dead = [n for n in every_node if not n.alive]
                if dead:
                    with pytest.raises(DeadNodeError):
                        rng.choice([tree.fork, tree.finish, tree.prune, tree.path_slots])(
                            rng.choice(dead)
                        )
            elif op == "csr" and live:
                nodes = rng.sample(live, rng.randint(1, min(8, len(live))))
                kv_indptr, kv_indices = tree.paths_csr(nodes)
                expected = torch.cat([tree.path_slots(n) for n in nodes])
                assert torch.equal(kv_indices.long(), expected)
                assert kv_indptr[-1] == expected.numel()
                for node in nodes:
                    assert tree.path_tokens(node).tolist() == shadow_path(node.id)
                    assert node.end == len(shadow_path(node.id))
        except KVPoolExhausted as error:
            assert error.needed > error.free  # a real shortage, reported with numbers

        tree.check_invariants()
        _check_kv_contents(tree)
        # Eviction may take finished caches, never an open branch (or, so, its path).
        assert all(tree._live.get(i) is not None for i in expected_open)
        assert all(n.weight_version == tree.weight_version for n in tree.live_nodes())

    for root in list(tree.roots.values()):
        tree.prune(root)
    tree.check_invariants()
    assert pool.num_free == pool.num_slots
    assert not list(tree.live_nodes())
