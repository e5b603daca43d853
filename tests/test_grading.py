"""The grader: answer extraction, normalisation, equivalence, limits and safety."""

import os
import threading
import time

import pytest

from rftt.grading import (extract_answer, extract_gsm8k_answer, is_equiv, normalize_answer,
                          warm_up)
from rftt.grading.parse import MathParseError, TooLarge, parse_answer


@pytest.fixture(scope="module", autouse=True)
def _worker():
    warm_up()   # start the SymPy worker once, outside any timed check


# --------------------------------------------------------------------------- extraction

@pytest.mark.parametrize("text, expected", [
    (r"So the answer is \boxed{5}.", "5"),
    (r"\boxed{3} then fixed it: \boxed{4}", "4"),                    # the last one counts
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),                        # nested braces
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),                                # escaped set braces
    (r"$\boxed{x^{2}+1}$", r"x^{2}+1"),
    (r"\fbox{7}", "7"),
    (r"\boxed 5$", "5"),                                             # no braces
    (r"The answer: \boxed {12} ", "12"),
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
])
def test_extract_answer_finds_last_box(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", [
    "The answer is 5.",                      # no box: never "some number in the text"
    r"\boxed{5",                             # unterminated: cut off, not answered
    r"\boxed{3} and later \boxed{4",         # the LAST box is unterminated
    r"\boxed{}",
    r"\boxed{   }",
    "",
    None,
    r"\boxedx{5}",
])
def test_extract_answer_none(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize("text, expected", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
    ("#### 1,234", "1234"),
    ("#### $5", "5"),
    ("#### -3", "-3"),
    ("#### 2.5.", "2.5"),
    ("no answer line", None),
    ("#### ", None),
])
def test_extract_gsm8k_answer(text, expected):
    assert extract_gsm8k_answer(text) == expected


# --------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("raw, expected", [
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac12", r"\frac12"),
    (r"\left( 1, 2 \right)", "( 1, 2 )"),
    (r"5\text{ cm}", "5"),
    (r"10 \text{dollars}", "10"),
    (r"90^\circ", "90"),
    (r"90^{\circ}", "90"),
    (r"50\%", "50"),
    ("1,234,567", "1234567"),
    (r"1{,}000", "1000"),
    ("x = 5", "5"),
    (r"\$3.50", "3.50"),
    ("5.", "5"),
    ("+7", "7"),
    (r"\text{Monday}", "Monday"),
    (r"5 \text{ or } 6", "5 , 6"),
    ("12 square units", "12"),
    (r"\frac{1}{2}\!", r"\frac{1}{2}"),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


# --------------------------------------------------------------------------- equal pairs

EQUAL = [
    # plain numbers and fractions
    ("5", "5"), ("5", "5.0"), ("0.5", r"\frac{1}{2}"), (r"\frac12", "1/2"), (".5", "0.5"),
    (r"\dfrac{3}{4}", "0.75"), (r"\tfrac{3}{4}", r"\frac34"), ("-2", r"-\frac{4}{2}"),
    (r"\frac{-1}{2}", r"-\frac{1}{2}"), ("2/4", "1/2"), ("+3", "3"), ("10", "10.000"),
    ("1e", "e"), (r"0.\overline{3}", "1/3"), (r"0.1\overline{6}", r"\frac16"), (r".\overline{142857}", "1/7"),
    (r"2 \cdot 3^{2009}", r"3^{2009}+3^{2009}"), (r"2\frac{1}{2}", "2.5"), (r"6\frac14", "25/4"), (r"-1\frac{1}{3}", "-4/3"),
    # normalisation: units, degrees, percent, money, separators, prefixes, periods
    (r"5\text{ cm}", "5"), (r"10\text{ dollars}", "10"), (r"\$10", "10"), ("10 dollars", "10"),
    (r"30^\circ", "30"), (r"30^{\circ}", "30"), (r"25\%", "25"), ("25%", "25"),
    ("1,234", "1234"), ("1,000,000", "10^6"), ("x = 3", "3"), ("y=-1", "-1"), ("5.", "5"),
    (r"\left(\frac{1}{2}\right)", r"\frac12"), (r"3\,000", "3000"), (r"4\!", "4"),
    (r"\text{(A)}", "(A)"), (r"\textbf{Monday}", "monday"), (r"$\frac{1}{2}$", "0.5"),
    (r"\boxed{\frac{1}{2}}", "0.5"), ("#### 1,234", "1234"), (r"12 \text{ cm}^2", "12"),
    # roots, pi, powers, e
    (r"\sqrt{8}", r"2\sqrt{2}"), (r"\sqrt8", r"2\sqrt2"), (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}"),
    (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}"), (r"\sqrt[3]{27}", "3"), (r"\sqrt[3]{-8}", "-2"),
    (r"2\pi", r"\pi \cdot 2"), (r"\frac{\pi}{2}", r"0.5\pi"), ("2^{10}", "1024"), ("2^{-1}", "0.5"),
    ("4^{1/2}", "2"), ("3+4i", "4i+3"), (r"\sqrt{-4}", "2i"), (r"-\infty", r"-\infty"), (r"\sqrt{4}", "2"), ("e^{0}", "1"), (r"e^{i\pi}", "-1"), ("5!", "120"),
    (r"\sqrt{2}\cdot\sqrt{8}", "4"), (r"\sin(\pi/6)", "1/2"), (r"\log_2 8", "3"), (r"\ln(e^2)", "2"),
    (r"2^{3}\times 3", "24"), (r"6 \div 4", "1.5"), ("3*4", "12"), ("3 \\times 4", "12"),
    ("(2)(3)", "6"), (r"\frac{2}{3}\cdot\frac{3}{2}", "1"), ("|-3|", "3"), ("2**3", "8"),
    # symbolic
    ("x^2+2x+1", "(x+1)^2"), ("2x", "x+x"), (r"\frac{x}{2}", "0.5x"), ("a b", "ba"),
    ("x^2-1", "(x-1)(x+1)"), (r"\sin^2 x + \cos^2 x", "1"), ("2(x+y)", "2x+2y"),
    (r"\frac{1}{x}+\frac{1}{y}", r"\frac{x+y}{xy}"), ("x_1 + x_2", "x_2 + x_1"), (r"2\alpha", r"\alpha+\alpha"),
    ("y = 2x+1", "1+2x"),
    # decimals against a decimal gold: an exact form rounds to the gold's places
    ("1/3", "0.33"), (r"\frac{2}{3}", "0.667"), (r"\pi", "3.14"), (r"\sqrt{2}", "1.414"),
    # \pm
    (r"1 \pm \sqrt{2}", r"1+\sqrt2, 1-\sqrt2"), (r"\pm 3", "3, -3"), (r"2 \mp 1", "1, 3"),
    # tuples and ordered pairs
    ("(1, 2)", "(1,2)"), (r"\left(1, \frac12\right)", "(1, 0.5)"), ("(1,2,3)", "(1, 2, 3)"),
    (r"(\sqrt{4}, -1)", "(2, -1)"), ("(x, 2x)", "(x, x+x)"),
    # intervals
    ("[1, 2]", r"\left[1, 2\right]"), ("(0, 1]", "(0, 1.0]"), (r"(-\infty, 3)", r"(-\infty,3)"),
    (r"[0, \infty)", r"[0,\infty)"), (r"(-\infty, 1) \cup (2, \infty)", r"(2, \infty) \cup (-\infty, 1)"),
    # sets and lists (order-free)
    (r"\{1, 2\}", r"\{2, 1\}"), ("1, 2, 3", "3, 2, 1"), (r"\{1,2\}", "2, 1"),
    (r"\{\frac12, 2\}", r"\{2, 0.5\}"), ("x=1, x=2", "2, 1"), (r"\emptyset", r"\{\}"),
    (r"\{(1,2), (3,4)\}", r"\{(3,4), (1,2)\}"), ("1 or 2", "1, 2"), (r"\sqrt{2}, -\sqrt{2}", r"\pm\sqrt{2}"),
    # inequalities
    ("x > 3", "3 < x"), ("x > 3", r"(3, \infty)"), (r"x \ge 3", r"[3, \infty)"), (r"x \leq -1", r"(-\infty, -1]"),
    ("1 < x < 3", "(1, 3)"), (r"1 \le x < 3", "[1, 3)"), ("3 > x > 1", "(1, 3)"), ("x >= 2", r"x \geq 2"),
    ("x+y < 1", "1 > y+x"), ("2x + 2y < 2", "x + y < 1"), ("x + y = 1", "1 - x = y"),
    (r"x \neq 2", r"x \ne 2"),
    # matrices
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"),
    (r"\begin{pmatrix} \frac12 \\ 2 \end{pmatrix}", r"\begin{bmatrix} 0.5 \\ 2 \end{bmatrix}"),
    (r"\begin{pmatrix} \sqrt{4} & x \end{pmatrix}", r"\begin{pmatrix} 2 & x \end{pmatrix}"),
    # words
    ("Monday", r"\text{Monday}"), ("east", "East"),
    # unicode a model may emit
    ("π/2", r"\frac{\pi}{2}"), ("√2", r"\sqrt{2}"), ("−3", "-3"), ("3×4", "12"),
]

NOT_EQUAL = [
    ("5", "6"), ("0.5", "0.6"), ("1/2", "1/3"), ("-2", "2"), ("0.3", "1/3"), ("3.14", r"\pi"),
    ("0.3334", r"\frac{1}{3}"), ("2.49", "2.5"), ("1.41", r"\sqrt{2}"), ("0.5", "50%"),
    ("50", "0.5"), (r"\sqrt{2}", "2"), (r"2\sqrt{2}", r"\sqrt{6}"), (r"\pi", "3"), ("2^{10}", "1000"),
    ("x^2+1", "(x+1)^2"), ("2x", "x"), ("x", "y"), ("x+1", "x-1"), (r"\sin x", r"\cos x"),
    ("(1, 2)", "(2, 1)"), ("(1, 2)", "[1, 2]"), ("[1, 2)", "[1, 2]"), ("(0, 1]", "(0, 1)"),
    ("(1,2,3)", "(1,2)"), (r"\{1, 2\}", r"\{1, 3\}"), (r"\{1, 2\}", r"\{1, 2, 3\}"), ("1, 2", "1"),
    (r"\{1, 1\}", r"\{1, 2\}"), (r"1 \pm \sqrt{2}", r"1 + \sqrt{2}"), (r"\pm 3", "3"),
    ("x > 3", "x < 3"), ("x > 3", r"x \ge 3"), (r"(3, \infty)", r"[3, \infty)"), ("x + y < 1", "x + y > 1"),
    ("x+y=1", "x+y=2"), ("1 < x < 3", "(1, 3]"), (r"(-\infty, 1) \cup (2, \infty)", r"(-\infty, 1) \cup (3, \infty)"),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 2 \\ 4 & 3 \end{pmatrix}"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 & 2 \end{pmatrix}"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", "(1, 2)"), ("Monday", "Tuesday"), ("5", "x"),
    (r"\infty", "1000"), (r"-\infty", r"\infty"), ("1", r"\{1\}"), ("(1, 2)", r"\{1, 2\}"),
    ("x = 3", "x = 4"), ("10 dollars", "100"), ("1,234", "1.234"), ("1, 234", "1234"),
    ("5 ab", "5"), ("2 xy", "2"), (r"e^{i\pi}", "1"), ("5!", "100"), (r"\log_2 8", "2"), ("29/20", "1.5"), ("1/0", "2/0"), (r"\frac{0}{0}", r"\frac{0}{0} + 1"),
    (r"2\frac{\sqrt{2}}{2}", r"2\frac{1}{2}"), (r"2 \cdot \frac{1}{2}", "2.5"),
]


@pytest.mark.parametrize("pred, gold", EQUAL)
def test_equal(pred, gold):
    assert is_equiv(pred, gold), (pred, gold)


@pytest.mark.parametrize("pred, gold", NOT_EQUAL)
def test_not_equal(pred, gold):
    assert not is_equiv(pred, gold), (pred, gold)


def test_equal_is_symmetric_where_no_decimal_gold_is_involved():
    for pred, gold in EQUAL[:40]:
        if "." not in pred and "." not in gold:
            assert is_equiv(gold, pred), (gold, pred)


def test_decimal_rounding_rules():
    # The gold 0.33 is itself rounded, so the exact 1/3 is accepted.
    assert is_equiv("1/3", "0.33")
    # 1/3 has no finite decimal: written as a decimal it is always rounded, so a decimal
    # that rounds it at its last digit (with at least two significant digits) is accepted...
    assert is_equiv("0.33", "1/3")
    assert not is_equiv("0.3", "1/3")
    # ... but a fraction with a finite decimal must be given in full,
    assert not is_equiv("0.13", "1/8") and is_equiv("0.125", "1/8")
    # and a decimal against a decimal is exact.
    assert not is_equiv("0.334", "0.33")


# --------------------------------------------------------------------------- malformed

@pytest.mark.parametrize("pred", [
    "", "   ", "(", ")", "((1)", "[1, 2", r"\frac{1}", r"\frac", "1 +", "+", "^2", "x^",
    r"\sqrt", r"\unknowncommand{3}", "1 2", "2^10", r"\begin{pmatrix} 1 & 2 \\ 3 \end{pmatrix}",
    r"\boxed{5", "5 = = 5", "{", "}", "|", "1,,2", r"\{1, 2", "@#!", "x_", r"\left(", "..",
])
def test_malformed_input_is_not_equal_and_never_raises(pred):
    assert is_equiv(pred, "5") is False
    assert is_equiv("5", pred) is False


def test_none_and_non_strings_are_not_equal():
    assert is_equiv(None, "5") is False
    assert is_equiv("5", None) is False
    assert is_equiv(5, "5") is False


@pytest.mark.parametrize("text", ["1 2", "x^23", "2^10", r"\frac123"])
def test_ambiguous_digit_runs_are_refused(text):
    # LaTeX reads x^23 as x^2 3 and a writer may mean x^{23}: refusing is the safe reading.
    with pytest.raises(MathParseError):
        parse_answer(text)


# --------------------------------------------------------------------------- adversarial

HUGE = [r"10^{10^{10}}", "1000!", r"2^{2^{2^{20}}}", r"9^{9^{9^{9}}}", "(10^{400})!",
        r"2^{10^{400}}", r"x^{10^{10}}", r"(10^{100})^{10^{100}}", "100000!", "9" * 2500, "2^{7000}",
        r"\sqrt{2}^{10^{9}}", r"(1+x)^{10^{8}}"]


@pytest.mark.parametrize("expr", HUGE)
def test_huge_expressions_are_refused_by_the_size_estimate(expr):
    start = time.monotonic()
    with pytest.raises(TooLarge):
        parse_answer(expr)
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("expr", HUGE)
def test_huge_expressions_are_not_equal_and_return_quickly(expr):
    start = time.monotonic()
    assert is_equiv(expr, "1") is False
    assert is_equiv("1", expr) is False
    assert time.monotonic() - start < 3.0


def test_a_cancellation_cannot_hide_a_huge_exponent():
    # The float estimate of the exponent is 0, its exact value is 10^200: the exact
    # builders re-check before computing.
    expr = r"3^{10^{250} + 10^{200} - 10^{250}}"
    start = time.monotonic()
    assert is_equiv(expr, "1") is False
    assert time.monotonic() - start < 3.0


def test_long_input_is_refused_quickly():
    start = time.monotonic()
    assert is_equiv("+".join(["x"] * 5000), "5000x") is False
    assert is_equiv("(" * 3000 + "1" + ")" * 3000, "1") is False
    assert is_equiv("-" * 3000 + "1", "1") is False
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("text", [
    "  ." * 5000 + "1", "1 ab " * 2000 + "!", "\\text{" * 3000, "{" * 10000, "1," * 5000 + "1",
    "\\left(" * 3000, "x = " * 3000, "\\boxed{" * 3000, "\\text{a" + " a" * 5000, "1" + " ab" * 5000 + " 1!",
])
def test_normalisation_of_long_adversarial_text_is_fast(text):
    start = time.monotonic()
    normalize_answer(text)
    assert is_equiv(text, text + "1") is False
    assert time.monotonic() - start < 3.0


def test_a_slow_sympy_check_is_cut_off_by_the_timeout():
    # Many symbols and a large power: expanding is slow. Whatever the verdict, the call
    # must come back near the time limit, not when SymPy is done.
    # (X^30 vs X^29 (X+1) with X a sum of 12 variables: expanding has ~10^9 terms.)
    x = "(a+b+c+d+f+g+h+j+k+l+m+n)"
    start = time.monotonic()
    assert is_equiv(f"{x}^{{30}}", f"{x}^{{29}}(a+b+c+d+f+g+h+j+k+l+m+n+1)", timeout=0.5) is False
    assert time.monotonic() - start < 3.0
    # the killed worker is replaced: the next check works
    assert is_equiv(r"\sqrt{12}", r"2\sqrt{3}")


def test_is_equiv_works_from_a_non_main_thread():
    results = {}

    def check(key, pred, gold):
        results[key] = is_equiv(pred, gold)

    threads = [threading.Thread(target=check, args=(k, p, g)) for k, (p, g) in enumerate([
        (r"\sqrt{18}", r"3\sqrt{2}"), ("x^2-4", "(x-2)(x+2)"), (r"\pi", "4"), ("3/4", "0.75")])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {0: True, 1: True, 2: False, 3: True}


# --------------------------------------------------------------------------- no code runs

def _attacks(marker: str) -> list[str]:
    return [
        f"__import__('os').system('touch {marker}')",
        f"__import__(\"os\").system(\"touch {marker}\")",
        f"(lambda: __import__('os').system('touch {marker}'))()",
        f"eval(\"__import__('os').system('touch {marker}')\")",
        f"exec('open(\"{marker}\", \"w\")')",
        f"open('{marker}', 'w')",
        f"x.__class__.__base__.__subclasses__()",
        f"().__class__.__bases__[0]",
        f"Symbol('x').__init__.__globals__",
        f"\\boxed{{__import__('os').system('touch {marker}')}}",
        f"$__import__('os').system('touch {marker}')$",
        f"1 + __import__('os').system('touch {marker}')",
        f"sympify(\"__import__('os').system('touch {marker}')\")",
        f"\\text{{__import__('os').system('touch {marker}')}}",
        f"\\frac{{__import__('os')}}{{2}}",
        f"#### __import__('os').system('touch {marker}')",
    ]


def test_model_text_never_runs_as_code(tmp_path):
    marker = tmp_path / "pwned"
    for attack in _attacks(str(marker)):
        assert is_equiv(attack, "0") is False, attack
        assert is_equiv("0", attack) is False, attack
    assert not marker.exists()
    assert not os.path.exists("pwned")
