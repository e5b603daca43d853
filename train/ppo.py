"""RFTT phase 2: online RL with functional-token MCTS rollouts (paper §3.3).

    python -m train.ppo                                  # from runs/sft/final (or the embedded model); ~3 h on 2 CPU cores
    python -m train.ppo --preset tiny --out runs/tiny    # a tiny random model: seconds (tests)
    python -m train.ppo --model runs/sft/final --estimator gae --iterations 200
    torchrun --nproc_per_node=8 -m train.ppo ...         # rollouts data-parallel, FSDP2 training

One iteration, top to bottom (each numbered block in `main` below is one of these):

1. **Draw problems** — a seeded slice of the training problems; under torchrun each rank
   takes its share.
2. **Roll out** — functional-token MCTS in the engine (train/rollouts.py): the tree
   branches on which functional token comes next, ranked by the policy's own probability
   of each allowed tag; each step's text is sampled from the policy. Every distinct
   root-to-leaf path is one sample (the paper's 16 rollouts a problem = 16 paths).
   `--rollout-search sampling` is the paper's w/o-MCTS ablation: as many whole answers
   sampled from the prompt, no tree.
3. **Score** — the outcome reward of each leaf: 1 correct, 0.1 answered but wrong, 0 no
   answer (rftt/rewards.py; `reward_fn` replaces it).
4. **Old and reference log-probs** — one forward of the policy and one of the frozen
   reference (the model we started from) over every sample, through the fused log-prob
   kernel (no [tokens, vocab] logits); with GAE also the critic's values. A micro-batch's
   paths run as one packed tree (model/tree_packing.py): the prompt and the steps they
   share are computed once, each token attending to its ancestors only, and the results
   are gathered back into one row per path, so steps 5-6 see the per-path layout.
5. **Per-token rewards and advantages** (train/advantages.py) — REINFORCE++ (the paper's
   default): r_t = -β·KL_t + [t last]·reward, returns with γ = 1, whitened over the batch.
   GAE (a value head, zero-initialised) or GRPO (rewards normalised within each problem's
   group; KL as a k3 loss term) on request.
6. **PPO-clip update** (train/ppo_loss.py) — ε = 0.2 over mini- and micro-batches, the loss
   summed over tokens and divided by the token count of the whole mini-batch across
   micro-batches and ranks; gradient clipping at 1.0. Packed as in 4: a shared token is
   computed once and its gradient is the sum of what each path's loss sends it, which
   is exactly the per-path loss summed over paths. A micro-batch ends at
   --micro-batch-size samples or --micro-batch-tokens rows, so memory stays bounded as
   the answers lengthen.
7. **New weights, new engine** — the KV the rollouts cached came from the old weights: the
   engine is dropped right after the rollouts (its pool's memory goes to the update) and
   each iteration searches in a fresh one, so no rollout ever reads stale KV.
8. **Log, write sample trees, checkpoint.**

A killed run started again with the same command resumes from its last checkpoint
(policy, value head, optimiser, scheduler, iteration, RNG) and ends with the same weights.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from model import DEFAULT_MODEL, EMBEDDED_MODELS
from model.cli import (HelpFormatter, add_debug_flag, add_device_flag, check_writable_dir, non_negative_float,
                       non_negative_int, positive_float, positive_int, run_cli, unit_float)
from model.context import search_path_caps, search_path_tokens
from model.tree_packing import PackedTree, pack_paths
from rftt.data import Problem, load_problems
from rftt.functional_search import MIN_FUNCTION_PROB
from rftt.rewards import RewardFn
from search.engine import Engine
from train.advantages import ESTIMATORS, KL_ESTIMATORS, advantages, kl_estimate, kl_in_loss
from train.checkpoint import find_latest, load_checkpoint, save_checkpoint, stop_as_if_killed
from train.distributed import (all_reduce_max, all_reduce_sum, barrier, init_distributed, reshard, shard_model,
                               shutdown, sum_over_ranks)
from train.metrics import MetricsLog, cpu_seconds_since, peak_rss_gb, process_cpu_seconds
from train.model_io import export_pretrained, full_weights, load_base_model
from train.ppo_loss import policy_loss, value_loss
from train.presets import add_preset_flag, apply_preset
from train.prompt_lengths import check_problem_prompts
from train.rollouts import Sample, collect_rollouts, function_counts, sample_rollouts
from train.schedule import make_scheduler
from train.seeds import derive_seed
from train.sequences import Sequence, collate
from train.step import autocast, clip_and_step

SFT_OUTPUT = Path("runs/sft/final")  # where `python -m train.sft` exports by default

# Defaults follow the paper where a CPU allows (β = 0.01, γ = 1, ε = 0.2, 16 rollouts a
# problem, REINFORCE++ with k1); the rest was measured on the Qwen 0.5B default from the SFT
# model (bench/RESULTS.md, "RL from the SFT model").
# Step caps, 96 tokens and 320 for a direct answer (which writes the rest of the solution in
# one step): the SFT data's own. At 40/160 the search cut 56 of 94 steps and several direct
# answers at `\boxed{`, and one iteration found 1 correct leaf in 55; at 96/320, 8 in 57.
# Learning rate 1e-6: in that iteration the logged approximate KL to the old policy was
# 0.0043 (clip fraction 1.4 %) at 1e-6 and 0.0005 (0.3 %) at 3e-7, the old default, which
# barely moves the policy. (A probe of one fresh AdamW step on random advantages,
# bench/step_size.py, overstates it: 0.32 at 1e-6. At 2e-6 an early run's logged
# approximate KL was 190, far outside the clip.) The paper: 5e-7 for 7B models.
#
# How many problems, which tags, how long: 12 problems an iteration on the release's narrow
# tree (tags the policy gives >= 5 %) for 8 iterations is the one setting measured above
# the SFT model on 200 held-out problems (greedy 64.5 % against 58.5, paired +6.0, se 2.9;
# "Eight iterations"); 4 problems an iteration with every allowed tag lost 6.5 points in 3
# ("Twelve problems an iteration"). Its iterations took 10 to 42 minutes as the answers
# grew, 168 in all. Micro-batches of 2: the update's resident size peaked at 21.1 GB with
# them and at 23.3 GB with 4, on a 24 GB machine (on a GPU, raise it: --micro-batch-size).
PRESETS = {
    "default": dict(model=None, data="arith", iterations=8, problems_per_iteration=12, rollouts=16, depth=4,
                    parallel_rollouts=4, max_step_tokens=96, direct_answer_tokens=320, min_function_prob=0.05,
                    lr=1e-6, warmup_iterations=1, mini_batches=2, micro_batch_size=2, checkpoint_every=1),
    "tiny": dict(model="tiny", data="arith", iterations=3, problems_per_iteration=2, rollouts=3, depth=2,
                 parallel_rollouts=1, max_step_tokens=6, direct_answer_tokens=6, min_function_prob=MIN_FUNCTION_PROB,
                 lr=1e-3, warmup_iterations=0, mini_batches=2, micro_batch_size=4, checkpoint_every=1),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.ppo", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter, epilog=__doc__)
    preset = add_preset_flag(p, PRESETS)  # preset("lr"): "(default: ...; preset tiny: ...)"
    p.add_argument("--model", help=f"starting policy: a Hugging Face directory, an embedded name "
                   f"({', '.join(EMBEDDED_MODELS)}) or 'tiny' (default: {SFT_OUTPUT} if it exists, else "
                   f"{DEFAULT_MODEL}) {preset('model')}")
    p.add_argument("--data", help=f"'arith' (the generator's train split) or a MATH/GSM8K JSONL {preset('data')}")
    p.add_argument("--out", default="runs/ppo", help="run directory (checkpoints, metrics, sample trees, export)")
    p.add_argument("--iterations", type=positive_int,
                   help=f"RL iterations: roll out, score, update {preset('iterations')}")
    p.add_argument("--problems-per-iteration", type=positive_int,
                   help=f"problems searched each iteration, over all ranks {preset('problems_per_iteration')}")
    p.add_argument("--rollouts", type=positive_int, help=f"MCTS rollouts a problem (paper: 16) {preset('rollouts')}")
    p.add_argument("--rollout-search", choices=("mcts", "sampling"), default="mcts",
                   help="mcts: functional-token MCTS, each distinct path a sample (the paper's RFTT); sampling: "
                        "--rollouts whole answers sampled from the prompt with no tree (the paper's w/o-MCTS "
                        "ablation), each capped at the search's path budget")
    p.add_argument("--depth", type=positive_int, help=f"most steps in a path (paper: 18) {preset('depth')}")
    p.add_argument("--parallel-rollouts", type=positive_int,
                   help=f"rollouts of each tree advanced together in one wave (virtual loss): a decode batch "
                        f"holds problems x this many branches {preset('parallel_rollouts')}")
    p.add_argument("--max-step-tokens", type=positive_int,
                   help=f"cap on one step's tokens {preset('max_step_tokens')}")
    p.add_argument("--direct-answer-tokens", type=positive_int,
                   help=f"cap on a direct answer, which writes the rest of the solution in one step "
                        f"(paper: 4096) {preset('direct_answer_tokens')}")
    p.add_argument("--min-function-prob", type=unit_float,
                   help="a functional token becomes a search child only when the policy gives it at least this "
                        "probability (when it gives no allowed one that much: every allowed one); 0 searches "
                        f"every allowed function {preset('min_function_prob')}")
    p.add_argument("--temperature", type=positive_float, default=0.7,
                   help="step sampling temperature (> 0: the search samples step text, and the PPO ratio divides by it)")
    p.add_argument("--reward-fn", default="rftt.rewards:outcome_reward",
                   help="module:function taking (response text, gold answer) -> float (default: the paper's "
                        "outcome reward, 1 / 0.1 / 0)")
    p.add_argument("--estimator", choices=ESTIMATORS, default="reinforce++",
                   help="advantage estimator: reinforce++ (the paper's, no critic), gae (a value head), grpo "
                        "(rewards normalised within each problem's samples)")
    p.add_argument("--kl", choices=KL_ESTIMATORS, default="k1", help="KL estimator (paper: k1)")
    p.add_argument("--beta", type=non_negative_float, default=0.01, help="KL coefficient (paper: 0.01)")
    p.add_argument("--gamma", type=unit_float, default=1.0, help="discount of the per-token rewards (paper: 1)")
    p.add_argument("--lam", type=unit_float, default=0.95, help="GAE λ (--estimator gae only)")
    p.add_argument("--clip-eps", type=positive_float, default=0.2, help="PPO-clip ε of the policy ratio (paper: 0.2)")
    p.add_argument("--value-clip", type=positive_float, default=0.2,
                   help="clip of the critic's change from its old values (--estimator gae only)")
    p.add_argument("--value-coef", type=non_negative_float, default=0.5,
                   help="weight of the critic's loss (--estimator gae only)")
    p.add_argument("--lr", type=positive_float, help=f"learning rate (paper: 5e-7 for 7B models) {preset('lr')}")
    p.add_argument("--warmup-iterations", type=non_negative_int,
                   help=f"iterations of linear warm-up, then constant {preset('warmup_iterations')}")
    p.add_argument("--tree-packing", action=argparse.BooleanOptionalAction, default=True,
                   help="run each micro-batch's paths as one packed tree, each shared prefix once (model/"
                        "tree_packing.py), for the old/reference log-probs and the update; --no-tree-packing "
                        "runs every path as its own row (same losses and gradients up to rounding)")
    p.add_argument("--ppo-epochs", type=positive_int, default=1, help="passes over each iteration's samples (paper: 1)")
    p.add_argument("--mini-batches", type=positive_int, help=f"optimiser steps per PPO epoch {preset('mini_batches')}")
    p.add_argument("--micro-batch-size", type=positive_int,
                   help=f"samples per forward pass {preset('micro_batch_size')}")
    p.add_argument("--micro-batch-tokens", type=positive_int, default=None,
                   help="cap on the rows one forward runs (the packed tree's tokens, or samples x the longest "
                        "without --tree-packing): a micro-batch ends at this or --micro-batch-size, whichever "
                        "comes first, so memory stays bounded as answers lengthen (default: no cap)")
    p.add_argument("--grad-clip", type=positive_float, default=1.0, help="gradient norm clipped to this")
    p.add_argument("--checkpoint-every", type=positive_int,
                   help=f"iterations between checkpoints {preset('checkpoint_every')}")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the problems drawn, the rollouts' sampling, the mini-batch order and the tiny "
                        "model's weights")
    add_device_flag(p)
    p.add_argument("--stop-after", type=positive_int, default=None,
                   help="exit after this iteration's checkpoint, as if killed (to test resuming)")
    add_debug_flag(p)
    args = p.parse_args(argv)
    apply_preset(args, PRESETS)
    if args.model is None:
        args.model = str(SFT_OUTPUT) if (SFT_OUTPUT / "config.json").is_file() else DEFAULT_MODEL
    return args


# ------------------------------------------------------------------------- the model


class PolicyWithValue(nn.Module):
    """The policy (our decoder) and, for GAE, a value head on its last hidden states,
    zero-initialised so the critic starts neutral. One module, so FSDP2 wraps both and one
    forward gives log-probs, entropy and values (None without the head: so also the frozen
    reference, which then goes through the same forward_batch)."""

    def __init__(self, policy, with_value: bool):
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(policy.config.hidden_size, 1) if with_value else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(self, tokens, targets, temperature: float, tree: PackedTree | None = None):
        """tokens, targets: int64[B, T] (a collated batch) -> (logprobs, entropy, values),
        each [B, T] (values None without the head). With `tree`, the same sequences packed
        (model/tree_packing.py; tokens and targets are then not read): one pass
        over each shared prefix, results gathered back into the same [B, T] layout, so the
        loss code is the same for both and autograd sums what the paths send to a shared
        token."""
        if tree is None:
            hidden = self.policy.hidden_states(tokens)  # [B, T, H]
            logprobs, entropy = self.policy.token_logprobs(hidden, targets, temperature)
            values = self.value_head(hidden.float()).squeeze(-1) if self.value_head is not None else None
            return logprobs, entropy, values
        hidden = self.policy.tree_hidden_states(tree)  # [N, H]
        logprobs, entropy = self.policy.tree_logprobs(hidden, tree, temperature)  # [N]: token i given its parent
        values = None
        if self.value_head is not None:
            # Dense entry (p, t) is the value of the state that predicts token t + 1, i.e.
            # of its parent row: index the per-row values by parent, as per_path gathers by child.
            values = tree.per_path(self.value_head(hidden.float()).squeeze(-1)[tree.parents.clamp(min=0)])
        return tree.per_path(logprobs), tree.per_path(entropy), values


# -------------------------------------------------------------------- batching helpers


def split_evenly(items: list, parts: int) -> list[list]:
    """`parts` consecutive chunks whose sizes differ by at most one (some may be empty)."""
    base, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + base + (i < extra)
        out.append(items[start:end])
        start = end
    return out


def micro_batches(indices: list[int], size: int, max_tokens: int | None = None,
                  tokens_of: Callable[[list[int]], int] | None = None) -> list[list[int]]:
    """Consecutive micro-batches of at most `size` samples and, with `max_tokens`, at most
    that many rows of forward (`tokens_of(chunk)`; a sample over the cap alone still runs,
    alone). The cap is what bounds memory: the activations a backward needs grow with the
    rows (~2.5 MB a row on the 0.5B model, by its layer shapes), and RL lengthens its
    answers (twice as long after six iterations in bench/RESULTS.md, "ppoG"), so a sample
    count that fits at the first iteration can run out of memory at the fifth. Padded with
    empty micro-batches to the most any rank has: under FSDP every rank must run the same
    number of forwards and backwards (each one is a collective), so a rank with fewer runs
    empty ones that contribute zero."""
    chunks: list[list[int]] = []
    for i in indices:
        if chunks and len(chunks[-1]) < size and (max_tokens is None or tokens_of(chunks[-1] + [i]) <= max_tokens):
            chunks[-1].append(i)
        else:
            chunks.append([i])
    most = int(all_reduce_max(torch.tensor(len(chunks))))
    return chunks + [[] for _ in range(most - len(chunks))]


def forward_rows(samples: list[Sample], idx: list[int], packed: bool) -> int:
    """Rows one forward over the samples `idx` runs: the packed trie's (each shared prefix
    once) or the padded batch's (samples x the longest)."""
    paths = [samples[i].sequence.tokens for i in idx]
    return pack_paths(paths).tokens.numel() if packed else len(paths) * max(map(len, paths))


def cut_micro_batches(samples: list[Sample], indices: list[int], args) -> list[list[int]]:
    """micro_batches by --micro-batch-size and --micro-batch-tokens."""
    return micro_batches(indices, args.micro_batch_size, args.micro_batch_tokens,
                         lambda idx: forward_rows(samples, idx, args.tree_packing))


def forward_batch(model, samples: list[Sample], idx: list[int], pad_id: int, temperature: float, device,
                  packed: bool):
    """(logprobs, entropy, values, mask), each [len(idx), T], over the samples `idx`: one
    right-padded batch, or with `packed` one trie of their paths (each shared prefix once;
    the same outputs up to rounding). An empty `idx` runs a two-token dummy whose mask
    is all False (see micro_batches)."""
    seqs = [samples[i].sequence for i in idx] or [Sequence([pad_id, pad_id], 1)]
    batch = collate(seqs, pad_id).to(device)  # the layout and the loss mask, packed or not
    tree = pack_paths([s.tokens for s in seqs]).to(device) if packed else None
    mask = batch.loss_mask.float() * (1.0 if idx else 0.0)
    with autocast(device):
        logprobs, entropy, values = model(batch.inputs, batch.targets, temperature, tree=tree)
    return logprobs, entropy, values, mask


def padded(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Stacks [T_i] rows right-padded with zeros to [N, width]."""
    out = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        out[i, :r.numel()] = r
    return out


def rows(table: torch.Tensor, idx: list[int], like: torch.Tensor) -> torch.Tensor:
    """The rows `idx` of a per-sample table [N, T], cut to the micro-batch's width and
    moved to its device: [len(idx), like.shape[1]]; zeros like `like` for an empty
    (padding) micro-batch."""
    return table[idx, :like.shape[1]].to(like.device) if idx else torch.zeros_like(like)


def score_samples(model, reference, samples: list[Sample], args, pad_id: int, device):
    """Step 4: the policy's old log-probs (and values) and the reference's, no gradients,
    a micro-batch at a time -> (old_logp, ref_logp, old_values, mask), fp32 [samples, T]
    on the CPU (zeros past each sample; old_values zeros without a value head)."""
    old_logp, ref_logp, old_values, masks = [], [], [], []  # one row per sample, [T_i] each
    with torch.no_grad():
        for idx in cut_micro_batches(samples, list(range(len(samples))), args):
            lp, _, v, mask = forward_batch(model, samples, idx, pad_id, args.temperature, device, args.tree_packing)
            ref, _, _, _ = forward_batch(reference, samples, idx, pad_id, args.temperature, device, args.tree_packing)
            for j in range(len(idx)):
                old_logp.append(lp[j].float().cpu())
                ref_logp.append(ref[j].float().cpu())
                masks.append(mask[j].cpu())
                old_values.append(v[j].float().cpu() if v is not None else torch.zeros_like(mask[j].cpu()))
    reshard(model)  # under FSDP2, or the update's root gradients accumulate (train/distributed.py)
    reshard(reference)
    width = max((m.numel() for m in masks), default=1)
    return padded(old_logp, width), padded(ref_logp, width), padded(old_values, width), padded(masks, width)


@dataclass
class LossTargets:
    """What the update compares against, one row per sample, fp32 [samples, T]."""
    old_logp: torch.Tensor  # the policy's log-probs when the samples were scored (step 4)
    ref_logp: torch.Tensor  # the frozen reference's
    old_values: torch.Tensor  # the critic's (zeros without one)
    adv: torch.Tensor  # advantages (step 5)
    returns: torch.Tensor | None  # the critic's targets (GAE only)


def micro_batch_loss(model, samples: list[Sample], idx: list[int], t: LossTargets, total_tokens: float, args,
                     pad_id: int, device) -> tuple[torch.Tensor, dict]:
    """Step 6 on the samples `idx`: the PPO-clip loss (plus the critic's loss for GAE and
    the k3 KL term for GRPO), each summed over tokens and divided by `total_tokens` (the
    whole mini-batch's, over ranks) -> (loss, sums for the log)."""
    lp, ent, v, m = forward_batch(model, samples, idx, pad_id, args.temperature, device, args.tree_packing)
    loss, s = policy_loss(lp, rows(t.old_logp, idx, lp), rows(t.adv, idx, lp), m, total_tokens, args.clip_eps)
    if t.returns is not None:
        loss = loss + args.value_coef * value_loss(v, rows(t.old_values, idx, lp), rows(t.returns, idx, lp), m,
                                                   total_tokens, args.value_clip)
    if kl_in_loss(args.estimator):
        k3 = kl_estimate(lp, rows(t.ref_logp, idx, lp), "k3")
        loss = loss + args.beta * (k3 * m).sum() / total_tokens
    return loss, {"clipped_tokens": s["clipped_tokens"], "approx_kl_old": s["approx_kl_old_sum"],
                  "entropy": float((ent.detach() * m).sum()), "trained_tokens": float(m.sum())}


# ------------------------------------------------------------------------------- main


def import_reward_fn(spec: str) -> RewardFn:
    """'package.module:function' -> the function (a pluggable reward, e.g. one with a PRM)."""
    module_name, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise SystemExit(f"--reward-fn {spec!r}: cannot import it ({e}); expected 'package.module:function'") from None
    if not callable(fn):
        raise SystemExit(f"--reward-fn {spec!r} is not callable")
    return fn


def main(argv: list[str] | None = None, reward_fn: RewardFn | None = None) -> dict:
    """`reward_fn` (response text, gold) -> float overrides --reward-fn (for callers in Python)."""
    args = parse_args(argv)
    reward_fn = reward_fn or import_reward_fn(args.reward_fn)
    info = init_distributed(args.device)
    device = info.device
    out = Path(args.out)
    check_writable_dir(out)  # every rank writes checkpoint shards there (and none may raise alone)
    if info.is_main:
        (out / "samples").mkdir(exist_ok=True)
    barrier()
    problems = load_problems(args.data, "train", n=max(1000, args.problems_per_iteration * args.iterations),
                             seed=args.seed)  # bad data fails before the model loads

    # The policy, the frozen reference it is kept close to (KL), and the optimiser.
    policy, tok = load_base_model(args.model, device, args.seed)  # functional tokens added (a no-op after SFT)
    reference = PolicyWithValue(copy.deepcopy(policy), with_value=False).eval().requires_grad_(False)
    # Rollouts run the plain (unsharded) decoder: the policy itself in one process; under
    # FSDP a full copy per rank, refreshed from the shards after every update.
    rollout_model = copy.deepcopy(policy).requires_grad_(False) if info.distributed else policy
    model = PolicyWithValue(policy, with_value=args.estimator == "gae").to(device)
    model = shard_model(model, info, blocks=policy.layers)
    reference = shard_model(reference, info, blocks=reference.policy.layers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    scheduler = make_scheduler(optimizer, args.warmup_iterations, args.iterations, constant=True)
    path_tokens = search_path_tokens(args.depth, args.max_step_tokens, args.direct_answer_tokens)
    longest_prompt = check_problem_prompts(problems, tok, policy.config, path_tokens,
                                           search_path_caps(args.depth, "--max-step-tokens", args.max_step_tokens,
                                                            args.direct_answer_tokens))

    start = 0
    latest = find_latest(out)
    if latest is not None:
        state = load_checkpoint(latest, model, optimizer, info)
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
        if info.is_main:
            print(f"resuming from {latest} (iteration {start} of {args.iterations})", file=sys.stderr)
    if info.distributed:
        rollout_model.load_state_dict(full_weights(model, "policy"))  # the gathered policy
    metrics = MetricsLog(out / "metrics.jsonl", enabled=info.is_main, resume_step=start)
    mine_most = -(-args.problems_per_iteration // info.world_size)  # this rank's problems an iteration, at most
    summary = {}

    bar = tqdm(range(start, args.iterations), initial=start, total=args.iterations, desc="ppo", unit="iter",
               disable=not info.is_main)
    for iteration in bar:
        t0, cpu_t0 = time.time(), process_cpu_seconds()
        # 1. Draw problems: a pure function of the iteration, so a resume draws the same.
        batch_problems = _draw(problems, iteration, args.problems_per_iteration, args.seed)
        mine = batch_problems[info.rank::info.world_size]

        # 2-3. Roll out and score, in an engine of this iteration's own: its pool holds every
        # tree of this rank's problems at once (the 0.5B default's preset: 12 x 16 paths of
        # up to 640 tokens plus the prompts, ~125k slots of 24.6 KB fp32 K/V, 3.1 GB), and
        # it is freed before the log-probs and the update need the memory.
        rollout_model.eval()
        engine = Engine.for_search(rollout_model, mine_most * longest_prompt, mine_most * args.rollouts, path_tokens)
        with torch.inference_mode():
            seed = derive_seed(args.seed, "rollouts", iteration, info.rank)
            if args.rollout_search == "mcts":
                samples, roots = collect_rollouts(engine, tok, mine, rollouts=args.rollouts, max_depth=args.depth,
                                                  max_step_tokens=args.max_step_tokens, temperature=args.temperature,
                                                  seed=seed, progress=info.is_main, reward_fn=reward_fn,
                                                  parallel_rollouts=args.parallel_rollouts,
                                                  direct_answer_tokens=args.direct_answer_tokens,
                                                  min_function_prob=args.min_function_prob)
            else:  # the "w/o MCTS" ablation: as many whole answers as MCTS gives paths, no tree
                samples, roots = sample_rollouts(engine, tok, mine, samples_per_problem=args.rollouts,
                                                 max_new_tokens=path_tokens, temperature=args.temperature, seed=seed,
                                                 reward_fn=reward_fn), None
        rollout_s, cpu_rolled = time.time() - t0, process_cpu_seconds()
        rollout_tokens = engine.tokens_computed
        del engine  # 7 (below) in advance: KV from these weights can never be read after the update

        # 4. Old log-probs (and values) of the policy, and the reference's, no gradients:
        # one row per sample, [samples, T] each.
        model.train()
        old_logp, ref_logp, old_values, mask = score_samples(model, reference, samples, args, tok.eos_token_id,
                                                             device)
        score_s, cpu_scored = time.time() - t0 - rollout_s, process_cpu_seconds()
        final_reward = torch.tensor([s.reward for s in samples], dtype=torch.float32)

        # 5. Per-token rewards and advantages: REINFORCE++ (r_t = -β·KL_t, the outcome
        # reward at the last token, returns whitened over every rank's tokens) unless
        # --estimator picks GAE or GRPO. `returns` are the critic's targets (GAE only).
        kl = kl_estimate(old_logp, ref_logp, args.kl) * mask
        adv, returns = advantages(args.estimator, final_reward, kl, mask, beta=args.beta, gamma=args.gamma,
                                  lam=args.lam, values=old_values, groups=torch.tensor([s.problem for s in samples]),
                                  reduce=all_reduce_sum)

        # 6. PPO-clip updates: mini-batches of this iteration's samples, micro-batched.
        targets = LossTargets(old_logp, ref_logp, old_values, adv, returns)
        stats = {"clipped_tokens": 0.0, "approx_kl_old": 0.0, "entropy": 0.0, "trained_tokens": 0.0}  # sums
        g = torch.Generator().manual_seed(derive_seed(args.seed, "mini-batches", iteration))
        grad_norms = []  # each optimiser step's norm before clipping
        train_t0, cpu_train_t0 = time.time(), process_cpu_seconds()
        for _ in range(args.ppo_epochs):
            shuffled = torch.randperm(len(samples), generator=g).tolist()
            for mini in split_evenly(shuffled, args.mini_batches):
                total_tokens = float(all_reduce_sum(mask[mini].sum() if mini else torch.zeros(())).clamp(min=1.0))
                # Samples come in problem order: sorted, a micro-batch holds one problem's
                # paths where it can, which share a prompt and steps for packing to reuse.
                # (The loss is a sum over the mini-batch: its order does not change it.)
                for idx in cut_micro_batches(samples, sorted(mini), args):
                    loss, sums = micro_batch_loss(model, samples, idx, targets, total_tokens, args, tok.eos_token_id,
                                               device)
                    (loss * info.world_size).backward()  # FSDP averages over ranks: undo it
                    for k in stats:
                        stats[k] += sums[k]
                norm = clip_and_step(model, optimizer, args.grad_clip, f"at iteration {iteration + 1}")
                grad_norms.append(float(norm))
        scheduler.step()
        train_s, cpu_trained = time.time() - train_t0, process_cpu_seconds()

        # 7. New weights: the rollout engine, and the KV it cached from the old ones, went
        # with `del engine` above; under FSDP the rollout copy is refreshed from the shards.
        if info.distributed:
            rollout_model.load_state_dict(full_weights(model, "policy"))  # the gathered policy

        # 8. Log, write sample trees, checkpoint.
        total = sum_over_ranks({
            "reward": final_reward.sum(), "samples": len(samples), "correct": (final_reward == 1.0).sum(),
            "kl": (kl * mask).sum(), "response_tokens": mask.sum(), "rollout_tokens": rollout_tokens,
            **stats,
        })
        n, tokens, trained = (max(1.0, total[k]) for k in ("samples", "response_tokens", "trained_tokens"))
        # The iteration's gradient norm, not its last mini-batch's: the root mean square
        # of every step's norm before clipping (what --grad-clip compares against), so
        # each step counts the same and one exploding step still shows.
        grad_norm = math.sqrt(sum(x * x for x in grad_norms) / len(grad_norms))
        row = {
            "step": iteration + 1, "reward": total["reward"] / n, "accuracy": total["correct"] / n,
            "samples": int(total["samples"]), "kl": total["kl"] / tokens, "entropy": total["entropy"] / trained,
            "clip_fraction": total["clipped_tokens"] / trained, "approx_kl_old": total["approx_kl_old"] / trained,
            "response_length": tokens / n, "functions": function_counts(samples),
            "rollout_tokens_per_s": round(total["rollout_tokens"] / max(rollout_s, 1e-9), 1),
            "train_tokens_per_s": round(total["trained_tokens"] / max(train_s, 1e-9), 1),
            "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
            # Wall seconds of this rank's phases (2-3 rollouts, 4 old/ref log-probs, 6 update)
            # and of the whole iteration before logging and checkpointing.
            "seconds": {"rollouts": round(rollout_s, 2), "logprobs": round(score_s, 2), "update": round(train_s, 2),
                        "iteration": round(time.time() - t0, 2)},
            # The same phases' CPU seconds, user and system (the kernel: on CPU mostly page
            # faults, bench/RESULTS.md "Where training's CPU time goes"), and this rank's
            # peak resident memory so far: what the machine must hold.
            "cpu_seconds": {"rollouts": cpu_seconds_since(cpu_t0, cpu_rolled),
                            "logprobs": cpu_seconds_since(cpu_rolled, cpu_scored),
                            "update": cpu_seconds_since(cpu_train_t0, cpu_trained)},
            "peak_rss_gb": peak_rss_gb(),
        }
        metrics.log(**row)
        bar.set_postfix(reward=f"{row['reward']:.3f}", acc=f"{row['accuracy']:.2f}", kl=f"{row['kl']:.4f}")
        if info.is_main:
            _write_trees(out / "samples" / f"iteration_{iteration + 1:05d}.json", mine, samples, roots)
        summary = row
        if (iteration + 1) % args.checkpoint_every == 0 or iteration + 1 == args.iterations:
            save_checkpoint(out, iteration + 1, model, optimizer, {"scheduler": scheduler.state_dict()}, info)
            if args.stop_after is not None and iteration + 1 >= args.stop_after:
                bar.close()
                stop_as_if_killed()
    bar.close()

    final = out / "final"
    export_pretrained(model, tok, final, info, submodule="policy")
    if info.is_main:
        (out / "summary.json").write_text(json.dumps({"iterations": args.iterations, "last": summary,
                                                      "export": str(final)}, indent=2))
    shutdown()
    return summary


# ---------------------------------------------------------------------- small helpers


def _draw(problems: list[Problem], iteration: int, n: int, seed: int) -> list[Problem]:
    g = torch.Generator().manual_seed(derive_seed(seed, "problems", iteration))
    return [problems[i] for i in torch.randperm(len(problems), generator=g)[:n].tolist()]


def _write_trees(path: Path, problems: list[Problem], samples: list[Sample], roots: list | None) -> None:
    """The iteration's trees as JSON (train/sample_trees.py) and, next to it, the page
    that shows them (train/tree_html.py). `roots` are collect_rollouts' search trees;
    None (sampled answers, no tree): the JSON's flat leaves only, no page."""
    from train.sample_trees import write_sample_trees  # the viewer's modules: only this helper needs them
    from train.tree_html import render_tree_html

    records = write_sample_trees(path, problems, samples, roots)
    if roots is not None:
        path.with_suffix(".html").write_text(render_tree_html(records, title=f"RFTT sample trees: {path.name}"))


if __name__ == "__main__":
    run_cli(main)
