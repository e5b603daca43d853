"""Rewrite an answer string into a canonical string: pure string work."""

from __future__ import annotations

import re

from rftt.grading.extract import BOX, extract_answer, extract_gsm8k_answer
from rftt.grading.parse.lexer import MAX_TEXT

# Longer "answers" are not answers (the parser refuses them too); the cap also bounds the
# time every rewrite below may take.
MAX_ANSWER_CHARS = MAX_TEXT

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
# One way to match only (no lazy group followed by optional spaces), so the time is linear:
# the group keeps its trailing spaces and _drop_unit splits them off.
_UNIT_IN_TEXT = re.compile(r"\\" + _TEXT_COMMANDS + r"\s*\{\s*([A-Za-z][A-Za-z. ]*)\}"
                           r"(\s*\^\s*(?:\{\s*[23]\s*\}|[23]))?")    # \text{ cm}^2
_TEXT_GROUP = re.compile(r"\\" + _TEXT_COMMANDS + r"\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\(\\|[,;:! ])")
_SIZING = re.compile(r"\\(?:left|right|[Bb]igg?[lr]?)(?![A-Za-z])\.?")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree")
_TRAILING_WORDS = re.compile(r"(?<=[\d})\]])\s+([A-Za-z]{2,}\.?(?:\s+[A-Za-z]+\.?)*)\s*$")
# The whole answer is one number with thousands separators, possibly after a label (`x =`);
# anything else with commas in it is a list (`1,5`, `(1,000, 2)`).
_THOUSANDS = re.compile(r"((?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)? ?= ?)?[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
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


# A match may start only where a run of spaces starts: `\s+ or` tried at every space of a
# long run is quadratic (100,000 spaces took minutes).
_OR_AND = re.compile(r"(?<!\s)\s+(?:or|and)\s+")


def normalize_answer(text: str) -> str:
    """Rewrite an answer into a canonical string without the name of what was asked for
    (`x = 5` is `5`): the key under which votes for one answer are counted."""
    return strip_label(clean_answer(text))


def strip_label(s: str) -> str:
    """`x = 5` -> `5`, when a lone (possibly subscripted) variable is assigned one value."""
    if _ASSIGNMENT.match(s) and "," not in s:
        s = _ASSIGNMENT.sub("", s, count=1).strip()
    if s.startswith("+") and not s.startswith("++"):
        s = s[1:].strip()
    return s


def clean_answer(text: str) -> str:
    """Rewrite an answer into a canonical string, labels kept (the grader reads them).
    Pure string work, linear time: answers longer than MAX_ANSWER_CHARS (after collapsing
    white space) come back unrewritten."""
    s = text.strip()
    if "####" in s:
        s = extract_gsm8k_answer(s) or ""
    if BOX.search(s):
        s = extract_answer(s) or s
    s = " ".join(s.split())
    if len(s) > MAX_ANSWER_CHARS:
        return s
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
    s = _OR_AND.sub(",", s)
    s = _strip_trailing_words(s)
    s = s.replace("{,}", "")
    s = " ".join(s.split())
    if _THOUSANDS.fullmatch(s):                        # after the white space is collapsed
        s = s.replace(",", "")
    s = s.rstrip(". ")                                 # a full stop ends the sentence
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


def same_text(a: str, b: str) -> bool:
    a, b = a.replace(" ", ""), b.replace(" ", "")
    if a == b:
        return True
    # Word answers ("Monday", "east") are compared without case.
    return a.isalpha() and b.isalpha() and len(a) > 1 and a.casefold() == b.casefold()
