"""The SymPy comparer: what rational arithmetic leaves undecided (runs in the worker)."""

from __future__ import annotations

from fractions import Fraction

from rftt.grading import parse as mp
from rftt.grading.compare import ExactComparer

# Positive rationals substituted for symbols when testing an identity numerically.
_PROBES = (Fraction(7, 3), Fraction(11, 5), Fraction(13, 4), Fraction(17, 6), Fraction(19, 7),
           Fraction(23, 9), Fraction(29, 8))


class SympyComparer(ExactComparer):
    """Runs inside the worker process (SymPy is imported there)."""

    def scalar(self, pred: tuple, gold: tuple) -> bool | None:
        exact = super().scalar(pred, gold)
        if exact is not None:
            return exact
        import sympy as sp

        a, b = mp.to_sympy(pred), mp.to_sympy(gold)
        if any(x.has(sp.zoo, sp.nan) for x in (a, b)):
            return False                   # 1/0 is not an answer, and not equal to 2/0
        if a == b:
            return True
        if mp.has_symbols(pred) or mp.has_symbols(gold):
            return self._is_zero_function(a - b)
        if any(x.has(sp.oo, -sp.oo) for x in (a, b)):
            return False
        decimal = mp.decimal_literal(gold)
        if decimal is not None and not mp.has_decimal(pred):
            value, places = decimal
            error = sp.N(a - sp.Rational(value.numerator, value.denominator), 30)
            return bool(abs(error) < sp.Rational(1, 2 * 10 ** places))
        # Constants (roots, pi, e, logs) are compared at 60 significant digits: as good as
        # exact for answers, and far cheaper and more reliable than simplify().
        difference = sp.N(a - b, 60)
        if not difference.is_number or difference.has(sp.nan):
            return False
        scale = max(1, abs(sp.N(b, 20)))
        return bool(abs(difference) <= sp.Float(10) ** -40 * scale)

    @staticmethod
    def _is_zero_function(difference) -> bool:
        """Is an expression in variables identically zero? Expand; then evaluate at a few
        rational points (a nonzero expression vanishes at random points with probability
        ~0); then, if no point could be evaluated, simplify."""
        import sympy as sp

        difference = sp.expand(difference)
        if difference == 0:
            return True
        symbols = sorted(difference.free_symbols, key=str)
        evaluated = 0
        for probe in range(4):
            values = [_PROBES[(probe * 3 + k) % len(_PROBES)] for k in range(len(symbols))]
            point = {s: sp.Rational(v.numerator, v.denominator) for s, v in zip(symbols, values)}
            value = difference.evalf(40, subs=point)
            if not value.is_number or value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
                continue
            if abs(value) > 1e-25:
                return False
            evaluated += 1
        if evaluated >= 2:
            return True
        return sp.simplify(difference) == 0

    def relation(self, pred: mp.Relation, gold: mp.Relation) -> bool | None:
        """Same relation when lhs - rhs agree up to a constant factor: nonzero for = and
        !=, positive for < and <= (`2x + 2y < 2` is `x + y < 1`; `x + y > 1` is not).
        A variable against a constant (`x > 3`) was already turned into an interval."""
        if super().relation(pred, gold):
            return True
        import sympy as sp

        p = mp.to_sympy(pred.lhs) - mp.to_sympy(pred.rhs)
        g = mp.to_sympy(gold.lhs) - mp.to_sympy(gold.rhs)
        if p == 0 or g == 0:
            return p == g
        ratio = sp.simplify(p / g)
        if ratio.free_symbols or not ratio.is_number or ratio == 0 or ratio.has(sp.nan, sp.zoo):
            return False
        return bool(ratio.is_positive) if pred.op in ("<", "<=") else True
