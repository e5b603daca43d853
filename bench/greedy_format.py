"""What shape a model's greedy answers take: functional steps or plain prose, well formed or not.

    python bench/greedy_format.py runs/repro/eval_base runs/repro/eval_sft
    python bench/greedy_format.py runs/repro/eval_sft --json

Reads each train.eval directory's greedy_samples.jsonl and counts, over its answers: how
many write functional steps at all, which function opens them, how many break the step
format (rftt/steps.py's parse problems: a step closed by another function's tag, a tag
left open, text outside any step, an empty step), how many reach an `<output>` step, how
many give no answer, and how many box the gold answer somewhere yet are graded wrong (the
grader reads the last box; an answer repeated until the length cap cuts its last box in
half is such a case). Accuracy alone cannot tell a model that reasons wrongly from one
that never learned to stop; these counts can.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from rftt.steps import parse_steps  # noqa: E402
from train.side_by_side import read_greedy  # noqa: E402


def format_counts(records: list[dict]) -> dict:
    """Counts over one model's greedy records (train.eval's greedy_samples.jsonl)."""
    counts: Counter = Counter()
    first: Counter = Counter()
    for r in records:
        parsed = parse_steps(r["response"])
        if parsed.steps:
            counts["with_steps"] += 1
            first[parsed.steps[0].function] += 1
        for kind in sorted({p.kind for p in parsed.problems}):
            counts[f"format:{kind}"] += 1
        counts["with_output_step"] += any(s.function == "output" for s in parsed.steps)
        counts["no_answer"] += r["answer"] is None
        counts["correct"] += bool(r["correct"])
        counts["gold_boxed_but_wrong"] += not r["correct"] and f"\\boxed{{{r['gold']}}}" in r["response"]
    return {"answers": len(records), **dict(sorted(counts.items())), "first_step": dict(first.most_common())}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("eval_dirs", nargs="+", help="train.eval output directories (each with greedy_samples.jsonl)")
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON list, one object a directory")
    args = p.parse_args(argv)
    results = []
    for directory in args.eval_dirs:
        path = Path(directory) / "greedy_samples.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path}: not found (run python -m train.eval with --out {directory} first)")
        results.append({"eval_dir": str(directory), **format_counts(read_greedy(Path(directory)))})
    for r in results:
        print(f"{r['eval_dir']}: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "eval_dir"))
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
