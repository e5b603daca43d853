"""The instruction prompts of the phase-1 (SFT warm-up) prompt-driven search (paper §3.1).

Phase 1 runs before the model has functional tokens: a plain instruct model is asked, one
function at a time, to write the next reasoning step of a partial solution. Every prompt
carries the question and "Existing Steps:" followed by the steps so far, written as plain
text ("Step 1 (clarify): ..."), then the instruction for the function wanted, as in the
authors' release. The instruction comes last, after the question and the steps.

A generation may also start with forced assistant text (``assistant_prefix``): a small
model follows "Sub-question:" far more reliably than it follows a description of it.

The sub-question step takes two generations (as in the authors' release): the question,
stopping at a newline, then its answer. ``SUBQUESTION_ANSWER_PREFIX`` is forced between.

Answers go in ``\\boxed{}`` (the release asked for ``\\box{}``, which its own grader never
found). Every function here is pure: text in, text out.
"""

from __future__ import annotations

from typing import Sequence

from .steps import Step

# What each function asks for (paper §3.1: clarify restates with all the information;
# analysis is guidance without calculation; a sub-question is independently solvable and
# then answered; a next step is one named step or the final "So the answer is"; a direct
# answer finishes everything).
INSTRUCTIONS: dict[str, str] = {
    "clarify": (
        "Restate the question clearly in your own words, keeping every number and condition it "
        "gives. Do not solve it."
    ),
    "analysis": (
        "In one or two sentences, say how to approach the rest of the problem. Give guidance "
        "only: do not calculate anything."
    ),
    "subquestion": (
        "Propose one sub-question that can be solved on its own and helps answer the question. "
        "Write the sub-question on one line, then answer it."
    ),
    "next_step": (
        "Write only the next step: a short name for the step, then its working. If this step "
        "finds the final answer, end it with \"So the answer is \\boxed{ANSWER}.\""
    ),
    "direct_answer": (
        "Solve the rest of the problem, step by step, and end with \"So the answer is "
        "\\boxed{ANSWER}.\""
    ),
}

# Forced at the start of the assistant's reply (part of the prompt, not of the step).
ASSISTANT_PREFIX: dict[str, str] = {
    "clarify": "",
    "analysis": "",
    "subquestion": "Sub-question:",
    "next_step": "",
    "direct_answer": "",
}
SUBQUESTION_ANSWER_PREFIX = "\nAnswer:"
# Forced after a direct answer that boxed nothing, when the search is told to (force_answer).
FORCED_ANSWER_PREFIX = "\nSo the answer is \\boxed{"

VERIFY_INSTRUCTION = (
    "Both attempts above continue the same existing steps. Attempt A reaches a wrong answer; "
    "attempt B is correct. In one or two sentences, say where and why attempt A went wrong."
)


def format_existing_steps(steps: Sequence[Step]) -> str:
    """The steps so far as plain numbered text (no functional tags: the model has none yet)."""
    if not steps:
        return "(none yet)"
    return "\n".join(f"Step {i} ({s.function}): {s.content.strip()}" for i, s in enumerate(steps, 1))


def step_request(function: str, question: str, steps: Sequence[Step]) -> str:
    """The user message asking for the next step of type `function`."""
    if function not in INSTRUCTIONS:
        raise ValueError(f"the prompt-driven search has no prompt for {function!r}; expected one of {tuple(INSTRUCTIONS)}")
    return (
        f"Question: {question.strip()}\n\n"
        f"Existing Steps:\n{format_existing_steps(steps)}\n\n"
        f"{INSTRUCTIONS[function]}"
    )


def step_messages(function: str, question: str, steps: Sequence[Step]) -> list[dict]:
    return [{"role": "user", "content": step_request(function, question, steps)}]


def step_prompt(tokenizer, function: str, question: str, steps: Sequence[Step]) -> str:
    """The chat-templated prompt text, ending with the forced start of the reply."""
    text = tokenizer.apply_chat_template(step_messages(function, question, steps))
    return text + ASSISTANT_PREFIX[function]


def verify_request(question: str, shared: Sequence[Step], wrong: Sequence[Step], correct: Sequence[Step]) -> str:
    """Cross-verification (paper §3.1): where did the wrong continuation go wrong?"""
    def attempt(steps: Sequence[Step], start: int) -> str:
        return "\n".join(f"Step {i} ({s.function}): {s.content.strip()}" for i, s in enumerate(steps, start))

    first = len(shared) + 1
    return (
        f"Question: {question.strip()}\n\n"
        f"Existing Steps:\n{format_existing_steps(shared)}\n\n"
        f"Attempt A (wrong):\n{attempt(wrong, first)}\n\n"
        f"Attempt B (correct):\n{attempt(correct, first)}\n\n"
        f"{VERIFY_INSTRUCTION}"
    )


def verify_prompt(tokenizer, question: str, shared: Sequence[Step], wrong: Sequence[Step],
                  correct: Sequence[Step]) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": verify_request(question, shared, wrong, correct)}])
