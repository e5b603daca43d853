"""Accuracy of a model: greedy, and functional-token MCTS with a majority vote (paper §3.4).

    python -m train.eval --model runs/ppo/final --data arith --limit 200 --rollouts 1,4,16
    python -m train.eval --model PATH --data math500.jsonl --json

Greedy decodes the solver prompt once per problem. MCTS runs the functional-token search
(the RL rollout search, without the gold answer: a leaf is worth 1 when it gives an
answer) and after 1, 4, ... rollouts takes the majority answer of the leaves found so far
(ties go to the answer found first). One search with the largest budget gives every
smaller one, because rollout k never depends on rollouts after it. Accuracy should rise
with the number of rollouts: that is the inference-time scaling the paper reports.

Writes OUT/eval.json (overall, and per level and type for MATH files; `mcts_leaves`: how
many leaves the searches found, how many answered and answered right, how their last
steps stopped, train/search_leaves.py), the greedy answers (OUT/greedy_samples.jsonl; a
rerun into the same OUT with the same model, problems and cap reads them back instead of
decoding again), every searched problem's votes and leaves (OUT/mcts_samples.jsonl) and,
when matplotlib is installed (`pip install matplotlib`), OUT/accuracy_vs_rollouts.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from model import DEFAULT_MODEL, EMBEDDED_MODELS, load_model
from model.cli import (HelpFormatter, add_debug_flag, add_device_flag, check_writable_dir, non_negative_float,
                       non_negative_int, positive_int, run_cli, unit_float)
from model.context import search_path_caps, search_path_tokens
from rftt.data import Problem, load_problems
from rftt.functional_search import MIN_FUNCTION_PROB
from rftt.sft_data import write_jsonl
from rftt.tokens import add_functional_tokens
from search.mcts import rollout, wave_sizes
from train.accuracy import grade, greedy_accuracy
from train.inference_search import leaf_answers, leaf_record, majority_answer, start_search
from train.prompt_lengths import check_problem_prompts
from train.saved_greedy import SAMPLES as SAVED_SAMPLES
from train.saved_greedy import greedy_key, load_saved_greedy, save_greedy
from train.search_leaves import grade_searches, leaf_summary

MCTS_SAMPLES = "mcts_samples.jsonl"


def mcts_votes(model, tok, problems: list[Problem], budgets: list[int], *, depth: int, max_step_tokens: int,
               temperature: float, seed: int, batch_size: int = 32, parallel_rollouts: int = 1,
               direct_answer_tokens: int | None = None,
               min_function_prob: float = MIN_FUNCTION_PROB) -> list[dict]:
    """Each problem's search: {"question", "level", "votes": {budget: the majority answer
    after that many rollouts}, "leaves": every leaf of the finished tree
    (train/inference_search.py's leaf_record)}. Rollouts run in waves of up to
    `parallel_rollouts` per tree (virtual loss, search/mcts.py); a wave never crosses a
    budget, so each budget's votes see exactly that many rollouts."""
    searches: list[dict] = []
    most = max(budgets)
    bar = tqdm(total=len(problems) * most, desc="mcts", unit="rollout")
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        env, roots = start_search(model, tok, [p.question for p in chunk], rollouts=most, depth=depth,
                                  max_step_tokens=max_step_tokens, temperature=temperature, seed=seed + start,
                                  direct_answer_tokens=direct_answer_tokens, min_function_prob=min_function_prob)
        votes: list[dict[str, str | None]] = [{} for _ in chunk]
        k = 0
        for size in wave_sizes(most, parallel_rollouts, pause_at=budgets):
            rollout(roots, env, max_depth=depth, parallel_rollouts=size)
            k += size
            bar.update(len(chunk) * size)
            if k in budgets:
                found = [leaf_answers(env, root) for root in roots]
                for problem_votes, answers in zip(votes, found):
                    problem_votes[str(k)] = majority_answer([a for _, a in answers])
        # the last wave ends at the largest budget: `found` holds the finished trees' leaves
        for problem, problem_votes, answers in zip(chunk, votes, found, strict=True):
            searches.append({"question": problem.question, "level": problem.level, "votes": problem_votes,
                             "leaves": [leaf_record(env, leaf, a) for leaf, a in answers]})
    bar.close()
    return searches


def spread_subset(items: list, k: int | None) -> list:
    """k items spread evenly over the list (all of them when k is None or ≥ len). The
    held-out files of train.reproduce are ordered by level, so an even spread keeps every
    level's share: the MCTS figures rest on the same mix as the greedy ones."""
    if k is None or k >= len(items):
        return list(items)
    return [items[i * len(items) // k] for i in range(k)]


def breakdown(problems: list[Problem], correct: list[bool]) -> dict:
    """Accuracy per level and per type (MATH); empty groups are left out."""
    out: dict[str, dict] = {}
    for key in ("level", "type"):
        groups: dict[str, list[bool]] = defaultdict(list)
        for p, c in zip(problems, correct):
            value = getattr(p, key)
            if value is not None:
                groups[str(value)].append(c)
        if len(groups) > 1:
            out[key] = {g: {"accuracy": sum(v) / len(v), "n": len(v)} for g, v in sorted(groups.items())}
    return out


def plot(summary: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    budgets = sorted(int(k) for k in summary["mcts"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(budgets, [summary["mcts"][str(b)]["accuracy"] for b in budgets], "o-", label="MCTS, majority vote")
    greedy = summary.get("greedy_on_mcts_problems", summary["greedy"])  # the problems MCTS saw
    ax.axhline(greedy["accuracy"], color="gray", linestyle="--", label="greedy")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rollouts per problem")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{summary['model']} on {summary['data']} (n={summary.get('mcts_problems', summary['problems'])})",
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.eval", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter, epilog=__doc__)
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"an embedded name ({', '.join(EMBEDDED_MODELS)}) or a Hugging Face directory")
    p.add_argument("--data", default="arith", help="'arith' (the generator's test split) or a MATH, GSM8K or SFT-rows JSONL")
    p.add_argument("--limit", type=positive_int, default=200, help="problems to evaluate")
    p.add_argument("--rollouts", type=budget_list, default="1,4,16",
                   help="comma-separated MCTS budgets; '' for greedy only")
    p.add_argument("--mcts-limit", type=positive_int, default=None,
                   help="MCTS on this many of the problems, spread evenly over the file (default: all); "
                        "an MCTS vote costs about --rollouts-max times a greedy answer")
    p.add_argument("--depth", type=positive_int, default=6, help="MCTS: most steps in a path")
    p.add_argument("--max-step-tokens", type=positive_int, default=96, help="MCTS: cap on one step's tokens")
    p.add_argument("--direct-answer-tokens", type=positive_int, default=None,
                   help="MCTS: cap on a direct answer, which writes the rest of the solution in one step "
                        "(default: --max-step-tokens)")
    p.add_argument("--parallel-rollouts", type=positive_int, default=4,
                   help="MCTS: rollouts of each tree advanced together in one wave (virtual loss), so a decode "
                        "batch holds problems x this many branches; 1 is one rollout at a time")
    p.add_argument("--min-function-prob", type=unit_float, default=MIN_FUNCTION_PROB,
                   help="MCTS: a functional token becomes a child only when the model gives it at least this "
                        "probability (when it gives no allowed one that much: every allowed one); 0 searches every "
                        "allowed function (train.ppo's default preset trains on 0.05)")
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="greedy: cap on the response")
    p.add_argument("--temperature", type=non_negative_float, default=0.7,
                   help="MCTS step sampling temperature (0: greedy steps)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the problems drawn from --data and of the MCTS step sampling")
    p.add_argument("--out", default=None, help="where eval.json and the plot go (default: next to the model)")
    p.add_argument("--json", action="store_true", help="print the summary as the last stdout line")
    add_device_flag(p)
    add_debug_flag(p)
    args = p.parse_args(argv)
    budgets = args.rollouts
    out = Path(args.out) if args.out else (Path(args.model) / "eval" if Path(args.model).is_dir() else Path("runs/eval"))
    check_writable_dir(out)

    started = time.time()
    problems = load_problems(args.data, "test", n=args.limit, seed=args.seed)[:args.limit]
    model, tok = load_model(args.model, device=args.device)
    add_functional_tokens(model, tok)  # no-op for a trained RFTT model; lets a base model be searched
    check_problem_prompts(problems, tok, model.config, args.max_new_tokens, f"--max-new-tokens {args.max_new_tokens}")
    if budgets:
        check_problem_prompts(problems, tok, model.config,
                              search_path_tokens(args.depth, args.max_step_tokens, args.direct_answer_tokens),
                              search_path_caps(args.depth, "--max-step-tokens", args.max_step_tokens,
                                               args.direct_answer_tokens))

    # Results are written as they come: a failure in the MCTS part keeps the greedy ones,
    # and a rerun with the same model, problems and cap reads them back (train/saved_greedy.py).
    key = greedy_key(args.model, tok, str(args.device), problems, args.max_new_tokens)
    saved = load_saved_greedy(out, key)
    if saved is None:
        greedy_acc, records = greedy_accuracy(model, tok, problems, args.max_new_tokens, desc="greedy")
        save_greedy(out, key, records)
    else:  # graded again: the grader may have changed since
        records = grade(problems, [r["response"] for r in saved])
        greedy_acc = sum(r["correct"] for r in records) / len(records)
        print(f"greedy: read the {len(records)} answers saved in {out / SAVED_SAMPLES} (same model files, "
              f"problems, device and --max-new-tokens)", file=sys.stderr)
    summary = {"model": str(args.model), "data": args.data, "problems": len(problems),
               "greedy": {"accuracy": greedy_acc, **breakdown(problems, [r["correct"] for r in records])},
               "mcts": {}}
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    if budgets:
        searched = spread_subset(problems, args.mcts_limit)
        summary["mcts_problems"] = len(searched)
        # Greedy on the very problems MCTS sees: "MCTS@16 above greedy" compares like with like.
        on_searched = spread_subset([r["correct"] for r in records], args.mcts_limit)
        summary["greedy_on_mcts_problems"] = {"accuracy": sum(on_searched) / len(on_searched),
                                              **breakdown(searched, on_searched)}
        with torch.inference_mode():
            searches = mcts_votes(model, tok, searched, budgets, depth=args.depth,
                                  max_step_tokens=args.max_step_tokens, temperature=args.temperature, seed=args.seed,
                                  parallel_rollouts=args.parallel_rollouts,
                                  direct_answer_tokens=args.direct_answer_tokens,
                                  min_function_prob=args.min_function_prob)
        grade_searches(searches, searched)
        for b in budgets:
            correct = [r["votes_correct"][str(b)] for r in searches]
            summary["mcts"][str(b)] = {"accuracy": sum(correct) / len(correct), **breakdown(searched, correct)}
        write_jsonl(str(out / MCTS_SAMPLES), searches)
        summary["mcts_leaves"] = leaf_summary(searches)
    summary["wall_s"] = round(time.time() - started, 1)
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    if budgets and not plot(summary, out / "accuracy_vs_rollouts.png"):
        print("matplotlib is not installed: wrote the JSON summary only (pip install matplotlib for the plot)",
              file=sys.stderr)
    line = f"greedy {greedy_acc:.3f}" + "".join(f"  mcts@{b} {summary['mcts'][str(b)]['accuracy']:.3f}" for b in budgets)
    print(line, file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return summary


def budget_list(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16] (sorted, distinct, each > 0); '' -> [] (greedy only)."""
    try:
        budgets = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(b <= 0 for b in budgets):
        raise argparse.ArgumentTypeError(f"every budget must be > 0, got {text!r}")
    return budgets


if __name__ == "__main__":
    run_cli(main)
