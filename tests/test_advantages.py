"""Advantage estimators, KL estimators and the PPO losses against values worked by hand."""

import math

import pytest
import torch

from train.advantages import (
    discounted_returns, gae, grpo, kl_estimate, last_token_index, reinforce_plus_plus, token_rewards, whiten,
)
from train.ppo_loss import policy_loss, value_loss

MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.float32)


def test_token_rewards_put_the_outcome_on_the_last_token_and_kl_everywhere():
    kl = torch.tensor([[0.1, -0.2, 0.3], [0.5, 0.0, 9.0]])  # 9.0 is padding: ignored
    r = token_rewards(torch.tensor([1.0, 0.1]), kl, MASK, beta=0.01)
    expected = torch.tensor([[-0.001, 0.002, -0.003 + 1.0], [-0.005, 0.0 + 0.1, 0.0]])
    torch.testing.assert_close(r, expected)
    assert last_token_index(MASK.bool()).tolist() == [2, 1]


def test_reinforce_plus_plus_is_whitened_returns_with_gamma_one():
    rewards = torch.tensor([[-0.001, 0.002, 0.997], [-0.005, 0.1, 0.0]])
    returns = discounted_returns(rewards, MASK)
    torch.testing.assert_close(returns, torch.tensor([[0.998, 0.999, 0.997], [0.095, 0.1, 0.0]]))
    flat = [0.998, 0.999, 0.997, 0.095, 0.1]
    mean = sum(flat) / 5
    std = math.sqrt(sum((x - mean) ** 2 for x in flat) / 5)
    expected = torch.tensor([[(x - mean) / std for x in flat[:3]], [(flat[3] - mean) / std, (flat[4] - mean) / std, 0.0]])
    torch.testing.assert_close(reinforce_plus_plus(rewards, MASK), expected, rtol=1e-5, atol=1e-5)
    adv = whiten(returns, MASK)
    assert abs(float((adv * MASK).sum())) < 1e-5  # zero mean over real tokens


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # δ = [0.1, 0.1, 0.3];  A2 = 0.3, A1 = 0.1 + 0.5·0.3, A0 = 0.1 + 0.5·0.25
    torch.testing.assert_close(adv, torch.tensor([[0.225, 0.25, 0.3]]))
    torch.testing.assert_close(ret, torch.tensor([[0.725, 0.85, 1.0]]))
    # λ = 1: the advantage is the Monte-Carlo return minus the value
    adv1, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv1, torch.tensor([[0.5, 0.4, 0.3]]))
    # padding after the end: the row's last real token sees a next value of 0
    adv_pad, _ = gae(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.7, 5.0]]), torch.tensor([[1.0, 1.0, 0.0]]), 1.0, 1.0)
    torch.testing.assert_close(adv_pad, torch.tensor([[0.5, 0.3, 0.0]]))


def test_grpo_normalises_within_each_problem():
    final = torch.tensor([1.0, 0.0, 0.1, 1.0])
    group = torch.tensor([0, 0, 0, 1])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]], dtype=torch.float32)
    adv = grpo(final, group, mask)
    mean = 1.1 / 3
    std = math.sqrt(((1 - mean) ** 2 + mean ** 2 + (0.1 - mean) ** 2) / 2)
    col = [(1 - mean) / std, (0 - mean) / std, (0.1 - mean) / std, 0.0]  # a lone sample: no signal
    expected = torch.tensor(col)[:, None] * mask
    torch.testing.assert_close(adv, expected, rtol=1e-4, atol=1e-4)


def test_kl_estimators():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-1.5, -2.0, -0.2])
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([0.5, 0.0, -0.3]))
    d = ref - logp
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), d.exp() - d - 1)
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    same = torch.randn(10)
    for kind in ("k1", "k3"):
        assert torch.equal(kl_estimate(same, same, kind), torch.zeros(10))
    with pytest.raises(ValueError, match="k2"):
        kl_estimate(logp, ref, "k2")


def test_ppo_clip_by_hand_and_normalised_by_the_given_token_count():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    loss, stats = policy_loss(logp, old, adv, mask, total_tokens=8.0, clip_eps=0.2)
    # per token: -min(ρA, clip(ρ)A) = -1.2, +1.5, -0.5, +0.8
    assert abs(float(loss) - (-1.2 + 1.5 - 0.5 + 0.8) / 8.0) < 1e-6
    assert stats["clipped_tokens"] == 2.0  # tokens 0 and 3 hit the clip
    # The same tokens split over two micro-batches with the global count: the same total.
    a, _ = policy_loss(logp[:, :2], old[:, :2], adv[:, :2], mask[:, :2], 8.0)
    b, _ = policy_loss(logp[:, 2:], old[:, 2:], adv[:, 2:], mask[:, 2:], 8.0)
    assert abs(float(a + b) - float(loss)) < 1e-6
    # ratio 1 everywhere: the loss is -mean advantage and nothing is clipped
    loss1, stats1 = policy_loss(old, old, adv, mask, 4.0)
    assert float(loss1) == 0.0 and stats1["clipped_tokens"] == 0.0


def test_value_loss_is_clipped_around_the_old_values():
    old = torch.tensor([[0.0, 0.0]])
    values = torch.tensor([[1.0, 0.1]])
    returns = torch.tensor([[1.0, 1.0]])
    # token 0: unclipped error 0, clipped V = 0.2 -> error 0.8^2; the max keeps 0.64
    # token 1: V = 0.1 inside the clip -> 0.9^2 both ways
    got = value_loss(values, old, returns, torch.ones(1, 2), total_tokens=2.0, clip=0.2)
    assert abs(float(got) - 0.5 * (0.64 + 0.81) / 2.0) < 1e-6
