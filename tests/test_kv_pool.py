"""KVPool: allocation, reference counts, and the errors that keep it from corrupting."""

import pytest
import torch

from search.kv_pool import KVPool, KVPoolExhausted


def test_storage_shape_per_layer():
    pool = KVPool(8, num_layers=3, n_kv_heads=2, head_dim=4, dtype=torch.float32)
    assert pool.k.shape == (3, 8, 2, 4) and pool.v.shape == (3, 8, 2, 4)
    assert pool.k[1].shape == (8, 2, 4)  # one layer's pool: [num_slots, n_kv_heads, head_dim]
    assert pool.k.dtype == torch.float32


def test_bookkeeping_only_pool_has_no_storage():
    pool = KVPool(1000)
    assert pool.k.numel() == 0 and pool.v.numel() == 0


def test_alloc_hands_out_ascending_slots_with_count_one():
    pool = KVPool(10)
    slots = pool.alloc(4)
    assert slots.dtype == torch.int64
    assert slots.tolist() == [0, 1, 2, 3]
    assert pool.refcount[slots].tolist() == [1, 1, 1, 1]
    assert pool.num_free == 6 and pool.num_used == 4
    assert pool.alloc(0).numel() == 0
    pool.check_invariants()


def test_freed_slots_are_reused():
    pool = KVPool(6)
    first = pool.alloc(6)
    pool.decref(first[2:4])
    again = pool.alloc(2)
    assert sorted(again.tolist()) == [2, 3]
    pool.check_invariants()


def test_exhaustion_is_a_clear_error_and_changes_nothing():
    pool = KVPool(5)
    pool.alloc(3)
    with pytest.raises(KVPoolExhausted, match="3 slots needed, 2 free of 5") as info:
        pool.alloc(3)
    assert info.value.needed == 3 and info.value.free == 2
    assert pool.num_free == 2
    pool.check_invariants()


def test_negative_alloc_is_refused():
    with pytest.raises(ValueError):
        KVPool(4).alloc(-1)


def test_incref_keeps_a_slot_until_every_holder_releases():
    pool = KVPool(4)
    slots = pool.alloc(2)
    pool.incref(slots[:1])
    pool.decref(slots)
    assert pool.num_free == 3  # slot 0 still has a holder
    assert pool.refcount[0] == 1
    pool.check_invariants()
    pool.decref(slots[:1])
    assert pool.num_free == 4
    pool.check_invariants()


def test_duplicate_slots_in_one_call_count_twice():
    pool = KVPool(4)
    slot = pool.alloc(1)
    pool.incref(torch.cat([slot, slot]))
    assert pool.refcount[slot].item() == 3
    pool.decref(torch.cat([slot, slot, slot]))
    assert pool.num_free == 4
    pool.check_invariants()


def test_double_free_is_an_error_not_a_silent_reuse():
    pool = KVPool(4)
    slots = pool.alloc(2)
    pool.decref(slots)
    with pytest.raises(ValueError, match="double free"):
        pool.decref(slots[:1])
    pool.check_invariants()  # the refused call changed nothing


def test_over_release_in_one_call_changes_nothing():
    pool = KVPool(4)
    slots = pool.alloc(2)  # each held once
    with pytest.raises(ValueError, match="double free"):
        pool.decref(torch.tensor([slots[0], slots[1], slots[1]]))
    assert pool.refcount[slots].tolist() == [1, 1]  # not even slot 0 was released
    pool.check_invariants()


def test_incref_of_a_free_slot_is_an_error():
    pool = KVPool(4)
    with pytest.raises(ValueError, match="incref of free slots"):
        pool.incref(torch.tensor([2]))
    pool.check_invariants()


def test_out_of_range_slots_are_errors():
    pool = KVPool(4)
    with pytest.raises(IndexError):
        pool.decref(torch.tensor([4]))
    with pytest.raises(IndexError):
        pool.incref(torch.tensor([-1]))


def test_check_invariants_catches_a_lost_slot():
    pool = KVPool(4)
    slots = pool.alloc(1)
    pool.refcount[slots] = 0  # unheld, yet not on the free list
    with pytest.raises(AssertionError, match="lost"):
        pool.check_invariants()


def test_check_invariants_catches_a_slot_both_free_and_held():
    pool = KVPool(4)
    pool.refcount[3] = 1  # held, yet still on the free list
    with pytest.raises(AssertionError):
        pool.check_invariants()


def test_check_invariants_catches_a_duplicated_free_slot():
    pool = KVPool(4)
    pool.alloc(2)
    pool._free_stack[0] = pool._free_stack[1]
    with pytest.raises(AssertionError, match="twice"):
        pool.check_invariants()


def test_random_alloc_release_against_a_shadow_count():
    """Interleaved alloc/incref/decref, checked against plain Python counts."""
    generator = torch.Generator().manual_seed(0)
    pool = KVPool(64)
    shadow = [0] * 64
    held: list[int] = []  # one entry per holder
    for _ in range(2000):
        op = int(torch.randint(3, (1,), generator=generator))
        if op == 0:
            n = int(torch.randint(0, 10, (1,), generator=generator))
            if n > pool.num_free:
                with pytest.raises(KVPoolExhausted):
                    pool.alloc(n)
            else:
                slots = pool.alloc(n).tolist()
                assert all(shadow[s] == 0 for s in slots)  # never handed out twice
                for s in slots:
                    shadow[s] = 1
                held += slots
        elif op == 1 and held:
            pick = torch.randint(len(held), (3,), generator=generator).tolist()
            slots = [held[i] for i in pick]
            pool.incref(torch.tensor(slots))
            for s in slots:
                shadow[s] += 1
            held += slots
        elif held:
            pick = sorted(set(torch.randint(len(held), (4,), generator=generator).tolist()))
            slots = [held[i] for i in pick]
            pool.decref(torch.tensor(slots))
            for i in reversed(pick):
                held.pop(i)
            for s in slots:
                shadow[s] -= 1
        pool.check_invariants()
        assert pool.refcount.tolist() == shadow
    pool.decref(torch.tensor(held, dtype=torch.int64))
    assert pool.num_free == 64
    pool.check_invariants()
