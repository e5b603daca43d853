"""One PPO update computed twice, on padded per-path rows and on packed trees.

Shared by tests/test_packed_training.py (one process, every family and estimator) and
its torchrun worker (two gloo processes, FSDP2). The samples are search-shaped: two
problems, each with paths that share the prompt and steps, a single-token shared step,
paths that share nothing after the prompt, a path that is a prefix of another, and a
duplicate. The reference is the policy with seeded noise (so KL is not zero), the value
head is random (so the critic's gradient reaches the trunk), and the old log-probs are
shifted by seeded noise (so ratios differ from 1 and some tokens are clipped).
"""

from __future__ import annotations

import copy
from argparse import Namespace

import torch
from torch import nn

from train.advantages import advantages, kl_estimate
from train.distributed import all_reduce_sum
from train.ppo import LossTargets, PolicyWithValue, cut_micro_batches, micro_batch_loss, score_samples
from train.rollouts import Sample
from train.sequences import Sequence

PAD = 2


def search_shaped_samples() -> list[Sample]:
    g = torch.Generator().manual_seed(11)

    def toks(n):
        return torch.randint(3, 300, (n,), generator=g).tolist()

    samples = []
    for problem in range(2):
        prompt, step, one = toks(7 + problem), toks(4), toks(1)
        responses = [step + toks(5), step + toks(3), step + toks(6) + toks(2),  # a shared step, then forks
                     one + toks(4), one + toks(6),  # a single-token shared step
                     toks(5), toks(2),  # nothing shared after the prompt
                     step + toks(1)]  # shares the step, then one token
        responses.append(responses[1][:3])  # a prefix of another path
        responses.append(responses[0])  # a duplicate (two samples of the same path)
        for j, response in enumerate(responses):
            reward = [1.0, 0.1, 0.0][(j + problem) % 3]
            samples.append(Sample(problem, Sequence(prompt + response, len(prompt)), reward, [], "", None))
    return samples


def make_models(policy, estimator: str, seed: int = 3):
    """(PolicyWithValue, its frozen noisy reference), deterministic in `seed`."""
    g = torch.Generator().manual_seed(seed)
    model = PolicyWithValue(policy, with_value=estimator == "gae")
    if model.value_head is not None:  # zero-initialised in training; random here, or its gradient is trivial
        nn.init.normal_(model.value_head.weight, generator=g)
    reference = PolicyWithValue(copy.deepcopy(policy), with_value=False)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return model, reference.eval().requires_grad_(False)


def ppo_args(estimator: str, packed: bool, micro_batch_tokens: int | None = None) -> Namespace:
    return Namespace(micro_batch_size=4, micro_batch_tokens=micro_batch_tokens, temperature=0.7, tree_packing=packed,
                     clip_eps=0.2, value_coef=0.5, value_clip=0.2, estimator=estimator, beta=0.1, kl="k1")


def one_update(model, reference, samples: list[Sample], indices: list[int], estimator: str, packed: bool,
               world_size: int = 1, micro_batch_tokens: int | None = None) -> dict:
    """Steps 4-6 of train.ppo on the samples `indices` (this rank's share), gradients
    accumulated in `model` -> old/ref log-probs and values, the loss (summed over ranks)
    and the micro-batches the update ran."""
    args = ppo_args(estimator, packed, micro_batch_tokens)
    mine = [samples[i] for i in indices]
    old_logp, ref_logp, old_values, mask = score_samples(model, reference, mine, args, PAD, torch.device("cpu"))
    g = torch.Generator().manual_seed(5)  # the same shift in both layouts
    shifted = old_logp + 0.3 * torch.randn(old_logp.shape, generator=g) * mask
    kl = kl_estimate(old_logp, ref_logp, args.kl) * mask
    rewards = torch.tensor([s.reward for s in mine])
    adv, returns = advantages(estimator, rewards, kl, mask, beta=args.beta, gamma=1.0, lam=0.95, values=old_values,
                              groups=torch.tensor([s.problem for s in mine]), reduce=all_reduce_sum)
    targets = LossTargets(shifted, ref_logp, old_values, adv, returns)
    total_tokens = float(all_reduce_sum(mask.sum()).clamp(min=1.0))
    model.zero_grad(set_to_none=True)
    loss_sum, clipped = 0.0, 0.0
    cuts = cut_micro_batches(mine, list(range(len(mine))), args)
    for idx in cuts:
        loss, sums = micro_batch_loss(model, mine, idx, targets, total_tokens, args, PAD, torch.device("cpu"))
        (loss * world_size).backward()
        loss_sum += float(loss.detach())
        clipped += sums["clipped_tokens"]
    return {"old_logp": old_logp, "ref_logp": ref_logp, "old_values": old_values, "mask": mask,
            "loss": float(all_reduce_sum(torch.tensor(loss_sum))), "clipped": clipped, "micro_batches": cuts}
