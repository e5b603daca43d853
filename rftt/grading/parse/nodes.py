"""Questions about an expression AST that every later stage asks."""

from __future__ import annotations

from fractions import Fraction


def decimal_literal(node: tuple) -> tuple[Fraction, int] | None:
    """(value, places) if the node is a plain decimal number such as 0.33 or -2.5."""
    if node[0] == "neg":
        inner = decimal_literal(node[1])
        return (-inner[0], inner[1]) if inner else None
    if node[0] == "num" and node[2]:
        return node[1], node[2]
    return None


def has_decimal(node: tuple) -> bool:
    if node[0] == "num":
        return node[2] is not None
    return any(isinstance(x, tuple) and has_decimal(x) for x in child_nodes(node))


def has_symbols(node: tuple) -> bool:
    if node[0] == "sym":
        return True
    return any(isinstance(x, tuple) and has_symbols(x) for x in child_nodes(node))


def child_nodes(node: tuple) -> list:
    if node[0] in ("add", "mul"):
        return list(node[1])
    return [x for x in node[1:] if isinstance(x, tuple)]
