"""The name of what was asked for, written before the answer: `x = 5`, `AB = 5`,
`f(x) = x^2 + 1`, `(p, q) = (2, 3)`, `x \\in [1, 4]`.

A label is recognised only in these shapes, so an equation such as `2x = 6` or
`x - 2y + 1 = 0` is never mistaken for a labelled value."""

from __future__ import annotations

from rftt.grading.parse.lexer import Token

_LABEL_OPS = ("=", "in")
_MAX_NAME_LETTERS = 3        # `AB`, `ABC` (segments, triangles); longer runs are products


def split_label(tokens: list[Token]) -> tuple[list[Token], str, list[Token]] | None:
    """(label, op, value) when the tokens are `label = value` or `label \\in value` and
    no other relation follows; None otherwise."""
    at = next((k for k, t in enumerate(tokens) if t.kind == "rel"), None)
    if at is None or tokens[at].text not in _LABEL_OPS or at + 1 == len(tokens):
        return None
    if any(t.kind == "rel" for t in tokens[at + 1:]):
        return None                                    # `x = y = 1` is a relation
    label = tokens[:at]
    if not (_is_name(label) or _is_application(label) or _is_tuple_of_names(label)):
        return None
    return label, tokens[at].text, tokens[at + 1:]


def is_expression_label(label: list[Token]) -> bool:
    """Can the label stand as the left side of an equation (`y`, `f(x)`, not `(p, q)`)?"""
    return not _is_tuple_of_names(label)


def _is(t: Token, kind: str, text: str | None = None) -> bool:
    return t.kind == kind and (text is None or t.text == text)


def _is_name(tokens: list[Token]) -> bool:
    """`x`, `AB`, `\\theta`, `x_1`, `a_n`, `x_{12}`."""
    if 1 <= len(tokens) <= _MAX_NAME_LETTERS and all(_is(t, "letter") for t in tokens):
        return True
    if len(tokens) < 3 or not _is(tokens[0], "letter") or not _is(tokens[1], "op", "_"):
        return False
    rest = tokens[2:]
    if len(rest) == 1:
        return rest[0].kind in ("letter", "num")
    return (len(rest) >= 3 and _is(rest[0], "open", "{") and _is(rest[-1], "close", "}")
            and all(t.kind in ("letter", "num") for t in rest[1:-1]))


def _is_application(tokens: list[Token]) -> bool:
    """`f(x)`, `g(2)`, `f(x, y)`: one letter applied to letters or numbers."""
    return (len(tokens) >= 4 and _is(tokens[0], "letter") and _is(tokens[1], "open", "(")
            and _is(tokens[-1], "close", ")") and _alternates(tokens[2:-1], ("letter", "num")))


def _is_tuple_of_names(tokens: list[Token]) -> bool:
    """`(p, q)`, `(a, b, c)`."""
    return (len(tokens) >= 5 and _is(tokens[0], "open", "(") and _is(tokens[-1], "close", ")")
            and _alternates(tokens[1:-1], ("letter",)))


def _alternates(tokens: list[Token], kinds: tuple[str, ...]) -> bool:
    """item, item, ...: odd positions commas, even positions of the given kinds."""
    if len(tokens) % 2 == 0:
        return False
    return all((t.kind == "comma") if k % 2 else (t.kind in kinds) for k, t in enumerate(tokens))
