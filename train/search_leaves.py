"""What an evaluation's searches found, leaf by leaf: the figures that say *why* a majority
vote lands where it does.

A vote can miss because the paths rarely end in an answer (steps cut by their caps, paths
that hit the depth limit), because the answers they reach are wrong, or because a right
answer is found but outvoted. train.eval writes every searched problem's leaves to
mcts_samples.jsonl and these totals to eval.json's `mcts_leaves`.
"""

from __future__ import annotations

from collections import Counter

from rftt.data import Problem
from rftt.grading import is_equiv


def grade_searches(searches: list[dict], problems: list[Problem]) -> None:
    """Adds the gold answer and `correct` to each search record, its votes and its leaves."""
    for record, problem in zip(searches, problems, strict=True):
        record["gold"] = problem.answer
        record["votes_correct"] = {b: a is not None and is_equiv(a, problem.answer) for b, a in record["votes"].items()}
        for leaf in record["leaves"]:
            leaf["correct"] = leaf["answer"] is not None and is_equiv(leaf["answer"], problem.answer)


def leaf_summary(searches: list[dict]) -> dict:
    """Totals over graded search records: distinct leaves a problem, the share of leaves
    that answer and that answer right (each distinct leaf once, however many rollouts
    ended there), problems with at least one right leaf (what a perfect vote would score),
    and how the leaves' last steps stopped."""
    leaves = [leaf for record in searches for leaf in record["leaves"]]
    n = max(len(leaves), 1)
    stops = Counter(("terminal " if leaf["terminal"] else "open ") + leaf["last_step"] for leaf in leaves)
    return {"leaves_per_problem": round(len(leaves) / max(len(searches), 1), 2),
            "answered": round(sum(leaf["answer"] is not None for leaf in leaves) / n, 4),
            "correct": round(sum(leaf["correct"] for leaf in leaves) / n, 4),
            "problems_with_a_correct_leaf": round(
                sum(any(leaf["correct"] for leaf in r["leaves"]) for r in searches) / max(len(searches), 1), 4),
            "last_step": dict(sorted(stops.items()))}
