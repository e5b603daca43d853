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

from __future__ import annotations

import cmath
import math
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_TEXT = 2000      # characters; longer "answers" are not answers
MAX_TOKENS = 1000
MAX_DEPTH = 60       # nesting of parentheses / exponents / signs
MAX_DIGITS = 2000    # estimated decimal digits of any exact number we agree to build
MAX_ITEMS = 64       # elements of a set, tuple or matrix
MAX_PM = 3           # \pm signs in one answer (each one doubles the set)


class MathParseError(ValueError):
    """The text is not an answer this grammar understands."""


class TooLarge(MathParseError):
    """The text is an expression too large to build safely."""


# --------------------------------------------------------------------------- tokens

@dataclass(frozen=True)
class Token:
    kind: str   # num letter word op open close comma rel amp rowsep begin end pm cup
    text: str
    pos: int


# LaTeX commands we understand, as (token kind, token text).
_FUNCTIONS = ("sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
              "sinh", "cosh", "tanh", "log", "ln", "exp")
_GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta",
          "theta", "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma",
          "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta",
          "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega")
_COMMANDS: dict[str, tuple[str, str]] = {
    "frac": ("word", "frac"), "sqrt": ("word", "sqrt"), "pi": ("word", "pi"),
    "infty": ("word", "oo"), "infinity": ("word", "oo"),
    "emptyset": ("word", "emptyset"), "varnothing": ("word", "emptyset"),
    "cdot": ("op", "*"), "times": ("op", "*"), "ast": ("op", "*"), "div": ("op", "/"),
    "le": ("rel", "<="), "leq": ("rel", "<="), "leqslant": ("rel", "<="),
    "ge": ("rel", ">="), "geq": ("rel", ">="), "geqslant": ("rel", ">="),
    "lt": ("rel", "<"), "gt": ("rel", ">"), "ne": ("rel", "!="), "neq": ("rel", "!="),
    "in": ("rel", "in"), "pm": ("pm", "+-"), "mp": ("pm", "-+"), "cup": ("cup", "cup"),
    **{f: ("word", f) for f in _FUNCTIONS},
    **{g: ("letter", g) for g in _GREEK},
}
# Commands that only change how their argument looks; the argument is parsed as usual.
_TRANSPARENT = {"mathrm", "mathbf", "mathit", "mathsf", "text", "textrm", "textbf",
                "textit", "mbox", "operatorname", "displaystyle", "boldsymbol"}
# Sizing commands around delimiters: \left( is just (.
_SIZING = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
           "biggl", "biggr", "Biggl", "Biggr"}
_MATRIX_ENVS = {"pmatrix", "bmatrix", "matrix", "smallmatrix", "Bmatrix"}
# Plain-text words: function names and constants a model may write without a backslash.
_WORDS = {**{f: f for f in _FUNCTIONS}, "sqrt": "sqrt", "pi": "pi", "inf": "oo",
          "infty": "oo", "infinity": "oo"}
_UNICODE = {"π": ("word", "pi"), "∞": ("word", "oo"), "√": ("word", "sqrt"),
            "≤": ("rel", "<="), "≥": ("rel", ">="), "≠": ("rel", "!="), "−": ("op", "-"),
            "×": ("op", "*"), "·": ("op", "*"), "÷": ("op", "/"), "∪": ("cup", "cup"),
            "∅": ("word", "emptyset")}
_TWO_CHAR = {"**": ("op", "^"), "<=": ("rel", "<="), ">=": ("rel", ">="),
             "=<": ("rel", "<="), "=>": ("rel", ">="), "!=": ("rel", "!="),
             "==": ("rel", "=")}
_ONE_CHAR = {"+": "op", "-": "op", "*": "op", "/": "op", "^": "op", "_": "op", "!": "op",
             "|": "op", "(": "open", "[": "open", "{": "open", ")": "close", "]": "close",
             "}": "close", ",": "comma", "=": "rel", "<": "rel", ">": "rel", "&": "amp"}

_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_REPEATING = re.compile(r"\d*\.\d*\\overline\{\d+\}")     # 0.1\overline{6} = 1/6
_LETTERS = re.compile(r"[A-Za-z]+")
_COMMAND = re.compile(r"\\([A-Za-z]+)")
_ENV = re.compile(r"\s*\{([A-Za-z*]+)\}")


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_TEXT:
        raise TooLarge(f"answer longer than {MAX_TEXT} characters")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or (c == "." and (text[i + 1:i + 2].isdigit() or _REPEATING.match(text, i))):
            m = _REPEATING.match(text, i) or _NUMBER.match(text, i)
            tokens.append(Token("num", m.group(), i))
            i = m.end()
        elif c.isascii() and c.isalpha():
            m = _LETTERS.match(text, i)
            tokens.extend(_split_letters(m.group(), i))
            i = m.end()
        elif c == "\\":
            i = _command(text, i, tokens)
        elif text[i:i + 2] in _TWO_CHAR:
            tokens.append(Token(*_TWO_CHAR[text[i:i + 2]], i))
            i += 2
        elif c in _ONE_CHAR:
            tokens.append(Token(_ONE_CHAR[c], c, i))
            i += 1
        elif c in _UNICODE:
            tokens.append(Token(*_UNICODE[c], i))
            i += 1
        else:
            raise MathParseError(f"unexpected character {c!r} at {i}")
        if len(tokens) > MAX_TOKENS:
            raise TooLarge(f"more than {MAX_TOKENS} tokens")
    return tokens


def _split_letters(run: str, pos: int) -> list[Token]:
    """A run of ASCII letters: a known word (sin, pi), a word glued to a variable or two
    (`sinx`, `pir`), or a product of up to three single-letter variables (`xy`, `abc`).
    Longer unknown words (`dollars`, `import`) are refused: they are prose, not math."""
    if run in _WORDS:
        return [Token("word", _WORDS[run], pos)]
    for word in sorted(_WORDS, key=len, reverse=True):
        rest = run[len(word):]
        if run.startswith(word) and len(rest) <= 2:
            return [Token("word", _WORDS[word], pos)] + _split_letters(rest, pos + len(word))
    if len(run) <= 3:
        return [Token("letter", ch, pos + k) for k, ch in enumerate(run)]
    raise MathParseError(f"unknown word {run!r} at {pos}")


def _command(text: str, i: int, tokens: list[Token]) -> int:
    """Tokenize the backslash sequence at text[i]; return the index after it."""
    nxt = text[i + 1] if i + 1 < len(text) else ""
    if nxt == "\\":
        tokens.append(Token("rowsep", "\\\\", i))
        return i + 2
    if nxt in "{}":
        tokens.append(Token("open" if nxt == "{" else "close", "\\" + nxt, i))
        return i + 2
    if nxt and nxt in ",;:! %$":
        return i + 2                                   # spacing, \%, \$: no meaning here
    m = _COMMAND.match(text, i)
    if not m:
        raise MathParseError(f"stray backslash at {i}")
    name, end = m.group(1), m.end()
    if name in _SIZING:
        return end + 1 if text[end:end + 1] == "." else end   # \left. is an empty delimiter
    if name in _TRANSPARENT:
        return end
    if name in ("begin", "end"):
        env = _ENV.match(text, end)
        if not env or env.group(1) not in _MATRIX_ENVS:
            raise MathParseError(f"unsupported environment at {i}")
        tokens.append(Token(name, env.group(1), i))
        return env.end()
    if name not in _COMMANDS:
        raise MathParseError(f"unsupported command \\{name} at {i}")
    tokens.append(Token(*_COMMANDS[name], i))
    return end


# --------------------------------------------------------------------------- expressions

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
        if name in _FUNCTIONS:
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


# --------------------------------------------------------------------------- size

MAX_EXPONENT = 1_000_000        # |n| in b^n, whatever b is
MAX_FACTORIAL_DIGITS = MAX_DIGITS


def _digits(q: Fraction) -> float:
    """Decimal digits of numerator and denominator together (log10, so 3 counts 0.48)."""
    return (math.log10(abs(q.numerator)) if q.numerator else 0.0) + math.log10(q.denominator)


def check_size(node: tuple) -> None:
    """Refuse expressions whose exact value would be too large to build, before building
    anything: estimate the digits of every intermediate result from float approximations.
    Raises TooLarge. (The exact builders re-check powers and factorials with exact values,
    since a float approximation can hide a huge exponent behind a cancellation.)"""
    _size(node)


_CMATH = {"sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "arcsin": cmath.asin,
          "arccos": cmath.acos, "arctan": cmath.atan, "sinh": cmath.sinh, "cosh": cmath.cosh,
          "tanh": cmath.tanh, "log": cmath.log, "ln": cmath.log, "exp": cmath.exp,
          "cot": lambda z: 1 / cmath.tan(z), "sec": lambda z: 1 / cmath.cos(z),
          "csc": lambda z: 1 / cmath.sin(z)}


def _finite(v: complex | None) -> complex | None:
    return v if v is not None and cmath.isfinite(v) else None


def _size(node: tuple) -> tuple[float, complex | None]:
    """(estimated digits of the exact result, complex approximation or None if unknown:
    a symbol, infinity, or a value too large for a float)."""
    kind = node[0]
    if kind == "num":
        d = _digits(node[1])
        if d > MAX_DIGITS:
            raise TooLarge("number literal too long")
        return d, complex(float(node[1])) if d < 300 else None
    if kind == "sym":
        return 1.0, None
    if kind == "const":
        return 1.0, {"pi": complex(math.pi), "E": complex(math.e), "I": 1j}.get(node[1])
    if kind in ("add", "mul"):
        parts = [_size(x) for x in node[1]]
        d = sum(p[0] for p in parts)
        if d > MAX_DIGITS:
            raise TooLarge("expression too large")
        values = [p[1] for p in parts]
        if any(v is None for v in values):
            return d, None
        return d, _finite(sum(values) if kind == "add" else math.prod(values))
    if kind == "pow":
        return _size_power(node)
    if kind == "fact":
        return _size_factorial(node)
    children = [_size(x) for x in _children(node)]
    d = sum(c[0] for c in children)
    values = [c[1] for c in children]
    if any(v is None for v in values):
        return d, None
    try:
        if kind == "neg":
            v = -values[0]
        elif kind == "abs":
            v = complex(abs(values[0]))
        elif kind == "inv":
            v = 1 / values[0]
        elif kind == "sqrt":
            v = cmath.sqrt(values[0])
        elif kind == "root":
            v = values[0] ** (1 / values[1])
        elif kind == "log":
            v = cmath.log(values[0]) / cmath.log(values[1])
        elif kind == "func":
            v = _CMATH[node[1]](values[0])
        else:
            raise MathParseError(f"unknown node {kind!r}")
    except (ZeroDivisionError, OverflowError, ValueError):
        return d, None
    return d, _finite(v)


def _size_power(node: tuple) -> tuple[float, complex | None]:
    db, vb = _size(node[1])
    de, ve = _size(node[2])
    if ve is None:
        if has_symbols(node[2]):
            return db + de, None       # 2^x: SymPy keeps it unevaluated
        raise TooLarge("cannot bound the exponent")
    if abs(ve) > MAX_EXPONENT:
        raise TooLarge("exponent too large")
    d = db * max(abs(ve), 1.0)         # digits(b^e) ~ e * digits(b)
    if d > MAX_DIGITS:
        raise TooLarge("power too large")
    if vb is None or d >= 300:
        return d, None
    try:
        return d, _finite(vb ** ve)
    except (ZeroDivisionError, OverflowError):
        return d, None


def _size_factorial(node: tuple) -> tuple[float, complex | None]:
    d, v = _size(node[1])
    if v is None:
        if has_symbols(node[1]):
            return d + 1, None         # n!
        raise TooLarge("cannot bound the factorial")
    if v.imag != 0 or v.real < 0 or v.real != int(v.real):
        return d + 1, None             # SymPy decides what (1/2)! or (-1)! is
    if v.real > 10_000 or _factorial_digits(int(v.real)) > MAX_FACTORIAL_DIGITS:
        raise TooLarge("factorial too large")
    digits = _factorial_digits(int(v.real))
    return max(d, digits), complex(math.factorial(int(v.real))) if digits < 300 else None


def _factorial_digits(n: int) -> float:
    return math.lgamma(n + 1) / math.log(10)


def guard_power(base: Fraction | None, exponent: Fraction) -> None:
    """Exact re-check before computing base**exponent (see check_size)."""
    if abs(exponent) > MAX_EXPONENT:
        raise TooLarge("exponent too large")
    if base is not None and _digits(base) * abs(exponent) > MAX_DIGITS:
        raise TooLarge("power too large")


def guard_factorial(n: int) -> None:
    if n > 10_000 or _factorial_digits(n) > MAX_FACTORIAL_DIGITS:
        raise TooLarge("factorial too large")


# --------------------------------------------------------------------------- exact fast path

def to_fraction(node: tuple) -> Fraction | None:
    """The exact rational value of a node, or None if it is not plainly rational.
    Cheap and exact: the grader decides most answers here without SymPy. The node must
    have passed check_size (every parsed node has), so powers are bounded."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind in ("neg", "abs", "inv", "sqrt"):
        v = to_fraction(node[1])
        if v is None:
            return None
        if kind == "neg":
            return -v
        if kind == "abs":
            return abs(v)
        if kind == "inv":
            return 1 / v if v != 0 else None
        return _exact_sqrt(v)
    if kind in ("add", "mul"):
        values = [to_fraction(x) for x in node[1]]
        if any(v is None for v in values):
            return None
        return sum(values, Fraction(0)) if kind == "add" else math.prod(values, start=Fraction(1))
    if kind == "pow":
        base, exp = to_fraction(node[1]), to_fraction(node[2])
        if base is None or exp is None or exp.denominator != 1 or (base == 0 and exp < 0):
            return None
        guard_power(base, exp)
        return base ** int(exp)
    if kind == "fact":
        v = to_fraction(node[1])
        if v is None or v.denominator != 1 or v < 0:
            return None
        guard_factorial(int(v))
        return Fraction(math.factorial(int(v)))
    return None


def _exact_sqrt(v: Fraction) -> Fraction | None:
    if v < 0:
        return None
    p, q = math.isqrt(v.numerator), math.isqrt(v.denominator)
    return Fraction(p, q) if p * p == v.numerator and q * q == v.denominator else None


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
    return any(isinstance(x, tuple) and has_decimal(x) for x in _children(node))


def has_symbols(node: tuple) -> bool:
    if node[0] == "sym":
        return True
    return any(isinstance(x, tuple) and has_symbols(x) for x in _children(node))


def _children(node: tuple) -> list:
    if node[0] in ("add", "mul"):
        return list(node[1])
    return [x for x in node[1:] if isinstance(x, tuple)]


# --------------------------------------------------------------------------- SymPy

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


# --------------------------------------------------------------------------- answers

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


Answer = Expr | Bracketed | SetOf | Union | Relation | Matrix

_OPENERS = {"(", "[", "{", "\\{"}
_CLOSERS = {")", "]", "}", "\\}"}


def parse_answer(text: str) -> Answer:
    """Parse a normalised answer string. Raises MathParseError (TooLarge for huge ones)."""
    return _structure(tokenize(text))


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
