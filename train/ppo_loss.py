"""The PPO-clip objective and the clipped value loss, token-summed and normalised by the
global token count (paper §3.3; Schulman et al., 2017).

With ratio ρ_t = exp(logp_t - old_logp_t) and advantage A_t,

    policy loss_t = -min(ρ_t A_t, clip(ρ_t, 1 - ε, 1 + ε) A_t)

summed over every response token of the micro-batch and divided by the number of
response tokens in the *whole* update batch (all micro-batches, all ranks): the caller
passes that count. Dividing by each micro-batch's own count instead would weigh the
tokens of short micro-batches more — gradients would depend on how the batch was cut (a
common source of wrong gradients in RL frameworks).
"""

from __future__ import annotations

import torch


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                total_tokens: float, clip_eps: float = 0.2) -> tuple[torch.Tensor, dict]:
    """All [B, T]. Returns (loss, stats); stats are sums over this micro-batch's tokens,
    for the caller to reduce: clipped tokens and the approximate KL to the old policy."""
    log_ratio = (logp - old_logp).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    loss = (per_token * mask).sum() / total_tokens
    with torch.no_grad():
        stats = {"clipped_tokens": float(((clipped < unclipped) * mask).sum()),
                 "approx_kl_old_sum": float((((ratio - 1) - log_ratio) * mask).sum())}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               total_tokens: float, clip: float = 0.2) -> torch.Tensor:
    """Clipped value loss: 0.5 · max((V - R)^2, (V_old + clip(V - V_old, ±c) - R)^2)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    per_token = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return (per_token * mask).sum() / total_tokens
