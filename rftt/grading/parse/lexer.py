"""Cut answer text into whitelisted tokens (the first line of defence: nothing outside
these tables reaches the parser, let alone SymPy)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rftt.grading.parse.errors import MathParseError, TooLarge

MAX_TEXT = 2000      # characters; longer "answers" are not answers
MAX_TOKENS = 1000


@dataclass(frozen=True)
class Token:
    kind: str   # num letter word op open close comma rel amp rowsep begin end pm cup
    text: str
    pos: int


# LaTeX commands we understand, as (token kind, token text).
FUNCTIONS = ("sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
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
    **{f: ("word", f) for f in FUNCTIONS},
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
_WORDS = {**{f: f for f in FUNCTIONS}, "sqrt": "sqrt", "pi": "pi", "inf": "oo",
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
