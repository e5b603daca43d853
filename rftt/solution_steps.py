"""A reference solution written as functional steps: SFT data without a search.

The arithmetic generator (rftt/data.py) and MATH/GSM8K files carry worked solutions.
Each non-blank line becomes a `<next_step>`, and an `<output>` step repeats the boxed
answer — the same ending the searched trajectories have (rftt/trajectories.py), and a
path the RL transition table allows (root → next_step → … → output).

This is not the paper's phase 1 (which searches for the model's own trajectories); it is
what `train.sft --data reference` and `--preset tiny` use, where a search would find
nothing (a tiny random model) or the point is to check the training loop itself.
"""

from __future__ import annotations

from rftt.data import Problem
from rftt.steps import Step, format_steps
from rftt.tokens import FUNCTIONAL_TOKENS


def solution_steps(problem: Problem) -> list[Step] | None:
    """`problem`'s worked solution as steps; None if it has none."""
    if not problem.solution:
        return None
    lines = [line.strip() for line in problem.solution.splitlines() if line.strip()]
    if not lines or any(tag in problem.solution for tag in FUNCTIONAL_TOKENS):
        return None
    return [Step("next_step", line) for line in lines] + [Step("output", f"The answer is \\boxed{{{problem.answer}}}.")]


def reference_rows(problems: list[Problem]) -> list[dict]:
    """SFT rows (the format of rftt/sft_data.py) from the problems' worked solutions."""
    rows = []
    for p in problems:
        steps = solution_steps(p)
        if steps is not None:
            rows.append({"question": p.question, "answer": p.answer, "response": format_steps(steps),
                         "kind": "reference", "source": {"source_id": p.source_id, "path": [s.function for s in steps],
                                                         "wrong_path": None, "leaf_reward": 1.0}})
    return rows
