"""One seed for each random choice of a run, derived from the run's --seed and what the
choice is: `derive_seed(seed, "rollouts", iteration, rank)`. Distinct choices get
unrelated streams (hand-made mixes such as seed·1_000_003 + iteration·101 + rank can
collide across choices), and the same choice gets the same stream on a resume, so a
resumed run draws exactly what the uninterrupted one drew."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 32-bit seed, a pure function of (seed, *parts). 32 bits leave room for the
    engine's per-branch streams, which multiply it and count up in int64."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")
