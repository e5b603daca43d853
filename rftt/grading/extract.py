"""Find the final answer in a model's response (or a GSM8K solution)."""

from __future__ import annotations

import re

BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


# What may stand between boxes that together give one answer: `\boxed{2}, \boxed{5}`,
# `$\boxed{2}$ and $\boxed{5}$`, `\boxed{-1} \text{ or } \boxed{3}`. Anything else (words
# such as "then fixed it:", a full stop) means the last box is the answer.
_BOX_SEPARATOR = re.compile(
    r"(?:[\s,;$~]|\\[,;:! ]|\\q?quad(?![A-Za-z])|(?<![A-Za-z])(?:and|or)(?![A-Za-z])"
    r"|\\(?:text|textrm|mbox)\{\s*(?:and|or|,)?\s*\})*")
_MAX_SEPARATOR = 40        # characters; also keeps the check cheap
MAX_BOXES = 64             # boxes read as one answer (a set has at most 64 elements anyway)
_UNBRACED = re.compile(r"[^\s$]+")


def extract_answer(text: str | None) -> str | None:
    """The content of the LAST ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``);
    when the response ends in several boxes separated only by commas, "and", "or" or
    spaces (``\\boxed{2}, \\boxed{5}``), their contents joined by commas: one answer
    with several values, read as a set.

    None when there is no box, when the last box is never closed (a generation cut off by
    the length cap has not answered), or when it is empty. Never falls back to "some number
    in the text": for a reward that would pay for guessing.
    """
    if not text:
        return None
    matches = list(BOX.finditer(text))
    if not matches:
        return None
    content, _ = _box_content(text, matches[-1])
    if content is None:
        return None
    contents = [content]
    for k in range(len(matches) - 2, max(-1, len(matches) - 1 - MAX_BOXES), -1):
        previous, end = _box_content(text, matches[k])
        gap_end = matches[k + 1].start()
        if (previous is None or end > gap_end or gap_end - end > _MAX_SEPARATOR
                or not _BOX_SEPARATOR.fullmatch(text, end, gap_end)):
            break
        contents.append(previous)
    if len(set(contents)) == 1:
        return content                             # the same box repeated is one answer
    return ", ".join(reversed(contents))


def _box_content(text: str, match: re.Match) -> tuple[str | None, int]:
    """(stripped content of the box `match` opens, or None when it is unclosed or empty;
    the index just after the box)."""
    i = match.end()
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        content = _braced(text, i)
        end = i + len(content) + 2 if content is not None else len(text)
    else:                                          # \boxed 5: up to a space or a $
        m = _UNBRACED.match(text, i)
        content, end = (m.group(), m.end()) if m else (None, i)
    if content is None or not content.strip():
        return None, end
    return content.strip(), end


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
