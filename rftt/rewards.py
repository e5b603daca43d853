"""Rewards for online RL (paper §3.3).

The outcome reward is rule-based: 1.0 for a correct final answer, 0.1 for an answer that
is present but wrong (it still followed the format), 0.0 for no answer at all.

An optional process reward model (PRM) scores each step. How its scores combine with the
outcome, per step of a rollout path (``step_rewards``), is this rule:

- the LAST step carries the outcome reward; if the path gave no answer and a PRM is
  present, the PRM's score of that last step replaces the 0 (paper §3.3: a leaf that never
  answered is worth what the PRM thinks its reasoning is worth, not nothing);
- with ``step_weight > 0`` every step also gets ``step_weight * score / len(steps)``.
  Dividing by the path length keeps the whole dense part at most ``step_weight``: with
  gamma = 1 a plain per-step bonus would pay for long paths, a known way PRM rewards get
  hacked (Gao et al. 2024, "On Designing Effective RL Reward at Training Time"). The
  default is 0: the rule the paper states is the leaf rule above. (The authors' release
  instead gives every step its PRM score and blends the last one as 0.6 * outcome +
  0.4 * score; ``step_weight`` is our bounded version of the per-step part.)

The RL loop puts each step's reward on the step's closing-tag token; REINFORCE++ then sums
them into returns with gamma = 1 (paper §3.3).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Callable, Protocol, Sequence

from rftt.grading import extract_answer, is_equiv
from rftt.steps import Step, format_steps

CORRECT_REWARD = 1.0
WRONG_ANSWER_REWARD = 0.1
NO_ANSWER_REWARD = 0.0

# Any reward with this shape can replace outcome_reward: (response text, gold answer) -> float.
RewardFn = Callable[[str, str], float]


def outcome_reward(response_text: str, gold: str) -> float:
    """1.0 correct, 0.1 answer present but wrong, 0.0 no answer (paper §3.3).

    The answer is the last \\boxed{} in the response; a response without one has not
    answered, whatever numbers it mentions.
    """
    answer = extract_answer(response_text)
    if answer is None:
        return NO_ANSWER_REWARD
    return CORRECT_REWARD if is_equiv(answer, gold) else WRONG_ANSWER_REWARD


class ProcessRewardModel(Protocol):
    """Scores the steps of a (possibly unfinished) reasoning path.

    ``score_steps(question, steps)`` returns one score in [0, 1] per step: how likely the
    path, up to and including that step, is still on its way to a correct answer.
    """

    def score_steps(self, question: str, steps: Sequence[Step]) -> list[float]: ...


def step_rewards(question: str, steps: Sequence[Step], gold: str,
                 prm: ProcessRewardModel | None = None, step_weight: float = 0.0,
                 reward_fn: RewardFn = outcome_reward) -> list[float]:
    """One reward per step of a rollout path, by the rule in this module's docstring."""
    if not steps:
        return []
    response = format_steps(list(steps))
    final = reward_fn(response, gold)
    rewards = [0.0] * len(steps)
    if prm is None:
        rewards[-1] = final
        return rewards
    scores = prm.score_steps(question, steps)
    if len(scores) != len(steps) or not all(0.0 <= s <= 1.0 for s in scores):
        raise ValueError(f"a PRM must return one score in [0, 1] per step, got {scores!r}")
    if extract_answer(response) is None:
        final = scores[-1]
    rewards = [step_weight * s / len(steps) for s in scores]
    rewards[-1] += final
    return rewards


# --------------------------------------------------------------------------- a test double

_NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_ARITHMETIC = re.compile(rf"({_NUMBER})\s*([-+*/×x÷])\s*({_NUMBER})\s*=\s*({_NUMBER})")


def _value(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


class ArithmeticCheckPRM:
    """A deterministic stand-in for a learned PRM, for tests and for the arithmetic data:
    a step's score is the fraction of its `a op b = c` statements that are right (exact
    rational arithmetic), and 0.5 when it states none (no evidence either way)."""

    def score_steps(self, question: str, steps: Sequence[Step]) -> list[float]:
        return [self.score_text(step.content) for step in steps]

    @staticmethod
    def score_text(text: str) -> float:
        statements = _ARITHMETIC.findall(text)
        if not statements:
            return 0.5
        right = sum(_holds(_value(a), op, _value(b), _value(c)) for a, op, b, c in statements)
        return right / len(statements)


def _holds(a: Fraction, op: str, b: Fraction, c: Fraction) -> bool:
    if op == "+":
        return a + b == c
    if op == "-":
        return a - b == c
    if op in "*×x":
        return a * b == c
    return b != 0 and a / b == c
