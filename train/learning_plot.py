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
    greedy_x = 0.5  # greedy sits left of MCTS@1 on the log axis, with its own tick
    ticks = {greedy_x}
    for i, (name, m) in enumerate(models.items()):
        color = f"C{i}"
        shift = 2 ** (0.05 * (i - (len(models) - 1) / 2))  # side by side, so the error bars stay apart
        budgets = sorted(m["mcts"], key=int)
        ticks.update(int(b) for b in budgets)
        if budgets:
            figs = [m["mcts"][b] for b in budgets]
            left.errorbar([int(b) * shift for b in budgets], [f["accuracy"] for f in figs], yerr=_errors(figs),
                          color=color, marker="o", capsize=3, label=f"{name}: MCTS")
        greedy = m["greedy"]
        left.axhline(greedy["accuracy"], color=color, linestyle="--", linewidth=1)
        left.errorbar([greedy_x * shift], [greedy["accuracy"]], yerr=_errors([greedy]), color=color, marker="s",
                      capsize=3, label=f"{name}: greedy (dashed)")
    left.set_xscale("log", base=2)
    left.set_xticks(sorted(ticks), ["greedy" if t == greedy_x else str(t) for t in sorted(ticks)])
    left.set_xlabel("MCTS rollouts per problem, majority vote")
    left.set_ylabel("held-out accuracy (95% interval)")
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
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("RL iteration")
    right.set_ylabel("mean reward / share correct (rollouts)")
    if right.lines:  # before any RL stage has finished the panel stays empty
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
