"""RFTT phase 1: the supervised warm-up on functional-token trajectories (paper §3.1).

    python -m train.sft                                   # embedded Qwen2.5-Coder-0.5B + arithmetic, ≤ 15 min on 2 CPU cores
    python -m train.sft --preset smollm2                  # the 135M model (with its two crutches below)
    python -m train.sft --preset tiny --out runs/tiny     # a tiny random model: seconds (tests)
    python -m train.sft --model PATH --data math_train.jsonl --train-problems 1000 --epochs 10
    python -m train.sft --data runs/sft/sft_data.jsonl    # train on SFT rows built earlier
    torchrun --nproc_per_node=8 -m train.sft --model PATH # FSDP2: parameters sharded per block

Top to bottom, a run does:

1. **Data.** The prompt-driven tree search (rftt/prompt_search.py) runs on N training
   problems: the model is *prompted* to clarify, analyse, pose a sub-question, take the
   next step or answer directly, leaves are graded against the gold answer, and correct
   and wrong paths are merged by cross-verification into tagged trajectories
   (rftt/trajectories.py). The rows go to OUT/sft_data.jsonl and are reused on a rerun.
   `--data` takes `arith` (the built-in generator, default), a MATH or GSM8K JSONL of
   problems (searched the same way), a JSONL of SFT rows (`question`, `answer`,
   `response`: trained on as they are), or `reference` (the problems' worked solutions
   written as steps, no search; rftt/solution_steps.py). The search runs `--parallel-rollouts`
   rollouts of every tree per wave (virtual loss), so one decode batch holds all of them.
   On the default Qwen model the rows are the paper's: search paths ("correct") and
   cross-verified merges ("verified"). Two additions to the paper exist only for SmolLM2-135M
   (`--model smollm2-135m-instruct`, on by default there): it almost never writes
   \\boxed{}, so `--force-answer` completes its direct answers with "So the answer is
   \\boxed{"; and it finds a correct path for only a few problems, so
   `--reference-fallback` adds the worked solution of every problem it missed (rows of
   kind "reference").
2. **Model.** Load it and add the 16 functional tokens, each initialised to the mean
   embedding of the text it spells (model/vocab.py).
3. **Greedy accuracy before** on held-out problems (train/accuracy.py).
4. **Training.** Next-token loss on the response only (train/sequences.py), normalised by
   the number of response tokens in the whole optimiser step across micro-batches and
   ranks; each micro-batch packed into one tree, so a prompt or step that rows share is
   computed once (model/tree_packing.py; `--no-tree-packing` turns it off); AdamW
   (β = 0.9, 0.95, weight decay 0.1, as the paper), linear warm-up then cosine decay,
   gradient clipping, accumulation, bf16 autocast on CUDA. The functional tokens' new
   embedding rows can take their own learning rate (`--functional-token-lr`,
   train/row_lr.py): at --lr a short run leaves them where they started.
5. **Export** a Hugging Face directory (OUT/final), then **greedy accuracy after** on the
   same held-out problems; OUT/summary.json holds both.

Everything that decides the rest of a run is checkpointed (model, optimiser, scheduler,
step, RNG; the data order is a pure function of the seed), so a killed run started again
with the same command resumes from its last checkpoint and ends with the same weights.
OUT also gets metrics.jsonl (one line per step) and samples_before.jsonl /
samples_after.jsonl (every held-out greedy generation, graded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from model import DEFAULT_MODEL, EMBEDDED_MODELS, SMALL_MODEL, load_model
from model.cli import (HelpFormatter, add_debug_flag, add_device_flag, check_writable_dir, non_negative_float,
                       non_negative_int, positive_float, positive_int, run_cli)
from model.context import STEP_TAG_TOKENS, search_path_tokens
from model.tree_packing import pack_paths
from rftt.data import Problem, file_format, generate_arithmetic, load_problems
from rftt.solution_steps import reference_rows
from rftt.tokens import FUNCTIONAL_TOKENS
from train.accuracy import greedy_accuracy
from train.checkpoint import find_latest, load_checkpoint, save_checkpoint, stop_as_if_killed
from train.distributed import all_reduce_sum, barrier, init_distributed, shard_model, shutdown
from train.metrics import MetricsLog
from train.model_io import export_pretrained, load_base_model
from train.presets import add_preset_flag, apply_preset
from train.prompt_lengths import check_problem_prompts, check_sequence_lengths
from train.schedule import make_scheduler
from train.sequences import Sequence, collate, encode_sft_example
from train.row_lr import RowStepScale
from train.step import autocast, clip_and_step

# `default`: the embedded Qwen2.5-Coder-0.5B, sized so `make demo` (this command with no
# flags) ends within 15 minutes on 2 CPU cores: a demonstration of the whole phase, far
# too small to move accuracy reliably (the paper: ~1k problems, 16 rollouts, 10 epochs).
# Pass larger values on a GPU. `smollm2`: the 135M model's run. `tiny`: a random 2-layer
# model for tests. functional_token_lr: None is --lr. No value is known to be right yet
# for a short run (bench/RESULTS.md, "second run"): at 5e-6 for 9 steps on 12 rows the
# functional tokens stayed unwritten, at 1e-3 the model wrote them everywhere; the tiny
# preset sets one only so the tests run the row scaling, FSDP2 included.
PRESETS = {
    "default": dict(model=DEFAULT_MODEL, data="arith", train_problems=8, eval_problems=16, rollouts=4,
                    parallel_rollouts=4, depth=2, max_step_tokens=96, direct_answer_tokens=320, epochs=2,
                    batch_size=4, micro_batch_size=2, lr=1e-5, functional_token_lr=None, warmup_steps=1, eval_max_new_tokens=320,
                    checkpoint_every=4),
    "smollm2": dict(model=SMALL_MODEL, data="arith", train_problems=48, eval_problems=50, rollouts=4,
                    parallel_rollouts=4, depth=3, max_step_tokens=48, direct_answer_tokens=128, epochs=3,
                    batch_size=8, micro_batch_size=4, lr=5e-5, functional_token_lr=None, warmup_steps=3, eval_max_new_tokens=256,
                    checkpoint_every=5),
    "tiny": dict(model="tiny", data="reference", train_problems=16, eval_problems=8, rollouts=2,
                 parallel_rollouts=1, depth=2, max_step_tokens=16, direct_answer_tokens=32, epochs=2,
                 batch_size=4, micro_batch_size=2, lr=1e-3, functional_token_lr=1e-2, warmup_steps=2, eval_max_new_tokens=24,
                 checkpoint_every=2),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.sft", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter, epilog=__doc__)
    preset = add_preset_flag(p, PRESETS)  # preset("lr"): "(default: ...; preset tiny: ...)"
    p.add_argument("--model", help=f"an embedded name ({', '.join(EMBEDDED_MODELS)}), a Hugging Face "
                   f"directory, or 'tiny' (random) {preset('model')}")
    p.add_argument("--data", help=f"'arith', 'reference', a MATH/GSM8K JSONL, or a JSONL of SFT rows {preset('data')}")
    p.add_argument("--eval-data", default=None, help="held-out problems: 'arith' (test split) or a file "
                   "(default: the arith test split, or a held-out slice of --data's MATH/GSM8K file)")
    p.add_argument("--out", default="runs/sft", help="run directory (checkpoints, data, export, metrics)")
    p.add_argument("--train-problems", type=positive_int,
                   help=f"problems to search for SFT data {preset('train_problems')}")
    p.add_argument("--eval-problems", type=positive_int,
                   help=f"held-out problems for greedy accuracy {preset('eval_problems')}")
    p.add_argument("--rollouts", type=positive_int,
                   help=f"search rollouts per problem (paper: 16) {preset('rollouts')}")
    p.add_argument("--depth", type=positive_int, help=f"most steps in a searched path (paper: 15) {preset('depth')}")
    p.add_argument("--parallel-rollouts", type=positive_int,
                   help=f"search rollouts of each tree advanced together in one wave (virtual loss) "
                        f"{preset('parallel_rollouts')}")
    p.add_argument("--max-step-tokens", type=positive_int,
                   help=f"cap on a searched step's tokens (paper: 512) {preset('max_step_tokens')}")
    p.add_argument("--direct-answer-tokens", type=positive_int,
                   help=f"cap on a searched direct answer (paper: 4096) {preset('direct_answer_tokens')}")
    p.add_argument("--force-answer", action=argparse.BooleanOptionalAction, default=None,
                   help="search: after a direct answer without \\boxed{}, force 'So the answer is \\boxed{' "
                        "(not in the paper; a 135M model almost never boxes on its own; default: on for "
                        f"{SMALL_MODEL} only)")
    p.add_argument("--reference-fallback", action=argparse.BooleanOptionalAction, default=None,
                   help="add the worked solution (as steps) of every problem the search found no correct path "
                        f"for (not in the paper; default: on for {SMALL_MODEL} only, where the search finds "
                        "a correct path for few problems)")
    p.add_argument("--no-merges", action="store_true",
                   help="train without the cross-verified merges (rows of kind 'verified'): the paper's data "
                        "minus its merges, an ablation (train.reproduce --ablations no-merges)")
    p.add_argument("--epochs", type=positive_int, help=f"passes over the SFT rows (paper: 10) {preset('epochs')}")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"sequences per optimiser step, over all ranks {preset('batch_size')}")
    p.add_argument("--tree-packing", action=argparse.BooleanOptionalAction, default=True,
                   help="run each micro-batch as one packed tree, each shared prefix once (model/tree_packing.py); "
                        "--no-tree-packing runs every row as its own padded sequence (same loss and gradients up "
                        "to rounding)")
    p.add_argument("--micro-batch-size", type=positive_int,
                   help=f"sequences per forward pass on one rank {preset('micro_batch_size')}")
    p.add_argument("--lr", type=positive_float, help=f"peak learning rate (paper: 7e-6 for 7B models) {preset('lr')}")
    p.add_argument("--functional-token-lr", type=positive_float,
                   help=f"peak learning rate of the 16 functional tokens' new embedding rows, on the same "
                        f"schedule: at --lr they barely move in a short run (train/row_lr.py); unset: --lr "
                        f"{preset('functional_token_lr')}")
    p.add_argument("--warmup-steps", type=non_negative_int,
                   help=f"optimiser steps of linear warm-up, then cosine decay (paper: 10) {preset('warmup_steps')}")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.1,
                   help="AdamW weight decay of matrices; norms and biases get none (paper: 0.1)")
    p.add_argument("--grad-clip", type=positive_float, default=1.0, help="gradient norm clipped to this")
    p.add_argument("--eval-max-new-tokens", type=positive_int,
                   help=f"cap on a held-out greedy answer {preset('eval_max_new_tokens')}")
    p.add_argument("--checkpoint-every", type=positive_int,
                   help=f"optimiser steps between checkpoints {preset('checkpoint_every')}")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the search, the problems drawn, the data order and the tiny model's weights")
    add_device_flag(p)
    p.add_argument("--no-eval", action="store_true", help="skip greedy accuracy before and after")
    p.add_argument("--stop-after", type=positive_int, default=None,
                   help="exit after this optimiser step's checkpoint, as if killed (to test resuming)")
    add_debug_flag(p)
    args = p.parse_args(argv)
    apply_preset(args, PRESETS)
    # The two crutches for a 135M model (see the module docstring): on for SmolLM2 only.
    for name in ("force_answer", "reference_fallback"):
        if getattr(args, name) is None:
            setattr(args, name, args.model == SMALL_MODEL)
    return args


# ----------------------------------------------------------------------------- data


def _is_sft_rows_file(source: str) -> bool:
    return source not in ("arith", "reference") and file_format(source) == "sft"


def split_problems(args) -> tuple[list[Problem], list[Problem]]:
    """(training problems, held-out problems). The generator's splits are disjoint by
    construction; a file given for both is shuffled with the seed and split."""
    source = "arith" if args.data == "reference" else args.data
    # SFT rows are all trained on, so a held-out slice of their file would be seen in
    # training: their held-out problems default to the generator's test split.
    eval_source = args.eval_data or ("arith" if source == "arith" or _is_sft_rows_file(source) else source)
    if source == "arith":
        train = generate_arithmetic(args.train_problems, "train", seed=args.seed)
    else:
        every = load_problems(source)
        order = torch.randperm(len(every), generator=torch.Generator().manual_seed(args.seed)).tolist()
        every = [every[i] for i in order]
        held = args.eval_problems if eval_source == source else 0
        if len(every) <= held:
            raise ValueError(f"--data {source}: {len(every)} problems, too few to hold out --eval-problems {held} "
                             "and train on the rest; lower --eval-problems or give --eval-data")
        train = every[held:held + args.train_problems]
    if eval_source == "arith":
        held_out = generate_arithmetic(args.eval_problems, "test", seed=args.seed)
    elif eval_source == source:
        held_out = every[:args.eval_problems]
    else:
        held_out = load_problems(eval_source)[:args.eval_problems]
    return train, held_out


def check_prompts(args, config, tok, train_problems: list[Problem], held_out: list[Problem]) -> None:
    """Searched problems: prompt + a whole path (every step at its cap, then a direct
    answer) must fit the context; held-out ones: prompt + the greedy answer."""
    if args.data != "reference" and not _is_sft_rows_file(args.data):
        check_problem_prompts(train_problems, tok, config,
                              search_path_tokens(args.depth, args.max_step_tokens) + args.direct_answer_tokens,
                              f"--depth {args.depth} x (--max-step-tokens {args.max_step_tokens} + "
                              f"{STEP_TAG_TOKENS} tag tokens) + --direct-answer-tokens {args.direct_answer_tokens}")
    if not args.no_eval:
        check_problem_prompts(held_out, tok, config, args.eval_max_new_tokens,
                              f"--eval-max-new-tokens {args.eval_max_new_tokens}")


def build_or_load_rows(args, out: Path, model, tok, train_problems: list[Problem], is_main: bool) -> list[dict]:
    """SFT rows: read from --data if it is a rows file, else from OUT/sft_data.jsonl if an
    earlier run (or the killed one) built them, else built now by rank 0."""
    from rftt.sft_data import build_sft_data, read_sft_jsonl, write_jsonl

    if _is_sft_rows_file(args.data):
        return _without_merges(read_sft_jsonl(args.data), args.no_merges, args.data)
    cache = out / "sft_data.jsonl"
    if not cache.is_file() and is_main:
        if args.data == "reference":
            rows, stats = reference_rows(train_problems), {"kind": "reference", "rows": len(train_problems)}
        else:
            print(f"searching {len(train_problems)} problems ({args.rollouts} rollouts, depth {args.depth}) ...",
                  file=sys.stderr)
            rows, stats = build_sft_data(model, tok, train_problems, rollouts=args.rollouts, max_depth=args.depth,
                                         max_step_tokens=args.max_step_tokens, seed=args.seed, progress=True,
                                         direct_answer_tokens=args.direct_answer_tokens,
                                         force_answer=args.force_answer, parallel_rollouts=args.parallel_rollouts)
            if args.reference_fallback:
                found = {r["source"]["source_id"] for r in rows}
                fallback = reference_rows([p for p in train_problems if p.source_id not in found])
                rows += fallback
                stats["rows_reference_fallback"] = len(fallback)
        write_jsonl(cache, rows)  # the searched rows first: they are the expensive part
        (out / "sft_data_stats.json").write_text(json.dumps(stats, indent=2, default=str))
    barrier()
    # The cache keeps every row the search made; --no-merges filters on the way out, so the
    # checkpoints' data fingerprint tells a run with merges from one without.
    rows = _without_merges(read_sft_jsonl(cache), args.no_merges, str(cache))
    if not rows:
        raise SystemExit(f"{cache}: the search found no correct path on any of {len(train_problems)} problems; "
                         "try more --rollouts or --train-problems, or --data reference")
    return rows


def _without_merges(rows: list[dict], drop: bool, source: str) -> list[dict]:
    """The rows, less the cross-verified merges (kind "verified") when `drop` (--no-merges)."""
    if not drop:
        return rows
    kept = [r for r in rows if r.get("kind") != "verified"]
    if rows and not kept:
        raise SystemExit(f"{source}: every row is a cross-verified merge; --no-merges leaves nothing to train on")
    return kept


def data_order(num_rows: int, epochs: int, seed: int) -> list[int]:
    """Row indices in training order: one seeded permutation per epoch. A pure function
    of its arguments, so a resumed run knows which rows come next from the step alone."""
    g = torch.Generator().manual_seed(seed)
    return [i for _ in range(epochs) for i in torch.randperm(num_rows, generator=g).tolist()]


def fingerprint(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


# -------------------------------------------------------------------------- training


def train_step(model, optimizer, scheduler, sequences: list[Sequence], args, pad_id: int, device,
               world_size: int = 1, row_scale: RowStepScale | None = None) -> dict:
    """One optimiser step over this rank's share of the step's sequences; `row_scale`
    gives the functional tokens' rows their own learning rate (train/row_lr.py).

    loss = -(sum of response-token log-probs) / (response tokens in the whole step, all
    ranks): every token weighs the same however the step is cut into micro-batches and
    ranks (a per-micro-batch mean would weigh short responses more). FSDP
    averages gradients over ranks, so each rank's loss is scaled by the world size to
    make that average the gradient of the sum.
    """
    if args.tree_packing:
        # Rows that share a prefix (the prompt of one problem; a cross-verified merge and
        # its correct twin share their first steps) sort next to each other, so a
        # micro-batch packs them into one tree and computes the shared tokens once. The
        # loss is a sum over the step, so the order within it does not change it.
        sequences = sorted(sequences, key=lambda s: s.tokens)
    micro = [sequences[i:i + args.micro_batch_size] for i in range(0, len(sequences), args.micro_batch_size)]
    batches = [collate(m, pad_id).to(device) for m in micro]
    trees = [pack_paths([s.tokens for s in m]).to(device) if args.tree_packing else None for m in micro]
    local_tokens = torch.tensor(float(sum(b.num_loss_tokens for b in batches)), device=device)
    total_tokens = all_reduce_sum(local_tokens).clamp(min=1.0)
    loss_sum = torch.zeros((), device=device)
    for batch, tree in zip(batches, trees, strict=True):
        with autocast(device):
            if tree is None:
                logprobs, _ = model(batch.inputs, targets=batch.targets)  # fp32[B, T]
            else:  # [N] over the trie, gathered into the batch's [B, T] layout
                logprobs = tree.per_path(model(tree=tree)[0])
        loss = -(logprobs * batch.loss_mask).sum() / total_tokens
        (loss * world_size).backward()
        loss_sum += loss.detach()
    if row_scale is not None:
        row_scale.before_step()
    grad_norm = clip_and_step(model, optimizer, args.grad_clip)
    if row_scale is not None:
        row_scale.after_step()
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    return {"loss": float(all_reduce_sum(loss_sum)), "grad_norm": float(grad_norm), "lr": lr,
            "tokens": int(total_tokens)}


def evaluate(model_or_path, tok, problems, args, device, stage: str, out: Path) -> float:
    model = load_model(model_or_path, device=device)[0] if isinstance(model_or_path, Path) else model_or_path
    model.eval()
    accuracy, records = greedy_accuracy(model, tok, problems, args.eval_max_new_tokens, desc=f"eval {stage}")
    with (out / f"samples_{stage}.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return accuracy


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    info = init_distributed(args.device)
    device = info.device
    torch.manual_seed(args.seed + info.rank)
    out = Path(args.out)
    # Before the search (its rows must have somewhere to go), on every rank: each writes
    # its checkpoint shards there, and a rank that raised alone would hang the others.
    check_writable_dir(out)
    barrier()
    summary_path = out / "summary.json"
    started = time.time()

    train_problems, held_out = split_problems(args)  # bad data fails before the model loads
    model, tok = load_base_model(args.model, device, args.seed)
    check_prompts(args, model.config, tok, train_problems, held_out)
    rows = build_or_load_rows(args, out, model, tok, train_problems, info.is_main)
    sequences = [encode_sft_example(tok, r["question"], r["response"]) for r in rows]
    check_sequence_lengths(sequences, model.config, args.data if _is_sft_rows_file(args.data)
                           else str(out / "sft_data.jsonl"))
    order = data_order(len(sequences), args.epochs, args.seed)
    total_steps = math.ceil(len(order) / args.batch_size)

    # Greedy accuracy before training: once per run directory (a resume reads it back).
    before_path = out / "accuracy_before.json"
    if not args.no_eval and info.is_main and not before_path.is_file():
        before_path.write_text(json.dumps({"accuracy": evaluate(model, tok, held_out, args, device, "before", out)}))
    barrier()

    model.train()
    model = shard_model(model, info)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]  # norms and biases
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    scheduler = make_scheduler(optimizer, args.warmup_steps, total_steps)
    row_scale = None if args.functional_token_lr is None else RowStepScale(
        model, [tok.token_to_id(t) for t in FUNCTIONAL_TOKENS], args.functional_token_lr / args.lr)

    step = 0
    latest = find_latest(out)
    if latest is not None:
        state = load_checkpoint(latest, model, optimizer, info)
        if state.get("data_fingerprint") != fingerprint(rows):
            raise SystemExit(f"{latest}: written for other SFT data than {out / 'sft_data.jsonl'}; "
                             "use a new --out or delete the checkpoints")
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        if info.is_main:
            print(f"resuming from {latest} (step {step} of {total_steps})", file=sys.stderr)
    metrics = MetricsLog(out / "metrics.jsonl", enabled=info.is_main, resume_step=step)

    bar = tqdm(total=total_steps, initial=step, desc="sft", unit="step", disable=not info.is_main)
    while step < total_steps:
        t0 = time.time()
        ids = order[step * args.batch_size:(step + 1) * args.batch_size]
        mine = [sequences[i] for i in ids[info.rank::info.world_size]]  # this rank's share
        stats = train_step(model, optimizer, scheduler, mine, args, tok.eos_token_id, device, info.world_size,
                           row_scale)
        step += 1
        stats.update(step=step, epoch=round(step * args.batch_size / len(sequences), 3),
                     tokens_per_s=round(stats["tokens"] / (time.time() - t0), 1))
        metrics.log(**stats)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.1e}")
        bar.update(1)
        if step % args.checkpoint_every == 0 or step == total_steps:
            save_checkpoint(out, step, model, optimizer,
                            {"scheduler": scheduler.state_dict(), "data_fingerprint": fingerprint(rows),
                             "total_steps": total_steps}, info)
            if args.stop_after is not None and step >= args.stop_after:
                bar.close()
                stop_as_if_killed()
    bar.close()

    final = out / "final"
    export_pretrained(model, tok, final, info)
    summary = {"steps": total_steps, "sft_rows": len(rows), "kinds": _count_kinds(rows),
               "train_problems": len(train_problems), "eval_problems": len(held_out), "export": str(final)}
    if not args.no_eval and info.is_main:
        summary["accuracy_before"] = json.loads(before_path.read_text())["accuracy"]
        summary["accuracy_after"] = evaluate(final, tok, held_out, args, device, "after", out)
    summary["wall_s_this_process"] = round(time.time() - started, 1)
    if info.is_main:
        summary_path.write_text(json.dumps(summary, indent=2))
        kinds = ", ".join(f"{n} {k}" for k, n in summary["kinds"].items())
        print(f"SFT rows: {len(rows)} ({kinds}); {total_steps} optimiser steps; model in {final}", file=sys.stderr)
        if "accuracy_after" in summary:
            print(f"greedy accuracy on {len(held_out)} held-out problems: {summary['accuracy_before']:.3f} before, "
                  f"{summary['accuracy_after']:.3f} after", file=sys.stderr)
        print(json.dumps(summary))
    shutdown()
    return summary


def _count_kinds(rows: list[dict]) -> dict:
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r.get("kind", "?")] = kinds.get(r.get("kind", "?"), 0) + 1
    return kinds


if __name__ == "__main__":
    run_cli(main)
