"""torchrun worker of tests/test_packed_training.py: one PPO update per estimator, per
path and packed, on an FSDP2-sharded tiny model; rank 0 writes how far apart they are.

    torchrun --standalone --nproc_per_node=2 tests/packed_ppo_worker.py CHECKPOINT OUTDIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from model import load_model
from tests.packed_ppo_case import make_models, one_update, search_shaped_samples
from train.advantages import ESTIMATORS
from train.distributed import all_reduce_sum, barrier, init_distributed, shard_model, shutdown


def gathered_grads(model) -> dict[str, torch.Tensor]:
    """Every parameter's full gradient (FSDP2 shards them as DTensors); a collective."""
    out = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad
            out[name] = (g.full_tensor() if hasattr(g, "full_tensor") else g).detach().clone()
    return out


def main(checkpoint: str, out_dir: str) -> None:
    info = init_distributed("cpu")
    samples = search_shaped_samples()
    mine = [i for i, s in enumerate(samples) if s.problem == info.rank]  # GRPO's groups stay on one rank
    result = {}
    # Every sharded model lives until shutdown, as in train.ppo. A rank sometimes aborted
    # ("terminate called without an active exception", about 1 run in 8 under load); the
    # suspect is the garbage collector tearing a dropped model's device mesh down while
    # the next model's collectives run.
    alive = []
    for estimator in ESTIMATORS:
        policy = load_model(checkpoint)[0]
        model, reference = make_models(policy, estimator)
        model = shard_model(model, info, blocks=policy.layers)
        reference = shard_model(reference, info, blocks=reference.policy.layers)
        alive.append((model, reference))
        runs = {}
        for packed in (False, True):
            runs[packed] = one_update(model, reference, samples, mine, estimator, packed, info.world_size)
            runs[packed]["grads"] = gathered_grads(model)
        dense, packed = runs[False], runs[True]
        diffs = {n: float((packed["grads"][n] - g).abs().max() / g.abs().max().clamp(min=1e-30))
                 for n, g in dense["grads"].items()}
        worst = max(diffs.values())
        result[estimator] = {
            "ranks_with_samples": int(all_reduce_sum(torch.tensor(int(len(mine) > 0)))),
            "loss_rel_diff": abs(packed["loss"] - dense["loss"]) / max(abs(dense["loss"]), 1e-3),
            "grad_max_rel_diff": worst,
            "parameters_with_zero_grad": sorted(n for n, g in dense["grads"].items() if g.abs().max() == 0),
        }
    if info.is_main:
        (Path(out_dir) / "result.json").write_text(json.dumps(result, indent=1))
    barrier()  # leave together: neither rank tears its group down under the other
    shutdown()
    # Skip interpreter finalisation: the FSDP2 models kept alive above still hold tensors
    # that gloo's worker threads reference, and freeing them while the interpreter is torn
    # down can abort a rank ("terminate called without an active exception", SIGABRT,
    # seen once under a heavily loaded CI) after every result is written. Nothing is left
    # to do but exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
