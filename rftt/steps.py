"""Reasoning steps made of functional tokens: which step may follow which, and how a
step is written and read back (paper §3.1, §3.2).

A step is ``<tag>\\n{content}\\n</tag>\\n``. Writing is exact; reading model text never
raises: a model can emit anything, and the search must keep going, so ``parse_steps``
returns the steps it could read together with a list of what was wrong and where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rftt.grading import extract_answer
from rftt.tokens import FUNCTIONAL_TOKENS, FUNCTIONS, close_tag, open_tag

# The node above the first step: the question itself.
ROOT = "root"

# Phase 2 (online RL) and inference: after a step of type `from`, the model's own
# distribution over the next functional token is restricted to these (paper §3.2).
# `output` is a leaf.
RL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    ROOT: ("clarify", "analysis", "subquestion", "next_step"),
    "clarify": ("analysis", "subquestion", "next_step", "direct_answer"),
    "analysis": ("subquestion", "next_step", "direct_answer"),
    "subquestion": ("next_step", "direct_answer"),
    "next_step": ("next_step", "direct_answer", "subquestion", "verify", "output"),
    "direct_answer": ("output", "verify"),
    "verify": ("next_step", "refine", "direct_answer", "subquestion", "verify", "output"),
    "refine": ("next_step", "direct_answer", "output", "subquestion", "verify"),
    "output": (),
}

# Phase 1 (SFT warm-up): the prompt-driven search expands every child of a node at once,
# and some functions are sampled twice so that the tree holds two different clarifications
# (analyses, ...) of the same state (paper §3.1; the authors' release). A repeated entry is
# one more child. `verify`, `refine` and `output` never appear here: they are written by
# cross-verification when a wrong and a correct branch are merged, not searched for.
SFT_CHILDREN: dict[str, tuple[str, ...]] = {
    ROOT: ("clarify", "clarify", "analysis", "analysis", "subquestion", "subquestion",
           "next_step", "next_step", "direct_answer"),
    "clarify": ("analysis", "next_step", "direct_answer", "subquestion"),
    "analysis": ("direct_answer", "next_step", "subquestion"),
    "subquestion": ("direct_answer", "next_step"),
    "next_step": ("next_step", "direct_answer", "subquestion"),
    "direct_answer": (),
}


def allowed_next(previous: str) -> tuple[str, ...]:
    """Functions that may follow `previous` (a function name or ROOT) in RL and inference."""
    if previous not in RL_TRANSITIONS:
        raise ValueError(f"unknown function {previous!r}; expected {ROOT!r} or one of {FUNCTIONS}")
    return RL_TRANSITIONS[previous]


@dataclass(frozen=True)
class Step:
    function: str   # one of rftt.tokens.FUNCTIONS
    content: str    # the text between the tags, without the framing newlines


def format_step(function: str, content: str) -> str:
    if function not in FUNCTIONS:
        raise ValueError(f"unknown function {function!r}; expected one of {FUNCTIONS}")
    # A functional tag inside the content would be read back as a step boundary.
    if any(tag in content for tag in FUNCTIONAL_TOKENS):
        raise ValueError(f"step content contains a functional tag: {content[:60]!r}")
    return f"{open_tag(function)}\n{content}\n{close_tag(function)}\n"


def format_steps(steps: list[Step] | tuple[Step, ...]) -> str:
    return "".join(format_step(s.function, s.content) for s in steps)


# Problem kinds reported by parse_steps.
UNCLOSED_TAG = "unclosed_tag"          # an opening tag whose step never closes
UNKNOWN_TAG = "unknown_tag"            # <word> or </word> that is not a functional token
MISMATCHED_CLOSE = "mismatched_close"  # a closing tag for a step that is not open
TEXT_OUTSIDE = "text_outside"          # non-blank text between steps
EMPTY_CONTENT = "empty_content"        # a step with nothing but whitespace inside


@dataclass(frozen=True)
class ParseProblem:
    kind: str      # one of the constants above
    offset: int    # character offset in the parsed text where the problem starts
    detail: str


@dataclass
class ParseResult:
    steps: list[Step] = field(default_factory=list)
    problems: list[ParseProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# Anything shaped like a tag: `<name>` or `</name>` with a lower-case identifier. Math such
# as `a<b` or `x < y > z` does not match, since a tag has no spaces and ends in `>`.
_TAG = re.compile(r"<(/?)([a-z_]+)>")


def _strip_framing(content: str) -> str:
    # Undo exactly what format_step added, so format -> parse is the identity even when the
    # content itself begins or ends with whitespace.
    if content.startswith("\n"):
        content = content[1:]
    if content.endswith("\n"):
        content = content[:-1]
    return content


def parse_steps(text: str) -> ParseResult:
    """Read the functional steps in a response (the text after the question).

    Never raises. Steps do not nest: an opening tag while a step is open leaves the open
    step unclosed (reported, dropped). A closing tag of the wrong kind closes the open step
    (reported, kept under its opening function: the opening tag is the function the search
    chose). Unknown tags are reported and otherwise treated as text. Empty steps are
    reported and dropped.
    """
    result = _StepReader(text)
    for match in _TAG.finditer(text):
        is_close, name = match.group(1) == "/", match.group(2)
        if name not in FUNCTIONS:
            result.problem(UNKNOWN_TAG, match.start(), f"<{match.group(1)}{name}> is not a functional token")
        elif is_close:
            result.close(name, match)
        else:
            result.open(name, match)
    result.finish()
    return result.result


class _StepReader:
    """The state of parse_steps while it walks the tags, kept out of the loop for clarity."""

    def __init__(self, text: str):
        self.text = text
        self.result = ParseResult()
        self.open_name: str | None = None
        self.open_at = 0            # offset of the open tag
        self.content_start = 0      # offset just after the open tag
        self.outside_from = 0       # start of text not inside any step

    def problem(self, kind: str, offset: int, detail: str) -> None:
        self.result.problems.append(ParseProblem(kind, offset, detail))

    def check_outside(self, end: int) -> None:
        gap = self.text[self.outside_from:end]
        if gap.strip():
            first = self.outside_from + (len(gap) - len(gap.lstrip()))
            self.problem(TEXT_OUTSIDE, first, f"text outside any step: {gap.strip()[:40]!r}")

    def open(self, name: str, match: re.Match) -> None:
        if self.open_name is not None:
            self.problem(UNCLOSED_TAG, self.open_at, f"<{self.open_name}> is not closed before <{name}>")
        else:
            self.check_outside(match.start())
        self.open_name, self.open_at, self.content_start = name, match.start(), match.end()

    def close(self, name: str, match: re.Match) -> None:
        if self.open_name is None:
            self.problem(MISMATCHED_CLOSE, match.start(), f"</{name}> closes no open step")
            self.check_outside(match.start())
            self.outside_from = match.end()
            return
        if name != self.open_name:
            self.problem(MISMATCHED_CLOSE, match.start(), f"</{name}> closes <{self.open_name}>")
        content = _strip_framing(self.text[self.content_start:match.start()])
        if content.strip():
            self.result.steps.append(Step(self.open_name, content))
        else:
            self.problem(EMPTY_CONTENT, self.open_at, f"<{self.open_name}> step is empty")
        self.open_name = None
        self.outside_from = match.end()

    def finish(self) -> None:
        if self.open_name is not None:
            self.problem(UNCLOSED_TAG, self.open_at, f"<{self.open_name}> is not closed")
        else:
            self.check_outside(len(self.text))


def is_terminal(step: Step) -> bool:
    """Does this step end a reasoning path? (Paper §3.1 and the authors' release.)

    A direct answer and an output always do; a next step does when it is the final one:
    it says "So the answer is" or gives a boxed answer. (The depth limit, the other way a
    path ends, is the search's business.)
    """
    if step.function in ("direct_answer", "output"):
        return True
    if step.function == "next_step":
        return "So the answer is" in step.content or extract_answer(step.content) is not None
    return False
