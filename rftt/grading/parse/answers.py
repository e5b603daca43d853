"""Structured answers (sets, tuples, intervals, relations, matrices) over expressions."""

from __future__ import annotations

from dataclasses import dataclass

from rftt.grading.parse.errors import MathParseError, TooLarge
from rftt.grading.parse.expression import parse_expression
from rftt.grading.parse.labels import is_expression_label, split_label
from rftt.grading.parse.lexer import Token, tokenize
from rftt.grading.parse.linear import solve_for_one_variable
from rftt.grading.parse.nodes import has_symbols

MAX_ITEMS = 64       # elements of a set, tuple or matrix
MAX_PM = 3           # \pm signs in one answer (each one doubles the set)


@dataclass(frozen=True)
class Expr:
    node: tuple


@dataclass(frozen=True)
class Bracketed:
    """A tuple, an ordered pair or an interval: `(1,2)`, `[0,1)`, `(-\\infty, 3]`.
    An open interval and an ordered pair are written alike and compared alike."""
    left: str
    items: tuple
    right: str


@dataclass(frozen=True)
class SetOf:
    """Order-free: `\\{1,2\\}`, a bare list `1, 2`, or the two values of `a \\pm b`."""
    items: tuple


@dataclass(frozen=True)
class Union:
    parts: tuple


@dataclass(frozen=True)
class Relation:
    """`lhs op rhs` with op in =, !=, <, <= (`>` and `>=` are turned around)."""
    lhs: tuple
    op: str
    rhs: tuple


@dataclass(frozen=True)
class Matrix:
    rows: tuple   # tuple of tuples of nodes


@dataclass(frozen=True)
class Labelled:
    """`label op value` with op `=` or `in`: `y = 3`, `(a, b) = (4, 1)`, `x \\in [1, 4]`.
    Against a bare value only the value counts; against an equation the whole thing is
    one (`y = \\frac{x+1}{2}` is `x - 2y + 1 = 0`). `equation` is that reading, None when
    the label cannot be a side of an equation (`(p, q)`) or op is `in`."""
    label: str
    value: "Answer"
    equation: Relation | None


Answer = Expr | Bracketed | SetOf | Union | Relation | Matrix | Labelled

_OPENERS = {"(", "[", "{", "\\{"}
_CLOSERS = {")", "]", "}", "\\}"}


def parse_answer(text: str) -> Answer:
    """Parse a normalised answer string. Raises MathParseError (TooLarge for huge ones)."""
    tokens = tokenize(text)
    labelled = split_label(tokens)
    if labelled is None:
        return _structure(tokens)
    label, op, value_tokens = labelled
    value = _structure(value_tokens)
    equation = None
    if op == "=" and is_expression_label(label) and isinstance(value, Expr):
        try:
            equation = Relation(parse_expression(label), "=", value.node)
        except MathParseError:
            equation = None                     # `f(x, y)` is a label, not an expression
    return Labelled(" ".join(t.text for t in label), value, equation)


def _is_opener(t: Token) -> bool:
    return (t.kind == "open" and t.text in _OPENERS) or t.kind == "begin"


def _is_closer(t: Token) -> bool:
    return (t.kind == "close" and t.text in _CLOSERS) or t.kind == "end"


def _split_top(tokens: list[Token], kind: str) -> tuple[list[list[Token]], list[Token]]:
    """Split at tokens of `kind` outside any bracket; return the parts and the separators."""
    parts, separators, start, depth = [], [], 0, 0
    for k, t in enumerate(tokens):
        if _is_opener(t):
            depth += 1
        elif _is_closer(t):
            depth -= 1
            if depth < 0:
                raise MathParseError("unbalanced brackets")
        elif t.kind == kind and depth == 0:
            parts.append(tokens[start:k])
            separators.append(t)
            start = k + 1
    parts.append(tokens[start:])
    return parts, separators


def _encloses(tokens: list[Token]) -> bool:
    """Does the first token open a bracket that the last token closes? Bracket types may
    differ, as in the half-open interval `(1, 2]`."""
    if len(tokens) < 2 or tokens[0].kind != "open" or tokens[-1].kind != "close":
        return False
    depth = 0
    for k, t in enumerate(tokens):
        if t.kind == "open" and t.text in _OPENERS:
            depth += 1
        elif t.kind == "close" and t.text in _CLOSERS:
            depth -= 1
            if depth == 0:
                return k == len(tokens) - 1
    return False


def _structure(tokens: list[Token]) -> Answer:
    if not tokens:
        raise MathParseError("empty answer")
    parts, _ = _split_top(tokens, "cup")
    if len(parts) > 1:
        answers = tuple(_structure(p) for p in parts)
        if not all(isinstance(a, (Bracketed, SetOf)) for a in answers):
            raise MathParseError("\\cup joins intervals or sets")
        return Union(answers)
    tokens = _strip_assignment(tokens)
    items, _ = _split_top(tokens, "comma")
    if len(items) > 1:                                  # a bare list: 1, 2 or x=1, x=2
        return SetOf(_list_items(items))
    if _encloses(tokens) and tokens[0].text in ("(", "["):
        inner, _ = _split_top(tokens[1:-1], "comma")
        if len(inner) > 1:
            if len(inner) > MAX_ITEMS:
                raise TooLarge("too many items")
            return Bracketed(tokens[0].text, tuple(_structure(p) for p in inner), tokens[-1].text)
    if _encloses(tokens) and tokens[0].text == "\\{" and tokens[-1].text == "\\}":
        inner = tokens[1:-1]
        return SetOf(_list_items(_split_top(inner, "comma")[0]) if inner else ())
    if len(tokens) == 1 and tokens[0].kind == "word" and tokens[0].text == "emptyset":
        return SetOf(())
    if tokens[0].kind == "begin" and tokens[-1].kind == "end":
        return _matrix(tokens)
    if any(t.kind == "rel" for t in tokens):
        return _relation(tokens)
    if any(t.kind == "pm" for t in tokens):
        return SetOf(tuple(Expr(parse_expression(v)) for v in _expand_pm(tokens)))
    return Expr(parse_expression(tokens))


def _list_items(items: list[list[Token]]) -> tuple:
    if len(items) > MAX_ITEMS:
        raise TooLarge("too many items")
    answers = []
    for item in items:
        answer = _structure(item)
        if isinstance(answer, SetOf) and any(t.kind == "pm" for t in item) and not _encloses(item):
            answers.extend(answer.items)               # 1 \pm 2, 5 is three values
        else:
            answers.append(answer)
    return tuple(answers)


def _strip_assignment(tokens: list[Token]) -> list[Token]:
    """`x = 5` -> `5`, `x \\in (1, 2)` -> `(1, 2)`: the name of what was asked for is not
    part of the answer. Only a lone variable (possibly subscripted) is stripped, and only
    when no other relation follows (`x = y = 1` stays a relation)."""
    end = 1
    if len(tokens) >= 3 and tokens[0].kind == "letter" and tokens[1].kind == "op" and tokens[1].text == "_":
        end = 3
        if tokens[2].kind == "open":
            close = next((k for k in range(3, len(tokens)) if tokens[k].kind == "close"), None)
            end = close + 1 if close is not None else len(tokens)
    if (len(tokens) > end + 1 and tokens[0].kind == "letter" and tokens[end].kind == "rel"
            and tokens[end].text in ("=", "in")
            and not any(t.kind == "rel" for t in tokens[end + 1:])):
        return tokens[end + 1:]
    return tokens


def _expand_pm(tokens: list[Token]) -> list[list[Token]]:
    """`a \\pm b` -> [a + b, a - b] (\\mp the other way round)."""
    count = sum(t.kind == "pm" for t in tokens)
    if count > MAX_PM:
        raise TooLarge("too many \\pm")
    variants = [[]]
    for t in tokens:
        if t.kind != "pm":
            variants = [v + [t] for v in variants]
        else:
            first, second = t.text[0], t.text[1]
            variants = [v + [Token("op", s, t.pos)] for v in variants for s in (first, second)]
    return variants


_FLIP = {">": "<", ">=": "<="}


def _relation(tokens: list[Token]) -> Answer:
    pieces, separators = _split_top(tokens, "rel")
    ops = [t.text for t in separators]
    if "in" in ops:
        raise MathParseError("\\in only after a variable")
    nodes = [parse_expression(p) for p in pieces]
    if len(ops) == 1:
        lhs, op, rhs = nodes[0], ops[0], nodes[1]
        if op in _FLIP:
            lhs, op, rhs = rhs, _FLIP[op], lhs
        interval = _as_interval(lhs, op, rhs)
        if interval is None:
            interval = _solved_interval(lhs, op, rhs)
        return interval if interval is not None else Relation(lhs, op, rhs)
    if len(ops) == 2 and nodes[1][0] == "sym" and not has_symbols(nodes[0]) and not has_symbols(nodes[2]):
        # a chain 1 < x <= 3 (or 3 >= x > 1) is the interval (1, 3]
        if all(op in ("<", "<=") for op in ops):
            return Bracketed(_LEFT[ops[0]], (Expr(nodes[0]), Expr(nodes[2])), _RIGHT[ops[1]])
        if all(op in (">", ">=") for op in ops):
            return Bracketed(_LEFT[_FLIP[ops[1]]], (Expr(nodes[2]), Expr(nodes[0])), _RIGHT[_FLIP[ops[0]]])
    raise MathParseError("unsupported chain of relations")


_LEFT = {"<": "(", "<=": "["}
_RIGHT = {"<": ")", "<=": "]"}
_NEG_INFINITY = ("neg", ("const", "oo"))
_INFINITY = ("const", "oo")


def _solved_interval(lhs: tuple, op: str, rhs: tuple) -> Bracketed | None:
    """`-y < 2` is (-2, oo), `2x <= 6` is (-oo, 3]: a linear inequality in one variable,
    solved exactly (dividing by a negative coefficient turns it around)."""
    if op not in ("<", "<="):
        return None
    solved = solve_for_one_variable(lhs, rhs)
    if solved is None:
        return None
    a, b = solved                                  # a v + b op 0
    bound = Expr(("num", -b / a, None))
    if a > 0:
        return Bracketed("(", (Expr(_NEG_INFINITY), bound), _RIGHT[op])
    return Bracketed(_LEFT[op], (bound, Expr(_INFINITY)), ")")


def _as_interval(lhs: tuple, op: str, rhs: tuple) -> Bracketed | None:
    """`x > 3` is the interval (3, oo); `x <= 2` is (-oo, 2] (a variable against a constant)."""
    if op not in ("<", "<="):
        return None
    if lhs[0] == "sym" and not has_symbols(rhs):
        return Bracketed("(", (Expr(_NEG_INFINITY), Expr(rhs)), _RIGHT[op])
    if rhs[0] == "sym" and not has_symbols(lhs):
        return Bracketed(_LEFT[op], (Expr(lhs), Expr(_INFINITY)), ")")
    return None


def _matrix(tokens: list[Token]) -> Matrix:
    if tokens[0].text != tokens[-1].text:
        raise MathParseError("mismatched matrix environment")
    body = tokens[1:-1]
    rows, _ = _split_top(body, "rowsep")
    if rows and not rows[-1]:
        rows.pop()                                   # a trailing \\ before \end
    cells = [tuple(parse_expression(c) for c in _split_top(r, "amp")[0]) for r in rows]
    if not cells or len({len(r) for r in cells}) != 1:
        raise MathParseError("matrix rows differ in length")
    if sum(len(r) for r in cells) > MAX_ITEMS:
        raise TooLarge("matrix too large")
    return Matrix(tuple(cells))
