"""Linear forms of expressions, exactly: `3 - x` is {x: -1, 1: 3}. An inequality in one
variable is solved with them (`-y < 2` is `y > -2`) and becomes the interval it
describes, so it compares equal to every other way of writing that interval."""

from __future__ import annotations

from fractions import Fraction

from rftt.grading.parse.exact import to_fraction

CONSTANT = ""                      # the key of the constant term (no variable is named "")


def linear_form(node: tuple) -> dict[str, Fraction] | None:
    """{variable: coefficient, CONSTANT: term}, or None when the expression is not linear
    with rational coefficients."""
    kind = node[0]
    if kind == "sym":
        return {node[1]: Fraction(1)}
    if kind == "neg":
        inner = linear_form(node[1])
        return None if inner is None else {k: -v for k, v in inner.items()}
    if kind == "add":
        total: dict[str, Fraction] = {}
        for term in node[1]:
            form = linear_form(term)
            if form is None:
                return None
            for k, v in form.items():
                total[k] = total.get(k, Fraction(0)) + v
        return total
    if kind == "mul":
        scale, variable_part = Fraction(1), None
        for factor in node[1]:
            value = to_fraction(factor)
            if value is not None:
                scale *= value
            elif variable_part is None:
                variable_part = linear_form(factor)
                if variable_part is None:
                    return None
            else:
                return None                        # x * y is not linear
        if variable_part is None:
            return {CONSTANT: scale}
        return {k: v * scale for k, v in variable_part.items()}
    value = to_fraction(node)
    return None if value is None else {CONSTANT: value}


def solve_for_one_variable(lhs: tuple, rhs: tuple) -> tuple[Fraction, Fraction] | None:
    """(a, b) with lhs - rhs = a * v + b, a != 0, when exactly one variable v occurs."""
    left, right = linear_form(lhs), linear_form(rhs)
    if left is None or right is None:
        return None
    for k, v in right.items():
        left[k] = left.get(k, Fraction(0)) - v
    variables = [k for k, v in left.items() if k != CONSTANT and v != 0]
    if len(variables) != 1:
        return None
    return left[variables[0]], left.get(CONSTANT, Fraction(0))
