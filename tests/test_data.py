"""Problems: the arithmetic generator (exact, seeded, disjoint splits) and the JSONL loaders."""

import json
import re

import pytest

from rftt.data import (TEMPLATE_NAMES, DataError, Problem, arithmetic_split, generate_arithmetic,
                       load_gsm8k_jsonl, load_math_jsonl, load_problems)
from rftt.grading import extract_answer

# The test's own oracle: each template's answer from its numbers, written independently of
# the generator's solution text.
ORACLE = {
    "add_buy": lambda a, b: a + b,
    "add_shelves": lambda a, b: a + b,
    "add_walk": lambda a, b: a + b,
    "sub_give": lambda a, b: a - b,
    "sub_bus": lambda a, b: a - b,
    "sub_compare": lambda a, b: a - b,
    "mul_boxes": lambda a, b: a * b,
    "mul_pages": lambda a, b: a * b,
    "mul_seats": lambda a, b: a * b,
    "div_share": lambda a, b: a / b,
    "div_teams": lambda a, b: a / b,
    "div_ribbon": lambda a, b: a / b,
    "packs_plus": lambda a, b, c: a * b + c,
    "money_left": lambda a, b, c: a - b * c,
    "share_eat": lambda a, b, c: a / b - c,
    "wage_spend": lambda a, b, c: a * b - c,
    "two_products": lambda a, b, c, d: a * b + c * d,
    "harvest": lambda a, b, c, d: (a * b - c) / d,
    "savings": lambda a, b, c, d: a + b * c - d,
    # level 4: the last number is the distractor, which the answer must not use
    "bake_sale": lambda a, b, c, d, e, unused: a * b + c * d - e,
    "trip_budget": lambda a, b, c, d, e, f, unused: (a - b * c - d * e) / f,
    "training_weeks": lambda a, b, c, d, unused: (5 * a + 2 * b) * c - d,
}
LIMITS = {1: 20, 2: 100, 3: 1000, 4: 800}


def _numbers(problem: Problem) -> tuple[str, list[int]]:
    _, template, numbers = problem.source_id.split(":")
    return template, [int(x) for x in numbers.split(",")]


def test_oracle_covers_every_template():
    assert set(ORACLE) == set(TEMPLATE_NAMES)


def test_generator_is_deterministic_and_seeded():
    a = generate_arithmetic(200, "train", seed=3)
    assert a == generate_arithmetic(200, "train", seed=3)
    assert a != generate_arithmetic(200, "train", seed=4)
    assert generate_arithmetic(50, "train", seed=3) == a[:50]


@pytest.mark.parametrize("split", ["train", "test"])
def test_answers_are_exact_integers_recomputed_from_the_numbers(split):
    problems = generate_arithmetic(600, split, seed=0)
    for p in problems:
        template, numbers = _numbers(p)
        expected = ORACLE[template](*numbers)
        assert expected == int(expected) and expected >= 0, p
        assert p.answer == str(int(expected)), p
        for n in numbers:                            # every number appears in the question
            assert re.search(rf"\b{n}\b", p.question), p
        assert extract_answer(p.solution) == p.answer
        assert p.solution.count("=") == p.level      # one worked line per step


def test_levels_control_steps_and_number_sizes():
    for level in (1, 2, 3, 4):
        problems = generate_arithmetic(100, "train", seed=0, levels=(level,))
        assert {p.level for p in problems} == {level}
        for p in problems:
            template, numbers = _numbers(p)
            assert max(numbers) <= LIMITS[level], p
    mixed = generate_arithmetic(300, "train", seed=0)
    assert {p.level for p in mixed} == {1, 2, 3}
    assert {p.type for p in mixed} >= {"add", "subtract", "multiply", "divide"}


def test_problems_within_a_set_are_distinct():
    problems = generate_arithmetic(1000, "train", seed=0)
    assert len({p.source_id for p in problems}) == 1000
    assert len({p.question for p in problems}) == 1000


def test_train_and_test_are_disjoint_for_any_seeds():
    train = [p for seed in range(5) for p in generate_arithmetic(400, "train", seed=seed)]
    test = [p for seed in range(5, 10) for p in generate_arithmetic(200, "test", seed=seed)]
    assert not {p.source_id for p in train} & {p.source_id for p in test}
    assert not {p.question for p in train} & {p.question for p in test}
    # ... because the split is a function of the content alone:
    assert all(arithmetic_split(p.source_id) == "train" for p in train)
    assert all(arithmetic_split(p.source_id) == "test" for p in test)


def test_question_text_is_a_function_of_the_content():
    # Names and items are derived from the key, so the same numbers give the same text
    # whichever seed drew them.
    by_key = {}
    for seed in range(20):
        for p in generate_arithmetic(100, "train", seed=seed, levels=(1,)):
            assert by_key.setdefault(p.source_id, p.question) == p.question


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError):
        generate_arithmetic(5, split="validation")
    with pytest.raises(ValueError):
        generate_arithmetic(5, levels=(5,))
    with pytest.raises(ValueError):                  # level 1 has only a few hundred test problems
        generate_arithmetic(5000, "test", levels=(1,))


# --------------------------------------------------------------------------- loaders

def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


MATH_ROW = {"problem": "What is $1+1$?", "solution": "We add: $1+1=\\boxed{2}$.",
            "level": "Level 3", "type": "Prealgebra"}
GSM_ROW = {"question": "Tom has 3 apples and buys 4. How many?",
           "answer": "He has 3+4=<<3+4=7>>7 apples.\n#### 7"}


def test_load_math(tmp_path):
    path = _write(tmp_path / "math.jsonl", [MATH_ROW, "", {**MATH_ROW, "level": "Level ?"},
                                           {"problem": "p", "solution": "s", "answer": "5", "level": 2,
                                            "subject": "Algebra", "unique_id": "test/algebra/1.json"}])
    problems = load_math_jsonl(path)
    assert problems[0] == Problem("What is $1+1$?", "2", MATH_ROW["solution"], 3, "Prealgebra", "math.jsonl:1")
    assert problems[1].level is None and problems[1].source_id == "math.jsonl:3"
    assert (problems[2].answer, problems[2].level, problems[2].type, problems[2].source_id) == (
        "5", 2, "Algebra", "test/algebra/1.json")


def test_load_gsm8k(tmp_path):
    path = _write(tmp_path / "gsm.jsonl", [GSM_ROW, {"question": "q", "answer": "so\n#### 1,234"}])
    problems = load_gsm8k_jsonl(path)
    assert problems[0] == Problem(GSM_ROW["question"], "7", "He has 3+4=7 apples.", None, "gsm8k", "gsm.jsonl:1")
    assert problems[1].answer == "1234"


def test_load_problems_detects_the_format(tmp_path):
    assert load_problems(_write(tmp_path / "a.jsonl", [MATH_ROW]))[0].answer == "2"
    assert load_problems(_write(tmp_path / "b.jsonl", [GSM_ROW]))[0].answer == "7"
    assert load_problems("arith", split="test", n=10, seed=1) == generate_arithmetic(10, "test", seed=1)
    with pytest.raises(FileNotFoundError):
        load_problems(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match=r"c\.jsonl, line 1, field '\(row\)'"):
        load_problems(_write(tmp_path / "c.jsonl", [{"text": "x"}]))
    with pytest.raises(DataError, match="no rows"):
        load_problems(_write(tmp_path / "d.jsonl", [""]))


@pytest.mark.parametrize("loader, rows, line, field", [
    (load_math_jsonl, [MATH_ROW, "{not json"], 2, "(row)"),
    (load_math_jsonl, [MATH_ROW, MATH_ROW, "[1, 2]"], 3, "(row)"),
    (load_math_jsonl, [{"solution": "\\boxed{1}"}], 1, "problem"),
    (load_math_jsonl, [MATH_ROW, {"problem": "p"}], 2, "solution"),
    (load_math_jsonl, [{"problem": 7, "solution": "\\boxed{1}"}], 1, "problem"),
    (load_math_jsonl, [{"problem": "p", "solution": "the answer is 4"}], 1, "solution"),
    (load_math_jsonl, [{"problem": "p", "solution": "\\boxed{4"}], 1, "solution"),
    (load_math_jsonl, [{**MATH_ROW, "level": "hard"}], 1, "level"),
    (load_math_jsonl, [{**MATH_ROW, "type": ["Algebra"]}], 1, "type"),
    (load_math_jsonl, [{**MATH_ROW, "answer": 2}], 1, "answer"),
    (load_gsm8k_jsonl, [GSM_ROW, {"question": "q", "answer": "7"}], 2, "answer"),
    (load_gsm8k_jsonl, [{"answer": "#### 7"}], 1, "question"),
    (load_gsm8k_jsonl, [{"question": "q", "answer": None}], 1, "answer"),
    (load_gsm8k_jsonl, [GSM_ROW, "", "", "oops"], 4, "(row)"),
    (load_gsm8k_jsonl, [{"question": "", "answer": "#### 1"}], 1, "question"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, loader, rows, line, field):
    path = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        loader(path)
    error = info.value
    assert (error.path, error.line, error.field) == (path, line, field)
    assert path in str(error) and f"line {line}" in str(error) and f"'{field}'" in str(error)
