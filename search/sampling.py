"""Sampling the next token of many branches at once, reproducibly.

A tree search samples hundreds of branches per step, and which branches share a batch
changes from step to step (branches finish, fork, get pruned). If sampling drew from one
global generator, a branch's text would depend on its batch-mates: runs with KV sharing
on and off, or with a different batch size, would diverge. Instead every draw is a pure
function of (branch seed, position, logits):

    u_b       = uniform(hash(seed_b, position_b))           counter-based RNG (splitmix64)
    token_b   = the first v with  cdf_b[v] > u_b * cdf_b[V-1]   inverse-CDF sampling
    cdf_b     = cumsum(softmax(logits_b / T))                   (fp64, after top-k/top-p)

Inverse-CDF sampling draws exactly from softmax(logits / T) with one random number per
branch; top-k and top-p set the excluded logits to -inf first (probability 0: never
chosen). One number per branch, not one per vocabulary entry as the Gumbel-max trick
needs, matters on a CPU: hashing [B, 49152] counters cost more than the model's matmuls.
The cumulative sum runs in fp64 so that a 53-bit uniform resolves even tiny
probabilities. Temperature 0 is greedy. The log-prob returned for RL is
that of the *tempered, untruncated* distribution log_softmax(logits / T) — the policy the
PPO ratio must use: log-probs of a tempered sample are taken after dividing the logits
by the same temperature, or the ratio compares two different policies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


def _signed(c: int) -> int:
    """A 64-bit constant as the int64 torch stores (two's complement)."""
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic: mask off the sign copies)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """Steele et al.'s splitmix64 finaliser on int64 tensors (multiplication wraps mod 2^64)."""
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def uniform_per_row(seeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """seeds, positions: int64[B] -> u: fp64[B] in (0, 1), a pure function of its inputs."""
    bits = splitmix64(splitmix64(seeds.long()) ^ positions.long())  # [B]
    top53 = _shr(bits, 11).to(torch.float64)  # 53 random bits: exact in fp64
    return (top53 + 0.5) / float(1 << 53)


def _filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """logits: [B, V] (already tempered) -> same with excluded entries at -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Keep the smallest prefix whose mass reaches top_p: a token is dropped when the
        # mass strictly before it already reaches top_p (so the top token always stays).
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(
    logits: torch.Tensor, params: SamplingParams, seeds: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits: fp32[B, V]; seeds, positions: int64[B] -> (tokens int64[B], logprobs fp32[B]).

    `positions` is the position the sampled token will occupy, so a branch's draw at a
    given depth is fixed by its seed whatever else is in the batch.
    """
    logits = logits.float()
    if params.temperature == 0:
        tokens = logits.argmax(-1)
        logprobs = torch.log_softmax(logits, -1).gather(-1, tokens[:, None])[:, 0]
        return tokens, logprobs
    tempered = logits / params.temperature
    filtered = _filter_top_k_top_p(tempered, params.top_k, params.top_p)
    cdf = filtered.double().softmax(-1).cumsum(-1)  # [B, V]; excluded entries add 0
    target = uniform_per_row(seeds, positions) * cdf[:, -1]  # [B]
    tokens = torch.searchsorted(cdf, target[:, None], right=True)[:, 0]
    tokens = tokens.clamp_(max=logits.shape[-1] - 1)  # target == total only by rounding
    logprobs = torch.log_softmax(tempered, -1).gather(-1, tokens[:, None])[:, 0]
    return tokens, logprobs
