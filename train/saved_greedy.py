"""Greedy answers kept across a restart of train.eval.

An evaluation of the 0.5B default on 200 problems spends ~15 minutes of 2 CPU cores on its
greedy answers before the MCTS part starts; a run killed in the MCTS part (or a
train.reproduce stage started again) should not pay that twice. The answers are written
with a key of everything they depend on, and a rerun whose key matches reads them back
instead of decoding: the model's files (name, size, modification time), the device, the
response cap, and each problem's prompt token ids (so also the prompt template and the
tokenizer) and gold answer. Anything else — another model at the same path, a retrained
one, other problems — decodes afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from model.loading import resolve_model_dir
from rftt.data import Problem
from rftt.prompts import solve_prompt_ids
from rftt.sft_data import write_jsonl

SAMPLES = "greedy_samples.jsonl"
KEY = "greedy_key.json"


def greedy_key(model: str, tokenizer, device: str, problems: list[Problem], max_new_tokens: int) -> dict:
    directory = resolve_model_dir(model)
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in directory.iterdir() if f.is_file())
    problems_text = json.dumps([[solve_prompt_ids(tokenizer, p.question), p.answer] for p in problems])
    return {"model": str(model), "model_files": files, "device": str(device), "max_new_tokens": max_new_tokens,
            "problems": len(problems), "problems_sha256": hashlib.sha256(problems_text.encode()).hexdigest()}


def load_saved_greedy(out: Path, key: dict) -> list[dict] | None:
    """The records saved under `key` in `out`, or None when there are none that match."""
    try:
        saved = json.loads((out / KEY).read_text())
        records = [json.loads(line) for line in (out / SAMPLES).read_text().splitlines()]
    except (OSError, ValueError):
        return None
    # JSON turns the key's tuples into lists: compare through one round trip.
    if saved != json.loads(json.dumps(key)) or len(records) != key["problems"]:
        return None
    return records


def save_greedy(out: Path, key: dict, records: list[dict]) -> None:
    """Old key removed, records written atomically, new key last: a key on disk always
    describes complete records (a kill before the key leaves none, so a rerun decodes; a
    key cut short does not parse, which also means decode)."""
    (out / KEY).unlink(missing_ok=True)
    write_jsonl(str(out / SAMPLES), records)
    (out / KEY).write_text(json.dumps(key, indent=1))
