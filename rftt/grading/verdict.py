"""is_equiv: normalise, compare exactly, then ask a SymPy worker."""

from __future__ import annotations

from functools import lru_cache

from rftt.grading.compare import ExactComparer, compare_texts
from rftt.grading.normalize import normalize_answer, same_text
from rftt.grading.worker import POOL

_EXACT = ExactComparer()


class _OutOfTime(Exception):
    pass


def is_equiv(pred: str | None, gold: str | None, timeout: float = 2.0) -> bool:
    """Are two answers the same mathematical object? Either may still carry ``$...$``,
    ``\\boxed{}`` or a GSM8K ``#### n`` line.

    `timeout` bounds the SymPy work of this one check (seconds); when it runs out the
    answer counts as not equal. (Starting a worker the first time is not counted; call
    warm_up() to pay for that up front.) Thread-safe; works in any thread.
    """
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False
    if same_text(p, g):
        return True
    try:
        return _verdict(p, g, timeout)
    except _OutOfTime:
        return False


@lru_cache(maxsize=16384)
def _verdict(pred: str, gold: str, timeout: float) -> bool:
    # Cached: an RL batch grades many rollouts against the same gold. A timeout raises,
    # and lru_cache does not cache exceptions, so only real verdicts are remembered.
    verdict = compare_texts(pred, gold, _EXACT)
    if verdict is not None:
        return verdict
    verdict = POOL.compare(pred, gold, timeout)
    if verdict is None:
        raise _OutOfTime
    return verdict
