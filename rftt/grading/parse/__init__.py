"""A small, safe parser for math answers (LaTeX or plain text) -> a structured answer.

Why our own parser: SymPy's ``parse_expr``/``sympify`` run Python ``eval`` on their input,
and a reward function reads text written by the model being trained. Here the input is
cut into whitelisted tokens, a recursive-descent parser builds a tiny AST of tuples, and
only that AST is turned into SymPy objects. Anything outside the grammar is refused with
``MathParseError``; nothing is ever evaluated as code.

The AST (nested tuples, hashable, comparable):

    ("num", Fraction, places)   places = digits after the point, None for an integer
    ("sym", name)               single letters, greek letters, x_1
    ("const", "pi"|"E"|"I"|"oo")
    ("add", (terms...))   ("mul", (factors...))   ("neg", x)   ("inv", x)   ("pow", b, e)
    ("fact", x)   ("sqrt", x)   ("root", x, n)   ("abs", x)   ("func", name, x)   ("log", x, base)

Every expression is checked by a size estimate when it is built, so ``10^{10^{10}}``,
``1000!`` or ``2^{2^{2^{20}}}`` are refused in microseconds instead of being computed.

Structured answers on top of expressions: ``Expr``, ``Bracketed`` (tuples, points and
intervals: ``(1,2)``, ``[0, \\infty)``), ``SetOf`` (``\\{1,2\\}``, bare lists ``1, 2``,
``a \\pm b``; order-free), ``Union`` (``\\cup``), ``Relation`` (``x+y=1``, inequalities),
``Matrix`` (``\\begin{pmatrix}``).
"""

from rftt.grading.parse.answers import (Answer, Bracketed, Expr, Labelled, Matrix, Relation, SetOf,
                                        Union, parse_answer)
from rftt.grading.parse.errors import MathParseError, TooLarge
from rftt.grading.parse.exact import to_fraction
from rftt.grading.parse.expression import parse_expression
from rftt.grading.parse.lexer import Token, tokenize
from rftt.grading.parse.nodes import decimal_literal, has_decimal, has_symbols
from rftt.grading.parse.to_sympy import to_sympy
