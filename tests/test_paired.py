"""train/paired.py: the paired difference, its standard error and the exact McNemar p,
against hand-computed values and the standard library; two evaluations of different
problems are refused, naming both."""

import json
import math
import statistics

import pytest

from train.paired import compare_evaluations, gain_line, main, markdown_gains, mcnemar_exact_p, paired_gain


@pytest.mark.parametrize("gained, lost, p", [
    (0, 0, 1.0),             # no discordant problem: no evidence either way
    (5, 0, 2 / 32),          # five heads out of five, two-sided
    (10, 0, 2 / 1024),
    (2, 1, 1.0),             # 2·P(X ≤ 1 | 3) = 2·4/8, capped at 1
    (12, 17, 0.4583),        # the ppoG-over-SFT count of bench/RESULTS.md
    (17, 12, 0.4583),        # symmetric
])
def test_mcnemar_exact_p_matches_hand_computed_values(gained, lost, p):
    assert mcnemar_exact_p(gained, lost) == pytest.approx(p, abs=1e-4)


def test_paired_gain_counts_the_discordant_problems_and_the_standard_error():
    before = [True, True, False, False, True]
    after = [True, False, True, True, True]
    g = paired_gain(before, after)
    d = [0, -1, 1, 1, 0]
    assert (g["n"], g["gained"], g["lost"]) == (5, 2, 1)
    assert g["difference"] == pytest.approx(0.2)
    assert g["se"] == pytest.approx(statistics.stdev(d) / math.sqrt(5))  # = sqrt(0.7 / 5)
    assert g["se"] == pytest.approx(math.sqrt(0.7 / 5))
    assert g["ci95"][0] == pytest.approx(0.2 - 1.959964 * g["se"]) and g["ci95"][1] > 0.2
    assert g["mcnemar_p"] == 1.0 and g["beyond_2se"] is False
    assert paired_gain(after, before)["difference"] == pytest.approx(-0.2)


def test_a_clear_gain_is_beyond_two_standard_errors():
    before = [False] * 30 + [True] * 70
    after = [True] * 100
    g = paired_gain(before, after)
    assert g["difference"] == pytest.approx(0.3) and g["beyond_2se"] and g["mcnemar_p"] < 1e-8


def test_unequal_or_empty_answer_lists_are_refused():
    with pytest.raises(ValueError, match="3 answers against 2"):
        paired_gain([True] * 3, [True] * 2)
    with pytest.raises(ValueError, match="no problems"):
        paired_gain([], [])


def _write_eval(directory, questions, correct):
    directory.mkdir()
    with (directory / "greedy_samples.jsonl").open("w") as f:
        for q, c in zip(questions, correct):
            f.write(json.dumps({"question": q, "gold": "1", "response": "", "answer": "1" if c else "2",
                                "correct": c}) + "\n")
    return directory


def test_two_evaluations_compare_problem_by_problem_and_print_one_line(tmp_path, capsys):
    a = _write_eval(tmp_path / "a", ["q1", "q2", "q3", "q4"], [True, False, False, True])
    b = _write_eval(tmp_path / "b", ["q1", "q2", "q3", "q4"], [True, True, True, False])
    g = compare_evaluations(a, b)
    assert (g["gained"], g["lost"], g["difference"]) == (2, 1, 0.25)
    assert main([str(a), str(b)]) == g
    out = capsys.readouterr().out
    assert f"{b} over {a}: +25.0 points" in out and "2 gained / 1 lost of 4" in out
    assert gain_line(g) in out
    table = markdown_gains([{"model": "b", "over": "a", **g}])
    assert "| b | a | 2 | 1 | +25.0 |" in table and table.endswith("| no |")


def test_evaluations_of_different_problems_are_refused_naming_both(tmp_path):
    a = _write_eval(tmp_path / "a", ["q1", "q2", "q3"], [True, False, False])
    b = _write_eval(tmp_path / "b", ["q1", "other", "q3"], [True, True, True])
    with pytest.raises(ValueError, match=r"a and .*b did not answer the same problems .*at problem 2"):
        compare_evaluations(a, b)
    c = _write_eval(tmp_path / "c", ["q1", "q2"], [True, True])
    with pytest.raises(ValueError, match="at problem 3; 3 against 2"):
        compare_evaluations(a, c)
