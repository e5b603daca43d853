"""Functional-token steps: transition tables, formatting, tolerant parsing, terminal steps."""

import random

import pytest

from rftt.steps import (EMPTY_CONTENT, MISMATCHED_CLOSE, RL_TRANSITIONS, ROOT, SFT_CHILDREN,
                        TEXT_OUTSIDE, UNCLOSED_TAG, UNKNOWN_TAG, Step, allowed_next,
                        format_step, format_steps, is_terminal, parse_steps)
from rftt.tokens import FUNCTIONS


# --------------------------------------------------------------------------- tables

def test_rl_table_matches_the_design():
    assert RL_TRANSITIONS[ROOT] == ("clarify", "analysis", "subquestion", "next_step")
    assert set(RL_TRANSITIONS["direct_answer"]) == {"output", "verify"}
    assert set(RL_TRANSITIONS["verify"]) == {"next_step", "refine", "direct_answer", "subquestion", "verify", "output"}
    assert set(RL_TRANSITIONS["refine"]) == {"next_step", "direct_answer", "output", "subquestion", "verify"}
    assert RL_TRANSITIONS["output"] == ()


def test_rl_table_covers_every_function_and_only_functions():
    assert set(RL_TRANSITIONS) == set(FUNCTIONS) | {ROOT}
    for targets in RL_TRANSITIONS.values():
        assert set(targets) <= set(FUNCTIONS)
        assert len(set(targets)) == len(targets)


def test_every_function_is_reachable_and_output_is_the_only_leaf():
    reachable, frontier = set(), [ROOT]
    while frontier:
        for nxt in RL_TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(FUNCTIONS)
    assert [f for f, targets in RL_TRANSITIONS.items() if not targets] == ["output"]


def test_sft_table_multiplicities():
    root = SFT_CHILDREN[ROOT]
    assert {f: root.count(f) for f in set(root)} == {
        "clarify": 2, "analysis": 2, "subquestion": 2, "next_step": 2, "direct_answer": 1}
    assert SFT_CHILDREN["direct_answer"] == ()
    assert set(SFT_CHILDREN["clarify"]) == {"analysis", "next_step", "direct_answer", "subquestion"}
    assert set(SFT_CHILDREN["next_step"]) == {"next_step", "direct_answer", "subquestion"}
    # the prompt-driven phase never searches for verify/refine/output: merging writes them
    assert not {"verify", "refine", "output"} & set(SFT_CHILDREN)
    assert not {"verify", "refine", "output"} & {f for t in SFT_CHILDREN.values() for f in t}


def test_allowed_next():
    assert allowed_next("subquestion") == ("next_step", "direct_answer")
    with pytest.raises(ValueError):
        allowed_next("think")


# --------------------------------------------------------------------------- format

def test_format_step_is_the_paper_layout():
    assert format_step("verify", "Step 2 is wrong.") == "<verify>\nStep 2 is wrong.\n</verify>\n"
    with pytest.raises(ValueError):
        format_step("think", "x")
    with pytest.raises(ValueError):          # would not survive a round trip
        format_step("next_step", "a </next_step> b")


def _random_content(rng: random.Random) -> str:
    pieces = ["Let x = 2.", "\n", "  ", "a<b and b>c", "$\\frac{1}{2}$", "So the answer is \\boxed{5}.",
              "<", ">", "\t", "line\nline", "é ü 中文", "</", "<x>"]
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
    return text if text.strip() else "x"


def test_format_then_parse_is_exact():
    rng = random.Random(0)
    for _ in range(300):
        steps = [Step(rng.choice(FUNCTIONS), _random_content(rng)) for _ in range(rng.randint(1, 6))]
        parsed = parse_steps(format_steps(steps))
        assert parsed.steps == steps
        assert all(p.kind == UNKNOWN_TAG for p in parsed.problems)   # only the literal <x>


def test_round_trip_keeps_leading_and_trailing_whitespace_and_newlines():
    steps = [Step("next_step", "\n  indented\n"), Step("output", " \\boxed{1} ")]
    assert parse_steps(format_steps(steps)).steps == steps


# --------------------------------------------------------------------------- parse problems

def kinds(result):
    return [p.kind for p in result.problems]


def test_clean_text_has_no_problems():
    text = "<clarify>\nq\n</clarify>\n<next_step>\nSo the answer is \\boxed{3}\n</next_step>\n"
    result = parse_steps(text)
    assert result.ok
    assert [s.function for s in result.steps] == ["clarify", "next_step"]


def test_unclosed_tag_at_the_end():
    text = "<analysis>\nthink\n</analysis>\n<next_step>\nStep 1: add"
    result = parse_steps(text)
    assert result.steps == [Step("analysis", "think")]
    assert kinds(result) == [UNCLOSED_TAG]
    assert result.problems[0].offset == text.index("<next_step>")


def test_open_while_open_reports_the_first_as_unclosed():
    text = "<analysis>\na\n<next_step>\nb\n</next_step>\n"
    result = parse_steps(text)
    assert result.steps == [Step("next_step", "b")]
    assert kinds(result) == [UNCLOSED_TAG]
    assert result.problems[0].offset == 0


def test_unknown_tag_is_reported_and_kept_as_text():
    text = "<next_step>\nuse <b>bold</b>\n</next_step>\n"
    result = parse_steps(text)
    assert result.steps == [Step("next_step", "use <b>bold</b>")]
    assert kinds(result) == [UNKNOWN_TAG, UNKNOWN_TAG]
    assert result.problems[0].offset == text.index("<b>")


def test_mismatched_close_keeps_the_opening_function():
    text = "<verify>\nStep 2 is wrong\n</refine>\n"
    result = parse_steps(text)
    assert result.steps == [Step("verify", "Step 2 is wrong")]
    assert kinds(result) == [MISMATCHED_CLOSE]
    assert result.problems[0].offset == text.index("</refine>")


def test_stray_close_without_open():
    text = "</output>\n<output>\n\\boxed{1}\n</output>\n"
    result = parse_steps(text)
    assert result.steps == [Step("output", "\\boxed{1}")]
    assert kinds(result) == [MISMATCHED_CLOSE]
    assert result.problems[0].offset == 0


def test_text_outside_steps():
    text = "Sure! <clarify>\nq\n</clarify>\nthen some chatter\n<output>\n1\n</output>\n  trailing"
    result = parse_steps(text)
    assert [s.function for s in result.steps] == ["clarify", "output"]
    assert kinds(result) == [TEXT_OUTSIDE, TEXT_OUTSIDE, TEXT_OUTSIDE]
    assert [p.offset for p in result.problems] == [
        0, text.index("then some"), text.index("trailing")]


def test_blank_text_between_steps_is_fine():
    text = "\n\n<clarify>\nq\n</clarify>\n\n  \n<output>\n1\n</output>\n\n"
    assert parse_steps(text).ok


def test_empty_content():
    text = "<analysis>\n\n</analysis>\n<analysis>\n   \n</analysis>\n<analysis></analysis>"
    result = parse_steps(text)
    assert result.steps == []
    assert kinds(result) == [EMPTY_CONTENT] * 3
    assert [p.offset for p in result.problems] == [0, text.index("<analysis>", 1), text.rindex("<analysis>")]


def test_content_without_framing_newlines_is_read_as_is():
    assert parse_steps("<output>\\boxed{2}</output>").steps == [Step("output", "\\boxed{2}")]


def test_math_with_angle_brackets_is_not_a_tag():
    text = "<next_step>\nif a<b and c > d then x<y\n</next_step>\n"
    result = parse_steps(text)
    assert result.ok
    assert result.steps[0].content == "if a<b and c > d then x<y"


@pytest.mark.parametrize("text", [
    "", "<", ">", "</", "<>", "</>", "<<next_step>>", "<next_step", "next_step>", "<NEXT_STEP>\nx\n</NEXT_STEP>",
    "</next_step></next_step>", "<output>" * 50, "\x00<clarify>\x00</clarify>", "<clarify>\n" + "x" * 10000,
])
def test_parse_never_raises(text):
    result = parse_steps(text)
    assert isinstance(result.steps, list)
    for problem in result.problems:
        assert 0 <= problem.offset <= len(text)


def test_parse_never_raises_on_random_tag_soup():
    rng = random.Random(1)
    atoms = ["<clarify>", "</clarify>", "<output>", "</output>", "<next_step>", "</verify>", "\n",
             "x", " ", "<foo>", "</", ">", "<", "\\boxed{", "}"]
    for _ in range(500):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 30)))
        result = parse_steps(text)
        for problem in result.problems:
            assert 0 <= problem.offset <= len(text)
        for step in result.steps:
            assert step.function in FUNCTIONS and step.content.strip()


# --------------------------------------------------------------------------- terminal

@pytest.mark.parametrize("step, terminal", [
    (Step("direct_answer", "It is 5."), True),
    (Step("output", "\\boxed{5}"), True),
    (Step("next_step", "Step 3: So the answer is 5."), True),
    (Step("next_step", "Adding gives $\\boxed{12}$."), True),
    (Step("next_step", "Step 1: compute 3 + 4 = 7."), False),
    (Step("next_step", "The box \\boxed{ is unclosed"), False),
    (Step("clarify", "So the answer is what?"), False),
    (Step("verify", "\\boxed{3} was wrong"), False),
    (Step("refine", "So the answer is 4"), False),
    (Step("subquestion", "What is 2+2? \\boxed{4}"), False),
])
def test_is_terminal(step, terminal):
    assert is_terminal(step) is terminal
