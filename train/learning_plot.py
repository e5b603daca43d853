"""OUT/learning.png: left, accuracy against MCTS rollouts per model (greedy as a dashed
line of the model's colour), 95% intervals as error bars; right, each RL run's reward
and accuracy per iteration. Needs matplotlib (`pip install matplotlib`), which the
project does not require: without it the caller writes the JSON only."""

from __future__ import annotations

from pathlib import Path


def _errors(figs: list[dict]) -> list[list[float]]:
    """matplotlib's yerr: distances below and above each accuracy."""
    return [[f["accuracy"] - f["ci95"][0] for f in figs], [f["ci95"][1] - f["accuracy"] for f in figs]]


def plot_learning(models: dict[str, dict], rl: dict[str, list[dict]], path: Path) -> bool:
    """Writes the figure; False when matplotlib is not importable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, m) in enumerate(models.items()):
        color = f"C{i}"
        budgets = sorted(m["mcts"], key=int)
        if budgets:
            figs = [m["mcts"][b] for b in budgets]
            left.errorbar([int(b) for b in budgets], [f["accuracy"] for f in figs], yerr=_errors(figs), color=color,
                          marker="o", capsize=3, label=f"{name} MCTS")
        greedy = m["greedy"]
        left.axhline(greedy["accuracy"], color=color, linestyle="--", linewidth=1)
        left.errorbar([0.8], [greedy["accuracy"]], yerr=_errors([greedy]), color=color, marker="s", capsize=3,
                      label=f"{name} greedy")
    left.set_xscale("log", base=2)
    left.set_xlabel("MCTS rollouts per problem (greedy: square at left, dashed)")
    left.set_ylabel("held-out accuracy")
    left.set_ylim(0, 1)
    left.legend(fontsize=7)
    colors = {name: f"C{i}" for i, name in enumerate(models)}  # a run's RL curve in its model's colour
    for i, (name, curve) in enumerate(rl.items()):
        if not curve:
            continue
        color = colors.get(name, f"C{len(models) + i}")
        steps = [c["iteration"] for c in curve]
        right.plot(steps, [c["reward"] for c in curve], color=color, marker=".", label=f"{name} reward")
        right.plot(steps, [c["accuracy"]["accuracy"] for c in curve], color=color, linestyle=":", marker=".",
                   label=f"{name} accuracy")
    right.set_xlabel("RL iteration")
    right.set_ylabel("mean reward / share correct (rollouts)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
