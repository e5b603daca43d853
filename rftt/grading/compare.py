"""Structural comparison of parsed answers, and the exact (rational) comparer."""

from __future__ import annotations

from fractions import Fraction

from rftt.grading import parse as mp


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
        return False

    def relation(self, pred: mp.Relation, gold: mp.Relation) -> bool | None:
        return True if (pred.lhs, pred.rhs) == (gold.lhs, gold.rhs) else None


def compare_texts(pred: str, gold: str, comparer) -> bool | None:
    try:
        return compare_answers(mp.parse_answer(pred), mp.parse_answer(gold), comparer)
    except mp.MathParseError:
        return False                      # not an answer we can read, or too large
