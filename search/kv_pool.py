"""The KV pool: one slot per cached token, a free list, and reference counts.

Every layer keeps its keys and values in one tensor of *slots*, the layout the attention
kernels read (kernels/):

    k[layer]: [num_slots, n_kv_heads, head_dim]     (the same for v)

A slot holds one token's K and V; a sequence is a list of slot indices (page size 1), so
a branch of the search tree can fork after any token. This file only manages which slots
are in use. What a slot *means* (which node of which tree owns it) is the token tree's
business (search/token_tree.py).

Bookkeeping (the free list and the reference counts) always lives on the CPU, whatever
the storage device: checks like "is this slot already free?" must raise *before* the pool
changes, and that needs the values on the host anyway. Slot tensors come back as CPU
int64; the engine moves a step's slots to the GPU in one copy.

The reference count of a slot is the number of holders that will each call `decref`
once. `alloc` hands out slots with a count of 1; a slot returns to the free list when its
count reaches 0. Two holders can therefore share a slot safely (`incref`), and a release
path that runs twice is caught as a double free instead of freeing a slot someone else
has since been given (two release paths for one slot are a classic paged-cache bug).
"""

from __future__ import annotations

import torch


class KVPoolExhausted(RuntimeError):
    """More slots were asked for than are free (after whatever eviction was possible)."""

    def __init__(self, message: str, needed: int, free: int):
        super().__init__(message)
        self.needed = needed
        self.free = free


def _require(condition: bool, message: str) -> None:
    # Not `assert`: invariant checks must survive `python -O`.
    if not condition:
        raise AssertionError(message)


class KVPool:
    """Per-layer K/V storage plus slot allocation with reference counts.

    With `num_layers=0` (the default) no K/V storage is allocated: the pool is pure
    bookkeeping, which is what the search-tree tests use.
    """

    def __init__(
        self,
        num_slots: int,
        num_layers: int = 0,
        n_kv_heads: int = 0,
        head_dim: int = 0,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
    ):
        if num_slots <= 0:
            raise ValueError(f"num_slots must be positive, got {num_slots}")
        self.num_slots = num_slots
        # k, v: [num_layers, num_slots, n_kv_heads, head_dim]; k[layer] is the layer's pool.
        # Zeros rather than empty: a kernel that wrongly reads an unwritten slot then reads
        # zeros, not NaN garbage that would be much harder to trace.
        storage_shape = (num_layers, num_slots, n_kv_heads, head_dim)
        self.k = torch.zeros(storage_shape, dtype=dtype, device=device)
        self.v = torch.zeros(storage_shape, dtype=dtype, device=device)

        # The free list is a stack in a tensor: alloc takes a slice off the top and free
        # pushes a slice back, so allocating 500 slots is a handful of Python operations.
        # free_stack[:num_free] are the free slots; the top is the end. It starts reversed
        # so that a fresh pool hands out 0, 1, 2, ... (neighbouring tokens, neighbouring
        # memory).
        self._free_stack = torch.arange(num_slots - 1, -1, -1, dtype=torch.int64)
        self._num_free = num_slots
        self.refcount = torch.zeros(num_slots, dtype=torch.int32)

    @property
    def num_free(self) -> int:
        return self._num_free

    @property
    def num_used(self) -> int:
        return self.num_slots - self._num_free

    def alloc(self, n: int) -> torch.Tensor:
        """Takes `n` free slots; returns them as int64[n], each with reference count 1."""
        if n < 0:
            raise ValueError(f"cannot allocate a negative number of slots ({n})")
        if n > self._num_free:
            raise KVPoolExhausted(
                f"KV pool exhausted: {n} slots needed, {self._num_free} free "
                f"of {self.num_slots}",
                needed=n,
                free=self._num_free,
            )
        top = self._num_free
        slots = self._free_stack[top - n : top].flip(0)  # flip copies: pops in stack order
        self._num_free = top - n
        self.refcount[slots] = 1
        return slots

    def incref(self, slots: torch.Tensor) -> None:
        """Adds one holder to each slot (a slot listed twice gets two)."""
        slots = self._check_in_range(slots)
        if slots.numel() == 0:
            return
        # Only a slot someone already holds can gain a holder: a free slot is still on the
        # free list, and giving it a count would let alloc hand it out while it is in use.
        free = slots[self.refcount[slots] == 0]
        if free.numel():
            raise ValueError(f"incref of free slots {free.unique().tolist()[:8]}: allocate first")
        self.refcount.index_add_(0, slots, torch.ones_like(slots, dtype=torch.int32))

    def decref(self, slots: torch.Tensor) -> None:
        """Drops one holder from each slot; slots whose count reaches 0 become free.

        Everything is checked before anything changes, so a bad call leaves the pool
        exactly as it was.
        """
        slots = self._check_in_range(slots)
        if slots.numel() == 0:
            return
        unique, times = slots.unique(return_counts=True)
        held = self.refcount[unique]
        over_released = unique[held < times]
        if over_released.numel():
            raise ValueError(
                f"double free: slots {over_released.tolist()[:8]} are released more times "
                f"than they are held (counts {held[held < times].tolist()[:8]})"
            )
        self.refcount.index_add_(0, slots, -torch.ones_like(slots, dtype=torch.int32))
        freed = unique[self.refcount[unique] == 0]
        top = self._num_free
        # Pushed reversed so the next alloc gets them back in ascending order.
        self._free_stack[top : top + freed.numel()] = freed.flip(0)
        self._num_free = top + freed.numel()

    def check_invariants(self) -> None:
        """Raises AssertionError unless every slot is free or held, never both, never lost."""
        _require(0 <= self._num_free <= self.num_slots, f"num_free={self._num_free} out of range")
        _require(bool((self.refcount >= 0).all()), "negative reference count")
        free = self._free_stack[: self._num_free]
        _require(
            bool(((free >= 0) & (free < self.num_slots)).all()),
            "free list holds an out-of-range slot",
        )
        # No duplicates: a slot listed twice would be handed to two owners.
        _require(free.unique().numel() == free.numel(), "free list holds a slot twice")
        # Free means unheld: a slot on the free list with holders would be reused under them.
        _require(bool((self.refcount[free] == 0).all()), "a slot is both free and held")
        # And unheld means free: an unheld slot missing from the list is lost for good.
        num_unheld = int((self.refcount == 0).sum())
        _require(
            num_unheld == self._num_free,
            f"{num_unheld} unheld slots but {self._num_free} on the free list (slots lost)",
        )

    def _check_in_range(self, slots: torch.Tensor) -> torch.Tensor:
        slots = torch.as_tensor(slots, dtype=torch.int64).reshape(-1).cpu()
        if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= self.num_slots):
            raise IndexError(f"slot out of range [0, {self.num_slots}): {slots.tolist()[:8]}")
        return slots
