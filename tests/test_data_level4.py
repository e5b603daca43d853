"""Level 4 of the arithmetic generator: four or more steps, an unused quantity, disjoint
splits — and levels 1-3 exactly as they were before it existed."""

import hashlib
import json
import re

import pytest

from rftt.data import ALL_LEVELS, DEFAULT_LEVELS, arithmetic_split, generate_arithmetic
from rftt.grading import extract_answer
from tests.test_data import LIMITS, ORACLE

# sha256 of the problems these calls returned before level 4 was added (commit c8c807c):
# training data and recorded results depend on them, so adding templates must not move them.
BEFORE_LEVEL_4 = [
    (dict(n=500, split="train", seed=0), "ea59078b0fe27f6d715d936fc8afdc31dbaf1317d15ebdde894f3755e122b614"),
    (dict(n=200, split="test", seed=1), "3cb604e60855300762a29c95453dd3ffcb6ea5974f4944554fb9a1da01a65de0"),
    (dict(n=200, split="train", seed=7, levels=(3,)), "1bdedbbc831b8a2ef24e9b05b3cf191be71bfda29414efb8e2641d212a6e6c18"),
    (dict(n=100, split="test", seed=2, levels=(1, 2)), "06b4dc17730a00ea7b4ebecb0c9f4a6e635bc10a4dbebdf13480e5332a83da6d"),
]


def _digest(problems) -> str:
    # The fields that say what a problem is (not `origin`, where it was read from).
    what = [(p.question, p.answer, p.solution, p.level, p.type, p.source_id) for p in problems]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()


def _numbers(problem):
    _, template, numbers = problem.source_id.split(":")
    return template, [int(x) for x in numbers.split(",")]


@pytest.mark.parametrize("kwargs,digest", BEFORE_LEVEL_4)
def test_earlier_levels_draw_the_same_problems(kwargs, digest):
    assert _digest(generate_arithmetic(**kwargs)) == digest


def test_level_4_is_opt_in():
    assert DEFAULT_LEVELS == (1, 2, 3) and ALL_LEVELS == (1, 2, 3, 4)
    assert {p.level for p in generate_arithmetic(400, "train", seed=0, levels=ALL_LEVELS)} == set(ALL_LEVELS)


@pytest.mark.parametrize("split", ["train", "test"])
def test_level_4_answers_ignore_the_distractor(split):
    problems = generate_arithmetic(300, split, seed=0, levels=(4,))
    assert {_numbers(p)[0] for p in problems} == {"bake_sale", "trip_budget", "training_weeks"}
    for p in problems:
        template, numbers = _numbers(p)
        # ORACLE takes the distractor (the last number) and never reads it.
        expected = ORACLE[template](*numbers)
        assert expected == int(expected) and expected >= 0, p
        assert p.answer == str(int(expected)), p
        for n in numbers:                            # the distractor is in the text too
            assert re.search(rf"\b{n}\b", p.question), p
        assert max(numbers) <= LIMITS[4], p
        assert p.solution.count("=") >= 4            # four or more worked steps
        assert extract_answer(p.solution) == p.answer


def test_level_4_splits_are_disjoint():
    train = [p for seed in range(3) for p in generate_arithmetic(300, "train", seed=seed, levels=(4,))]
    test = [p for seed in range(3, 6) for p in generate_arithmetic(100, "test", seed=seed, levels=(4,))]
    assert not {p.source_id for p in train} & {p.source_id for p in test}
    assert not {p.question for p in train} & {p.question for p in test}
    assert all(arithmetic_split(p.source_id) == "train" for p in train)
    assert all(arithmetic_split(p.source_id) == "test" for p in test)
