"""Per-token rewards and advantage estimators for RFTT's RL phase (paper §3.3).

All tensors are [B, T] over the response tokens of B samples (padded; `mask` marks real
tokens). A sample is one MCTS rollout path; its outcome reward (rftt/rewards.py) arrives
at its last token.

KL to the reference model, estimated per token from log-probs of the sampled tokens
(Schulman, "Approximating KL divergence", 2020):

    k1 = logp - ref_logp                       unbiased, can be negative
    k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1     unbiased, always >= 0

Estimators:

- ``reinforce++`` (the paper's): the per-token reward is -β·KL at every token plus the
  outcome reward at the last; the return is the sum of rewards from t to the end (γ = 1);
  advantages are the returns whitened over every token of the batch (Hu, REINFORCE++,
  2025). No critic.
- ``gae``: the same per-token rewards; a critic's values V_t and generalised advantage
  estimation δ_t = r_t + γ V_{t+1} - V_t, A_t = Σ (γλ)^k δ_{t+k} (Schulman et al., 2016);
  the critic regresses on A_t + V_t.
- ``grpo``: the outcome reward normalised within each problem's group of samples,
  (r - mean) / (std + eps), given to every token of the sample (Shao et al., 2024); the
  KL then goes into the loss (k3) instead of the reward.
"""

from __future__ import annotations

import torch

ESTIMATORS = ("reinforce++", "gae", "grpo")
KL_ESTIMATORS = ("k1", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    if kind == "k1":
        return logp - ref_logp
    if kind == "k3":
        log_ratio = (ref_logp - logp).clamp(-20.0, 20.0)  # exp of a huge gap is inf, then NaN
        return log_ratio.exp() - log_ratio - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of {KL_ESTIMATORS}")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """mask: [B, T] (a contiguous run of ones per row) -> int64[B], its last position."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, -1).max(dim=1).values


def token_rewards(final_reward: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """r_t = -β·KL_t on every response token, plus the outcome reward on the last one.
    final_reward: [B]; kl, mask: [B, T]."""
    rewards = -beta * kl * mask
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last_token_index(mask)] += final_reward.to(rewards.dtype)
    return rewards


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{s >= t} γ^(s-t) r_s within each row (masked tokens contribute nothing)."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] * mask[:, t] + gamma * running
        returns[:, t] = running
    return returns * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, reduce=None) -> torch.Tensor:
    """(x - mean) / std over the masked entries of the whole batch. `reduce` sums a tensor
    over ranks (train/distributed.py all_reduce_sum) so the batch is every rank's."""
    reduce = reduce or (lambda t: t)
    n = reduce(mask.sum()).clamp(min=1)
    mean = reduce((values * mask).sum()) / n
    var = reduce((((values - mean) * mask) ** 2).sum()) / n
    return (values - mean) * torch.rsqrt(var + eps) * mask


def reinforce_plus_plus(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, reduce=None) -> torch.Tensor:
    """Advantages = whitened returns over the batch; returns the advantages [B, T]."""
    return whiten(discounted_returns(rewards, mask, gamma), mask, reduce=reduce)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns (advantages, returns = A + V), both [B, T].
    The value after the last token is 0 (the episode ends)."""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros_like(running)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t]  # 0 past the end: masked values are 0
    return advantages, (advantages + values) * mask


def grpo(final_reward: torch.Tensor, group: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """final_reward: [B]; group: int64[B] (the problem each sample belongs to).
    Each sample's reward normalised within its group (unbiased std), on every token."""
    normalised = torch.zeros_like(final_reward, dtype=torch.float32)
    for g in group.unique():
        members = group == g
        r = final_reward[members].float()
        std = r.std() if r.numel() > 1 else torch.zeros((), device=r.device)
        normalised[members] = (r - r.mean()) / (std + eps)
    return normalised[:, None] * mask


def advantages(estimator: str, final_reward: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, *, beta: float,
               gamma: float = 1.0, lam: float = 0.95, values: torch.Tensor | None = None,
               groups: torch.Tensor | None = None, reduce=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(advantages [B, T], the critic's targets [B, T] or None) by the named estimator.
    final_reward: [B]; kl, mask, values: [B, T]; groups: int64[B], each sample's problem
    (GRPO); `reduce` sums over ranks (whitening over the whole batch). GRPO's KL is not a
    reward (see kl_in_loss)."""
    if estimator == "reinforce++":  # the paper's
        return reinforce_plus_plus(token_rewards(final_reward, kl, mask, beta), mask, gamma, reduce=reduce), None
    if estimator == "gae":
        adv, returns = gae(token_rewards(final_reward, kl, mask, beta), values, mask, gamma, lam)
        return whiten(adv, mask, reduce=reduce), returns
    if estimator == "grpo":  # a problem's samples all live on one rank: groups are local
        return grpo(final_reward, groups, mask), None
    raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")


def kl_in_loss(estimator: str) -> bool:
    """GRPO adds β·k3 to the loss; the others put -β·KL into the per-token reward."""
    return estimator == "grpo"
