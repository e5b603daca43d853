"""Answer forms that MATH solutions use for one value: each form has
equal pairs, and near-miss unequal pairs that guard the rule which makes them equal (a
reward that accepts wrong answers is exploited by RL)."""

import pytest

from rftt.grading import extract_answer, is_equiv, normalize_answer, warm_up
from rftt.grading.parse import Bracketed, Labelled, parse_answer, to_fraction, tokenize
from rftt.grading.parse.labels import split_label


@pytest.fixture(scope="module", autouse=True)
def _worker():
    warm_up()


# (form, pred, gold)
EQUAL_FORMS = [
    ("thousands", "12,500", "12500"), ("thousands", r"12,\!500", "12500"),
    ("thousands", r"1\,000", "1000"), ("thousands", "1{,}000", "1000"),
    ("thousands", r"\$12,500", "12500"), ("thousands", "12,500 dollars", "12500"),
    ("thousands", "-1,000,000", "-10^6"), ("thousands", "1,234.5", "1234.5"),
    ("thousands", "x = 12,500", "12500"), ("thousands", r"n = 1\,000", "1000"),
    ("sizing", r"\left( 2, \frac{\pi}{3} \right)", r"(2, \frac{\pi}{3})"),
    ("sizing", r"\bigl(1, 2\bigr)", "(1, 2)"), ("sizing", r"\Big[0, 1\Big)", "[0, 1)"),
    ("sizing", r"\biggl\{ 1, 2 \biggr\}", r"\{2, 1\}"), ("sizing", r"\left|-3\right|", "3"),
    ("label", "y = 3", "3"), ("label", "(a, b) = (4, 1)", "(4, 1)"),
    ("label", "(p, q) = (2, -3)", "(2, -3)"), ("label", "f(x) = x^2 + 1", "x^2 + 1"),
    ("label", "AB = 5", "5"), ("label", r"x = \frac12", "0.5"),
    ("label", r"\theta = \frac{\pi}{4}", r"\frac{\pi}{4}"), ("label", "3", "k = 3"),
    ("label", "x_1 = 2", "2"), ("label", "x = 3", "x = 3.0"),
    ("boxes", r"\boxed{2}, \boxed{5}", r"\{2, 5\}"),
    ("boxes", r"The solutions are $\boxed{2}$ and $\boxed{5}$.", "5, 2"),
    ("boxes", r"\boxed{-1} \text{ or } \boxed{3}", r"\{3, -1\}"), ("boxes", "2, 5", r"\{5, 2\}"),
    ("interval", r"x \in [1, 4]", r"1 \le x \le 4"), ("interval", "[1, 4]", r"1 \leq x \leq 4"),
    ("interval", r"x \in (-\infty, 2)", "x < 2"), ("interval", r"4 \ge x \ge 1", r"x \in [1, 4]"),
    ("percent", r"45\%", "45 percent"), ("percent", "45%", r"45 \text{ percent}"),
    ("percent", r"12.5\%", "12.5"), ("percent", r"5 \text{ cm}", "5 centimeters"),
    ("decimal", "0.33", r"\frac13"), ("decimal", "0.1666666666666667", r"\frac{1}{6}"),
    ("decimal", "0.67", r"\frac{2}{3}"), ("decimal", "0.333", "1/3"),
    ("decimal", "-0.83", r"-\frac{5}{6}"), ("decimal", "3.33", r"\frac{10}{3}"),
    ("decimal", r"\frac13", "0.33"),
    ("relation", "-y < 2", "y > -2"), ("relation", "x - 2y + 1 = 0", r"y = \frac{x+1}{2}"),
    ("relation", "2x < 6", "x < 3"), ("relation", r"-3x \ge 6", r"x \le -2"),
    ("relation", "y = 2x + 1", "2x - y + 1 = 0"), ("relation", "3 - x > 1", "x < 2"),
    ("relation", r"\frac{x}{2} \le 1", r"(-\infty, 2]"),
]

UNEQUAL_FORMS = [
    ("thousands", "1,5", "15"), ("thousands", "12,500", "12.5"), ("thousands", "12,50", "1250"),
    ("thousands", "1,2345", "12345"), ("thousands", r"12,\!500", "1250"),
    ("thousands", "(1,5)", "15"), ("thousands", r"\{1,500\}", "1500"),
    ("thousands", "x = 12,50", "1250"), ("thousands", "x = 1,500, 2", "1500"),
    ("sizing", r"\left( 2, \frac{\pi}{3} \right]", r"(2, \frac{\pi}{3})"),
    ("sizing", r"\Big[0, 1\Big)", "[0, 1]"),
    ("sizing", r"\left( 2, \frac{\pi}{3} \right)", r"(\frac{\pi}{3}, 2)"),
    ("label", "y = 3", "4"), ("label", "(a, b) = (4, 1)", "(1, 4)"),
    ("label", "f(x) = x^2 + 1", "x^2 - 1"), ("label", "AB = 5", "6"), ("label", "x = 3", "y = 3"),
    ("label", "x = 3", "x = 4"), ("label", "x + 1 = 3", "3"), ("label", "2x = 6", "6"),
    ("label", "(a, b) = (4, 1)", "(4, 1, 0)"), ("label", "f(x) = 5", "x = 5"),
    ("boxes", r"\boxed{2}, \boxed{5}", "5"), ("boxes", r"\boxed{2}, \boxed{5}", r"\{2, 5, 7\}"),
    ("boxes", r"\boxed{3} was wrong, the answer is \boxed{4}", r"\{3, 4\}"),
    ("boxes", r"\boxed{2}, \boxed{2}", r"\{2, 5\}"), ("boxes", r"\boxed{2}, \boxed{5}", "(2, 5)"),
    ("interval", r"x \in [1, 4]", r"1 < x \le 4"), ("interval", r"x \in [1, 4)", r"1 \le x \le 4"),
    ("interval", r"x \in [1, 4]", r"1 \le x \le 5"), ("interval", r"4 \ge x \ge 1", r"x \in [1, 4)"),
    ("percent", r"45\%", "0.45"), ("percent", "45 percent", "4.5"), ("percent", r"45\%", "450"),
    ("decimal", "0.3", r"\frac13"), ("decimal", "0.34", r"\frac13"), ("decimal", "0.3334", r"\frac13"),
    ("decimal", "0.12", r"\frac18"), ("decimal", "0.13", r"\frac18"), ("decimal", "0.16", r"\frac16"),
    ("decimal", "0.1666666666666666", r"\frac{1}{6}"), ("decimal", "0.33", r"\frac{1}{3}\pi"),
    ("decimal", "0.67", r"\frac{1}{3}"), ("decimal", "3", r"\frac{10}{3}"), ("decimal", "0.33", "0.333"),
    ("relation", "-y < 2", "y < -2"), ("relation", "-y < 2", r"y \ge -2"),
    ("relation", "x - 2y + 1 = 0", r"y = \frac{x-1}{2}"), ("relation", "x - 2y + 1 = 0", r"y = \frac{x+1}{3}"),
    ("relation", "2x < 6", "x < 6"), ("relation", r"-3x \ge 6", r"x \ge -2"),
    ("relation", "y = 2x + 1", "2x - y - 1 = 0"), ("relation", "x - 2y + 1 = 0", "x - 2y + 1 < 0"),
    ("relation", "y = 2x+1", "x = 2y+1"),
]


def _ids(rows):
    return [f"{form}:{pred}|{gold}" for form, pred, gold in rows]


@pytest.mark.parametrize("form, pred, gold", EQUAL_FORMS, ids=_ids(EQUAL_FORMS))
def test_equal_form(form, pred, gold):
    assert is_equiv(pred, gold), (form, pred, gold)


@pytest.mark.parametrize("form, pred, gold", UNEQUAL_FORMS, ids=_ids(UNEQUAL_FORMS))
def test_unequal_near_miss(form, pred, gold):
    assert not is_equiv(pred, gold), (form, pred, gold)


def test_every_form_has_equal_and_unequal_pairs():
    forms = {form for form, _, _ in EQUAL_FORMS}
    assert forms <= {form for form, _, _ in UNEQUAL_FORMS}
    assert {form for form, _, _ in UNEQUAL_FORMS} <= forms


# --------------------------------------------------------------------------- several boxes

@pytest.mark.parametrize("text, expected", [
    (r"\boxed{2}, \boxed{5}", "2, 5"),
    (r"So $x = \boxed{2}$ or $x = \boxed{5}$", "5"),         # words between: the last one
    (r"$\boxed{2}$ and $\boxed{5}$.", "2, 5"),
    (r"\boxed{-1} \text{ or } \boxed{3}", "-1, 3"),
    (r"\boxed{1}\quad \boxed{2};\boxed{3}", "1, 2, 3"),
    (r"\boxed{3} then fixed it: \boxed{4}", "4"),
    (r"\boxed{2}. \boxed{5}", "5"),                            # a full stop ends the answer
    (r"\boxed{\boxed{1}}", "1"),
    (r"\boxed{5} \boxed{5}", "5"),                            # repeated: one answer
    (r"\boxed{}, \boxed{5}", "5"),
    (r"\boxed{(1, 2)}, \boxed{(3, 4)}", "(1, 2), (3, 4)"),
])
def test_several_final_boxes_are_one_answer(text, expected):
    assert extract_answer(text) == expected


def test_an_unclosed_last_box_is_still_no_answer():
    assert extract_answer(r"\boxed{2}, \boxed{5") is None


# --------------------------------------------------------------------------- labels, relations

@pytest.mark.parametrize("text", ["y = 3", "AB = 5", "f(x) = x^2", "(p, q) = (1, 2)", r"x \in [1, 4]",
                                  "x_{12} = 1", r"\theta = \pi"])
def test_labels_are_recognised(text):
    assert split_label(tokenize(text)) is not None
    assert isinstance(parse_answer(text), Labelled)


@pytest.mark.parametrize("text", ["2x = 6", "x - 2y + 1 = 0", "x = y = 1", "1 - x = y", "a b c d = 1",
                                  "(1, q) = (1, 2)", "x < 3", "f(x+1) = 2"])
def test_equations_are_not_mistaken_for_labels(text):
    assert split_label(tokenize(text)) is None


def _interval(text):
    answer = parse_answer(text)
    assert isinstance(answer, Bracketed), text
    low, high = (item.node for item in answer.items)
    low = "-oo" if low == ("neg", ("const", "oo")) else to_fraction(low)
    return answer.left, low, to_fraction(high), answer.right


def test_a_linear_inequality_in_one_variable_is_its_interval():
    assert _interval("-y < 2") == _interval("y > -2") == ("(", -2, None, ")")     # None: oo
    assert _interval(r"2x \le 6") == ("(", "-oo", 3, "]")
    assert _interval(r"-3x \ge 6") == ("(", "-oo", -2, "]")
    assert not isinstance(parse_answer("x + y < 1"), Bracketed)     # two variables: a relation


def test_votes_still_count_a_labelled_answer_with_the_bare_one():
    assert normalize_answer("x = 5") == normalize_answer("5") == "5"
