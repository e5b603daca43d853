"""PyTorch references for the non-attention kernels: KV store, RMSNorm, RoPE, log-probs.

Each function here has the same signature as the public entry point in its own module
(`store_kv.py`, `rms_norm.py`, `rope.py`, `fused_logprobs.py`) and defines what that
kernel must compute. They are the test oracles and the CPU path, so they are written to be
read, but they are also used for real work on CPU (PPO on a laptop), hence the chunked
log-prob path below instead of only the naive one.

All arithmetic that can lose precision (sums of squares, rotation angles, softmax) is done
in fp32 whatever the input dtype (fp64 inputs stay fp64, which lets gradcheck test the
differentiable references); outputs come back in the input's dtype.
"""

from __future__ import annotations

import torch


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


# --------------------------------------------------------------------------- KV store


def check_store_kv_inputs(k_pool, v_pool, slots, k, v) -> None:
    if k_pool.dim() != 3 or v_pool.shape != k_pool.shape:
        raise ValueError(
            f"k_pool and v_pool must both be [num_slots, Hkv, D], got {tuple(k_pool.shape)} and {tuple(v_pool.shape)}"
        )
    if slots.dim() != 1 or slots.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"slots must be int32/int64 [N], got {slots.dtype} {tuple(slots.shape)}")
    expected = (slots.shape[0], *k_pool.shape[1:])
    for name, t in (("k", k), ("v", v)):
        if tuple(t.shape) != expected:
            raise ValueError(f"{name} must be [N, Hkv, D] = {expected} to match slots and the pool, got {tuple(t.shape)}")


def store_kv_reference(k_pool, v_pool, slots, k, v) -> None:
    """Writes token i's key and value into pool row `slots[i]`, in place.

    k_pool, v_pool: [num_slots, Hkv, D]; slots: int[N]; k, v: [N, Hkv, D] (any float dtype,
    cast to the pool's). Slots must be distinct (a slot holds one token).
    """
    check_store_kv_inputs(k_pool, v_pool, slots, k, v)
    slots = slots.long()
    k_pool[slots] = k.to(k_pool.dtype)
    v_pool[slots] = v.to(v_pool.dtype)


# --------------------------------------------------------------------------- RMSNorm


def check_rms_norm_inputs(x, weight) -> None:
    if weight.dim() != 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"weight must be [H] with H = x.shape[-1] = {x.shape[-1]}, got {tuple(weight.shape)}")


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Root-mean-square norm (Zhang & Sennrich, 2019), exactly as Hugging Face's LlamaRMSNorm.

    x: [..., H]; weight: [H]. The statistic is taken in fp32 and the normalised x is cast
    back to x's dtype *before* the weight multiply (Hugging Face's order, so bf16 models
    round identically); the result is returned in x's dtype. Differentiable.
    """
    check_rms_norm_inputs(x, weight)
    x32 = _at_least_fp32(x)
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * normed.to(x.dtype)).to(x.dtype)


# --------------------------------------------------------------------------- RoPE


def check_rope_inputs(q, k, positions, inv_freq) -> None:
    if q.dim() != 3 or k.dim() != 3:
        raise ValueError(f"q must be [N, Hq, D] and k [N, Hkv, D], got {tuple(q.shape)} and {tuple(k.shape)}")
    n_tokens, head_dim = q.shape[0], q.shape[2]
    if k.shape[0] != n_tokens or k.shape[2] != head_dim:
        raise ValueError(f"k {tuple(k.shape)} must have q's token count and head_dim ({n_tokens}, {head_dim})")
    if positions.shape != (n_tokens,) or positions.is_floating_point():
        raise ValueError(f"positions must be an integer tensor [N={n_tokens}], got {positions.dtype} {tuple(positions.shape)}")
    if head_dim % 2 or inv_freq.shape != (head_dim // 2,):
        raise ValueError(f"inv_freq must be [D/2] = [{head_dim // 2}] for an even head_dim, got {tuple(inv_freq.shape)}")


def apply_rope_reference(q, k, positions, inv_freq):
    """Rotary position embedding (Su et al., 2021), Hugging Face's "rotate_half" layout.

    q: [N, Hq, D]; k: [N, Hkv, D]; positions: int[N] (any position per token, e.g. tree
    branches at different depths); inv_freq: fp32[D/2]. Channel i and channel i + D/2 form
    a pair rotated by the angle positions[n] * inv_freq[i]:

        out[i]       = x[i] cos - x[i + D/2] sin
        out[i + D/2] = x[i + D/2] cos + x[i] sin

    Angles, cos/sin and the rotation are fp32 (bf16 angles are off by whole radians at
    position ~1000); the result is rounded once to the input dtype. Hugging Face rounds
    cos/sin and each product to the model dtype instead, so bf16 outputs may differ from
    it by an ulp. Out of place; differentiable.
    """
    check_rope_inputs(q, k, positions, inv_freq)
    angles = positions.float()[:, None] * inv_freq.float().to(positions.device)[None, :]  # [N, D/2]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # [N, 1, D/2]: shared by all heads

    def rotate(x):
        x1, x2 = _at_least_fp32(x).chunk(2, dim=-1)  # [N, H, D/2] each
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    return rotate(q), rotate(k)


# --------------------------------------------------------------------------- log-probs


def check_logprobs_inputs(hidden, weight, targets, temperature) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden must be [N, H] and weight [V, H], got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must have the same dtype")
    if targets.shape != (hidden.shape[0],) or targets.dtype != torch.int64:
        raise ValueError(f"targets must be int64 [N={hidden.shape[0]}], got {targets.dtype} {tuple(targets.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # One host sync per call: a target outside the vocabulary would otherwise read another row's memory.
    if targets.numel() and (targets.min() < 0 or targets.max() >= weight.shape[0]):
        raise ValueError(f"targets must lie in [0, V={weight.shape[0]}), got values in [{targets.min()}, {targets.max()}]")


def fused_logprobs_naive(hidden, weight, targets, temperature: float = 1.0):
    """The oracle: materialises all [N, V] fp32 logits and lets autograd do the rest.

    hidden: [N, H]; weight: [V, H]; targets: int64[N]. Returns fp32 (logprobs[N], entropy[N])
    of softmax(hidden @ weight.T / temperature). Memory O(N·V): tests and benchmarks only.
    """
    check_logprobs_inputs(hidden, weight, targets, temperature)
    logits = (hidden @ weight.T).float() / temperature  # [N, V]: the LM head in the model dtype, then fp32
    log_p = torch.log_softmax(logits, dim=-1)
    logprobs = log_p.gather(1, targets[:, None]).squeeze(1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return logprobs, entropy


# The chunked path. Autograd through a loop of chunks would still keep every chunk's
# softmax alive until backward (O(N·V) again), so a custom autograd.Function keeps only
# the per-token log-sum-exp and entropy, and recomputes each chunk's logits in backward
# (one extra matmul per chunk buys memory independent of N). The two per-chunk steps are
# small functions so the Triton version (fused_logprobs.py) can swap in its kernels.


def chunk_stats_reference(logits, targets, temperature):
    """One chunk's forward. logits: [C, V] (model dtype); targets: int64[C].

    Returns fp32 (logprobs[C], entropy[C], lse[C]) of softmax(logits / temperature).
    """
    z = logits.float() / temperature  # [C, V]
    lse = torch.logsumexp(z, dim=-1)  # [C]
    log_p = z.sub_(lse[:, None])  # in place: z is ours
    logprobs = log_p.gather(1, targets[:, None]).squeeze(1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return logprobs, entropy, lse


def chunk_grad_reference(logits, targets, temperature, lse, entropy, grad_logprobs, grad_entropy):
    """One chunk's backward: d(loss)/d(logits) for the chunk, in the logits' dtype.

    With z = logits / T, p = softmax(z), H = -sum p log p and upstream gradients g (for
    logprob[target]) and e (for entropy):
        d logp_t / dz_j = [j = t] - p_j
        d H / dz_j      = -p_j (log p_j + H)
    so dL/dlogits_j = (g ([j = t] - p_j) - e p_j (log p_j + H)) / T.
    logits: [C, V]; targets: int64[C]; lse, entropy, grad_*: fp32[C].
    """
    log_p = logits.float() / temperature - lse[:, None]  # [C, V]
    p = log_p.exp()
    grad = log_p.add_(entropy[:, None]).mul_(p).mul_(-grad_entropy[:, None])  # entropy term (reuses log_p)
    grad.sub_(p.mul_(grad_logprobs[:, None]))  # softmax part of the log-prob term
    grad.scatter_add_(1, targets[:, None], grad_logprobs[:, None])  # the one-hot part
    return grad.div_(temperature).to(logits.dtype)


# Bytes live per logit in one chunk of the reference path: the model-dtype logits plus
# about three fp32 [C, V] temporaries (log p, p, and one for exp/products).
_REFERENCE_BYTES_PER_LOGIT = 12
DEFAULT_CHUNK_BUDGET_BYTES = 256 * 2**20


def resolve_chunk_rows(chunk_rows: int | None, n_tokens: int, vocab: int, bytes_per_logit: int) -> int:
    """Tokens per chunk: as given, or as many as keep one chunk's logits and temporaries
    (bytes_per_logit each) under DEFAULT_CHUNK_BUDGET_BYTES."""
    if chunk_rows is None:
        return max(1, min(n_tokens, DEFAULT_CHUNK_BUDGET_BYTES // (vocab * bytes_per_logit)))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return chunk_rows


WEIGHT_GRAD_SLICES = 8  # vocabulary slices of the weight gradient's fp32 sum (see backward)


def _vocab_slices(vocab: int) -> list[slice]:
    step = -(-vocab // WEIGHT_GRAD_SLICES)
    return [slice(start, min(start + step, vocab)) for start in range(0, vocab, step)]


class ChunkedLinearLogprobs(torch.autograd.Function):
    """logprobs and entropy of softmax(hidden @ weight.T / T), chunk by chunk over tokens.

    Forward keeps hidden, weight, targets and two fp32 numbers per token (lse, entropy);
    backward recomputes each chunk's logits with one matmul, turns them into their gradient
    (`chunk_grad`), and spends two more matmuls on the hidden and weight gradients. The
    largest temporary is one chunk: [chunk_rows, V], never [N, V].
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk_rows, chunk_stats, chunk_grad):
        n_tokens = hidden.shape[0]
        logprobs, entropy, lse = (hidden.new_empty(n_tokens, dtype=torch.float32) for _ in range(3))
        for start in range(0, n_tokens, chunk_rows):
            rows = slice(start, start + chunk_rows)
            logits = hidden[rows] @ weight.T  # [C, V] in the model dtype, like the LM head
            logprobs[rows], entropy[rows], lse[rows] = chunk_stats(logits, targets[rows], temperature)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.temperature, ctx.chunk_rows, ctx.chunk_grad = temperature, chunk_rows, chunk_grad
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = hidden.new_empty(hidden.shape) if want_hidden else None
        grad_logprobs, grad_entropy = grad_logprobs.float(), grad_entropy.float()
        chunks = [slice(start, start + ctx.chunk_rows) for start in range(0, hidden.shape[0], ctx.chunk_rows)]
        # The weight gradient sums one [V, H] product per chunk. Summing in the model dtype
        # would round the running sum once per chunk, so several chunks sum in fp32 -- in
        # vocabulary slices, each product written straight into its slice's sum and each
        # sum cast on its own at the end: the fp32 sums never live beside a whole [V, H]
        # product or the whole result (bf16, V 152k x H 3584: 2.0 GiB of sums, where a
        # whole fp32 sum beside a bf16 product and the bf16 result would be 4.1 GiB).
        vocab_slices = _vocab_slices(weight.shape[0]) if want_weight and len(chunks) > 1 else None
        sums, grad_weight = None, None
        if vocab_slices and weight.dtype == torch.float32:  # the sum is the result: views of it
            grad_weight = weight.new_zeros(weight.shape)
            sums = [grad_weight[vs] for vs in vocab_slices]
        elif vocab_slices:
            sums = [weight.new_zeros(vs.stop - vs.start, weight.shape[1], dtype=torch.float32) for vs in vocab_slices]
        for rows in chunks:
            logits = hidden[rows] @ weight.T  # [C, V]: recomputed, not saved
            grad_logits = ctx.chunk_grad(
                logits, targets[rows], ctx.temperature, lse[rows], entropy[rows], grad_logprobs[rows], grad_entropy[rows]
            )
            if want_hidden:
                torch.mm(grad_logits, weight, out=grad_hidden[rows])  # [C, H]
            if want_weight and sums is None:
                grad_weight = grad_logits.T @ hidden[rows]  # [V, H]: the one chunk's product is the sum
            elif want_weight:
                for part, vs in zip(sums, vocab_slices):
                    part.add_(grad_logits[:, vs].T @ hidden[rows])  # [V/S, H], model dtype, summed in fp32
            del logits, grad_logits
        if sums is not None and weight.dtype != torch.float32:
            parts = []
            while sums:  # cast slice by slice, dropping each fp32 sum as soon as it is cast
                parts.append(sums.pop(0).to(weight.dtype))
            grad_weight = torch.cat(parts)
        return grad_hidden, grad_weight, None, None, None, None, None


def fused_logprobs_reference(hidden, weight, targets, temperature: float = 1.0, *, chunk_rows: int | None = None):
    """Chunked log-probs and entropy in plain PyTorch: the CPU path. Same results as
    `fused_logprobs_naive`; peak memory O(chunk_rows·V) instead of O(N·V)."""
    check_logprobs_inputs(hidden, weight, targets, temperature)
    chunk_rows = resolve_chunk_rows(
        chunk_rows, hidden.shape[0], weight.shape[0], hidden.element_size() + _REFERENCE_BYTES_PER_LOGIT
    )
    return ChunkedLinearLogprobs.apply(
        hidden, weight, targets, float(temperature), chunk_rows, chunk_stats_reference, chunk_grad_reference
    )
