"""Phase-1 SFT data: prompt-driven search, trajectory choice and merge, JSON lines.

    rows, stats = build_sft_data(model, tokenizer, problems)   # search + trajectories
    write_jsonl("sft.jsonl", rows)
    rows = read_sft_jsonl("sft.jsonl")                          # validated on the way in

A row is one training example; the loss goes on `response` only (paper §3.1):

    {"question": str, "answer": gold str,
     "response": "<clarify>\\n...\\n</clarify>\\n...<output>\\nThe answer is \\\\boxed{7}.\\n</output>\\n",
     "kind": "correct" | "verified",
     "source": {"source_id": str, "path": [functions], "wrong_path": [functions] | null,
                "leaf_reward": float}}

The response carries no EOS: the trainer appends the chat template's end of turn.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Sequence

from search.engine import Engine
from search.mcts import ROLLOUT_BAR_FORMAT, search
from search.sampling import SamplingParams

from .data import DataError, Problem, _rows
from .prompt_search import PromptDrivenEnv
from .sft_prompts import verify_prompt
from .steps import parse_steps
from .trajectories import MergePlan, build_trajectories, validate_steps

KINDS = ("correct", "verified", "reference")  # reference: a worked solution (rftt/solution_steps.py)


def default_num_slots(num_problems: int, max_depth: int, max_step_tokens: int) -> int:
    """Room for one tree level of every problem at once: prompt (~512 tokens of question,
    instructions and template, plus the steps so far) and the longest generation."""
    per_step = 512 + 2 * max_depth * max_step_tokens + 8 * max_step_tokens
    return max(4096, min(num_problems, 64) * per_step)  # a bigger level is split (PromptDrivenEnv._chunks)


def build_sft_data(model, tokenizer, problems: list[Problem], *, rollouts: int = 4, max_depth: int = 4,
                   max_step_tokens: int = 64, temperature: float = 0.7, seed: int = 0, progress: bool = True,
                   num_slots: int | None = None, direct_answer_tokens: int | None = None,
                   force_answer: bool = False, parallel_rollouts: int = 1) -> tuple[list[dict], dict]:
    """Searches every problem (all in lockstep, one engine), then writes each tree's plain
    correct path and its cross-verification merge as rows. Returns (rows, stats).

    Caps: every step max_step_tokens (a sub-question half: half that), a direct answer 8x
    unless `direct_answer_tokens` is given; a cross-verification max_step_tokens.
    force_answer: see PromptDrivenEnv (not in the paper; for models too small to box).
    parallel_rollouts: rollouts of each tree per wave (search/mcts.py, virtual loss)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    # A wave holds up to parallel_rollouts steps of every problem at once.
    engine = Engine(model, num_slots=num_slots or default_num_slots(len(problems) * parallel_rollouts, max_depth,
                                                                     max_step_tokens))
    env = PromptDrivenEnv(engine, tokenizer, SamplingParams(temperature=temperature), max_step_tokens, seed=seed,
                          direct_answer_tokens=direct_answer_tokens, force_answer=force_answer)
    roots = env.roots(problems)
    with tqdm(total=rollouts, desc="phase-1 search", bar_format=ROLLOUT_BAR_FORMAT, disable=not progress) as bar:
        search(roots, env, rollouts, max_depth, progress=bar, parallel_rollouts=parallel_rollouts)
    search_s = time.perf_counter() - start

    def verify(requests: list[tuple[str, MergePlan]]) -> list[str]:
        prompts = [tokenizer.encode(verify_prompt(tokenizer, q, m.shared, m.wrong, m.correct)) for q, m in requests]
        return env.complete(prompts, max_step_tokens)

    trajectories, made = build_trajectories(roots, [p.question for p in problems], [p.answer for p in problems], verify)
    rows = []
    for problem, found in zip(problems, trajectories):
        for t in found:
            rows.append({
                "question": problem.question, "answer": problem.answer, "response": t.text, "kind": t.kind,
                "source": {"source_id": problem.source_id, "path": t.path, "wrong_path": t.wrong_path,
                           "leaf_reward": t.leaf_reward},
            })
    leaves = [leaf for root in roots for leaf in root.leaves()]
    stats = {
        "problems": len(problems),
        "leaves": len(leaves),
        "correct_leaves": sum(1 for leaf in leaves if leaf.reward == 1.0),
        "problems_with_correct_path": sum(1 for root in roots if any(leaf.reward == 1.0 for leaf in root.leaves())),
        "rows_correct": made["correct"],
        "rows_verified": made["verified"],
        "dropped_invalid": made["dropped_invalid"],
        "steps_generated": env.steps_generated,
        "tokens_generated": env.tokens_generated,
        "search_seconds": round(search_s, 2),
        "seconds": round(time.perf_counter() - start, 2),
    }
    engine.tree.clear()
    return rows, stats


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
    """Writes rows atomically: a temporary file in the same directory, then a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _require(ok: bool, path: str, line: int, field: str, message: str) -> None:
    if not ok:
        raise DataError(path, line, field, message)


def validate_row(row: dict, path: str = "<rows>", line: int = 0) -> None:
    """Raises DataError naming the field when `row` is not a well-formed SFT row."""
    for name in ("question", "answer", "response"):
        _require(name in row, path, line, name, "missing")
        _require(isinstance(row[name], str), path, line, name, f"expected a string, got {type(row[name]).__name__}")
        _require(bool(row[name].strip()), path, line, name, "empty")
    # `kind` and `source` say where a row came from; rows written by other tools may lack them.
    if "kind" in row:
        _require(row["kind"] in KINDS, path, line, "kind", f"expected one of {KINDS}, got {row['kind']!r}")
    if "source" in row:
        source = row["source"]
        _require(isinstance(source, dict), path, line, "source", "expected an object")
        _require(isinstance(source.get("source_id"), str), path, line, "source.source_id", "expected a string")
        _require(isinstance(source.get("path"), list) and all(isinstance(f, str) for f in source["path"]),
                 path, line, "source.path", "expected a list of function names")
        wrong = source.get("wrong_path")
        _require(wrong is None or (isinstance(wrong, list) and all(isinstance(f, str) for f in wrong)),
                 path, line, "source.wrong_path", "expected null or a list of function names")
        reward = source.get("leaf_reward")
        _require(reward is None or (isinstance(reward, (int, float)) and not isinstance(reward, bool)), path, line,
                 "source.leaf_reward", "expected a number or null")
    parsed = parse_steps(row["response"])
    _require(parsed.ok, path, line, "response",
             "not parseable as functional steps: " + "; ".join(f"{p.kind}: {p.detail}" for p in parsed.problems[:3]))
    _require(bool(parsed.steps) and parsed.steps[-1].function == "output", path, line, "response",
             "does not end with an <output> step")
    problems = validate_steps(parsed.steps, row["answer"])
    _require(not problems, path, line, "response", "; ".join(problems))


def read_sft_jsonl(path: str) -> list[dict]:
    """Every row of an SFT JSONL file, each validated (DataError names file, line, field)."""
    rows = []
    for line_no, row in _rows(path):
        validate_row(row, path, line_no)
        rows.append(row)
    return rows
