"""What each model writes for the same held-out problem, side by side (issue: "show what
the model writes").

train.eval keeps every greedy response (EVAL_DIR/greedy_samples.jsonl, one record per
problem in the held-out file's order), so the base, SFT and RL answers to problem i are
line i of each file. The problems shown are chosen by rule, not by hand, in this order:

1. a later model right where an earlier one was wrong (what training changed);
2. a response that uses `<verify>` or `<refine>` (paper §3.1: a step that names a slip
   and the corrected continuation), right or wrong;
3. a later model wrong where an earlier one was right (what training broke).

Within a rule, problems go in file order; the same files always give the same page.
"""

from __future__ import annotations

import json
from pathlib import Path

from rftt.tokens import open_tag

SELF_CORRECTION = (open_tag("verify"), open_tag("refine"))


def read_greedy(eval_dir: Path) -> list[dict]:
    path = Path(eval_dir) / "greedy_samples.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_same_problems(answers: dict[str, list[dict]]) -> int:
    """Raises ValueError unless every model (label -> greedy records) answered the same
    questions in the same order; returns how many. The labels name the culprits."""
    (first_label, first), *others = answers.items()
    questions = [r["question"] for r in first]
    for label, records in others:
        theirs = [r["question"] for r in records]
        if theirs != questions:
            at = next((i for i, (x, y) in enumerate(zip(questions, theirs)) if x != y), min(len(questions), len(theirs)))
            raise ValueError(f"{first_label} and {label} did not answer the same problems (the first difference is "
                             f"at problem {at + 1}; {len(questions)} against {len(theirs)} problems): "
                             f"score both on the same held-out file")
    return len(questions)


def fixed(correct: list[bool]) -> bool:
    """Some model is right after an earlier one was wrong."""
    return any(correct[j] and not all(correct[:j]) for j in range(1, len(correct)))


def broken(correct: list[bool]) -> bool:
    """Some model is wrong after an earlier one was right."""
    return any(not correct[j] and any(correct[:j]) for j in range(1, len(correct)))


def pick_problems(samples: dict[str, list[dict]], k: int) -> list[tuple[int, str]]:
    """Up to k (problem index, why) pairs, by the module's rules; `samples` maps a model
    name to its greedy records, models in training order."""
    n = check_same_problems(samples)
    models = list(samples)
    correct = [[samples[m][i]["correct"] for m in models] for i in range(n)]
    rules = [
        ("fixed by training", lambda i: fixed(correct[i])),
        ("uses <verify>/<refine>",
         lambda i: any(tag in samples[m][i]["response"] for m in models for tag in SELF_CORRECTION)),
        ("broken by training", lambda i: broken(correct[i])),
    ]
    chosen: list[tuple[int, str]] = []
    taken: set[int] = set()
    per_rule = max(1, k // len(rules))
    for why, applies in rules:
        hits = [i for i in range(n) if i not in taken and applies(i)][:per_rule]
        chosen += [(i, why) for i in hits]
        taken.update(hits)
    for why, applies in rules:  # fill what a rule left unused from the others, in order
        for i in range(n):
            if len(chosen) >= k:
                break
            if i not in taken and applies(i):
                chosen.append((i, why))
                taken.add(i)
    return sorted(chosen[:k])


def _fenced(text: str, max_chars: int) -> str:
    text = text if len(text) <= max_chars else text[:max_chars] + f" … [{len(text) - max_chars} more characters]"
    return "```\n" + text.replace("```", "`\u200b``") + "\n```"


def markdown(samples: dict[str, list[dict]], picked: list[tuple[int, str]], max_chars: int = 900) -> str:
    if not picked:
        return "No held-out problem differs between the models' greedy answers.\n"
    parts = []
    for i, why in picked:
        first = next(iter(samples.values()))[i]
        parts.append(f"### Problem {i + 1} ({why})\n\n{first['question']}\n\nGold answer: `{first['gold']}`\n")
        for name, records in samples.items():
            r = records[i]
            verdict = "right" if r["correct"] else "wrong"
            parts.append(f"**{name}** — answer `{r['answer']}`, {verdict}:\n\n{_fenced(r['response'], max_chars)}\n")
    return "\n".join(parts)
