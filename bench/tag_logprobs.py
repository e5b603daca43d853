"""How well a model predicts the functional tokens of SFT rows, against every other token.

    python bench/tag_logprobs.py --data runs/sft/sft_data.jsonl --model qwen2.5-coder-0.5b-instruct --model runs/sft/final
    python bench/tag_logprobs.py --data rows.jsonl --model tiny --json

The 16 functional tokens are new vocabulary rows (paper §3.1); each starts as the mean of
the rows of the text it spells (model/vocab.py), so before training a model gives them
little probability, and greedy decoding writes the plain text instead. Whether SFT has
taught them shows in the rows it trained on, teacher-forced: the mean log-probability of
each target class (functional tokens, EOS, every other response token) and the share of its
targets the model gives p > 0.5, i.e. would certainly write greedily. The closing tag of
the output step and the EOS after it are reported alone: a model that cannot write them
never stops after its answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

import torch  # noqa: E402

from rftt.sft_data import read_sft_jsonl  # noqa: E402
from rftt.tokens import FUNCTIONAL_TOKENS, close_tag  # noqa: E402
from train.model_io import load_base_model  # noqa: E402
from train.sequences import collate, encode_sft_example  # noqa: E402

BATCH = 4  # rows per forward: the 0.5B model's [B, T, vocab] logits stay small


def classes(tok) -> dict[str, set[int]]:
    functional = {tok.token_to_id(t) for t in FUNCTIONAL_TOKENS}
    return {"functional": functional, "</output>": {tok.token_to_id(close_tag("output"))},
            "eos": {tok.eos_token_id}}


@torch.no_grad()
def measure(model_name: str, rows: list[dict], seed: int = 0) -> dict:
    model, tok = load_base_model(model_name, torch.device("cpu"), seed)
    model.eval()
    kinds = classes(tok)
    logps: dict[str, list[float]] = {"functional": [], "</output>": [], "eos": [], "other": []}
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        batch = collate([encode_sft_example(tok, r["question"], r["response"]) for r in chunk], tok.eos_token_id)
        logp, _ = model(batch.inputs, targets=batch.targets)  # [B, T]: log p(target)
        for target, lp in zip(batch.targets[batch.loss_mask].tolist(), logp[batch.loss_mask].tolist()):
            hit = [k for k, ids in kinds.items() if target in ids]
            for k in hit or ["other"]:
                logps[k].append(lp)
    del model
    summary = {}
    for k, values in logps.items():
        t = torch.tensor(values, dtype=torch.float64)
        summary[k] = {"targets": len(values),
                      "mean_logp": float(t.mean()) if values else None,
                      "p_above_half": float((t > torch.log(torch.tensor(0.5))).double().mean()) if values else None}
    return {"model": model_name, "rows": len(rows), "classes": summary}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", required=True, help="a JSONL of SFT rows (train.sft writes OUT/sft_data.jsonl)")
    p.add_argument("--model", action="append", required=True,
                   help="an embedded name, a directory or 'tiny'; give it again to compare models")
    p.add_argument("--seed", type=int, default=0, help="seed of a 'tiny' model (default 0)")
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON list, one object a model")
    args = p.parse_args(argv)
    rows = read_sft_jsonl(args.data)
    results = [measure(m, rows, args.seed) for m in args.model]
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['model']} on {r['rows']} rows of {args.data}")
            print(f"  {'targets':<11} {'count':>6} {'mean log p':>11} {'p > 0.5':>8}")
            for k, c in r["classes"].items():
                if c["targets"]:
                    print(f"  {k:<11} {c['targets']:6d} {c['mean_logp']:11.3f} {c['p_above_half']:8.2f}")
    return results


if __name__ == "__main__":
    main()
