"""The expression AST as SymPy objects (only in the grading worker)."""

from __future__ import annotations

from fractions import Fraction

from rftt.grading.parse.errors import MathParseError
from rftt.grading.parse.size import guard_factorial, guard_power


def to_sympy(node: tuple):
    """Build a SymPy expression from a size-checked AST. No strings reach SymPy."""
    import sympy as sp

    kind = node[0]
    if kind == "num":
        return sp.Rational(node[1].numerator, node[1].denominator)
    if kind == "sym":
        return sp.Symbol(node[1])
    if kind == "const":
        return {"pi": sp.pi, "E": sp.E, "I": sp.I, "oo": sp.oo}[node[1]]
    if kind == "add":
        return sp.Add(*[to_sympy(x) for x in node[1]])
    if kind == "mul":
        return sp.Mul(*[to_sympy(x) for x in node[1]])
    if kind == "neg":
        return -to_sympy(node[1])
    if kind == "inv":
        return sp.Pow(to_sympy(node[1]), -1)
    if kind == "pow":
        base, exponent = to_sympy(node[1]), to_sympy(node[2])
        if exponent.is_Rational:
            guard_power(Fraction(int(base.p), int(base.q)) if base.is_Rational else None,
                        Fraction(int(exponent.p), int(exponent.q)))
        return sp.Pow(base, exponent)
    if kind == "fact":
        argument = to_sympy(node[1])
        if argument.is_Integer:
            guard_factorial(int(argument))
        return sp.factorial(argument)
    if kind == "sqrt":
        return sp.sqrt(to_sympy(node[1]))
    if kind == "root":
        x, n = to_sympy(node[1]), to_sympy(node[2])
        if x.is_number and x.is_negative and n.is_integer and n.is_odd:
            return -sp.root(-x, n)                    # the real cube root of -8 is -2
        return sp.root(x, n)
    if kind == "abs":
        return sp.Abs(to_sympy(node[1]))
    if kind == "log":
        return sp.log(to_sympy(node[1]), to_sympy(node[2]))
    if kind == "func":
        name = "log" if node[1] == "ln" else node[1]
        fn = {"arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan}.get(name) or getattr(sp, name)
        return fn(to_sympy(node[2]))
    raise MathParseError(f"unknown node {kind!r}")
