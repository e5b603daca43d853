"""Answer grading: find the final answer in model text and decide whether it equals the
gold answer (the rule-based reward of paper §3.3 stands on this).

Three stages, cheapest first:

1. ``normalize_answer`` rewrites both strings (``\\dfrac``, ``\\left``, units, degrees,
   ``\\%``, thousands separators, ``$``...) and equal strings are equal answers.
2. Both are parsed by ``rftt.math_parser`` (our own grammar: model text is never
   evaluated) into structured answers, and compared with exact rational arithmetic when
   every number involved is rational. Most answers are decided here, in microseconds.
3. Whatever is left (roots, pi, symbols, relations) is compared with SymPy in a separate
   worker process, under a hard time limit: a stuck SymPy call is killed with its
   process, which works from any thread (``signal.alarm`` only works in the main thread).

Decisions a user should know:
- Exact by default: 0.5 equals 1/2, but 0.33 does not equal 1/3. The one tolerance: when
  the GOLD is a decimal literal (it is itself a rounded value, "0.33") and the prediction
  is an exact form without decimals ("1/3", "\\pi"), the prediction is accepted if it
  rounds to the gold at the gold's number of decimal places (strictly within half a unit
  of the last place; a tie such as 29/20 against 1.5 is rejected). A decimal prediction
  is always compared exactly. The price: an exact prediction that merely rounds to a
  decimal gold (49/100 against 0.5) is accepted too.
- Percent signs are dropped; 50% equals 50, not 0.5 (accepting x100 or /100 makes the
  reward exploitable).
- ``(1, 2)`` is an ordered pair or an open interval; both compare element by element with
  the same brackets. Sets, bare lists ``1, 2`` and ``a \\pm b`` are order-free.
- ``\\log`` without a base is the natural logarithm.
- Unparseable answers (prose, unknown commands) are equal only when their normalised
  strings are.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from fractions import Fraction
from functools import lru_cache

from rftt import math_parser as mp

# --------------------------------------------------------------------------- extraction

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def extract_answer(text: str | None) -> str | None:
    """The content of the LAST ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``).

    None when there is no box, when the last box is never closed (a generation cut off by
    the length cap has not answered), or when it is empty. Never falls back to "some number
    in the text": for a reward that would pay for guessing.
    """
    if not text:
        return None
    matches = list(_BOX.finditer(text))
    if not matches:
        return None
    i = matches[-1].end()
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        content = _braced(text, i)
    else:                                          # \boxed 5: up to a space or a $
        m = re.compile(r"[^\s$]+").match(text, i)
        content = m.group() if m else None
    if content is None or not content.strip():
        return None
    return content.strip()


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start], or None if it never closes.
    Escaped braces \\{ \\} (set braces) do not count."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def extract_gsm8k_answer(text: str | None) -> str | None:
    """The number after the last ``####`` (GSM8K's answer line), commas and $ removed."""
    if not text or "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().split("\n")[0].strip()
    answer = answer.replace("$", "").replace("\\", "")
    answer = re.sub(r"(?<=\d),(?=\d{3}\b)", "", answer).rstrip(".").strip()
    return answer or None


# --------------------------------------------------------------------------- normalisation

# Units and similar words that say what the number counts, not what it is.
_UNITS = {
    "cm", "m", "km", "mm", "meter", "meters", "metre", "metres", "centimeter", "centimeters",
    "kilometer", "kilometers", "millimeter", "millimeters", "in", "inch", "inches", "ft",
    "foot", "feet", "yd", "yard", "yards", "mi", "mile", "miles", "unit", "units", "sq",
    "square", "cubic", "degree", "degrees", "deg", "radian", "radians", "rad", "dollar",
    "dollars", "cent", "cents", "hour", "hours", "hr", "hrs", "h", "minute", "minutes", "min",
    "mins", "second", "seconds", "sec", "s", "day", "days", "week", "weeks", "month",
    "months", "year", "years", "kg", "g", "gram", "grams", "pound", "pounds", "lb", "lbs",
    "ounce", "ounces", "oz", "liter", "liters", "litre", "litres", "l", "ml", "gallon",
    "gallons", "mph", "percent", "points", "p", "per",
}
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi",
               "inf", "infty", "infinity", "arcsin", "arccos", "arctan", "sinh", "cosh",
               "tanh"}
_TEXT_COMMANDS = r"(?:text|textrm|textbf|textit|textnormal|textup|mbox|mathrm|mathbf|mathit|operatorname)"
_UNIT_IN_TEXT = re.compile(r"\\" + _TEXT_COMMANDS + r"\s*\{\s*([A-Za-z][A-Za-z. ]*?)\s*\}"
                           r"(\s*\^\s*(?:\{\s*[23]\s*\}|[23]))?")    # \text{ cm}^2
_TEXT_GROUP = re.compile(r"\\" + _TEXT_COMMANDS + r"\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\(\\|[,;:! ])")
_SIZING = re.compile(r"\\(?:left|right|[Bb]igg?[lr]?)(?![A-Za-z])\.?")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree")
_TRAILING_WORDS = re.compile(r"(?<=[\d})\]])\s+([A-Za-z]{2,}\.?(?:\s+[A-Za-z]+\.?)*)\s*$")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ASSIGNMENT = re.compile(r"^\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?\s*=(?![^=]*[=<>])")


def _respace(match: re.Match) -> str:
    # Thin spaces (\, \! ...) vanish, so 1\,000 is 1000; a matrix row break \\ stays.
    return {"\\": "\\\\", " ": " "}.get(match.group(1), "")


def _drop_unit(match: re.Match) -> str:
    words = match.group(1).replace(".", " ").lower().split()
    return " " if words and all(w in _UNITS for w in words) else match.group(0)


def _unwrap_text(match: re.Match) -> str:
    inner = match.group(1).strip()
    return "," if inner.lower() in ("or", "and") else f" {inner} "


def normalize_answer(text: str) -> str:
    """Rewrite an answer into a canonical string. Pure string work, linear time."""
    s = text.strip()
    if "####" in s:
        s = extract_gsm8k_answer(s) or ""
    if _BOX.search(s):
        s = extract_answer(s) or s
    s = s.replace("\\$", "").replace("$", "")
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right):
            s = s[2:-2]
    s = s.replace("\u2212", "-").replace("\u00a0", " ").replace("°", "")
    s = _SPACING.sub(_respace, s).replace("~", " ")
    s = _SIZING.sub("", s)
    s = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _UNIT_IN_TEXT.sub(_drop_unit, s)
    for _ in range(3):                                 # \text{\textbf{A}} needs two passes
        s = _TEXT_GROUP.sub(_unwrap_text, s)
    s = re.sub(r"\s+(?:or|and)\s+", ",", s)
    s = _strip_trailing_words(s)
    s = s.replace("{,}", "")
    s = " ".join(s.split())
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    s = s.rstrip(". ")                                 # a full stop ends the sentence
    if _ASSIGNMENT.match(s) and "," not in s:
        s = _ASSIGNMENT.sub("", s, count=1).strip()
    if s.startswith("+") and not s.startswith("++"):
        s = s[1:].strip()
    return s


def _strip_trailing_words(s: str) -> str:
    """'5 square units' -> '5', '18 dollars' -> '18', '12 apples' -> '12': words after a
    number say what it counts. Kept: math words (sin, pi) and short letter runs that are
    not units, which are more likely variables ('2 ab' is 2ab)."""
    m = _TRAILING_WORDS.search(s)
    if not m:
        return s
    words = [w.lower().rstrip(".") for w in m.group(1).split()]
    if all(w in _UNITS or (len(w) >= 4 and w not in _MATH_WORDS) for w in words):
        return s[:m.start()]
    return s


def _same_text(a: str, b: str) -> bool:
    a, b = a.replace(" ", ""), b.replace(" ", "")
    if a == b:
        return True
    # Word answers ("Monday", "east") are compared without case.
    return a.isalpha() and b.isalpha() and len(a) > 1 and a.casefold() == b.casefold()


# --------------------------------------------------------------------------- comparison

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


class _ExactComparer:
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


# Positive rationals substituted for symbols when testing an identity numerically.
_PROBES = (Fraction(7, 3), Fraction(11, 5), Fraction(13, 4), Fraction(17, 6), Fraction(19, 7),
           Fraction(23, 9), Fraction(29, 8))


class _SympyComparer(_ExactComparer):
    """Runs inside the worker process (SymPy is imported there)."""

    def scalar(self, pred: tuple, gold: tuple) -> bool | None:
        exact = super().scalar(pred, gold)
        if exact is not None:
            return exact
        import sympy as sp

        a, b = mp.to_sympy(pred), mp.to_sympy(gold)
        if any(x.has(sp.zoo, sp.nan) for x in (a, b)):
            return False                   # 1/0 is not an answer, and not equal to 2/0
        if a == b:
            return True
        if mp.has_symbols(pred) or mp.has_symbols(gold):
            return self._is_zero_function(a - b)
        if any(x.has(sp.oo, -sp.oo) for x in (a, b)):
            return False
        decimal = mp.decimal_literal(gold)
        if decimal is not None and not mp.has_decimal(pred):
            value, places = decimal
            error = sp.N(a - sp.Rational(value.numerator, value.denominator), 30)
            return bool(abs(error) < sp.Rational(1, 2 * 10 ** places))
        # Constants (roots, pi, e, logs) are compared at 60 significant digits: as good as
        # exact for answers, and far cheaper and more reliable than simplify().
        difference = sp.N(a - b, 60)
        if not difference.is_number or difference.has(sp.nan):
            return False
        scale = max(1, abs(sp.N(b, 20)))
        return bool(abs(difference) <= sp.Float(10) ** -40 * scale)

    @staticmethod
    def _is_zero_function(difference) -> bool:
        """Is an expression in variables identically zero? Expand; then evaluate at a few
        rational points (a nonzero expression vanishes at random points with probability
        ~0); then, if no point could be evaluated, simplify."""
        import sympy as sp

        difference = sp.expand(difference)
        if difference == 0:
            return True
        symbols = sorted(difference.free_symbols, key=str)
        evaluated = 0
        for probe in range(4):
            values = [_PROBES[(probe * 3 + k) % len(_PROBES)] for k in range(len(symbols))]
            point = {s: sp.Rational(v.numerator, v.denominator) for s, v in zip(symbols, values)}
            value = difference.evalf(40, subs=point)
            if not value.is_number or value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
                continue
            if abs(value) > 1e-25:
                return False
            evaluated += 1
        if evaluated >= 2:
            return True
        return sp.simplify(difference) == 0

    def relation(self, pred: mp.Relation, gold: mp.Relation) -> bool | None:
        """Same relation when lhs - rhs agree up to a constant factor: nonzero for = and
        !=, positive for < and <= (`2x + 2y < 2` is `x + y < 1`; `x + y > 1` is not).
        A variable against a constant (`x > 3`) was already turned into an interval."""
        if super().relation(pred, gold):
            return True
        import sympy as sp

        p = mp.to_sympy(pred.lhs) - mp.to_sympy(pred.rhs)
        g = mp.to_sympy(gold.lhs) - mp.to_sympy(gold.rhs)
        if p == 0 or g == 0:
            return p == g
        ratio = sp.simplify(p / g)
        if ratio.free_symbols or not ratio.is_number or ratio == 0 or ratio.has(sp.nan, sp.zoo):
            return False
        return bool(ratio.is_positive) if pred.op in ("<", "<=") else True


_EXACT = _ExactComparer()


def _compare_texts(pred: str, gold: str, comparer) -> bool | None:
    try:
        return compare_answers(mp.parse_answer(pred), mp.parse_answer(gold), comparer)
    except mp.MathParseError:
        return False                      # not an answer we can read, or too large


# --------------------------------------------------------------------------- the worker

class _Worker:
    """A child Python process that compares answers with SymPy, one request at a time,
    over JSON lines on its stdin/stdout. Started with subprocess (fork+exec), never with
    fork alone: forking a threaded parent (PyTorch, a data loader) can deadlock."""

    STARTUP_TIMEOUT = 60.0   # importing SymPy on a loaded machine can take seconds

    def __init__(self):
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from rftt.grading import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,   # stderr: the parent's, for errors
            env=env, bufsize=0)
        self.buffer = b""
        # A selector, not select.select: a training process can hold more than 1024 open
        # files, and select() cannot watch descriptors above that.
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        if self._read_line(time.monotonic() + self.STARTUP_TIMEOUT) != b"ready":
            self.kill()
            raise RuntimeError("the SymPy grading worker did not start")

    def compare(self, pred: str, gold: str, timeout: float) -> bool | None:
        """The verdict, or None if the worker ran out of time (or died)."""
        try:
            self.proc.stdin.write(json.dumps({"pred": pred, "gold": gold}).encode() + b"\n")
        except OSError:
            return None
        line = self._read_line(time.monotonic() + timeout)
        return None if line is None else bool(json.loads(line)["equal"])

    def _read_line(self, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self.selector.select(remaining):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:                  # the worker died (memory limit, crash)
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.selector.close()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


class _WorkerPool:
    """A few reusable workers shared by all threads. A worker that runs out of time is
    killed (that is the hard time limit) and replaced on the next request."""

    def __init__(self, size: int):
        self.size = size
        self.idle: list[_Worker] = []
        self.started = 0
        self.lock = threading.Condition()

    def compare(self, pred: str, gold: str, timeout: float) -> bool | None:
        worker = self._acquire()
        verdict = worker.compare(pred, gold, timeout)
        if verdict is None:
            worker.kill()
            worker = None
        self._release(worker)
        return verdict

    def _acquire(self) -> _Worker:
        with self.lock:
            while not self.idle and self.started >= self.size:
                self.lock.wait()
            if self.idle:
                return self.idle.pop()
            self.started += 1
        try:
            return _Worker()
        except BaseException:
            self._release(None)
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self.lock:
            if worker is None:
                self.started -= 1
            else:
                self.idle.append(worker)
            self.lock.notify()

    def close(self) -> None:
        with self.lock:
            for worker in self.idle:
                worker.kill()
            self.started -= len(self.idle)
            self.idle.clear()


_POOL = _WorkerPool(size=max(1, min(4, (os.cpu_count() or 2) // 2)))
atexit.register(_POOL.close)


def _serve() -> None:
    """The worker's main loop (runs in the child process)."""
    try:
        import resource
        limit = 4 << 30                    # 4 GiB: a runaway expansion dies, not the host
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    import sympy  # noqa: F401  (imported once here, before saying ready)

    out = sys.stdout.buffer
    sys.stdout = sys.stderr               # nothing else may write on the protocol pipe
    out.write(b"ready\n")
    out.flush()
    comparer = _SympyComparer()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            verdict = _compare_texts(request["pred"], request["gold"], comparer)
        except Exception:                 # a SymPy failure is "not shown equal"
            verdict = False
        out.write(json.dumps({"equal": verdict is True}).encode() + b"\n")
        out.flush()


def warm_up() -> None:
    """Start a SymPy worker now, so the first graded answer does not wait for it."""
    _POOL._release(_POOL._acquire())


# --------------------------------------------------------------------------- entry point

class _OutOfTime(Exception):
    pass


def is_equiv(pred: str | None, gold: str | None, timeout: float = 2.0) -> bool:
    """Are two answers the same mathematical object? Either may still carry ``$...$``,
    ``\\boxed{}`` or a GSM8K ``#### n`` line.

    `timeout` bounds the SymPy work of this one check (seconds); when it runs out the
    answer counts as not equal. (Starting a worker the first time is not counted; call
    warm_up() to pay for that up front.) Thread-safe; works in any thread.
    """
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return False
    if _same_text(p, g):
        return True
    try:
        return _verdict(p, g, timeout)
    except _OutOfTime:
        return False


@lru_cache(maxsize=16384)
def _verdict(pred: str, gold: str, timeout: float) -> bool:
    # Cached: an RL batch grades many rollouts against the same gold. A timeout raises,
    # and lru_cache does not cache exceptions, so only real verdicts are remembered.
    verdict = _compare_texts(pred, gold, _EXACT)
    if verdict is not None:
        return verdict
    verdict = _POOL.compare(pred, gold, timeout)
    if verdict is None:
        raise _OutOfTime
    return verdict
