"""Batch-invariant seeded sampling: right distribution, filters respected, reproducible."""

import pytest
import torch

from search.sampling import SamplingParams, sample, splitmix64, uniform_per_row


def test_splitmix64_matches_python_reference():
    def ref(x):  # the published algorithm on Python ints
        m = (1 << 64) - 1
        x = (x + 0x9E3779B97F4A7C15) & m
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
        return x ^ (x >> 31)

    xs = [0, 1, 2, 12345, 2**40 + 7, 2**62]
    got = splitmix64(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert [g & ((1 << 64) - 1) for g in got] == [ref(x) for x in xs]


def test_uniform_per_row_is_uniform_and_deterministic():
    seeds = torch.arange(64_000) // 1000
    positions = torch.arange(64_000) % 1000 * 3
    u = uniform_per_row(seeds, positions)
    assert u.dtype == torch.float64 and ((u > 0) & (u < 1)).all()
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    assert torch.equal(uniform_per_row(seeds, positions), u)
    assert not torch.equal(uniform_per_row(seeds + 1, positions), u)
    assert u.unique().numel() == u.numel()  # neighbouring counters do not collide


def test_samples_follow_softmax_of_tempered_logits():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    temperature = 0.7
    n = 40_000
    tokens, _ = sample(logits.expand(n, -1), SamplingParams(temperature), torch.full((n,), 3), torch.arange(n))
    freq = torch.bincount(tokens, minlength=5).float() / n
    expected = (logits / temperature).softmax(-1)
    assert (freq - expected).abs().max() < 0.01, (freq, expected)


def test_a_branch_draws_the_same_token_whatever_its_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 50, generator=g)
    seeds, positions = torch.arange(16) * 7 + 1, torch.arange(16) + 100
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=20)
    together, lp_together = sample(logits, params, seeds, positions)
    for b in range(16):
        alone, lp_alone = sample(logits[b : b + 1], params, seeds[b : b + 1], positions[b : b + 1])
        assert alone.item() == together[b].item()
        torch.testing.assert_close(lp_alone[0], lp_together[b])


def test_top_k_and_top_p_exclude_the_tail():
    logits = torch.tensor([3.0, 2.5, 2.0, -5.0, -6.0, -7.0])
    n = 5000
    seeds, positions = torch.full((n,), 11), torch.arange(n)
    tk, _ = sample(logits.expand(n, -1), SamplingParams(1.0, top_k=2), seeds, positions)
    assert set(tk.tolist()) == {0, 1}
    probs = logits.softmax(-1)  # nucleus for 0.9: tokens 0,1,2 (mass of 0,1 < 0.9)
    assert probs[:2].sum() < 0.9 <= probs[:3].sum()
    tp, _ = sample(logits.expand(n, -1), SamplingParams(1.0, top_p=0.9), seeds, positions)
    assert set(tp.tolist()) == {0, 1, 2}
    # top_p tiny keeps exactly the most likely token
    t1, _ = sample(logits.expand(n, -1), SamplingParams(1.0, top_p=1e-6), seeds, positions)
    assert set(t1.tolist()) == {0}


def test_greedy_and_logprobs():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 30, generator=g)
    tokens, lp = sample(logits, SamplingParams(temperature=0), torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long))
    assert torch.equal(tokens, logits.argmax(-1))
    torch.testing.assert_close(lp, logits.log_softmax(-1).gather(-1, tokens[:, None])[:, 0])
    t2, lp2 = sample(logits, SamplingParams(temperature=0.5, top_k=5), torch.arange(8), torch.arange(8))
    torch.testing.assert_close(lp2, (logits / 0.5).log_softmax(-1).gather(-1, t2[:, None])[:, 0])


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(top_k=-2)])
def test_bad_params_are_rejected(bad):
    with pytest.raises(ValueError):
        SamplingParams(**bad)
