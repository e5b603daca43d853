"""The non-attention kernels (KV store, RMSNorm, RoPE, fused log-probs) against their references.

On CPU the Triton kernels run under Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), at tiny shapes: each inner-loop iteration costs milliseconds there.
The references are checked in turn against independent formulations: Hugging Face's
LlamaRMSNorm, complex-number rotation, and autograd through naive [N, V] logits.

Tolerances: the interpreter *truncates* fp32 → bf16 where a GPU rounds to nearest, so a
bf16 result may be off by one ulp per rounding, i.e. up to 2^-6 relative where a kernel
rounds twice (RMSNorm) — hence rtol 1.6e-2 for bf16.
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from kernels.fused_logprobs import chunk_grad_triton, chunk_stats_triton, fused_logprobs
from kernels.ops_reference import (
    apply_rope_reference,
    chunk_grad_reference,
    chunk_stats_reference,
    fused_logprobs_naive,
    fused_logprobs_reference,
    rms_norm_reference,
    store_kv_reference,
)
from kernels import ops_reference
from kernels.rms_norm import rms_norm
from kernels.rope import apply_rope
from kernels.rope_freqs import rope_inv_freq
from kernels.store_kv import store_kv

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOLERANCE = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}
LLAMA3_SCALING = dict(
    rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
)


@pytest.fixture
def triton_kernels(monkeypatch):
    """Force the Triton versions (on CPU: through the interpreter)."""
    monkeypatch.setenv("RFTT_KERNELS", "triton")


@pytest.fixture
def reference_kernels(monkeypatch):
    monkeypatch.setenv("RFTT_KERNELS", "reference")


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual.float(), expected.float(), **TOLERANCE[dtype])


def assert_close_to_scale(actual, expected, tol):
    """Max error relative to the largest expected magnitude: for gradients, whose small
    entries are sums with cancellation and carry no meaningful relative precision."""
    error = (actual.float() - expected.float()).abs().max().item()
    scale = expected.float().abs().max().item()
    assert error <= tol * scale, f"max error {error:.3g} > {tol} × max |expected| {scale:.3g}"


# ---------------------------------------------------------------------------------- KV store


@pytest.mark.parametrize("pool_dtype", DTYPES)
@pytest.mark.parametrize("n_tokens, n_kv_heads, head_dim", [(1, 1, 64), (5, 3, 64), (9, 2, 128)])
@pytest.mark.parametrize("slot_dtype", [torch.int32, torch.int64])
def test_store_kv_triton_matches_reference(triton_kernels, pool_dtype, n_tokens, n_kv_heads, head_dim, slot_dtype):
    gen = torch.Generator().manual_seed(n_tokens * 100 + head_dim)
    num_slots = 3 * n_tokens + 1
    k_pool = torch.randn(num_slots, n_kv_heads, head_dim, generator=gen).to(pool_dtype)
    v_pool = torch.randn(num_slots, n_kv_heads, head_dim, generator=gen).to(pool_dtype)
    slots = torch.randperm(num_slots, generator=gen)[:n_tokens].to(slot_dtype)
    # K and V as views into one fused qkv projection output: non-contiguous token stride.
    qkv = torch.randn(n_tokens, 3, n_kv_heads, head_dim, generator=gen).to(pool_dtype)
    k, v = qkv[:, 1], qkv[:, 2]
    expected_k, expected_v = k_pool.clone(), v_pool.clone()
    store_kv_reference(expected_k, expected_v, slots, k, v)

    store_kv(k_pool, v_pool, slots, k, v)

    assert torch.equal(k_pool, expected_k) and torch.equal(v_pool, expected_v)  # same dtype: a bit-exact copy


def test_store_kv_casts_to_the_pool_dtype(triton_kernels):
    gen = torch.Generator().manual_seed(0)
    k_pool, v_pool = torch.zeros(8, 2, 64, dtype=torch.bfloat16), torch.zeros(8, 2, 64, dtype=torch.bfloat16)
    k, v = torch.randn(3, 2, 64, generator=gen), torch.randn(3, 2, 64, generator=gen)
    slots = torch.tensor([6, 0, 3])
    store_kv(k_pool, v_pool, slots, k, v)
    assert_close(k_pool[slots], k, torch.bfloat16)
    assert_close(v_pool[slots], v, torch.bfloat16)
    untouched = torch.tensor([1, 2, 4, 5, 7])
    assert not k_pool[untouched].any() and not v_pool[untouched].any()


def test_store_kv_rejects_bad_shapes():
    pool = torch.zeros(8, 2, 64)
    with pytest.raises(ValueError, match="slots"):
        store_kv(pool, pool.clone(), torch.tensor([0.0, 1.0]), torch.zeros(2, 2, 64), torch.zeros(2, 2, 64))
    with pytest.raises(ValueError, match="v must be"):
        store_kv(pool, pool.clone(), torch.tensor([0, 1]), torch.zeros(2, 2, 64), torch.zeros(2, 3, 64))


# ---------------------------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_reference_is_exactly_hugging_face(dtype):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 576, generator=gen).to(dtype)
    hf = LlamaRMSNorm(576, eps=1e-5).to(dtype)
    with torch.no_grad():
        hf.weight.copy_(torch.randn(576, generator=gen))
        expected = hf(x)
    assert torch.equal(rms_norm_reference(x, hf.weight.detach(), 1e-5), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 64), (3, 512), (3, 513), (2, 3, 576), (5, 128)])
def test_rms_norm_triton_matches_reference(triton_kernels, dtype, shape):
    gen = torch.Generator().manual_seed(shape[-1])
    x = (3 * torch.randn(shape, generator=gen)).to(dtype)
    weight = torch.randn(shape[-1], generator=gen).to(dtype)
    y = rms_norm(x, weight, 1e-6)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, rms_norm_reference(x, weight, 1e-6), dtype)


def test_rms_norm_triton_reads_strided_rows(triton_kernels):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2 * 576, generator=gen)[:, :576]  # row stride 1152, unit column stride
    weight = torch.randn(576, generator=gen)
    assert_close(rms_norm(x, weight, 1e-5), rms_norm_reference(x, weight, 1e-5), torch.float32)


def test_rms_norm_keeps_gradients_on_the_triton_setting(triton_kernels):
    x = torch.randn(2, 64, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert rms_norm(x, weight, 1e-6).grad_fn is not None  # falls back to the reference
    assert torch.autograd.gradcheck(lambda a, b: rms_norm_reference(a, b, 1e-6), (x, weight))


def test_rms_norm_rejects_mismatched_weight():
    with pytest.raises(ValueError, match="weight"):
        rms_norm(torch.zeros(2, 64), torch.ones(63), 1e-6)


# ---------------------------------------------------------------------------------- RoPE


def _rope_inputs(n_tokens, n_q_heads, n_kv_heads, head_dim, dtype, seed, max_position=131072):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n_tokens, n_q_heads, head_dim, generator=gen).to(dtype)
    k = torch.randn(n_tokens, n_kv_heads, head_dim, generator=gen).to(dtype)
    positions = torch.randint(0, max_position, (n_tokens,), generator=gen)
    return q, k, positions


def _rotate_as_complex(x, positions, inv_freq):
    """Independent formulation: channel pair (i, i + D/2) is the complex number
    x_i + j·x_{i+D/2}, and RoPE multiplies it by e^{j·angle}. Angles are fp32 products
    (the convention), the rotation is done in complex128."""
    angles = positions.float()[:, None] * inv_freq[None, :]  # [N, D/2] fp32
    rotation = torch.polar(torch.ones_like(angles, dtype=torch.float64), angles.double())[:, None, :]
    half = x.shape[-1] // 2
    pairs = torch.complex(x[..., :half].double(), x[..., half:].double()) * rotation
    return torch.cat((pairs.real, pairs.imag), dim=-1)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_rope_reference_matches_complex_rotation_and_hugging_face(head_dim):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    inv_freq = rope_inv_freq(head_dim, 500000.0, LLAMA3_SCALING)
    q, k, positions = _rope_inputs(7, 4, 2, head_dim, torch.float32, seed=head_dim)
    q_rot, k_rot = apply_rope_reference(q, k, positions, inv_freq)
    torch.testing.assert_close(q_rot.double(), _rotate_as_complex(q, positions, inv_freq), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k_rot.double(), _rotate_as_complex(k, positions, inv_freq), rtol=1e-5, atol=1e-5)

    angles = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((angles, angles), dim=-1)  # [N, D]: Hugging Face's cos/sin layout
    hf_q, hf_k = apply_rotary_pos_emb(q, k, emb.cos(), emb.sin(), unsqueeze_dim=1)
    torch.testing.assert_close(q_rot, hf_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k_rot, hf_k, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n_tokens, n_q_heads, n_kv_heads, head_dim", [(1, 1, 1, 64), (5, 9, 3, 64), (4, 4, 2, 128), (3, 5, 1, 128)]
)
def test_rope_triton_matches_reference(triton_kernels, dtype, n_tokens, n_q_heads, n_kv_heads, head_dim):
    inv_freq = rope_inv_freq(head_dim, 500000.0, LLAMA3_SCALING)
    q, k, positions = _rope_inputs(n_tokens, n_q_heads, n_kv_heads, head_dim, dtype, seed=n_tokens + head_dim)
    q_rot, k_rot = apply_rope(q, k, positions.int(), inv_freq)
    expected_q, expected_k = apply_rope_reference(q, k, positions, inv_freq)
    assert q_rot.dtype == dtype and k_rot.dtype == dtype
    assert_close(q_rot, expected_q, dtype)
    assert_close(k_rot, expected_k, dtype)


def test_rope_triton_reads_views_of_a_fused_projection(triton_kernels):
    head_dim, n_q_heads, n_kv_heads = 64, 3, 1
    qkv = torch.randn(6, (n_q_heads + 2 * n_kv_heads) * head_dim, generator=torch.Generator().manual_seed(3))
    q = qkv[:, : n_q_heads * head_dim].view(6, n_q_heads, head_dim)  # token stride 320, not 192
    k = qkv[:, n_q_heads * head_dim : (n_q_heads + 1) * head_dim].view(6, n_kv_heads, head_dim)
    positions, inv_freq = torch.arange(100, 106), rope_inv_freq(head_dim, 10000.0)
    for got, expected in zip(apply_rope(q, k, positions, inv_freq), apply_rope_reference(q, k, positions, inv_freq)):
        assert_close(got, expected, torch.float32)


def test_rope_keeps_gradients_and_leaves_inputs_alone(triton_kernels):
    q, k, positions = _rope_inputs(3, 2, 1, 64, torch.float64, seed=4, max_position=50)
    q.requires_grad_(), k.requires_grad_()
    inv_freq = rope_inv_freq(64, 10000.0)
    q_before = q.detach().clone()
    q_rot, _ = apply_rope(q, k, positions, inv_freq)
    assert q_rot.grad_fn is not None and torch.equal(q.detach(), q_before)
    assert torch.autograd.gradcheck(lambda a, b: apply_rope_reference(a, b, positions, inv_freq), (q, k))


def test_rope_rejects_bad_positions():
    q, k, _ = _rope_inputs(3, 2, 1, 64, torch.float32, seed=5)
    with pytest.raises(ValueError, match="positions"):
        apply_rope(q, k, torch.zeros(3), rope_inv_freq(64, 10000.0))
    with pytest.raises(ValueError, match="inv_freq"):
        apply_rope(q, k, torch.zeros(3, dtype=torch.long), rope_inv_freq(128, 10000.0))


# ---------------------------------------------------------------------------------- fused log-probs


def _logprob_inputs(n_tokens, hidden, vocab, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n_tokens, hidden, generator=gen).to(dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=gen) / hidden**0.25).to(dtype).requires_grad_()  # logits of a few units
    targets = torch.randint(0, vocab, (n_tokens,), generator=gen)
    # Upstream gradients as PPO would send them: per-token weights on logprob and entropy.
    grad_logprobs, grad_entropy = torch.randn(n_tokens, generator=gen), torch.randn(n_tokens, generator=gen)
    return h, w, targets, grad_logprobs, grad_entropy


def _values_and_grads(fn, h, w, targets, temperature, grad_logprobs, grad_entropy, **kwargs):
    h.grad = w.grad = None
    logprobs, entropy = fn(h, w, targets, temperature, **kwargs)
    (logprobs * grad_logprobs + entropy * grad_entropy).sum().backward()
    return logprobs.detach(), entropy.detach(), h.grad, w.grad


GRAD_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _check_against_naive(fn, dtype, n_tokens, vocab, temperature, chunk_rows, seed=0, hidden=24):
    h, w, targets, g_lp, g_ent = _logprob_inputs(n_tokens, hidden, vocab, dtype, seed)
    expected = _values_and_grads(fused_logprobs_naive, h, w, targets, temperature, g_lp, g_ent)
    got = _values_and_grads(fn, h, w, targets, temperature, g_lp, g_ent, chunk_rows=chunk_rows)
    # Values are fp32 from the same model-dtype logits: fp32 tolerance whatever the dtype.
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-5)
    assert got[2].dtype == dtype and got[3].dtype == dtype
    assert_close_to_scale(got[2], expected[2], GRAD_TOLERANCE[dtype])  # d/d hidden
    assert_close_to_scale(got[3], expected[3], GRAD_TOLERANCE[dtype])  # d/d weight


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_tokens, chunk_rows", [(1, None), (13, 4), (16, 16), (17, 16)])
def test_chunked_reference_matches_naive(dtype, n_tokens, chunk_rows):
    _check_against_naive(fused_logprobs_reference, dtype, n_tokens, 301, 0.7, chunk_rows)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n_tokens, chunk_rows, temperature, hidden, vocab",
    [(1, None, 0.7, 24, 301), (9, 4, 1.3, 24, 301), (8, None, 1.0, 24, 301), (3, 2, 0.7, 576, 4097)],  # 4097: 2 blocks
)
def test_triton_logprobs_match_naive(triton_kernels, dtype, n_tokens, chunk_rows, temperature, hidden, vocab):
    _check_against_naive(fused_logprobs, dtype, n_tokens, vocab, temperature, chunk_rows, seed=n_tokens, hidden=hidden)


@pytest.mark.parametrize("vocab", [256, 257])  # at and one past a BLOCK_V = 128 boundary
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_chunk_kernels_across_vocab_blocks(dtype, vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = (4 * torch.randn(3, vocab, generator=gen)).to(dtype)
    targets = torch.tensor([0, vocab - 1, vocab // 2])
    g_lp, g_ent = torch.randn(3, generator=gen), torch.randn(3, generator=gen)

    logprobs, entropy, lse = chunk_stats_triton(logits, targets, 0.8, block_v=128)
    expected_logprobs, expected_entropy, expected_lse = chunk_stats_reference(logits, targets, 0.8)
    for got, expected in ((logprobs, expected_logprobs), (entropy, expected_entropy), (lse, expected_lse)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    expected_grad = chunk_grad_reference(logits, targets, 0.8, expected_lse, expected_entropy, g_lp, g_ent)
    grad = chunk_grad_triton(logits.clone(), targets, 0.8, lse, entropy, g_lp, g_ent, block_v=128)
    assert_close(grad, expected_grad, dtype)


def test_entropy_is_accurate_for_peaked_distributions(triton_kernels):
    # Logits in the tens with one clear winner: H is ~1e-4, far below the logits' size.
    # The textbook lse − Σ p·z would cancel away most of its digits in fp32.
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(4, 300, generator=gen) + 40.0
    logits[:, 5] += 12.0
    targets = torch.full((4,), 5)
    exact = -(torch.log_softmax(logits.double(), -1).exp() * torch.log_softmax(logits.double(), -1)).sum(-1)
    for _, entropy, _ in (chunk_stats_triton(logits, targets, 1.0, block_v=128), chunk_stats_reference(logits, targets, 1.0)):
        torch.testing.assert_close(entropy.double(), exact, rtol=1e-3, atol=1e-8)


def test_logprobs_gradient_through_one_output_only(triton_kernels):
    h, w, targets, _, _ = _logprob_inputs(6, 16, 200, torch.float32, seed=8)
    for fn in (fused_logprobs, fused_logprobs_reference):
        h.grad = w.grad = None
        logprobs, _ = fn(h, w, targets, 0.9, chunk_rows=4)
        logprobs.sum().backward()  # the entropy output gets no gradient at all
        got = h.grad.clone(), w.grad.clone()
        h.grad = w.grad = None
        fused_logprobs_naive(h, w, targets, 0.9)[0].sum().backward()
        assert_close_to_scale(got[0], h.grad, 1e-5)
        assert_close_to_scale(got[1], w.grad, 1e-5)


class LargestTensor(TorchDispatchMode):
    """Records the size in bytes of the largest tensor any op produces (forward and
    backward) — a CPU stand-in for peak-memory statistics. Bytes, not elements: Triton's
    interpreter moves kernel arguments through uint8 views of their storage."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.bytes = max(self.bytes, t.numel() * t.element_size())
        return out


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_chunked_logprobs_never_build_n_by_v_tensors(monkeypatch, backend):
    monkeypatch.setenv("RFTT_KERNELS", backend)
    n_tokens, hidden, vocab, chunk_rows = 64, 8, 512, 4
    h, w, targets, g_lp, g_ent = _logprob_inputs(n_tokens, hidden, vocab, torch.float32, seed=9)

    with LargestTensor() as naive:
        _values_and_grads(fused_logprobs_naive, h, w, targets, 0.7, g_lp, g_ent)
    assert naive.bytes >= n_tokens * vocab * 4  # the instrument sees the [N, V] fp32 logits

    with LargestTensor() as chunked:
        _values_and_grads(fused_logprobs, h, w, targets, 0.7, g_lp, g_ent, chunk_rows=chunk_rows)
    # One fp32 chunk of logits or one weight-sized gradient, whichever is larger; never N·V.
    assert chunked.bytes <= max(chunk_rows * vocab, vocab * hidden) * 4 < n_tokens * vocab * 4


class LiveBytes(TorchDispatchMode):
    """Peak bytes of CPU storage alive at once among the tensors ops produce while the mode
    is on: a CPU stand-in for torch.cuda.max_memory_allocated. A storage counts from the
    op that creates it until it is freed; views allocate nothing (and a view of an input
    made before the mode must not count as new memory)."""

    def __init__(self):
        super().__init__()
        self.live, self.now, self.peak = {}, 0, 0

    def _freed(self, key):
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in pytree.tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live and key not in inputs:  # not a view of an input
                    self.live[key] = storage.nbytes()
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._freed, key)
        return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_weight_gradient_sum_never_lives_beside_a_whole_product(dtype):
    """Several chunks: the weight gradient is summed in fp32, in vocabulary slices. The
    whole fp32 sum must never live beside a whole [V, H] product (fp32 weights) or the
    whole 16-bit result (bf16), which is what summing whole products cost: for bf16 at
    the LM head of a 7B model, 4.1 GiB instead of 2.0."""
    n_tokens, hidden, vocab, chunk_rows = 16, 64, 512, 2  # 8 chunks; V x H dominates a chunk
    h, w, targets, g_lp, g_ent = _logprob_inputs(n_tokens, hidden, vocab, dtype, seed=12)
    fp32_sum = vocab * hidden * 4
    with LiveBytes() as live:
        got = _values_and_grads(fused_logprobs, h, w, targets, 0.7, g_lp, g_ent, chunk_rows=chunk_rows)
    assert live.peak >= fp32_sum  # the instrument sees the sum
    assert live.peak < fp32_sum + vocab * hidden * 2  # ... and never a second [V, H] beside it
    expected = _values_and_grads(fused_logprobs_naive, h, w, targets, 0.7, g_lp, g_ent)
    assert_close_to_scale(got[3], expected[3], 2e-2 if dtype == torch.bfloat16 else 1e-5)


@pytest.mark.parametrize("backend, bytes_per_logit", [("reference", 4 + ops_reference._REFERENCE_BYTES_PER_LOGIT), ("triton", 4)])
def test_default_chunk_size_follows_the_memory_budget(monkeypatch, backend, bytes_per_logit):
    monkeypatch.setenv("RFTT_KERNELS", backend)
    n_tokens, hidden, vocab, budget_rows = 48, 4, 512, 6
    monkeypatch.setattr(ops_reference, "DEFAULT_CHUNK_BUDGET_BYTES", budget_rows * vocab * bytes_per_logit)
    h, w, targets, g_lp, g_ent = _logprob_inputs(n_tokens, hidden, vocab, torch.float32, seed=10)
    with LargestTensor() as chunked:
        _values_and_grads(fused_logprobs, h, w, targets, 1.0, g_lp, g_ent)
    assert budget_rows * vocab * 4 >= chunked.bytes > (budget_rows - 1) * vocab * 4  # chunks of exactly 6 rows


def test_logprobs_reject_bad_inputs():
    h, w = torch.zeros(3, 8), torch.zeros(10, 8)
    with pytest.raises(ValueError, match="targets"):
        fused_logprobs(h, w, torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="targets"):
        fused_logprobs(h, w, torch.tensor([0, 10, 2]))
    with pytest.raises(ValueError, match="temperature"):
        fused_logprobs(h, w, torch.zeros(3, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="dtype"):
        fused_logprobs(h, w.half(), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_rows"):
        fused_logprobs(h, w, torch.zeros(3, dtype=torch.long), chunk_rows=0)


# ---------------------------------------------------------------------------------- GPU, real sizes


@pytest.mark.gpu
def test_gpu_store_kv_rms_norm_rope_at_model_sizes():
    gen = torch.Generator(device="cuda").manual_seed(0)
    dtype, n_tokens = torch.bfloat16, 4096
    k_pool = torch.zeros(1 << 20, 8, 128, dtype=dtype, device="cuda")  # 2^30 elements: int64 offsets matter
    v_pool = torch.zeros_like(k_pool)
    slots = torch.randperm(1 << 20, device="cuda", generator=gen)[:n_tokens].int()
    k = torch.randn(n_tokens, 8, 128, device="cuda", generator=gen, dtype=dtype)
    store_kv(k_pool, v_pool, slots, k, -k)
    assert torch.equal(k_pool[slots.long()], k) and torch.equal(v_pool[slots.long()], -k)

    x = torch.randn(n_tokens, 4096, device="cuda", generator=gen, dtype=dtype)
    weight = torch.randn(4096, device="cuda", generator=gen, dtype=dtype)
    torch.testing.assert_close(rms_norm(x, weight, 1e-5), rms_norm_reference(x, weight, 1e-5))

    q = torch.randn(n_tokens, 32, 128, device="cuda", generator=gen, dtype=dtype)
    positions = torch.randint(0, 131072, (n_tokens,), device="cuda", generator=gen)
    inv_freq = rope_inv_freq(128, 500000.0, LLAMA3_SCALING).cuda()
    for got, expected in zip(apply_rope(q, k, positions, inv_freq), apply_rope_reference(q, k, positions, inv_freq)):
        torch.testing.assert_close(got, expected)


@pytest.mark.gpu
def test_gpu_fused_logprobs_at_qwen_vocab():
    gen = torch.Generator(device="cuda").manual_seed(0)
    n_tokens, hidden, vocab, dtype = 2048, 1536, 151936, torch.bfloat16
    h = torch.randn(n_tokens, hidden, device="cuda", generator=gen, dtype=dtype).requires_grad_()
    w = (torch.randn(vocab, hidden, device="cuda", generator=gen) / hidden**0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, vocab, (n_tokens,), device="cuda", generator=gen)
    g_lp, g_ent = torch.randn(n_tokens, device="cuda", generator=gen), torch.randn(n_tokens, device="cuda", generator=gen)

    expected = _values_and_grads(fused_logprobs_naive, h, w, targets, 0.7, g_lp, g_ent)
    got = _values_and_grads(fused_logprobs, h, w, targets, 0.7, g_lp, g_ent, chunk_rows=256)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-4, atol=1e-4)
    assert_close_to_scale(got[2], expected[2], 2e-2)
    assert_close_to_scale(got[3], expected[3], 2e-2)
    del expected, got

    def peak_bytes(fn, n, **kwargs):  # extra memory of one forward + backward over the first n tokens
        h_n = h[:n].detach().clone().requires_grad_()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _values_and_grads(fn, h_n, w, targets[:n], 0.7, g_lp[:n], g_ent[:n], **kwargs)
        return torch.cuda.max_memory_allocated() - base

    half = n_tokens // 2
    logits_bytes = half * vocab * 4  # what doubling N adds in fp32 logits
    assert peak_bytes(fused_logprobs_naive, n_tokens) - peak_bytes(fused_logprobs_naive, half) > logits_bytes
    fused_growth = peak_bytes(fused_logprobs, n_tokens, chunk_rows=256) - peak_bytes(fused_logprobs, half, chunk_rows=256)
    assert fused_growth < logits_bytes / 10
