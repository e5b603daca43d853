"""The leaf totals of an evaluation's searches (train/search_leaves.py) on hand-made trees."""

from rftt.data import Problem
from train.search_leaves import grade_searches, leaf_summary


def leaf(answer, last_step="close", terminal=True, visits=1):
    return {"functions": ["next_step", "output"], "last_step": last_step, "terminal": terminal,
            "visits": visits, "answer": answer, "text": "..."}


def test_grading_and_totals():
    problems = [Problem("What is 2 + 2?", "4", level=1), Problem("What is 3 * 3?", "9", level=1)]
    searches = [
        {"question": problems[0].question, "level": 1, "votes": {"1": "5", "4": "4"},
         "leaves": [leaf("5", visits=2), leaf("4.0"), leaf(None, "length", terminal=False)]},
        {"question": problems[1].question, "level": 1, "votes": {"1": None, "4": "6"},
         "leaves": [leaf("6", visits=3), leaf(None, "length")]},
    ]
    grade_searches(searches, problems)
    assert searches[0]["gold"] == "4" and searches[0]["votes_correct"] == {"1": False, "4": True}
    assert searches[1]["votes_correct"] == {"1": False, "4": False}
    assert [lf["correct"] for lf in searches[0]["leaves"]] == [False, True, False]  # "4.0" is 4
    assert leaf_summary(searches) == {
        "leaves_per_problem": 2.5, "answered": 0.6, "correct": 0.2, "problems_with_a_correct_leaf": 0.5,
        "last_step": {"open length": 1, "terminal close": 3, "terminal length": 1}}


def test_no_searches():
    assert leaf_summary([]) == {"leaves_per_problem": 0.0, "answered": 0.0, "correct": 0.0,
                                "problems_with_a_correct_leaf": 0.0, "last_step": {}}
