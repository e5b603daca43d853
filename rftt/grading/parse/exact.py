"""Exact rational values of expressions, without SymPy."""

from __future__ import annotations

import math
from fractions import Fraction

from rftt.grading.parse.size import guard_factorial, guard_power


def to_fraction(node: tuple) -> Fraction | None:
    """The exact rational value of a node, or None if it is not plainly rational.
    Cheap and exact: the grader decides most answers here without SymPy. The node must
    have passed check_size (every parsed node has), so powers are bounded."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind in ("neg", "abs", "inv", "sqrt"):
        v = to_fraction(node[1])
        if v is None:
            return None
        if kind == "neg":
            return -v
        if kind == "abs":
            return abs(v)
        if kind == "inv":
            return 1 / v if v != 0 else None
        return _exact_sqrt(v)
    if kind in ("add", "mul"):
        values = [to_fraction(x) for x in node[1]]
        if any(v is None for v in values):
            return None
        return sum(values, Fraction(0)) if kind == "add" else math.prod(values, start=Fraction(1))
    if kind == "pow":
        base, exp = to_fraction(node[1]), to_fraction(node[2])
        if base is None or exp is None or exp.denominator != 1 or (base == 0 and exp < 0):
            return None
        guard_power(base, exp)
        return base ** int(exp)
    if kind == "fact":
        v = to_fraction(node[1])
        if v is None or v.denominator != 1 or v < 0:
            return None
        guard_factorial(int(v))
        return Fraction(math.factorial(int(v)))
    return None


def _exact_sqrt(v: Fraction) -> Fraction | None:
    if v < 0:
        return None
    p, q = math.isqrt(v.numerator), math.isqrt(v.denominator)
    return Fraction(p, q) if p * p == v.numerator and q * q == v.denominator else None
