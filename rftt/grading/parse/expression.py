"""Recursive descent from tokens to the expression AST (nested tuples)."""

from __future__ import annotations

from fractions import Fraction

from rftt.grading.parse.errors import MathParseError, TooLarge
from rftt.grading.parse.lexer import FUNCTIONS, Token
from rftt.grading.parse.size import check_size

MAX_DEPTH = 60       # nesting of parentheses / exponents / signs

_CLOSER = {"(": ")", "[": "]", "{": "}", "\\{": "\\}"}


class _ExpressionParser:
    """Recursive descent over one token list:

        expr    := term (("+"|"-") term)*
        term    := signed (("*"|"/") signed | implicit-factor)*
        signed  := ("+"|"-")* power
        power   := postfix ("^" exponent)?
        postfix := primary "!"*
        primary := number | variable | constant | "(" expr ")" | "{" expr "}"
                 | \\frac arg arg | \\sqrt[n]? arg | function arg | "|" expr "|"

    LaTeX reading of unbraced arguments: `\\frac12` is 1/2, `x^23` is x^2 followed by 3
    (refused: a number may not directly follow a number), `\\sqrt3` is sqrt(3).
    """

    def __init__(self, tokens: list[Token]):
        self.tokens = list(tokens)   # a copy: unbraced digits are split in place
        self.i = 0
        self.depth = 0
        self.split_at: set[int] = set()   # positions of digits left over by a split

    def parse(self) -> tuple:
        if not self.tokens:
            raise MathParseError("empty expression")
        node = self.expr()
        if self.i != len(self.tokens):
            raise MathParseError(f"unexpected {self.tokens[self.i].text!r}")
        return node

    # -- helpers
    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def at(self, kind: str, text: str | None = None) -> bool:
        t = self.peek()
        return t is not None and t.kind == kind and (text is None or t.text == text)

    def take(self) -> Token:
        t = self.peek()
        if t is None:
            raise MathParseError("unexpected end of expression")
        self.i += 1
        return t

    def expect(self, kind: str, text: str) -> None:
        if not self.at(kind, text):
            raise MathParseError(f"expected {text!r}")
        self.i += 1

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TooLarge("expression nested too deeply")

    # -- grammar
    def expr(self) -> tuple:
        self.nest()
        terms = [self.term()]
        while self.at("op", "+") or self.at("op", "-"):
            sign = self.take().text
            t = self.term()
            terms.append(t if sign == "+" else ("neg", t))
        self.depth -= 1
        return terms[0] if len(terms) == 1 else ("add", tuple(terms))

    def term(self) -> tuple:
        factors = [self.signed()]
        while True:
            if self.at("op", "*"):
                self.take()
                factors.append(self.signed())
            elif self.at("op", "/"):
                self.take()
                factors.append(("inv", self.signed()))
            elif self.starts_factor():
                after_number = self.tokens[self.i - 1].kind == "num"
                if self.at("num") and (after_number or self.peek().pos in self.split_at):
                    # `2 3`, or `x^23` / `2^10` (LaTeX reads x^2 3, a writer may mean x^{23})
                    raise MathParseError("a number directly after a number is ambiguous")
                mixed = after_number and self.at("word", "frac") and len(factors) == 1
                factor = self.power()
                whole = _mixed_number(factors[0], factor) if mixed else None
                if whole is not None:
                    factors[0] = whole
                else:
                    factors.append(factor)
            else:
                break
        return factors[0] if len(factors) == 1 else ("mul", tuple(factors))

    def starts_factor(self) -> bool:
        t = self.peek()
        if t is None:
            return False
        if t.kind in ("num", "letter"):
            return True
        if t.kind == "open":
            return t.text in ("(", "{")
        return t.kind == "word" and t.text != "emptyset"

    def signed(self) -> tuple:
        negative = False
        while self.at("op", "+") or self.at("op", "-"):
            negative ^= self.take().text == "-"
        node = self.power()
        return ("neg", node) if negative else node

    def power(self) -> tuple:
        base = self.postfix()
        if self.at("op", "^"):
            self.take()
            return ("pow", base, self.exponent())
        return base

    def exponent(self) -> tuple:
        """After `^`: a braced group, a sign, one digit, or one atom; right-associative."""
        self.nest()
        if self.at("op", "-") or self.at("op", "+"):
            negative = self.take().text == "-"
            node = self.exponent()
            node = ("neg", node) if negative else node
        else:
            node = self.single_argument()
            while self.at("op", "!"):
                self.take()
                node = ("fact", node)
            if self.at("op", "^"):
                self.take()
                node = ("pow", node, self.exponent())
        self.depth -= 1
        return node

    def postfix(self) -> tuple:
        node = self.primary()
        while self.at("op", "!"):
            self.take()
            node = ("fact", node)
        return node

    def single_argument(self) -> tuple:
        """An argument of \\frac, \\sqrt or ^ without braces takes one character (LaTeX)."""
        t = self.peek()
        if t is not None and t.kind == "num" and len(t.text) > 1:
            self.tokens[self.i] = Token("num", t.text[1:], t.pos + 1)
            self.split_at.add(t.pos + 1)
            return _number(t.text[0])
        if t is not None and t.kind == "open" and t.text == "{":
            return self.primary()
        if t is not None and t.kind in ("num", "letter", "word", "open"):
            return self.primary()
        raise MathParseError("missing argument")

    def primary(self) -> tuple:
        self.nest()
        node = self._primary()
        self.depth -= 1
        return node

    def _primary(self) -> tuple:
        t = self.take()
        if t.kind == "num":
            return _number(t.text)
        if t.kind == "letter":
            return self.variable(t.text)
        if t.kind == "open" and t.text in ("(", "[", "{"):
            inner = self.expr()
            self.expect("close", _CLOSER[t.text])
            return inner
        if t.kind == "op" and t.text == "|":
            inner = self.expr()
            self.expect("op", "|")
            return ("abs", inner)
        if t.kind == "word":
            return self.word(t.text)
        raise MathParseError(f"unexpected {t.text!r}")

    def variable(self, name: str) -> tuple:
        if self.at("op", "_"):
            self.take()
            sub = self.subscript()
            return ("sym", f"{name}_{sub}")
        if name == "e":
            return ("const", "E")
        if name == "i":
            return ("const", "I")
        return ("sym", name)

    def subscript(self) -> str:
        """x_1, x_{12}, a_n: the subscript is part of the variable's name."""
        if self.at("open", "{"):
            self.take()
            parts = []
            while not self.at("close", "}"):
                t = self.take()
                if t.kind not in ("num", "letter"):
                    raise MathParseError("unsupported subscript")
                parts.append(t.text)
            self.take()
            if not parts:
                raise MathParseError("empty subscript")
            return "".join(parts)
        t = self.take()
        if t.kind == "num":
            if len(t.text) > 1:
                self.i -= 1
                self.tokens[self.i] = Token("num", t.text[1:], t.pos + 1)
                self.split_at.add(t.pos + 1)
            return t.text[0]
        if t.kind == "letter":
            return t.text
        raise MathParseError("unsupported subscript")

    def word(self, name: str) -> tuple:
        if name == "pi":
            return ("const", "pi")
        if name == "oo":
            return ("const", "oo")
        if name == "frac":
            numerator = self.single_argument()
            denominator = self.single_argument()
            return ("mul", (numerator, ("inv", denominator)))
        if name == "sqrt":
            if self.at("open", "["):
                self.take()
                degree = self.expr()
                self.expect("close", "]")
                return ("root", self.single_argument(), degree)
            return ("sqrt", self.single_argument())
        if name in FUNCTIONS:
            return self.function(name)
        raise MathParseError(f"{name!r} is not allowed here")

    def function(self, name: str) -> tuple:
        power = None
        base = None
        if name == "log" and self.at("op", "_"):
            self.take()
            base = self.single_argument()
        if self.at("op", "^"):                       # \sin^2 x means (\sin x)^2
            self.take()
            power = self.exponent()
        if self.at("open", "("):
            argument = self.primary()
        else:                                        # \sin 2x means \sin(2x)
            factors = [self.power()]
            while self.starts_factor() and not self.at("word"):
                factors.append(self.power())
            argument = factors[0] if len(factors) == 1 else ("mul", tuple(factors))
        node = ("log", argument, base) if name == "log" and base is not None else ("func", name, argument)
        return ("pow", node, power) if power is not None else node


def _mixed_number(whole: tuple, fraction: tuple) -> tuple | None:
    """`2\\frac{1}{2}` is the mixed number 2 1/2 (as in MATH's prealgebra answers), not
    2 * 1/2: only an integer literal followed by a fraction of integer literals."""
    negative = whole[0] == "neg"
    if negative:
        whole = whole[1]
    if whole[0] != "num" or whole[2] is not None:
        return None
    match fraction:
        case ("mul", (("num", p, None), ("inv", ("num", q, None)))) if q != 0:
            value = whole[1] + p / q
            return ("neg", ("num", value, None)) if negative else ("num", value, None)
    return None


def _number(text: str) -> tuple:
    if "\\overline" in text:                       # a repeating decimal is exact
        head, repeat = text[:-1].split("\\overline{")
        whole, _, fixed = head.partition(".")
        value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
        value += Fraction(int(repeat), 10 ** len(fixed) * (10 ** len(repeat) - 1))
        return ("num", value, None)
    places = len(text.split(".")[1]) if "." in text else None
    if places == 0:
        places = None                              # "5." is the integer 5
    return ("num", Fraction(text.rstrip(".") or "0"), places)


def parse_expression(tokens: list[Token]) -> tuple:
    node = _ExpressionParser(tokens).parse()
    check_size(node)
    return node
