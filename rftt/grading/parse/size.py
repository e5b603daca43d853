"""A size estimate that refuses huge expressions before anything is built."""

from __future__ import annotations

import cmath
import math
from fractions import Fraction

from rftt.grading.parse.errors import MathParseError, TooLarge
from rftt.grading.parse.nodes import child_nodes, has_symbols

MAX_DIGITS = 2000    # estimated decimal digits of any exact number we agree to build
MAX_EXPONENT = 1_000_000        # |n| in b^n, whatever b is
MAX_FACTORIAL_DIGITS = MAX_DIGITS


def _digits(q: Fraction) -> float:
    """Decimal digits of numerator and denominator together (log10, so 3 counts 0.48)."""
    return (math.log10(abs(q.numerator)) if q.numerator else 0.0) + math.log10(q.denominator)


def check_size(node: tuple) -> None:
    """Refuse expressions whose exact value would be too large to build, before building
    anything: estimate the digits of every intermediate result from float approximations.
    Raises TooLarge. (The exact builders re-check powers and factorials with exact values,
    since a float approximation can hide a huge exponent behind a cancellation.)"""
    _size(node)


_CMATH = {"sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "arcsin": cmath.asin,
          "arccos": cmath.acos, "arctan": cmath.atan, "sinh": cmath.sinh, "cosh": cmath.cosh,
          "tanh": cmath.tanh, "log": cmath.log, "ln": cmath.log, "exp": cmath.exp,
          "cot": lambda z: 1 / cmath.tan(z), "sec": lambda z: 1 / cmath.cos(z),
          "csc": lambda z: 1 / cmath.sin(z)}


def _finite(v: complex | None) -> complex | None:
    return v if v is not None and cmath.isfinite(v) else None


def _size(node: tuple) -> tuple[float, complex | None]:
    """(estimated digits of the exact result, complex approximation or None if unknown:
    a symbol, infinity, or a value too large for a float)."""
    kind = node[0]
    if kind == "num":
        d = _digits(node[1])
        if d > MAX_DIGITS:
            raise TooLarge("number literal too long")
        return d, complex(float(node[1])) if d < 300 else None
    if kind == "sym":
        return 1.0, None
    if kind == "const":
        return 1.0, {"pi": complex(math.pi), "E": complex(math.e), "I": 1j}.get(node[1])
    if kind in ("add", "mul"):
        parts = [_size(x) for x in node[1]]
        d = sum(p[0] for p in parts)
        if d > MAX_DIGITS:
            raise TooLarge("expression too large")
        values = [p[1] for p in parts]
        if any(v is None for v in values):
            return d, None
        return d, _finite(sum(values) if kind == "add" else math.prod(values))
    if kind == "pow":
        return _size_power(node)
    if kind == "fact":
        return _size_factorial(node)
    children = [_size(x) for x in child_nodes(node)]
    d = sum(c[0] for c in children)
    values = [c[1] for c in children]
    if any(v is None for v in values):
        return d, None
    try:
        if kind == "neg":
            v = -values[0]
        elif kind == "abs":
            v = complex(abs(values[0]))
        elif kind == "inv":
            v = 1 / values[0]
        elif kind == "sqrt":
            v = cmath.sqrt(values[0])
        elif kind == "root":
            v = values[0] ** (1 / values[1])
        elif kind == "log":
            v = cmath.log(values[0]) / cmath.log(values[1])
        elif kind == "func":
            v = _CMATH[node[1]](values[0])
        else:
            raise MathParseError(f"unknown node {kind!r}")
    except (ZeroDivisionError, OverflowError, ValueError):
        return d, None
    return d, _finite(v)


def _size_power(node: tuple) -> tuple[float, complex | None]:
    db, vb = _size(node[1])
    de, ve = _size(node[2])
    if ve is None:
        if has_symbols(node[2]):
            return db + de, None       # 2^x: SymPy keeps it unevaluated
        raise TooLarge("cannot bound the exponent")
    if abs(ve) > MAX_EXPONENT:
        raise TooLarge("exponent too large")
    d = db * max(abs(ve), 1.0)         # digits(b^e) ~ e * digits(b)
    if d > MAX_DIGITS:
        raise TooLarge("power too large")
    if vb is None or d >= 300:
        return d, None
    try:
        return d, _finite(vb ** ve)
    except (ZeroDivisionError, OverflowError):
        return d, None


def _size_factorial(node: tuple) -> tuple[float, complex | None]:
    d, v = _size(node[1])
    if v is None:
        if has_symbols(node[1]):
            return d + 1, None         # n!
        raise TooLarge("cannot bound the factorial")
    if v.imag != 0 or v.real < 0 or v.real != int(v.real):
        return d + 1, None             # SymPy decides what (1/2)! or (-1)! is
    if v.real > 10_000 or _factorial_digits(int(v.real)) > MAX_FACTORIAL_DIGITS:
        raise TooLarge("factorial too large")
    digits = _factorial_digits(int(v.real))
    return max(d, digits), complex(math.factorial(int(v.real))) if digits < 300 else None


def _factorial_digits(n: int) -> float:
    return math.lgamma(n + 1) / math.log(10)


def guard_power(base: Fraction | None, exponent: Fraction) -> None:
    """Exact re-check before computing base**exponent (see check_size)."""
    if abs(exponent) > MAX_EXPONENT:
        raise TooLarge("exponent too large")
    if base is not None and _digits(base) * abs(exponent) > MAX_DIGITS:
        raise TooLarge("power too large")


def guard_factorial(n: int) -> None:
    if n > 10_000 or _factorial_digits(n) > MAX_FACTORIAL_DIGITS:
        raise TooLarge("factorial too large")
