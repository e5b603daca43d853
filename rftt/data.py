"""Problems to train and evaluate on: a built-in generator of grade-school arithmetic word
problems with exact answers, and loaders for MATH- and GSM8K-style JSONL files.

The generator exists so that the whole pipeline (search, SFT, RL, evaluation) can run
without downloading anything, on problems whose answers are known exactly. Its train and
test splits are disjoint by construction: a problem's split is a hash of its canonical
content (template and numbers), so no seed, count or level choice can put the same
problem in both.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from typing import Callable

from rftt.grading import extract_answer, extract_gsm8k_answer


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str                    # the gold final answer, as a string
    solution: str | None = None    # a worked reference solution, if the source has one
    level: int | None = None       # difficulty: 1-5 for MATH, 1-4 for the generator
    type: str | None = None        # MATH subject, generator template kind, "gsm8k"
    source_id: str = ""            # where it came from: "arith:add_buy:3,4", "train.jsonl:12"
    # File and line, for error messages ("data/train.jsonl, line 12"); not part of what
    # the problem is, so two equal problems from different files compare equal.
    origin: str = field(default="", compare=False)


class DataError(ValueError):
    """A bad row in a data file; the message names the file, the line and the field."""

    def __init__(self, path: str, line: int, field: str, message: str):
        self.path, self.line, self.field = path, line, field
        super().__init__(f"{path}, line {line}, field '{field}': {message}")


# --------------------------------------------------------------------------- generator

_NAMES = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jack",
          "Kira", "Liam", "Maya", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara")
_ITEMS = ("apples", "marbles", "stickers", "pencils", "cards", "shells", "stamps", "buttons")


@dataclass(frozen=True)
class _Template:
    name: str          # part of the canonical key: never rename a template
    kind: str          # Problem.type: the operations, in order
    level: int         # = number of arithmetic steps (level 4: four or more)
    draw: Callable[[random.Random], tuple[int, ...]]
    # (numbers, person, other person, item) -> (question, solution lines, answer)
    write: Callable[[tuple[int, ...], str, str, str], tuple[str, list[str], int]]


def _r(rng: random.Random, lo: int, hi: int) -> int:
    return rng.randint(lo, hi)


# Level 1: one step, every number in the question up to 20 (products up to 100). Every
# template keeps results non-negative integers: subtraction draws the difference,
# division draws the quotient.
def _draw_sum(rng):
    return _r(rng, 2, 20), _r(rng, 2, 20)


def _draw_difference(rng):
    b = _r(rng, 1, 19)
    return b + _r(rng, 1, 20 - b), b          # (a, b) with a > b, a <= 20


def _draw_factors(rng):
    return _r(rng, 2, 10), _r(rng, 2, 10)


def _draw_quotient(rng):
    divisor = _r(rng, 2, 10)
    quotient = _r(rng, 2, 20 // divisor)
    return divisor * quotient, divisor        # (dividend, divisor), dividend <= 20


# Level 2: two steps, numbers up to 100.
def _draw_packs_plus(rng):
    return _r(rng, 2, 12), _r(rng, 2, 12), _r(rng, 1, 100)          # a*b + c


def _draw_money_left(rng):
    count, price = _r(rng, 2, 9), _r(rng, 2, 11)                    # cost <= 99
    return count * price + _r(rng, 0, 100 - count * price), count, price   # a - b*c >= 0


def _draw_share_then_eat(rng):
    children, each = _r(rng, 2, 10), _r(rng, 3, 10)
    return children * each, children, _r(rng, 1, each - 1)          # n/b - c > 0


def _draw_wage_minus(rng):
    wage, days = _r(rng, 5, 20), _r(rng, 2, 5)
    return wage, days, _r(rng, 1, wage * days)                      # a*b - c >= 0


# Level 3: three steps, numbers up to 1000.
def _draw_two_products(rng):
    return _r(rng, 2, 30), _r(rng, 2, 30), _r(rng, 2, 30), _r(rng, 2, 30)   # a*b + c*d


def _draw_harvest(rng):
    rows, per_row, baskets = _r(rng, 5, 30), _r(rng, 5, 30), _r(rng, 2, 12)
    full = _r(rng, 1, rows * per_row // baskets)
    return rows, per_row, rows * per_row - baskets * full, baskets  # (a*b - c) / d


def _draw_savings(rng):
    start, weekly, weeks = _r(rng, 10, 500), _r(rng, 5, 50), _r(rng, 2, 10)
    return start, weekly, weeks, _r(rng, 1, start + weekly * weeks)  # a + b*c - d >= 0


# Level 4: four or five steps, numbers up to a few hundred, and one quantity in the text
# (always the last number) that the answer does not use — irrelevant information is
# what small models are worst at ignoring (GSM-IC, Shi et al. 2023). Room to improve for
# a 0.5B model that level 3 already trips.
def _draw_bake_sale(rng):
    trays, per_tray, boxes, per_box = _r(rng, 3, 12), _r(rng, 6, 25), _r(rng, 3, 12), _r(rng, 6, 25)
    baked = trays * per_tray + boxes * per_box
    return trays, per_tray, boxes, per_box, _r(rng, 1, baked), _r(rng, 2, 60)   # a*b + c*d - e; f unused


def _draw_trip_budget(rng):
    tickets, price, snacks, snack_price = _r(rng, 2, 9), _r(rng, 5, 40), _r(rng, 2, 9), _r(rng, 2, 15)
    friends, share = _r(rng, 2, 6), _r(rng, 5, 50)
    total = tickets * price + snacks * snack_price + friends * share   # <= 795
    return total, tickets, price, snacks, snack_price, friends, _r(rng, 20, 400)  # (a - b*c - d*e) / f; g unused


def _draw_training_weeks(rng):
    weekday_km, weekend_km, weeks = _r(rng, 2, 12), _r(rng, 5, 25), _r(rng, 2, 6)
    planned = (5 * weekday_km + 2 * weekend_km) * weeks                # <= 660
    return weekday_km, weekend_km, weeks, _r(rng, 1, planned - 1), _r(rng, 40, 300)  # (5a + 2b)*c - d; e unused


_TEMPLATES: tuple[_Template, ...] = (
    # ---- add
    _Template("add_buy", "add", 1, _draw_sum, lambda n, p, q, it: (
        f"{p} has {n[0]} {it}. {p} buys {n[1]} more. How many {it} does {p} have now?",
        [f"{p} has {n[0]} + {n[1]} = {n[0] + n[1]} {it}."], n[0] + n[1])),
    _Template("add_shelves", "add", 1, _draw_sum, lambda n, p, q, it: (
        f"One shelf holds {n[0]} books and another holds {n[1]} books. "
        "How many books are on the two shelves?",
        [f"The shelves hold {n[0]} + {n[1]} = {n[0] + n[1]} books."], n[0] + n[1])),
    _Template("add_walk", "add", 1, _draw_sum, lambda n, p, q, it: (
        f"{p} walked {n[0]} blocks in the morning and {n[1]} blocks in the evening. "
        f"How many blocks did {p} walk in all?",
        [f"{p} walked {n[0]} + {n[1]} = {n[0] + n[1]} blocks."], n[0] + n[1])),
    # ---- subtract
    _Template("sub_give", "subtract", 1, _draw_difference, lambda n, p, q, it: (
        f"{p} had {n[0]} {it} and gave {n[1]} of them to {q}. How many {it} does {p} have left?",
        [f"{p} has {n[0]} - {n[1]} = {n[0] - n[1]} {it} left."], n[0] - n[1])),
    _Template("sub_bus", "subtract", 1, _draw_difference, lambda n, p, q, it: (
        f"A bus had {n[0]} passengers. At the next stop {n[1]} passengers got off. "
        "How many passengers are on the bus now?",
        [f"There are {n[0]} - {n[1]} = {n[0] - n[1]} passengers."], n[0] - n[1])),
    _Template("sub_compare", "subtract", 1, _draw_difference, lambda n, p, q, it: (
        f"{p} has {n[0]} {it} and {q} has {n[1]} {it}. How many more {it} does {p} have than {q}?",
        [f"{p} has {n[0]} - {n[1]} = {n[0] - n[1]} more {it}."], n[0] - n[1])),
    # ---- multiply
    _Template("mul_boxes", "multiply", 1, _draw_factors, lambda n, p, q, it: (
        f"There are {n[0]} boxes with {n[1]} {it} in each box. How many {it} are there in all?",
        [f"There are {n[0]} * {n[1]} = {n[0] * n[1]} {it}."], n[0] * n[1])),
    _Template("mul_pages", "multiply", 1, _draw_factors, lambda n, p, q, it: (
        f"{p} reads {n[1]} pages every day for {n[0]} days. How many pages does {p} read?",
        [f"{p} reads {n[0]} * {n[1]} = {n[0] * n[1]} pages."], n[0] * n[1])),
    _Template("mul_seats", "multiply", 1, _draw_factors, lambda n, p, q, it: (
        f"A hall has {n[0]} rows of chairs with {n[1]} chairs in each row. "
        "How many chairs are in the hall?",
        [f"The hall has {n[0]} * {n[1]} = {n[0] * n[1]} chairs."], n[0] * n[1])),
    # ---- divide
    _Template("div_share", "divide", 1, _draw_quotient, lambda n, p, q, it: (
        f"{p} shares {n[0]} {it} equally among {n[1]} friends. How many {it} does each friend get?",
        [f"Each friend gets {n[0]} / {n[1]} = {n[0] // n[1]} {it}."], n[0] // n[1])),
    _Template("div_teams", "divide", 1, _draw_quotient, lambda n, p, q, it: (
        f"{n[0]} students are put into teams of {n[1]}. How many teams are there?",
        [f"There are {n[0]} / {n[1]} = {n[0] // n[1]} teams."], n[0] // n[1])),
    _Template("div_ribbon", "divide", 1, _draw_quotient, lambda n, p, q, it: (
        f"A ribbon {n[0]} cm long is cut into {n[1]} equal pieces. How many cm long is each piece?",
        [f"Each piece is {n[0]} / {n[1]} = {n[0] // n[1]} cm long."], n[0] // n[1])),
    # ---- two steps
    _Template("packs_plus", "multiply+add", 2, _draw_packs_plus, lambda n, p, q, it: (
        f"{p} buys {n[0]} packs of {it} with {n[1]} {it} in each pack. {p} already had {n[2]} {it}. "
        f"How many {it} does {p} have now?",
        [f"The packs hold {n[0]} * {n[1]} = {n[0] * n[1]} {it}.",
         f"{p} has {n[0] * n[1]} + {n[2]} = {n[0] * n[1] + n[2]} {it}."], n[0] * n[1] + n[2])),
    _Template("money_left", "multiply+subtract", 2, _draw_money_left, lambda n, p, q, it: (
        f"{p} has {n[0]} dollars and buys {n[1]} notebooks that cost {n[2]} dollars each. "
        f"How many dollars does {p} have left?",
        [f"The notebooks cost {n[1]} * {n[2]} = {n[1] * n[2]} dollars.",
         f"{p} has {n[0]} - {n[1] * n[2]} = {n[0] - n[1] * n[2]} dollars left."], n[0] - n[1] * n[2])),
    _Template("share_eat", "divide+subtract", 2, _draw_share_then_eat, lambda n, p, q, it: (
        f"{n[0]} cookies are shared equally among {n[1]} children. Each child eats {n[2]} of their cookies. "
        "How many cookies does each child have left?",
        [f"Each child gets {n[0]} / {n[1]} = {n[0] // n[1]} cookies.",
         f"Each child has {n[0] // n[1]} - {n[2]} = {n[0] // n[1] - n[2]} cookies left."],
        n[0] // n[1] - n[2])),
    _Template("wage_spend", "multiply+subtract", 2, _draw_wage_minus, lambda n, p, q, it: (
        f"{p} earns {n[0]} dollars a day for {n[1]} days and then spends {n[2]} dollars. "
        f"How many dollars does {p} have left?",
        [f"{p} earns {n[0]} * {n[1]} = {n[0] * n[1]} dollars.",
         f"{p} has {n[0] * n[1]} - {n[2]} = {n[0] * n[1] - n[2]} dollars left."], n[0] * n[1] - n[2])),
    # ---- three steps
    _Template("two_products", "multiply+multiply+add", 3, _draw_two_products, lambda n, p, q, it: (
        f"{p} buys {n[0]} boxes of pencils with {n[1]} pencils each "
        f"and {n[2]} boxes of pens with {n[3]} pens each. "
        f"How many pencils and pens does {p} buy in all?",
        [f"The pencils number {n[0]} * {n[1]} = {n[0] * n[1]}.",
         f"The pens number {n[2]} * {n[3]} = {n[2] * n[3]}.",
         f"In all {n[0] * n[1]} + {n[2] * n[3]} = {n[0] * n[1] + n[2] * n[3]}."],
        n[0] * n[1] + n[2] * n[3])),
    _Template("harvest", "multiply+subtract+divide", 3, _draw_harvest, lambda n, p, q, it: (
        f"A farm has {n[0]} rows of {n[1]} melons. {n[2]} melons are sold at the gate, "
        f"and the rest are packed equally into {n[3]} crates. "
        "How many melons go in each crate?",
        [f"The farm has {n[0]} * {n[1]} = {n[0] * n[1]} melons.",
         f"After the sale {n[0] * n[1]} - {n[2]} = {n[0] * n[1] - n[2]} melons are left.",
         f"Each crate holds {n[0] * n[1] - n[2]} / {n[3]} = {(n[0] * n[1] - n[2]) // n[3]} melons."],
        (n[0] * n[1] - n[2]) // n[3])),
    _Template("savings", "multiply+add+subtract", 3, _draw_savings, lambda n, p, q, it: (
        f"{p} has {n[0]} dollars saved and adds {n[1]} dollars every week for {n[2]} weeks. "
        f"Then {p} spends {n[3]} dollars on a bike. "
        f"How many dollars does {p} have now?",
        [f"{p} adds {n[1]} * {n[2]} = {n[1] * n[2]} dollars.",
         f"{p} then has {n[0]} + {n[1] * n[2]} = {n[0] + n[1] * n[2]} dollars.",
         f"After the bike {n[0] + n[1] * n[2]} - {n[3]} = {n[0] + n[1] * n[2] - n[3]} dollars are left."],
        n[0] + n[1] * n[2] - n[3])),
    # ---- four or more steps, with one unused quantity (level 4)
    _Template("bake_sale", "multiply+multiply+add+subtract", 4, _draw_bake_sale, lambda n, p, q, it: (
        f"For a bake sale {p} bakes {n[0]} trays of muffins with {n[1]} muffins on each tray "
        f"and {n[2]} boxes of cookies with {n[3]} cookies in each box. "
        f"The sale table is {n[5]} inches long. {p} sells {n[4]} of the baked goods. "
        "How many muffins and cookies are left?",
        [f"The muffins number {n[0]} * {n[1]} = {n[0] * n[1]}.",
         f"The cookies number {n[2]} * {n[3]} = {n[2] * n[3]}.",
         f"In all {n[0] * n[1]} + {n[2] * n[3]} = {n[0] * n[1] + n[2] * n[3]} were baked.",
         f"After the sale {n[0] * n[1] + n[2] * n[3]} - {n[4]} = {n[0] * n[1] + n[2] * n[3] - n[4]} are left."],
        n[0] * n[1] + n[2] * n[3] - n[4])),
    _Template("trip_budget", "multiply+multiply+subtract+subtract+divide", 4, _draw_trip_budget,
              lambda n, p, q, it: (
        f"{p} has {n[0]} dollars for a trip with friends. The trip is {n[6]} miles long. "
        f"{p} buys {n[1]} tickets at {n[2]} dollars each and {n[3]} snacks at {n[4]} dollars each, "
        f"then shares the money left equally among {n[5]} friends. How many dollars does each friend get?",
        [f"The tickets cost {n[1]} * {n[2]} = {n[1] * n[2]} dollars.",
         f"The snacks cost {n[3]} * {n[4]} = {n[3] * n[4]} dollars.",
         f"After the tickets {n[0]} - {n[1] * n[2]} = {n[0] - n[1] * n[2]} dollars are left.",
         f"After the snacks {n[0] - n[1] * n[2]} - {n[3] * n[4]} = {n[0] - n[1] * n[2] - n[3] * n[4]} dollars are left.",
         f"Each friend gets {n[0] - n[1] * n[2] - n[3] * n[4]} / {n[5]} = "
         f"{(n[0] - n[1] * n[2] - n[3] * n[4]) // n[5]} dollars."],
        (n[0] - n[1] * n[2] - n[3] * n[4]) // n[5])),
    _Template("training_weeks", "multiply+multiply+add+multiply+subtract", 4, _draw_training_weeks,
              lambda n, p, q, it: (
        f"{p} plans to run {n[0]} km on each of the 5 weekdays and {n[1]} km on each of the 2 weekend days, "
        f"every week for {n[2]} weeks. {p}'s running shoes cost {n[4]} dollars. "
        f"{p} misses {n[3]} km of the plan. How many km does {p} run?",
        [f"On weekdays {p} runs 5 * {n[0]} = {5 * n[0]} km a week.",
         f"On weekends {p} runs 2 * {n[1]} = {2 * n[1]} km a week.",
         f"Each week is {5 * n[0]} + {2 * n[1]} = {5 * n[0] + 2 * n[1]} km.",
         f"The plan is {5 * n[0] + 2 * n[1]} * {n[2]} = {(5 * n[0] + 2 * n[1]) * n[2]} km.",
         f"{p} runs {(5 * n[0] + 2 * n[1]) * n[2]} - {n[3]} = {(5 * n[0] + 2 * n[1]) * n[2] - n[3]} km."],
        (5 * n[0] + 2 * n[1]) * n[2] - n[3])),
)
TEMPLATE_NAMES: tuple[str, ...] = tuple(t.name for t in _TEMPLATES)

TEST_FRACTION = 10   # one problem in TEST_FRACTION (by content hash) belongs to the test split


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def arithmetic_split(key: str) -> str:
    """The split a generated problem belongs to: a pure function of its canonical key."""
    return "test" if _digest(key) % TEST_FRACTION == 0 else "train"


def _key(template: _Template, numbers: tuple[int, ...]) -> str:
    """The canonical content of a generated problem; also its source_id."""
    return f"arith:{template.name}:{','.join(map(str, numbers))}"


def _make(template: _Template, numbers: tuple[int, ...]) -> Problem:
    key = _key(template, numbers)
    # Names and items come from the key too, so the question text is a function of the
    # canonical content: equal texts have equal keys, hence equal splits.
    h = _digest("names:" + key)
    person = _NAMES[h % len(_NAMES)]
    other = _NAMES[(h + 1 + (h >> 16) % (len(_NAMES) - 1)) % len(_NAMES)]   # never `person`
    item = _ITEMS[(h >> 32) % len(_ITEMS)]
    question, lines, answer = template.write(numbers, person, other, item)
    solution = "\n".join(lines + [f"So the answer is $\\boxed{{{answer}}}$."])
    return Problem(question, str(answer), solution, template.level, template.kind, key)


ALL_LEVELS = (1, 2, 3, 4)
# Level 4 is opt-in: the default draw sequence (and every recorded result) stays as it was.
DEFAULT_LEVELS = (1, 2, 3)


def generate_arithmetic(n: int, split: str = "train", seed: int = 0,
                        levels: tuple[int, ...] = DEFAULT_LEVELS) -> list[Problem]:
    """`n` distinct arithmetic word problems of the given split, drawn with `seed`.

    Level L has L arithmetic steps; the numbers in the question grow with the level (up
    to 20, 100, 1000). Level 4 has four or five steps, numbers up to a few hundred, and
    one quantity the answer does not use (pass `levels=ALL_LEVELS` to include it).
    Deterministic in (n, split, seed, levels). Raises ValueError when the levels hold too
    few distinct problems of that split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    by_level = {lv: [t for t in _TEMPLATES if t.level == lv] for lv in levels}
    if not levels or any(not ts for ts in by_level.values()):
        raise ValueError(f"levels must be a non-empty subset of {ALL_LEVELS}, not {levels!r}")
    rng = random.Random(seed)
    problems: list[Problem] = []
    seen: set[str] = set()
    misses = 0            # draws in a row that gave nothing new: the space is running out
    while len(problems) < n:
        template = rng.choice(by_level[rng.choice(levels)])
        numbers = template.draw(rng)
        key = _key(template, numbers)
        if key in seen or arithmetic_split(key) != split:
            misses += 1
            if misses > 20_000:
                raise ValueError(f"levels {levels} hold fewer than {n} distinct {split} problems")
            continue
        misses = 0
        seen.add(key)
        problems.append(_make(template, numbers))
    return problems


# --------------------------------------------------------------------------- JSONL files

# A JSONL line past this size is refused before it is parsed: a MATH problem with its
# solution is a few KB, and a megabyte of text is far past any model's context anyway.
MAX_LINE_BYTES = 1 << 20


def _rows(path: str):
    """(line number, row dict) for every non-blank line."""
    with open(path, "rb") as f:
        line_no = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            line_no += 1
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(path, line_no, "(row)", f"longer than {MAX_LINE_BYTES:,} bytes: refused before "
                                "parsing (no problem or SFT row is that long)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, line_no, "(row)", f"not UTF-8 text (bad byte at column {e.start + 1}): "
                                "expected a JSONL file, one JSON object a line") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, line_no, "(row)", f"invalid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise DataError(path, line_no, "(row)", "expected a JSON object")
            yield line_no, row


def _text_field(row: dict, name: str, path: str, line_no: int) -> str:
    if name not in row:
        raise DataError(path, line_no, name, "missing")
    value = row[name]
    if not isinstance(value, str):
        raise DataError(path, line_no, name, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(path, line_no, name, "empty")
    return value


def _math_level(value, path: str, line_no: int) -> int | None:
    """"Level 3" or 3 -> 3; "Level ?" (a few MATH rows) or absent -> None."""
    if value is None or value == "Level ?":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(?:Level\s*)?(\d+)\s*", value)
        if m:
            return int(m.group(1))
    raise DataError(path, line_no, "level", f"expected 'Level N' or an integer, got {value!r}")


def load_math_jsonl(path: str) -> list[Problem]:
    """MATH-style rows: `problem`, `solution` (with a \\boxed answer), optional `level`
    ("Level 3"), `type` (or `subject`), `answer` (MATH-500 carries one) and `unique_id`."""
    problems = []
    name = os.path.basename(path)
    for line_no, row in _rows(path):
        question = _text_field(row, "problem", path, line_no)
        solution = _text_field(row, "solution", path, line_no)
        if "answer" in row:
            answer = _text_field(row, "answer", path, line_no).strip()
        else:
            answer = extract_answer(solution)
            if answer is None:
                raise DataError(path, line_no, "solution", "no \\boxed{...} answer in the solution")
        subject_field = "type" if "type" in row else "subject"
        subject = _text_field(row, subject_field, path, line_no) if subject_field in row else None
        source_id = row.get("unique_id") if isinstance(row.get("unique_id"), str) else f"{name}:{line_no}"
        problems.append(Problem(question, answer, solution, _math_level(row.get("level"), path, line_no),
                                subject, source_id, f"{path}, line {line_no}"))
    return problems


def load_gsm8k_jsonl(path: str) -> list[Problem]:
    """GSM8K rows: `question`, and `answer` = worked solution ending in `#### n`."""
    problems = []
    name = os.path.basename(path)
    for line_no, row in _rows(path):
        question = _text_field(row, "question", path, line_no)
        worked = _text_field(row, "answer", path, line_no)
        answer = extract_gsm8k_answer(worked)
        if answer is None:
            raise DataError(path, line_no, "answer", "no '#### <answer>' line")
        # Drop GSM8K's calculator annotations (<<48/2=24>>): they are tool calls, not prose.
        solution = re.sub(r"<<[^>]*>>", "", worked.rsplit("####", 1)[0]).strip()
        problems.append(Problem(question, answer, solution or None, None, "gsm8k", f"{name}:{line_no}",
                                f"{path}, line {line_no}"))
    return problems


def load_sft_problems(path: str) -> list[Problem]:
    """The problems of a JSONL of SFT rows (`question`, `answer` = the gold answer,
    `response`), as train.sft writes them: one per row, its gold answer as written."""
    problems = []
    name = os.path.basename(path)
    for line_no, row in _rows(path):
        question = _text_field(row, "question", path, line_no)
        answer = _text_field(row, "answer", path, line_no).strip()
        _text_field(row, "response", path, line_no)
        problems.append(Problem(question, answer, None, None, "sft", f"{name}:{line_no}", f"{path}, line {line_no}"))
    return problems


def file_format(path: str) -> str:
    """'sft', 'math' or 'gsm8k', told apart by the fields of the first row. SFT rows are
    tested first: they carry `question` and `answer` too, but their answer is the bare
    gold answer, not GSM8K's worked solution ending in `#### n`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r} is neither 'arith' nor a file")
    for line_no, row in _rows(path):
        if "response" in row and "question" in row:
            return "sft"
        if "problem" in row:
            return "math"
        if "question" in row:
            return "gsm8k"
        raise DataError(path, line_no, "(row)", "neither MATH fields (problem, solution), GSM8K fields "
                        "(question, answer) nor SFT rows (question, answer, response)")
    raise DataError(path, 1, "(row)", "the file has no rows")


def load_problems(source: str, split: str = "train", n: int = 1000, seed: int = 0) -> list[Problem]:
    """`"arith"` (the generator: `split`, `n`, `seed` apply) or a JSONL file of MATH,
    GSM8K or SFT rows (see file_format)."""
    if source == "arith":
        return generate_arithmetic(n, split=split, seed=seed)
    loader = {"sft": load_sft_problems, "math": load_math_jsonl, "gsm8k": load_gsm8k_jsonl}[file_format(source)]
    return loader(source)
