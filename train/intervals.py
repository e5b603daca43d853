"""95% intervals for accuracies: the Wilson score interval.

An accuracy measured on a few hundred problems (or a handful, in tests) is an estimate;
the tables and plots of train.reproduce show how far it could be off. Wilson rather than
the normal approximation p ± z·sqrt(p(1-p)/n): the latter collapses to a zero-width
interval at 0/n and n/n and leaves [0, 1] near them, exactly where small runs land
(E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
JASA 1927; Brown, Cai & DasGupta, Statistical Science 2001, recommend it).
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """(low, high) for a proportion `successes / n`; (0, 1) when n = 0 (nothing is known).

        centre = (p + z²/2n) / (1 + z²/n),  half = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    scale = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / scale
    # The exact ends are 0 at 0/n and 1 at n/n; rounding must not push them past.
    return max(0.0, centre - half) if successes else 0.0, min(1.0, centre + half) if successes < n else 1.0


def figure(successes: int, n: int) -> dict:
    """An accuracy as the results files write it: value, counts and its 95% interval."""
    low, high = wilson_interval(successes, n)
    return {"accuracy": successes / n if n else 0.0, "correct": successes, "n": n,
            "ci95": [round(low, 4), round(high, 4)]}
