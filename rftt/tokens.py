"""RFTT's functional tokens (paper §3.1): eight reasoning functions, each a tag pair.

A reasoning step is ``<tag>\\n{content}\\n</tag>\\n``. The paper adds the tags to the
vocabulary as special tokens (the authors' release kept them as multi-token text; we do
what the paper says, see model/vocab.py for how the new rows are initialised).
"""

from __future__ import annotations

# The order is the order the paper introduces them in; it is also the order the ids are
# appended to the vocabulary, so it must never change once a model has been trained.
FUNCTIONS: tuple[str, ...] = (
    "clarify",        # restate the question with all of its information
    "analysis",       # one or two sentences of guidance, no calculation
    "subquestion",    # propose an independently solvable sub-problem, then answer it
    "next_step",      # one step: "Step name" + process, or "So the answer is \boxed{..}"
    "direct_answer",  # finish the whole solution at once
    "verify",         # say where a previous step went wrong
    "refine",         # the corrected continuation after a verify
    "output",         # the final boxed answer
)


def open_tag(function: str) -> str:
    return f"<{function}>"


def close_tag(function: str) -> str:
    return f"</{function}>"


# The 16 token strings: each opening tag followed by its closing twin.
FUNCTIONAL_TOKENS: tuple[str, ...] = tuple(
    tag for f in FUNCTIONS for tag in (open_tag(f), close_tag(f))
)
OPEN_TAGS: tuple[str, ...] = tuple(open_tag(f) for f in FUNCTIONS)
CLOSE_TAGS: tuple[str, ...] = tuple(close_tag(f) for f in FUNCTIONS)


def add_functional_tokens(model, tokenizer) -> list[int]:
    """Adds the 16 functional tokens to a loaded model and its tokenizer; returns their ids.

    Each new embedding row starts as the mean of the rows of the text it spells (see
    model/vocab.py). Idempotent: a model that already has them is left unchanged.
    """
    from model.vocab import add_tokens_with_mean_init

    return add_tokens_with_mean_init(model, tokenizer, list(FUNCTIONAL_TOKENS))
