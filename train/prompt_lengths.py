"""Every problem's prompt, plus what the run may generate after it, must fit the model's
context: checked for all problems before any search or training, so a 10 MB question in
line 7,000 of a file stops the run at once with its file and line, not an hour later
with an allocation failure inside attention."""

from __future__ import annotations

from model.context import check_fits_context
from rftt.data import Problem
from rftt.prompts import solve_prompt_ids
from train.sequences import Sequence


def check_problem_prompts(problems: list[Problem], tok, config, new_tokens: int, caps: str) -> int:
    """Each problem's solver prompt + `new_tokens` (set by the flags in `caps`) must fit;
    the error names the problem's file and line (or its generator id). Returns the
    longest prompt's token count (what a KV pool must hold for any one problem)."""
    longest = 0
    for p in problems:
        where = p.origin or f"problem {p.source_id}"
        prompt_tokens = len(solve_prompt_ids(tok, p.question))
        check_fits_context(config, prompt_tokens, new_tokens, f"{where}, field 'question'", caps)
        longest = max(longest, prompt_tokens)
    return longest


def check_sequence_lengths(sequences: list[Sequence], config, path: str) -> None:
    """Each training sequence (prompt + response + EOS) must fit the context."""
    for i, seq in enumerate(sequences):
        check_fits_context(config, seq.prompt_len, len(seq.tokens) - seq.prompt_len, f"{path}, row {i + 1}",
                           "the row's response")
