"""Does a prompt plus what a run may generate after it fit the model's context?

A prompt past `max_position_embeddings` is not merely degraded: the reference attention
materialises [heads, T, T] scores, so an 11,793-token prompt grows past 16 GB on a CPU
before a single answer token. Entry points check every prompt against this limit before
any search or training starts, and say which file line (or flag) is too long.
"""

from __future__ import annotations

# Room for the tokens a searched step carries around its capped content (markers that
# open and close it, newlines): a few, generously counted.
STEP_TAG_TOKENS = 8


class ContextLengthError(ValueError):
    """A prompt that, with the run's generation caps, does not fit the model's context."""


def search_path_tokens(depth: int, max_step_tokens: int, direct_answer_tokens: int | None = None) -> int:
    """The most tokens one search path can append to its prompt: `depth` steps, each at
    most `max_step_tokens` of content plus its markers, one of which (a direct answer ends
    its path) may run to `direct_answer_tokens` instead."""
    longer = max(0, (direct_answer_tokens or max_step_tokens) - max_step_tokens)
    return depth * (max_step_tokens + STEP_TAG_TOKENS) + longer


def search_path_caps(depth: int, step_flag: str, max_step_tokens: int, direct_answer_tokens: int | None) -> str:
    """The flags behind search_path_tokens(...), as a context error names them;
    `step_flag` is the flag that sets the step cap in the calling command."""
    caps = f"--depth {depth} x ({step_flag} {max_step_tokens} + {STEP_TAG_TOKENS} tag tokens)"
    if direct_answer_tokens is not None and direct_answer_tokens > max_step_tokens:
        caps += f", one of them a direct answer of up to --direct-answer-tokens {direct_answer_tokens}"
    return caps


def check_fits_context(config, prompt_tokens: int, new_tokens: int, where: str, caps: str) -> None:
    """Raises ContextLengthError naming `where` (a file and line, or a flag) and `caps`
    (the flags that set `new_tokens`) when prompt + new tokens exceed the context."""
    limit = config.max_position_embeddings
    needed = prompt_tokens + new_tokens
    if needed > limit:
        raise ContextLengthError(
            f"{where}: a prompt of {prompt_tokens:,} tokens + up to {new_tokens:,} generated ({caps}) = "
            f"{needed:,} positions, past the model's context of {limit:,} (max_position_embeddings); "
            "shorten the input or lower those caps")
