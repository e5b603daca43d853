"""Trajectory choice and cross-verification merge on hand-built trees (no model)."""

from rftt.steps import Step, format_steps, parse_steps
from rftt.trajectories import (
    MergePlan, build_trajectories, choose_correct_leaf, choose_wrong_leaf, merge_cross_verification,
    plan_merge, plain_correct, repeated_steps, validate_steps,
)
from search.mcts import TreeNode

GOLD = "5"
RIGHT = "Add: 3 + 2 = 5. So the answer is \\boxed{5}."
WRONG = "Add: 3 + 2 = 6. So the answer is \\boxed{6}."


def add(parent, function, content, reward=None, value=0.0):
    node = TreeNode(function, parent, depth=parent.depth + 1, state=Step(function, content))
    node.visits, node.value_sum = 1, value
    node.reward = reward
    parent.children.append(node)
    return node


def root():
    return TreeNode(None, state="question")


# ---- choosing the correct path ---------------------------------------------------------

def test_fewest_repeated_steps_wins_over_length():
    r = root()
    a = add(r, "next_step", "Count the apples.")
    b = add(a, "next_step", "Count the apples.")  # a repeat
    looping = add(b, "next_step", RIGHT, reward=1.0)
    clean = add(add(r, "clarify", "Ann has 3 and gets 2."), "next_step", RIGHT, reward=1.0)
    assert repeated_steps([n.state for n in looping.path()[1:]]) == 1
    assert choose_correct_leaf(r) is clean


def test_longest_path_then_shortest_final_step_then_best_value():
    r = root()
    short = add(r, "next_step", RIGHT, reward=1.0)
    long = add(add(r, "clarify", "Ann has 3 and gets 2."), "next_step", RIGHT, reward=1.0)
    assert choose_correct_leaf(r) is long and short is not long

    r = root()
    c = add(r, "clarify", "Ann has 3 and gets 2.")
    wordy = add(c, "next_step", "Adding the two amounts gives 5. So the answer is \\boxed{5}.", reward=1.0)
    terse = add(c, "direct_answer", "\\boxed{5}", reward=1.0)
    assert choose_correct_leaf(r) is terse and wordy is not terse

    r = root()
    low = add(add(r, "clarify", "Ann has 3 and gets 2.", value=0.2), "next_step", RIGHT, reward=1.0, value=0.5)
    high = add(add(r, "analysis", "Add them.", value=0.9), "next_step", RIGHT, reward=1.0, value=0.5)
    assert choose_correct_leaf(r) is high and low is not high


def test_no_correct_leaf_and_root_direct_answer_is_a_plain_path():
    r = root()
    add(r, "next_step", WRONG, reward=0.0)
    assert choose_correct_leaf(r) is None
    # root -> direct_answer: not an RL transition, but SFT data may open with it (the
    # phase-1 search offers it at the root); verify -> ... never follows it from the root
    only = add(r, "direct_answer", RIGHT, reward=1.0)
    assert choose_correct_leaf(r) is only
    assert validate_steps([Step("direct_answer", RIGHT), Step("output", "The answer is \\boxed{5}.")], "5") == []
    assert validate_steps([Step("verify", "No."), Step("output", "The answer is \\boxed{5}.")], "5") != []


# ---- choosing the wrong path -----------------------------------------------------------

def _deep_correct():
    r = root()
    a = add(r, "next_step", "Step A.")
    b = add(a, "next_step", "Step B.")
    c = add(b, "next_step", "Step C.")
    correct = add(c, "next_step", RIGHT, reward=1.0)  # depth 4
    return r, a, b, correct


def test_wrong_leaf_must_diverge_less_than_four_steps_above():
    r, a, b, correct = _deep_correct()
    add(add(r, "next_step", "Step X."), "direct_answer", WRONG, reward=0.0)  # diverges at the root: distance 4
    assert choose_wrong_leaf(correct, r) is None
    near = add(a, "direct_answer", WRONG, reward=0.0)  # diverges at depth 1: distance 3
    assert choose_wrong_leaf(correct, r) is near


def test_wrong_leaf_with_an_answer_is_preferred_then_the_closer_one():
    r, a, b, correct = _deep_correct()
    no_answer = add(b, "next_step", "Keep going.", reward=0.0)  # closer, but never answered
    far_answer = add(a, "direct_answer", WRONG, reward=0.0)
    assert choose_wrong_leaf(correct, r) is far_answer
    near_answer = add(b, "direct_answer", WRONG, reward=0.0)
    assert choose_wrong_leaf(correct, r) is near_answer and no_answer is not near_answer


def test_wrong_leaf_that_cannot_be_followed_by_verify_is_skipped():
    r, a, b, correct = _deep_correct()
    add(b, "subquestion", "What is 3 + 2? 6", reward=0.0)  # subquestion -> verify is not allowed
    assert choose_wrong_leaf(correct, r) is None


# ---- merging -----------------------------------------------------------------------------

def _merge_tree():
    r = root()
    c = add(r, "clarify", "Ann has 3 apples and gets 2 more. How many in all?")
    wrong = add(c, "next_step", WRONG, reward=0.0)
    correct = add(add(c, "analysis", "Add the two amounts."), "next_step", RIGHT, reward=1.0)
    return r, wrong, correct


def test_merged_text_exactly():
    r, wrong, correct = _merge_tree()
    assert choose_correct_leaf(r) is correct and choose_wrong_leaf(correct, r) is wrong
    plan = plan_merge(correct, wrong)
    assert plan.wrong_path == ["clarify", "next_step"] and plan.correct_path == ["clarify", "analysis", "next_step"]
    steps = merge_cross_verification(plan, " 3 + 2 is 5, not 6. \n")
    expected = (
        "<clarify>\nAnn has 3 apples and gets 2 more. How many in all?\n</clarify>\n"
        "<next_step>\nAdd: 3 + 2 = 6. So the answer is \\boxed{6}.\n</next_step>\n"
        "<verify>\n3 + 2 is 5, not 6.\n</verify>\n"
        "<refine>\nAdd the two amounts.\n</refine>\n"
        "<next_step>\nAdd: 3 + 2 = 5. So the answer is \\boxed{5}.\n</next_step>\n"
        "<output>\nThe answer is \\boxed{5}.\n</output>\n"
    )
    assert format_steps(steps) == expected
    assert validate_steps(steps, GOLD) == []
    assert format_steps(plain_correct(correct)) == (
        "<clarify>\nAnn has 3 apples and gets 2 more. How many in all?\n</clarify>\n"
        "<analysis>\nAdd the two amounts.\n</analysis>\n"
        "<next_step>\nAdd: 3 + 2 = 5. So the answer is \\boxed{5}.\n</next_step>\n"
        "<output>\nThe answer is \\boxed{5}.\n</output>\n"
    )


def test_steps_not_allowed_after_refine_are_folded_into_it():
    plan = MergePlan(
        shared=[], wrong=[Step("next_step", WRONG)],
        correct=[Step("clarify", "Ann has 3, gets 2."), Step("analysis", "Add them."), Step("direct_answer", RIGHT)],
        answer="5", correct_path=["clarify", "analysis", "direct_answer"], wrong_path=["next_step"], leaf_reward=1.0,
    )
    steps = merge_cross_verification(plan, "6 is wrong.")
    assert [s.function for s in steps] == ["next_step", "verify", "refine", "direct_answer", "output"]
    assert steps[2].content == "Ann has 3, gets 2.\nAdd them."
    assert validate_steps(steps, GOLD) == []


# ---- validation ----------------------------------------------------------------------------

def test_validation_rejects_bad_data():
    out = Step("output", "The answer is \\boxed{5}.")
    assert validate_steps([Step("next_step", RIGHT), out], GOLD) == []
    assert any("transitions" in p for p in validate_steps([Step("clarify", "Ann has 3."), out], GOLD))
    assert any("transitions" in p for p in validate_steps([Step("analysis", "Add."), Step("clarify", "Ann."), out], GOLD))
    assert any("gold" in p for p in validate_steps([Step("next_step", WRONG), Step("output", "\\boxed{6}")], GOLD))
    assert any("output step" in p for p in validate_steps([Step("next_step", RIGHT)], GOLD))
    assert any(p.startswith("format") for p in validate_steps([Step("next_step", "<verify> 5"), out], GOLD))
    assert any("empty_content" in p for p in validate_steps([Step("next_step", "  "), out], GOLD))
    later_box = [Step("next_step", RIGHT), Step("output", "The answer is 5.")]
    assert any("last boxed answer" in p for p in validate_steps(later_box, GOLD))


def test_build_trajectories_counts_and_drops():
    r1, _, _ = _merge_tree()
    r2 = root()
    add(r2, "next_step", WRONG, reward=0.0)  # nothing correct: no rows
    calls = []

    def verify(requests):
        calls.append(requests)
        return ["3 + 2 is 5, not 6."] * len(requests)

    found, stats = build_trajectories([r1, r2], ["Q1", "Q2"], [GOLD, GOLD], verify)
    assert [[t.kind for t in ts] for ts in found] == [["correct", "verified"], []]
    assert stats == {"correct": 1, "verified": 1, "dropped_invalid": 0}
    assert len(calls) == 1 and calls[0][0][0] == "Q1"
    for t in found[0]:
        assert parse_steps(t.text).ok and t.steps[-1].function == "output"
    assert found[0][1].wrong_path == ["clarify", "next_step"] and found[0][0].wrong_path is None

    # an empty verification is invalid data: dropped and counted, never emitted
    found, stats = build_trajectories([r1], ["Q1"], [GOLD], lambda reqs: [" "] * len(reqs))
    assert [t.kind for t in found[0]] == ["correct"] and stats["dropped_invalid"] == 1
