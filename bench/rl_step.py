"""One PPO iteration, phase by phase, each optimisation on and off side by side.

    python bench/rl_step.py                                  # the embedded default (Qwen2.5-Coder-0.5B), fp32
    python bench/rl_step.py --model smollm2-135m-instruct    # the 135M model: ~3 min on 2 CPU cores
    python bench/rl_step.py --json                           # last stdout line: one JSON object
    python bench/rl_step.py --model DIR --random-weights     # DIR's shape and tokenizer, seeded random weights

The iteration is train/ppo.py's, on P arithmetic problems (the generator's train split,
seeded), without the optimiser step (which both variants would share):

1. Rollouts. Functional-token MCTS (train.rollouts.collect_rollouts), R rollouts a problem,
   depth D, at most S content tokens a step, temperature 0.7, run twice on the same
   problems, seed and budget, each on a fresh engine (no KV carried over):
   - serial:  parallel_rollouts=1, one rollout of every tree per wave (the old path);
   - batched: parallel_rollouts=--parallel-rollouts, that many rollouts of each tree per
     wave (virtual loss), so a decode step runs P x that many branches.
   Tokens/s counts `engine.tokens_computed`: every token the engine ran through the model
   (prompt prefill and sampled step tokens, each once: shared prefixes are not recomputed).
   The samples' own response tokens (each leaf path's, shared steps counted per path) are
   reported too. The two runs draw different trees (the wave shape changes which node
   each rollout picks), so their token counts differ; the rate is what compares.

2. Old/reference log-probs and the PPO update over the *batched* run's samples:
   Both cut the samples into train/ppo.py's micro-batches (problem order, at most
   --micro-batch-size samples each, so a micro-batch holds one problem's paths where it can):
   - per_path: `--no-tree-packing`: each sample one row of a right-padded batch
     (train.sequences.collate);
   - packed:   train.ppo's default: the micro-batch's paths packed into one trie
     (model.tree_packing.pack_paths), one `model(tree=...)` pass, and the loss on the
     per-path layout `packed.per_path(...)` gathers.
   Each variant: the policy's old log-probs and the frozen reference's (no grad), then
   one forward + backward of the PPO-clip policy loss (train.ppo_loss.policy_loss) with
   REINFORCE++ advantages (train.advantages, β = 0.01, γ = 1) computed ONCE from the
   per-path old/reference log-probs, so both losses see the same advantages and the
   same response-token mask. At the first iteration the rewards are often all equal and
   the reference is the policy (KL 0), so REINFORCE++ gives all-zero advantages and zero
   gradients; then seeded N(0, 1) per-sample advantages stand in (the JSON's
   "advantages" says which), since the cost does not depend on their values. The
   layouts are checked first (same targets, same mask), and the two losses must agree
   to 1e-4 relative to the loss's scale Σ|A|·mask / tokens (loss_rel_diff; whitened
   advantages make the loss itself ~0). Each variant's ratio is against its own old
   log-probs, so at this first update the ratio is 1 and the losses agree exactly when
   the layout does; the log-probs themselves are compared in old_logprob_max_abs_diff,
   the gradients in 3.
   Tokens/s for BOTH variants counts the per-path tokens (the sum of the sample paths'
   lengths: the work packing replaces) over the variant's wall time (old + ref + update).
   `tokens_computed_*`: the per-path sum vs the packed trees' N (each prefix once).

3. grad_max_rel_diff: max over parameters of max|g_packed - g_per_path| / max|g_per_path|
   after the one backward each, in fp32 (no autocast here, also on CUDA).

--random-weights: the model directory's config.json and tokenizer, weights drawn at random
(seeded, model.loading.random_model) instead of read: for a machine that lacks the
checkpoint (the GPU machine, which cannot install the embedded model's packages). It
measures cost, not learning: a random policy rarely samples a stop, so steps run to their
S-token cap and answers are wrong (rewards equal: the seeded advantages below stand in).

CPU threads: the default is one torch thread on CPU, as in bench/rollout_throughput.py
(its docstring: oversubscribed OpenMP threads wait on each other on a busy small box).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import time
from pathlib import Path

# This file lives in bench/, next to bench/kernels.py: that folder must not shadow the
# `kernels` package, and the repository root must be importable when run as a script.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

import torch  # noqa: E402

from model import DEFAULT_MODEL, Tokenizer, random_model  # noqa: E402
from model.cli import positive_int, resolve_device  # noqa: E402
from model.context import search_path_tokens  # noqa: E402
from model.loading import load_config_and_tokenizer, resolve_model_dir  # noqa: E402
from model.tree_packing import pack_paths  # noqa: E402
from rftt.data import load_problems  # noqa: E402
from rftt.tokens import add_functional_tokens  # noqa: E402
from search.engine import Engine  # noqa: E402
from train.advantages import advantages, kl_estimate  # noqa: E402
from train.model_io import load_base_model  # noqa: E402
from train.ppo_loss import policy_loss  # noqa: E402
from train.prompt_lengths import check_problem_prompts  # noqa: E402
from train.rollouts import collect_rollouts  # noqa: E402
from train.seeds import derive_seed  # noqa: E402
from train.sequences import collate  # noqa: E402

BETA, GAMMA, CLIP_EPS = 0.01, 1.0, 0.2  # the paper's REINFORCE++ / PPO-clip settings (paper §3.3)
LOSS_RTOL = 1e-4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"an embedded model name or a Hugging Face directory (default {DEFAULT_MODEL})")
    parser.add_argument("--problems", type=positive_int, default=4, help="P: problems (default 4)")
    parser.add_argument("--rollouts", type=positive_int, default=8, help="R: MCTS rollouts a problem (default 8)")
    parser.add_argument("--depth", type=positive_int, default=3, help="D: steps a path at most (default 3)")
    parser.add_argument("--max-step-tokens", type=positive_int, default=24, help="S: content tokens a step (default 24)")
    parser.add_argument("--parallel-rollouts", type=positive_int, default=4,
                        help="rollouts of each tree per wave in the batched run (default 4)")
    parser.add_argument("--micro-batch-size", type=positive_int, default=8,
                        help="samples a forward pass, as train.ppo's --micro-batch-size (default 8, its preset's)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling and log-prob temperature (0.7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cuda if available, else cpu")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default on CPU: 1, see the module docstring; on CUDA: torch's own)")
    parser.add_argument("--random-weights", action="store_true",
                        help="the model's config and tokenizer with seeded random weights (timing only)")
    parser.add_argument("--json", action="store_true", help="last stdout line: a JSON object")
    args = parser.parse_args(argv)
    args.device = resolve_device(parser, args.device)
    return args


def random_weights_model(name: str, device: torch.device, seed: int) -> tuple[torch.nn.Module, Tokenizer]:
    """`name`'s shape and tokenizer, seeded random fp32 weights, functional tokens added."""
    config, tok = load_config_and_tokenizer(resolve_model_dir(name))
    model = random_model(config, seed=derive_seed(seed, "random weights"), device=device).eval()
    add_functional_tokens(model, tok)
    return model, tok


# --------------------------------------------------------------------- 1. rollouts


def run_rollouts(model, tok, problems, args, parallel: int, longest_prompt: int) -> dict:
    """A fresh engine (sized as train/ppo.py sizes it) and one collect_rollouts call."""
    path_tokens = search_path_tokens(args.depth, args.max_step_tokens)
    engine = Engine.for_search(model, len(problems) * longest_prompt, len(problems) * args.rollouts, path_tokens)
    _sync(args.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        samples, _ = collect_rollouts(engine, tok, problems, rollouts=args.rollouts, max_depth=args.depth,
                                      max_step_tokens=args.max_step_tokens, temperature=args.temperature,
                                      seed=derive_seed(args.seed, "rollouts"), progress=False,
                                      parallel_rollouts=parallel)
    _sync(args.device)
    wall = time.perf_counter() - t0
    response = sum(len(s.sequence.tokens) - s.sequence.prompt_len for s in samples)
    return {"samples": samples, "wall_s": wall, "tokens_computed": engine.tokens_computed,
            "response_tokens": response}


# ------------------------------------------------------- 2. log-probs and the update


def groups_of(samples, micro_batch_size: int) -> list[list[int]]:
    """Micro-batches as train/ppo.py cuts them: samples in problem order, at most
    `micro_batch_size` a micro-batch, so one problem's paths share a micro-batch (and a
    packed tree) where they can. One forward (and one backward) each."""
    order = sorted(range(len(samples)), key=lambda i: samples[i].problem)
    return [order[i:i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]


def dense_logprobs(model, samples, idx, pad_id, temperature, device) -> torch.Tensor:
    """Per-path: the samples `idx` as rows of one collated batch -> logprobs [B, T]."""
    batch = collate([samples[i].sequence for i in idx], pad_id).to(device)
    logp, _ = model(batch.inputs, targets=batch.targets, temperature=temperature)
    return logp


def packed_logprobs(model, tree, temperature) -> torch.Tensor:
    """Packed: one pass over the trie -> the per-path layout [B, T] (zeros past each path)."""
    logp, _ = model(tree=tree, temperature=temperature)  # [N]
    return tree.per_path(logp)


def variant_logprobs(name, policy, reference, samples, groups, trees, width, args, pad_id) -> dict:
    """The policy's old log-probs and the frozen reference's, no grad, in the per-path
    layout: old, ref [B, T_max], rows in sample order (zeros past each path)."""
    device = args.device
    old = torch.zeros(len(samples), width, device=device)
    ref = torch.zeros_like(old)
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for g, idx in enumerate(groups):
            lp = _logprobs(name, policy, samples, groups[g], trees[g], args, pad_id)
            rp = _logprobs(name, reference, samples, groups[g], trees[g], args, pad_id)
            old[idx, :lp.shape[1]], ref[idx, :rp.shape[1]] = lp, rp
    _sync(device)
    return {"logprobs_s": time.perf_counter() - t0, "old": old, "ref": ref}


def variant_update(name, policy, samples, groups, trees, batches, old, adv, total_tokens, args, pad_id) -> dict:
    """One forward + backward of the PPO-clip loss over every sample, a micro-batch at a time
    (gradients accumulate in policy's .grad, zeroed first)."""
    device = args.device
    _sync(device)
    t0 = time.perf_counter()
    policy.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for g, idx in enumerate(groups):
        lp = _logprobs(name, policy, samples, idx, trees[g], args, pad_id)  # [B_g, T_g]
        T = lp.shape[1]
        mask = batches[g].loss_mask.float()  # [B_g, T_g]: response targets only
        loss, _ = policy_loss(lp, old[idx, :T], adv[idx, :T], mask, total_tokens, CLIP_EPS)
        loss.backward()
        loss_sum += float(loss.detach())
    _sync(device)
    return {"update_s": time.perf_counter() - t0, "loss": loss_sum}


def _logprobs(name, model, samples, idx, tree, args, pad_id) -> torch.Tensor:
    if name == "packed":
        return packed_logprobs(model, tree, args.temperature)
    return dense_logprobs(model, samples, idx, pad_id, args.temperature, args.device)


def check_layouts(samples, groups, trees, batches) -> None:
    """The packed per-path layout must be the dense batch's: same targets where the mask
    is on, and the mask (response targets) inside every path's valid range."""
    for idx, tree, batch in zip(groups, trees, batches, strict=True):
        targets = tree.per_path(tree.tokens, pad=-1)  # [B, T]: path p's token t + 1
        if targets.shape != batch.targets.shape:
            raise AssertionError(f"layout widths differ: packed {tuple(targets.shape)} vs dense "
                                 f"{tuple(batch.targets.shape)}")
        m = batch.loss_mask
        if not torch.equal(targets[m], batch.targets[m]):
            raise AssertionError("packed and per-path targets differ under the loss mask")
        if bool((targets[m] < 0).any()):
            raise AssertionError("the loss mask covers a padded packed position")
        for row, i in enumerate(idx):
            if int(m[row].sum()) != len(samples[i].sequence.tokens) - samples[i].sequence.prompt_len:
                raise AssertionError(f"sample {i}: mask is not exactly its response tokens")


def peak_memory_mb(device: torch.device) -> float:
    """The process's memory high-water mark so far, MiB: on CUDA the allocator's peak
    (then reset, so the next variant starts from zero); on CPU the peak resident set
    (it cannot be reset: a later variant only shows if it raises the mark)."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def grad_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def grad_max_rel_diff(packed: dict, dense: dict) -> float:
    if packed.keys() != dense.keys():
        raise AssertionError(f"different parameters got gradients: {sorted(packed.keys() ^ dense.keys())}")
    worst = 0.0
    for n, gd in dense.items():
        scale = float(gd.abs().max())
        if scale == 0.0:  # a parameter the loss does not reach: both must be zero
            scale = 1.0
        worst = max(worst, float((packed[n] - gd).abs().max()) / scale)
    return worst


# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; prints a table (or, with --json, a JSON last line); returns the dict."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads is None and args.device.type == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = measure(args)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return result


def measure(args: argparse.Namespace) -> dict:
    device = args.device
    start = time.perf_counter()
    t0 = time.perf_counter()
    if args.random_weights:
        policy, tok = random_weights_model(args.model, device, args.seed)
    else:
        policy, tok = load_base_model(args.model, device, args.seed)  # fp32, functional tokens added
    policy = policy.to(device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    load_s = time.perf_counter() - t0
    problems = load_problems("arith", "train", n=args.problems, seed=args.seed)
    longest = check_problem_prompts(problems, tok, policy.config, search_path_tokens(args.depth, args.max_step_tokens),
                                    "--depth x --max-step-tokens")

    # Warm-up (not timed): one-time costs (allocations, kernel compilation) fall here.
    warm = argparse.Namespace(**{**vars(args), "rollouts": 1, "depth": 1, "max_step_tokens": 2})
    run_rollouts(policy.eval(), tok, problems[:1], warm, 1, longest)

    # 1. Rollouts, serial then batched, the same problems, seed and budget.
    serial = run_rollouts(policy, tok, problems, args, 1, longest)
    batched = run_rollouts(policy, tok, problems, args, args.parallel_rollouts, longest)
    samples = batched["samples"]

    # 2. The batched run's samples, grouped by problem.
    groups = groups_of(samples, args.micro_batch_size)
    pad_id = tok.eos_token_id
    batches = [collate([samples[i].sequence for i in idx], pad_id) for idx in groups]  # CPU
    trees = [pack_paths([samples[i].sequence.tokens for i in idx]) for idx in groups]
    check_layouts(samples, groups, trees, batches)
    trees = [t.to(device) for t in trees]
    batches = [b.to(device) for b in batches]
    width = max(b.targets.shape[1] for b in batches)
    mask = torch.zeros(len(samples), width, device=device)  # [B, T_max], sample order
    for idx, b in zip(groups, batches):
        mask[idx, :b.loss_mask.shape[1]] = b.loss_mask.float()
    total_tokens = float(mask.sum().clamp(min=1.0))

    # Per-path old/ref log-probs first: the advantages come from them, once, and both
    # variants' updates then train on exactly the same numbers.
    policy.train()
    lp_args = (policy, reference, samples, groups, trees, width, args, pad_id)
    dense = variant_logprobs("per_path", *lp_args)
    final_reward = torch.tensor([s.reward for s in samples], dtype=torch.float32, device=device)
    kl = kl_estimate(dense["old"], dense["ref"], "k1") * mask
    adv, _ = advantages("reinforce++", final_reward, kl, mask, beta=BETA, gamma=GAMMA)  # [B, T_max]
    source = "reinforce++"
    if float(adv.abs().max()) == 0.0:
        # Equal rewards and a reference equal to the policy (KL 0: the first iteration)
        # give all-zero advantages, a zero loss and zero gradients: nothing to compare.
        # Seeded per-sample advantages N(0, 1) then; the cost does not depend on them.
        g = torch.Generator().manual_seed(derive_seed(args.seed, "advantages"))
        adv = torch.randn(len(samples), 1, generator=g).to(device) * mask
        source = "seeded N(0,1) per sample (REINFORCE++ gave all zeros: equal rewards, KL 0)"

    policy.requires_grad_(True)
    up_args = (policy, samples, groups, trees, batches)
    dense |= variant_update("per_path", *up_args, dense["old"], adv, total_tokens, args, pad_id)
    g_dense = grad_snapshot(policy)
    dense["peak_memory_mb"] = peak_memory_mb(device)
    packed = variant_logprobs("packed", *lp_args)
    packed |= variant_update("packed", *up_args, packed["old"], adv, total_tokens, args, pad_id)
    g_packed = grad_snapshot(policy)
    packed["peak_memory_mb"] = peak_memory_mb(device)
    policy.zero_grad(set_to_none=True)
    for v in (dense, packed):
        v["wall_s"] = v["logprobs_s"] + v["update_s"]

    # Relative to the loss's scale, not its value: whitened advantages sum to ~0 over the
    # batch, so at ratio 1 the loss itself is ~1e-9 and a bare ratio would be rounding
    # noise. The scale is the sum of the terms' magnitudes, Σ|A|·mask / total_tokens.
    scale = max(abs(dense["loss"]), float((adv.abs() * mask).sum()) / total_tokens, 1e-12)
    rel = abs(packed["loss"] - dense["loss"]) / scale
    if rel > LOSS_RTOL:
        raise AssertionError(f"packed loss {packed['loss']:.8g} vs per-path {dense['loss']:.8g}: "
                             f"relative difference {rel:.2e} > {LOSS_RTOL}")
    logp_diff = float(((packed["old"] - dense["old"]) * mask).abs().max())

    path_tokens = sum(len(s.sequence.tokens) for s in samples)
    packed_tokens = sum(int(t.tokens.shape[0]) for t in trees)
    rate = lambda tokens, seconds: tokens / max(seconds, 1e-9)  # noqa: E731
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": str(args.model) + (" (random weights)" if args.random_weights else ""),
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "settings": dict(problems=args.problems, rollouts=args.rollouts, depth=args.depth,
                         max_step_tokens=args.max_step_tokens, parallel_rollouts=args.parallel_rollouts,
                         micro_batch_size=args.micro_batch_size,
                         temperature=args.temperature, seed=args.seed, estimator="reinforce++", beta=BETA,
                         clip_eps=CLIP_EPS, data="arith"),
        "advantages": source,
        "rewards_batched": [s.reward for s in samples],
        "rollout_tokens_counted": "engine.tokens_computed (prefill + sampled, each once)",
        "rollout_tokens_per_s_serial": rate(serial["tokens_computed"], serial["wall_s"]),
        "rollout_tokens_per_s_batched": rate(batched["tokens_computed"], batched["wall_s"]),
        "rollout_tokens_computed_serial": serial["tokens_computed"],
        "rollout_tokens_computed_batched": batched["tokens_computed"],
        "rollout_response_tokens_serial": serial["response_tokens"],
        "rollout_response_tokens_batched": batched["response_tokens"],
        "rollout_samples_serial": len(serial["samples"]),
        "rollout_samples_batched": len(samples),
        "wall_s_rollouts_serial": serial["wall_s"],
        "wall_s_rollouts_batched": batched["wall_s"],
        "train_samples": len(samples),
        "train_loss_tokens": int(total_tokens),
        "train_tokens_per_s_per_path": rate(path_tokens, dense["wall_s"]),
        "train_tokens_per_s_packed": rate(path_tokens, packed["wall_s"]),
        "tokens_computed_per_path": path_tokens,
        "tokens_computed_packed": packed_tokens,
        "wall_s_logprobs_per_path": dense["logprobs_s"],
        "wall_s_logprobs_packed": packed["logprobs_s"],
        "wall_s_update_per_path": dense["update_s"],
        "wall_s_update_packed": packed["update_s"],
        "peak_memory_mb_after_per_path": dense["peak_memory_mb"],
        "peak_memory_mb_after_packed": packed["peak_memory_mb"],
        "loss_per_path": dense["loss"],
        "loss_packed": packed["loss"],
        "loss_rel_diff": rel,
        "old_logprob_max_abs_diff": logp_diff,
        "grad_max_rel_diff": grad_max_rel_diff(g_packed, g_dense),
        "wall_s_load": load_s,
        "wall_s_total": time.perf_counter() - start,
    }


def print_table(r: dict) -> None:
    s = r["settings"]
    print(f"device {r['device']}; model {r['model']} ({r['dtype']}); {r['threads']} threads")
    print(f"P={s['problems']} R={s['rollouts']} D={s['depth']} S={s['max_step_tokens']} "
          f"parallel_rollouts={s['parallel_rollouts']}")
    print(f"{'rollouts':<10} {'tokens/s':>10} {'wall s':>8} {'computed':>9} {'samples':>8}")
    for k in ("serial", "batched"):
        print(f"{k:<10} {r[f'rollout_tokens_per_s_{k}']:10.1f} {r[f'wall_s_rollouts_{k}']:8.2f} "
              f"{r[f'rollout_tokens_computed_{k}']:9d} {r[f'rollout_samples_{k}']:8d}")
    print(f"{'train':<10} {'tokens/s':>10} {'logp s':>8} {'update s':>9} {'computed':>9}  (per-path tokens/s)")
    for k in ("per_path", "packed"):
        print(f"{k:<10} {r[f'train_tokens_per_s_{k}']:10.1f} {r[f'wall_s_logprobs_{k}']:8.2f} "
              f"{r[f'wall_s_update_{k}']:9.2f} {r[f'tokens_computed_{k}']:9d}")
    print(f"peak memory MiB: after per-path {r['peak_memory_mb_after_per_path']:.0f}, after packed "
          f"{r['peak_memory_mb_after_packed']:.0f}")
    print(f"loss rel diff {r['loss_rel_diff']:.2e}; grad max rel diff {r['grad_max_rel_diff']:.2e}; "
          f"old log-prob max abs diff {r['old_logprob_max_abs_diff']:.2e}; total {r['wall_s_total']:.1f} s")


if __name__ == "__main__":
    main()
