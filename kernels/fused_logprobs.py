"""Token log-probabilities and entropy straight from the last hidden states, without [N, V] logits.

PPO needs, for every response token, `log softmax(h W^T / T)[target]` (the ratio and the
KL term) and often the entropy of that distribution (a bonus). Done naively this builds
`[N, V]` fp32 logits: 16k tokens × 152k vocabulary is 10 GB, and autograd keeps a few
more of those for backward. The memory is all in the vocabulary axis, so:

1. **Chunk over tokens.** Take C tokens at a time (C chosen so one chunk fits a memory
   budget). Their logits `[C, V]` come from one matmul — cuBLAS via torch, which no
   hand-written kernel beats on a plain GEMM.
2. **One pass per row, online** (`_chunk_stats_kernel`). A program walks its row in
   BLOCK_V pieces keeping a running max m, `s = Σ e^(z−m)` and `u = Σ e^(z−m)(z−m)`,
   rescaling both when m grows (the online-softmax trick of Milakov & Gimelshein 2018,
   extended by one sum). At the end `lse = m + log s` and the entropy is
   `H = −Σ p log p = log s − u/s`; keeping u relative to the max avoids the cancellation
   of the textbook `lse − Σ p z` when H is small and z is large. The target's logit is one
   extra load. Only `lse` and `H` (two floats per token) are saved for backward.
3. **Backward recomputes, then overwrites** (`_chunk_grad_kernel`). The chunk's logits are
   recomputed with one matmul and the kernel replaces them *in place* by their gradient
       dL/dz_j = g ([j = t] − p_j) − e p_j (log p_j + H),   z = logits / T
   (g and e are the upstream gradients of the log-prob and the entropy), divided by T.
   Two more matmuls give the hidden and weight gradients. (Liger-Kernel's fused linear
   cross-entropy goes further and computes the gradients during the forward pass, because
   a loss's upstream gradient is a known scalar; here each token's g and e come from the
   PPO objective after the forward, so backward must recompute — one extra matmul per
   chunk, 4 instead of the naive 3.)

Peak extra memory is one `[C, V]` chunk in the model dtype plus, when there is more than
one chunk, the weight gradient's fp32 sum (the LM head's size; kept in vocabulary slices,
so it never lives beside a whole `[V, H]` product or the whole 16-bit result) —
independent of N.
The driver loop (the autograd.Function) is shared with the pure-PyTorch CPU path in
`ops_reference.py`; only the two per-chunk steps differ.

Temperature is applied exactly as sampling does: logits are divided by T (IEEE division,
`div_rn`) before the softmax, so the log-probs match those of the sampler.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import use_triton
from .ops_reference import ChunkedLinearLogprobs, check_logprobs_inputs, fused_logprobs_reference, resolve_chunk_rows

_MAX_BLOCK_V = 4096  # 16 logits per thread at 8 warps: a long vectorised stream per row


@triton.jit
def _chunk_stats_kernel(
    logits_ptr, logits_stride_row, targets_ptr, logprobs_ptr, entropy_ptr, lse_ptr,
    vocab, temperature,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * logits_stride_row
    # Running state. m starts at a finite "minus infinity" so that the first rescale
    # (m − m_new) · s is (huge) · 0 = 0 instead of −inf · 0 = NaN.
    m = tl.full((), -1e38, tl.float32)
    s = tl.zeros((), tl.float32)  # Σ e^(z − m)
    u = tl.zeros((), tl.float32)  # Σ e^(z − m) · (z − m)
    for start in range(0, vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < vocab
        z = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        z = tl.math.div_rn(z, temperature)  # [BLOCK_V]
        m_new = tl.maximum(m, tl.max(z, axis=0))
        alpha = tl.exp(m - m_new)  # rescales the old sums to the new max
        shifted = tl.where(mask, z - m_new, 0.0)  # z − m_new, 0 on padding (not −inf)
        e = tl.where(mask, tl.exp(shifted), 0.0)
        # Old terms: e^(z−m)(z−m) becomes α e^(z−m)((z−m) + (m−m_new)).
        u = alpha * (u + (m - m_new) * s) + tl.sum(e * shifted, axis=0)
        s = alpha * s + tl.sum(e, axis=0)
        m = m_new
    log_s = tl.log(s)
    lse = m + log_s
    target = tl.load(targets_ptr + row)
    target_z = tl.math.div_rn(tl.load(row_ptr + target).to(tl.float32), temperature)
    tl.store(logprobs_ptr + row, target_z - lse)
    tl.store(entropy_ptr + row, log_s - u / s)
    tl.store(lse_ptr + row, lse)


@triton.jit
def _chunk_grad_kernel(
    logits_ptr, logits_stride_row, targets_ptr, lse_ptr, entropy_ptr, grad_logprobs_ptr, grad_entropy_ptr,
    vocab, temperature,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * logits_stride_row
    target = tl.load(targets_ptr + row)
    lse = tl.load(lse_ptr + row)
    entropy = tl.load(entropy_ptr + row)
    g = tl.load(grad_logprobs_ptr + row)  # upstream gradient of this token's log-prob
    e = tl.load(grad_entropy_ptr + row)  # upstream gradient of this token's entropy
    for start in range(0, vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < vocab
        z = tl.math.div_rn(tl.load(row_ptr + cols, mask=mask, other=0.0).to(tl.float32), temperature)
        log_p = z - lse
        p = tl.exp(log_p)
        grad = tl.where(cols == target, g, 0.0) - g * p - e * p * (log_p + entropy)  # dL/dz
        grad = tl.math.div_rn(grad, temperature)  # dz/dlogits = 1/T
        tl.store(row_ptr + cols, grad.to(logits_ptr.dtype.element_ty), mask=mask)


def logprobs_launch_settings(vocab: int, block_v: int | None = None) -> dict:
    """Constexprs and launch options of `_chunk_stats_kernel` and `_chunk_grad_kernel`
    (block_v overrides the vocabulary block: tests)."""
    return dict(BLOCK_V=block_v or min(_MAX_BLOCK_V, triton.next_power_of_2(vocab)), num_warps=8)


def chunk_stats_triton(logits, targets, temperature, *, block_v: int | None = None):
    """Triton twin of `chunk_stats_reference`. logits: [C, V] -> fp32 (logprobs, entropy, lse) [C] each."""
    n_rows, vocab = logits.shape
    logprobs, entropy, lse = (torch.empty(n_rows, dtype=torch.float32, device=logits.device) for _ in range(3))
    if n_rows > 0:
        _chunk_stats_kernel[(n_rows,)](
            logits, logits.stride(0), targets, logprobs, entropy, lse, vocab, temperature,
            **logprobs_launch_settings(vocab, block_v),
        )
    return logprobs, entropy, lse


def chunk_grad_triton(logits, targets, temperature, lse, entropy, grad_logprobs, grad_entropy, *, block_v=None):
    """Triton twin of `chunk_grad_reference`: overwrites logits [C, V] with their gradient and returns it."""
    n_rows, vocab = logits.shape
    if n_rows > 0:
        _chunk_grad_kernel[(n_rows,)](
            logits, logits.stride(0), targets, lse, entropy, grad_logprobs.contiguous(), grad_entropy.contiguous(),
            vocab, temperature,
            **logprobs_launch_settings(vocab, block_v),
        )
    return logits


def fused_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    *,
    chunk_rows: int | None = None,
):
    """fp32 (logprobs[N], entropy[N]) of softmax(hidden @ weight.T / temperature).

    hidden: [N, H]; weight: [V, H] (the LM head); targets: int64[N]. Differentiable with
    respect to hidden and weight through both outputs. `chunk_rows` (tokens per chunk)
    defaults to what fits ops_reference.DEFAULT_CHUNK_BUDGET_BYTES. Triton on CUDA, the
    chunked PyTorch path elsewhere (see kernels/dispatch.py).
    """
    if not use_triton(hidden):
        return fused_logprobs_reference(hidden, weight, targets, temperature, chunk_rows=chunk_rows)
    check_logprobs_inputs(hidden, weight, targets, temperature)
    # A chunk is just its model-dtype logits: the kernels work in place.
    chunk_rows = resolve_chunk_rows(chunk_rows, hidden.shape[0], weight.shape[0], hidden.element_size())
    return ChunkedLinearLogprobs.apply(
        hidden, weight, targets.contiguous(), float(temperature), chunk_rows, chunk_stats_triton, chunk_grad_triton
    )
