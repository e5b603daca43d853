"""Is one model better than another on the same held-out problems? The paired test.

Two accuracies with overlapping 95% intervals can still differ significantly: both
models answer the *same* problems, and most problems are right (or wrong) for both. What
decides is only the discordant problems — b gained (wrong before, right after) and c lost.
Per problem the gain is d_i ∈ {−1, 0, +1}; its mean is the difference in accuracy and

    se = sqrt( Σ (d_i − d̄)² / (n − 1) / n )

its standard error (the paired t statistic's denominator). The issue's targets ask for
each gain to exceed twice its se. Beside it, the exact McNemar test: under "no difference"
each discordant problem is a fair coin, so p = P(Binomial(b + c, ½) as far from even as
min(b, c)), two-sided (McNemar 1947; the exact binomial form, as Fagerland, Lydersen &
Laake, BMC Med. Res. Methodol. 2013, recommend for small counts).

    python -m train.paired runs/reproduce/eval_sft runs/reproduce/eval_ppo
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from model.cli import run_cli

from .intervals import Z_95
from .side_by_side import check_same_problems, read_greedy


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value of `gained` against `lost` discordant problems."""
    m, k = gained + lost, min(gained, lost)
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def paired_gain(before: list[bool], after: list[bool]) -> dict:
    """`after`'s accuracy minus `before`'s, problem by problem:
    {"n", "gained", "lost", "difference", "se", "ci95": [low, high], "mcnemar_p", "beyond_2se"}."""
    if len(before) != len(after):
        raise ValueError(f"paired comparison needs the same problems: {len(before)} answers against {len(after)}")
    n = len(before)
    if n == 0:
        raise ValueError("paired comparison of no problems")
    d = [int(a) - int(b) for b, a in zip(before, after)]
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else 0.0
    gained, lost = d.count(1), d.count(-1)
    return {"n": n, "gained": gained, "lost": lost, "difference": mean, "se": se,
            "ci95": [mean - Z_95 * se, mean + Z_95 * se], "mcnemar_p": mcnemar_exact_p(gained, lost),
            "beyond_2se": mean > 2 * se}


def compare_evaluations(before_dir: Path, after_dir: Path) -> dict:
    """paired_gain of two train.eval directories' greedy answers (greedy_samples.jsonl),
    after checking that they answered the same questions in the same order."""
    before, after = read_greedy(before_dir), read_greedy(after_dir)
    check_same_problems({str(before_dir): before, str(after_dir): after})
    return paired_gain([r["correct"] for r in before], [r["correct"] for r in after])


def gain_line(gain: dict) -> str:
    """'+2.5 points (se 2.7, 95% [-2.8, +7.8]), 17 gained / 12 lost of 200, McNemar p = 0.458'"""
    low, high = gain["ci95"]
    return (f"{100 * gain['difference']:+.1f} points (se {100 * gain['se']:.1f}, 95% [{100 * low:+.1f}, "
            f"{100 * high:+.1f}]), {gain['gained']} gained / {gain['lost']} lost of {gain['n']}, "
            f"McNemar p = {gain['mcnemar_p']:.3f}")


def markdown_gains(gains: list[dict]) -> str:
    """The paired gains as a markdown table (rows: {"model", "over", **paired_gain})."""
    lines = ["| model | over | gained | lost | difference, points | se | 95% | McNemar p | > 2 se |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in gains:
        low, high = g["ci95"]
        lines.append(f"| {g['model']} | {g['over']} | {g['gained']} | {g['lost']} | {100 * g['difference']:+.1f} | "
                     f"{100 * g['se']:.1f} | [{100 * low:+.1f}, {100 * high:+.1f}] | {g['mcnemar_p']:.3f} | "
                     f"{'yes' if g['beyond_2se'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.paired", description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path, help="a train.eval output directory (the model to beat)")
    p.add_argument("after", type=Path, help="another, scored on the same held-out file")
    args = p.parse_args(argv)
    gain = compare_evaluations(args.before, args.after)
    print(f"{args.after} over {args.before}: {gain_line(gain)}")
    return gain


if __name__ == "__main__":
    run_cli(main)
