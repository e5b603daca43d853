"""Rewards: the rule-based outcome reward, the PRM protocol and how step scores combine."""

import pytest

from rftt.rewards import (CORRECT_REWARD, NO_ANSWER_REWARD, WRONG_ANSWER_REWARD,
                          ArithmeticCheckPRM, ProcessRewardModel, RewardFn, outcome_reward,
                          step_rewards)
from rftt.steps import Step, format_steps


@pytest.mark.parametrize("response, gold, reward", [
    ("<output>\n\\boxed{12}\n</output>\n", "12", 1.0),
    ("So the answer is $\\boxed{\\frac{1}{2}}$.", "0.5", 1.0),
    ("\\boxed{3} no wait \\boxed{4}", "4", 1.0),
    ("\\boxed{3} no wait \\boxed{4}", "3", 0.1),       # the last box is the answer
    ("<output>\n\\boxed{13}\n</output>\n", "12", 0.1),
    ("\\boxed{\\text{I don't know}}", "12", 0.1),          # present, wrong
    ("The answer is 12.", "12", 0.0),                      # no box: no answer, even if right
    ("12", "12", 0.0),
    ("\\boxed{12", "12", 0.0),                              # cut off
    ("", "12", 0.0),
    ("\\boxed{1,234}", "#### 1,234", 1.0),
])
def test_outcome_reward(response, gold, reward):
    assert outcome_reward(response, gold) == reward


def test_reward_constants_are_the_papers():
    assert (CORRECT_REWARD, WRONG_ANSWER_REWARD, NO_ANSWER_REWARD) == (1.0, 0.1, 0.0)


def test_outcome_reward_is_a_reward_fn():
    fn: RewardFn = outcome_reward
    assert fn("\\boxed{1}", "1") == 1.0


# --------------------------------------------------------------------------- the PRM double

@pytest.mark.parametrize("text, score", [
    ("3 + 4 = 7", 1.0),
    ("3 + 4 = 8", 0.0),
    ("12 * 3 = 36 and 36 - 6 = 30", 1.0),
    ("12 * 3 = 36 and 36 - 6 = 31", 0.5),
    ("10 / 4 = 2.5", 1.0),
    ("10 ÷ 0 = 0", 0.0),
    ("1,200 + 34 = 1,234", 1.0),
    ("7 x 6 = 42", 1.0),
    ("No arithmetic here.", 0.5),
])
def test_arithmetic_check_prm(text, score):
    assert ArithmeticCheckPRM.score_text(text) == score


def test_the_double_satisfies_the_protocol():
    prm: ProcessRewardModel = ArithmeticCheckPRM()
    steps = [Step("next_step", "3 + 4 = 7"), Step("next_step", "7 * 2 = 15")]
    assert prm.score_steps("q", steps) == [1.0, 0.0]


# --------------------------------------------------------------------------- combination

GOOD = [Step("analysis", "Multiply, then add."), Step("next_step", "3 * 4 = 12"),
        Step("next_step", "12 + 1 = 13. So the answer is \\boxed{13}.")]
WRONG = [Step("next_step", "3 * 4 = 12"), Step("next_step", "12 + 1 = 14. So the answer is \\boxed{14}.")]
UNFINISHED_GOOD = [Step("next_step", "3 * 4 = 12"), Step("next_step", "12 + 1 = 13")]
UNFINISHED_BAD = [Step("next_step", "3 * 4 = 11"), Step("next_step", "11 + 1 = 13")]


def test_without_prm_only_the_last_step_is_rewarded():
    assert step_rewards("q", GOOD, "13") == [0.0, 0.0, 1.0]
    assert step_rewards("q", WRONG, "13") == [0.0, 0.1]
    assert step_rewards("q", UNFINISHED_GOOD, "13") == [0.0, 0.0]
    assert step_rewards("q", [], "13") == []


def test_prm_replaces_the_zero_of_a_path_without_answer():
    prm = ArithmeticCheckPRM()
    assert step_rewards("q", UNFINISHED_GOOD, "13", prm=prm) == [0.0, 1.0]
    assert step_rewards("q", UNFINISHED_BAD, "13", prm=prm) == [0.0, 0.0]
    # ... but never the outcome of a path that answered
    assert step_rewards("q", GOOD, "13", prm=prm) == [0.0, 0.0, 1.0]
    assert step_rewards("q", WRONG, "13", prm=prm) == [0.0, 0.1]


def test_dense_step_rewards_are_bounded_by_the_step_weight():
    prm = ArithmeticCheckPRM()
    rewards = step_rewards("q", GOOD, "13", prm=prm, step_weight=0.3)
    assert rewards == pytest.approx([0.05, 0.1, 1.1])   # 0.3 * [0.5, 1, 1] / 3, plus 1.0
    long_path = [Step("next_step", "1 + 1 = 2")] * 100
    assert sum(step_rewards("q", long_path, "13", prm=prm, step_weight=0.3)) == pytest.approx(0.3 + 1.0)


def test_a_custom_reward_fn_plugs_in():
    def strict(response: str, gold: str) -> float:
        return 1.0 if response.strip().endswith(f"\\boxed{{{gold}}}\n</next_step>") else -1.0

    assert step_rewards("q", GOOD[:2] + [Step("next_step", "\\boxed{13}")], "13", reward_fn=strict)[-1] == 1.0
    assert step_rewards("q", GOOD, "13", reward_fn=strict)[-1] == -1.0


def test_a_prm_with_the_wrong_shape_is_an_error():
    class Broken:
        def score_steps(self, question, steps):
            return [2.0] * len(steps)

    with pytest.raises(ValueError):
        step_rewards("q", GOOD, "13", prm=Broken())


def test_steps_format_to_the_text_the_outcome_is_read_from():
    assert outcome_reward(format_steps(GOOD), "13") == 1.0
