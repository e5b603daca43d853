"""Find the final answer in a model's response (or a GSM8K solution)."""

from __future__ import annotations

import re

BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def extract_answer(text: str | None) -> str | None:
    """The content of the LAST ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``).

    None when there is no box, when the last box is never closed (a generation cut off by
    the length cap has not answered), or when it is empty. Never falls back to "some number
    in the text": for a reward that would pay for guessing.
    """
    if not text:
        return None
    matches = list(BOX.finditer(text))
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
