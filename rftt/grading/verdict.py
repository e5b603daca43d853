"""is_equiv: normalise, compare exactly, then ask a SymPy worker."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from rftt.grading.compare import ExactComparer, compare_texts
from rftt.grading.normalize import MAX_ANSWER_CHARS, clean_answer, same_text
from rftt.grading.worker import POOL

_EXACT = ExactComparer()


def is_equiv(pred: str | None, gold: str | None, timeout: float = 2.0) -> bool:
    """Are two answers the same mathematical object? Either may still carry ``$...$``,
    ``\\boxed{}`` or a GSM8K ``#### n`` line.

    `timeout` bounds this one check (seconds) from the call to the verdict; when it runs
    out the answer counts as not equal. The steps before SymPy cannot be interrupted, so
    each is bounded instead: normalisation is linear in the text, answers longer than
    MAX_ANSWER_CHARS are not answers, and the parser refuses more than a fixed number of
    tokens, nesting levels and digits. SymPy gets what is left of the time and is killed
    with its worker when it runs past. (Starting a worker the first time is not counted;
    call warm_up() to pay for that up front.) Thread-safe; works in any thread.
    """
    deadline = time.monotonic() + timeout
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    p, g = clean_answer(pred), clean_answer(gold)
    if not p or not g or max(len(p), len(g)) > MAX_ANSWER_CHARS:
        return False
    if same_text(p, g):
        return True
    key = (p, g)
    with _LOCK:
        if key in _DECIDED:
            _DECIDED.move_to_end(key)
            return _DECIDED[key]
    verdict = compare_texts(p, g, _EXACT)
    if verdict is None:
        verdict = POOL.compare(p, g, deadline)
    if verdict is None:
        return False                       # out of time: not shown equal, and not cached
    with _LOCK:
        # Cached: an RL batch grades many rollouts against the same gold.
        _DECIDED[key] = verdict
        if len(_DECIDED) > _CACHE_SIZE:
            _DECIDED.popitem(last=False)
    return verdict


_CACHE_SIZE = 16384
_DECIDED: OrderedDict[tuple[str, str], bool] = OrderedDict()   # least recently used first
_LOCK = threading.Lock()
