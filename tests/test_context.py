"""model/context.py: the token budget of a search path, and the error that names its flags."""

import pytest

from model.context import STEP_TAG_TOKENS, ContextLengthError, check_fits_context, search_path_caps, search_path_tokens


class _Config:
    max_position_embeddings = 100


def test_search_path_tokens_counts_one_longer_direct_answer():
    assert search_path_tokens(3, 10) == 3 * (10 + STEP_TAG_TOKENS)
    assert search_path_tokens(3, 10, direct_answer_tokens=25) == 3 * (10 + STEP_TAG_TOKENS) + 15
    assert search_path_tokens(3, 10, direct_answer_tokens=5) == 3 * (10 + STEP_TAG_TOKENS)  # never shorter


def test_search_path_caps_names_the_direct_answer_only_when_it_is_longer():
    assert search_path_caps(4, "--max-step-tokens", 40, None) == \
        f"--depth 4 x (--max-step-tokens 40 + {STEP_TAG_TOKENS} tag tokens)"
    assert search_path_caps(4, "--max-step-tokens", 40, 40) == search_path_caps(4, "--max-step-tokens", 40, None)
    assert search_path_caps(4, "--max-new-tokens", 40, 160).endswith(
        "one of them a direct answer of up to --direct-answer-tokens 160")


def test_check_fits_context_names_where_and_the_caps():
    check_fits_context(_Config(), 60, 40, "q.jsonl, line 3", "caps")  # exactly the context: fits
    with pytest.raises(ContextLengthError, match=r"q.jsonl, line 3: a prompt of 60 tokens \+ up to 41 .*\(caps\)"):
        check_fits_context(_Config(), 60, 41, "q.jsonl, line 3", "caps")
