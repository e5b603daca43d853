"""The paper's table in miniature, from train.eval summaries: each model's greedy and
MCTS majority-vote accuracy, overall and per level, every figure with its 95% Wilson
interval (train/intervals.py); the RL curves from a train.ppo metrics.jsonl; and the
markdown table a README can paste.

train.eval reports accuracies and group sizes, not counts; correct = round(accuracy·n)
recovers the count exactly (accuracy is k/n in floating point).
"""

from __future__ import annotations

import json
from pathlib import Path

from .intervals import figure


def _count(accuracy: float, n: int) -> int:
    return int(round(accuracy * n))


def _levels_of(block: dict, n: int, only_level: str | None) -> dict[str, dict]:
    """{level: figure} of one eval block ({"accuracy", "level": {...}}). train.eval leaves
    the breakdown out when every problem has one level: that level is then the whole."""
    if "level" in block:
        return {lv: figure(_count(g["accuracy"], g["n"]), g["n"]) for lv, g in block["level"].items()}
    return {only_level: figure(_count(block["accuracy"], n), n)} if only_level is not None else {}


def model_figures(summary: dict, levels: list[int]) -> dict:
    """One model's entry of learning.json from its train.eval summary:
    {"n", "mcts_n", "greedy": fig, "greedy_on_mcts_problems": fig, "mcts": {"1": fig, ...},
    "levels": {"1": {"n", "greedy", "mcts"}}}, fig = {"accuracy", "correct", "n", "ci95": [low, high]}.
    MCTS may have run on an evenly spread subset (train.eval --mcts-limit): mcts_n problems."""
    n = summary["problems"]
    mcts_n = summary.get("mcts_problems", n)
    only = str(levels[0]) if len(levels) == 1 else None
    greedy, mcts = summary["greedy"], summary.get("mcts", {})
    out = {"n": n, "mcts_n": mcts_n, "greedy": figure(_count(greedy["accuracy"], n), n),
           "mcts": {b: figure(_count(m["accuracy"], mcts_n), mcts_n)
                    for b, m in sorted(mcts.items(), key=lambda kv: int(kv[0]))}}
    if "greedy_on_mcts_problems" in summary:
        out["greedy_on_mcts_problems"] = figure(_count(summary["greedy_on_mcts_problems"]["accuracy"], mcts_n), mcts_n)
    per_level: dict[str, dict] = {}
    for lv, fig in _levels_of(greedy, n, only).items():
        per_level[lv] = {"n": fig["n"], "greedy": fig, "mcts": {}}
    for b, m in out["mcts"].items():
        for lv, fig in _levels_of(mcts[b], mcts_n, only).items():
            per_level.setdefault(lv, {"n": fig["n"], "greedy": None, "mcts": {}})["mcts"][b] = fig
            per_level[lv]["mcts_n"] = fig["n"]
    out["levels"] = dict(sorted(per_level.items(), key=lambda kv: int(kv[0])))
    if "mcts_leaves" in summary:  # what the searches found (train/search_leaves.py)
        out["search_leaves"] = summary["mcts_leaves"]
    return out


def rl_curve(metrics_path: Path) -> list[dict]:
    """Per RL iteration: reward (mean over samples) and accuracy (share of samples with
    reward 1), with its interval over the iteration's samples."""
    curve = []
    if not metrics_path.is_file():
        return curve
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        n = int(row.get("samples", 0))
        curve.append({"iteration": row["step"], "reward": row["reward"], "samples": n,
                      "accuracy": figure(_count(row["accuracy"], n), n)})
    return curve


def _cell(fig: dict | None) -> str:
    if fig is None:
        return "–"
    low, high = fig["ci95"]
    return f"{100 * fig['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def markdown_table(models: dict[str, dict]) -> str:
    """model × greedy, MCTS@k accuracy in percent with its 95% interval in brackets."""
    budgets = sorted({b for m in models.values() for b in m["mcts"]}, key=int)
    subset = any(m.get("mcts_n", m["n"]) != m["n"] for m in models.values())
    head = ["model", "n", "greedy", *(["MCTS n", "greedy on those"] if subset else []),
            *(f"MCTS@{b}" for b in budgets)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for name, m in models.items():
        extra = [str(m.get("mcts_n", m["n"])), _cell(m.get("greedy_on_mcts_problems"))] if subset else []
        cells = [name, str(m["n"]), _cell(m["greedy"]), *extra, *(_cell(m["mcts"].get(b)) for b in budgets)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nAccuracy in %, 95% Wilson interval in brackets."


def markdown_search_leaves(models: dict[str, dict]) -> str:
    """model × what its searches found at the largest budget (train/search_leaves.py):
    why a majority vote lands where it does. Empty when no model's evaluation has them."""
    rows = [(name, m["search_leaves"]) for name, m in models.items() if "search_leaves" in m]
    if not rows:
        return ""
    lines = ["| model | leaves a problem | leaves that answer, % | answer right, % | problems with a right leaf, % "
             "| how the leaves' last steps stopped |", "|---|---|---|---|---|---|"]
    for name, s in rows:
        stops = ", ".join(f"{k} {v}" for k, v in s["last_step"].items())
        lines.append(f"| {name} | {s['leaves_per_problem']} | {100 * s['answered']:.1f} | {100 * s['correct']:.1f} "
                     f"| {100 * s['problems_with_a_correct_leaf']:.1f} | {stops} |")
    return "\n".join(lines) + ("\n\nEach distinct leaf counts once. \"terminal\": a direct answer, an <output> or EOS "
                               "ended the path; \"open\": the depth limit did; \"length\": the step's token cap cut it.")
