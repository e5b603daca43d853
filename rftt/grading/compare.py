"""Structural comparison of parsed answers, and the exact (rational) comparer."""

from __future__ import annotations

from fractions import Fraction

from rftt.grading import parse as mp
from rftt.grading.normalize import same_text, strip_label


def _all_of(verdicts) -> bool | None:
    """Three-valued AND over an iterable of True / False / None (undecided)."""
    undecided = False
    for v in verdicts:
        if v is False:
            return False
        undecided |= v is None
    return None if undecided else True


def _perfect_matching(allowed: list[list[bool]]) -> bool:
    """Can every row be matched to its own column? (Kuhn's augmenting paths; n <= 64.)"""
    n = len(allowed)
    owner = [-1] * n

    def augment(row: int, seen: list[bool]) -> bool:
        for col in range(n):
            if allowed[row][col] and not seen[col]:
                seen[col] = True
                if owner[col] < 0 or augment(owner[col], seen):
                    owner[col] = row
                    return True
        return False

    return all(augment(row, [False] * n) for row in range(n))


def _same_multiset(pred: tuple, gold: tuple, comparer) -> bool | None:
    if len(pred) != len(gold):
        return False
    verdicts = [[compare_answers(p, g, comparer) for g in gold] for p in pred]
    if _perfect_matching([[v is True for v in row] for row in verdicts]):
        return True
    if not _perfect_matching([[v is not False for v in row] for row in verdicts]):
        return False
    return None


def compare_answers(pred: mp.Answer, gold: mp.Answer, comparer) -> bool | None:
    """Structural comparison; `comparer` decides scalars and relations. None = undecided."""
    if isinstance(pred, mp.Labelled) or isinstance(gold, mp.Labelled):
        return _compare_labelled(pred, gold, comparer)
    if type(pred) is not type(gold):
        return False
    if isinstance(pred, mp.Expr):
        return comparer.scalar(pred.node, gold.node)
    if isinstance(pred, mp.Bracketed):
        if (pred.left, pred.right, len(pred.items)) != (gold.left, gold.right, len(gold.items)):
            return False
        return _all_of(compare_answers(p, g, comparer) for p, g in zip(pred.items, gold.items))
    if isinstance(pred, mp.SetOf):
        return _same_multiset(pred.items, gold.items, comparer)
    if isinstance(pred, mp.Union):
        return _same_multiset(pred.parts, gold.parts, comparer)
    if isinstance(pred, mp.Matrix):
        if [len(r) for r in pred.rows] != [len(r) for r in gold.rows]:
            return False
        return _all_of(comparer.scalar(p, g) for pr, gr in zip(pred.rows, gold.rows) for p, g in zip(pr, gr))
    if isinstance(pred, mp.Relation):
        if pred.op != gold.op:
            return False
        return comparer.relation(pred, gold)
    raise TypeError(f"unknown answer type {type(pred).__name__}")


def _compare_labelled(pred: mp.Answer, gold: mp.Answer, comparer) -> bool | None:
    """A label (`y =`, `(a, b) =`, `f(x) =`) names what was asked for. Against a bare value
    only the value counts; the same label on both sides compares the values; otherwise
    (another label, an unlabelled equation) both are read as equations, and a side that
    cannot be one (`(p, q) = (1, 2)` against `x = 1`) is not equal."""
    if isinstance(pred, mp.Labelled) and isinstance(gold, mp.Labelled):
        if pred.label == gold.label:
            return compare_answers(pred.value, gold.value, comparer)
        return _compare_as_equations(pred.equation, gold.equation, comparer)
    labelled, other = (pred, gold) if isinstance(pred, mp.Labelled) else (gold, pred)
    if isinstance(other, mp.Relation):
        equation = labelled.equation
        return _compare_as_equations(*((equation, other) if labelled is pred else (other, equation)),
                                     comparer)
    if labelled is pred:
        return compare_answers(pred.value, gold, comparer)
    return compare_answers(pred, gold.value, comparer)


def _compare_as_equations(pred: mp.Relation | None, gold: mp.Relation | None, comparer) -> bool | None:
    if pred is None or gold is None:
        return False
    return compare_answers(pred, gold, comparer)


MIN_SIGNIFICANT_DIGITS = 2     # 0.33 stands for 1/3; 0.3 is too coarse to stand for anything


def rounds_repeating_fraction(decimal: tuple[Fraction, int], exact: Fraction) -> bool:
    """Is the decimal `exact` rounded at its last shown digit, where `exact` has no finite
    decimal expansion (0.33 or 0.333 for 1/3, 0.1666666666666667 for 1/6)? Such a fraction
    can only ever be written rounded. A fraction with a finite expansion (1/8 = 0.125) must
    be written in full, and one or two shown digits must be significant ones: 0.3 is not
    1/3, and neither is 0.34 nor the truncated 0.6666 for 2/3."""
    value, places = decimal
    if _terminates(exact):
        return False
    digits = str(abs(value.numerator * 10 ** places // value.denominator)).lstrip("0")
    if len(digits) < MIN_SIGNIFICANT_DIGITS:
        return False
    return abs(value - exact) < Fraction(1, 2 * 10 ** places)


def _terminates(q: Fraction) -> bool:
    d = q.denominator
    for prime in (2, 5):
        while d % prime == 0:
            d //= prime
    return d == 1


def _is_infinite(node: tuple) -> bool:
    return node == ("const", "oo") or node == ("neg", ("const", "oo"))


class ExactComparer:
    """Rational arithmetic only; says None when SymPy is needed."""

    def scalar(self, pred: tuple, gold: tuple) -> bool | None:
        if pred == gold:
            return True
        p, g = mp.to_fraction(pred), mp.to_fraction(gold)
        if p is None or g is None:
            if (_is_infinite(pred) and g is not None) or (_is_infinite(gold) and p is not None):
                return False
            return None
        if p == g:
            return True
        decimal = mp.decimal_literal(gold)
        if decimal is not None and not mp.has_decimal(pred):
            value, places = decimal
            return abs(p - value) < Fraction(1, 2 * 10 ** places)
        decimal = mp.decimal_literal(pred)
        if decimal is not None and not mp.has_decimal(gold):
            return rounds_repeating_fraction(decimal, g)
        return False

    def relation(self, pred: mp.Relation, gold: mp.Relation) -> bool | None:
        return True if (pred.lhs, pred.rhs) == (gold.lhs, gold.rhs) else None


def compare_texts(pred: str, gold: str, comparer) -> bool | None:
    """Compare two cleaned answer strings. Text the grammar cannot read (prose, unknown
    commands) is equal only when it is the same text once a `x =` label is dropped."""
    try:
        pred_answer, gold_answer = mp.parse_answer(pred), mp.parse_answer(gold)
    except mp.TooLarge:
        return False
    except mp.MathParseError:
        return same_text(strip_label(pred), strip_label(gold))
    try:
        return compare_answers(pred_answer, gold_answer, comparer)
    except mp.MathParseError:
        return False                      # too large to compute exactly (see parse.size)
