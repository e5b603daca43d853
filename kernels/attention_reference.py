"""PyTorch references of the paged attention kernels: the oracle and the CPU path.

The KV cache is a pool per layer, `k_pool, v_pool: [num_slots, Hkv, D]`. A sequence is a
list of slots in CSR form: sequence b owns `kv_indices[kv_indptr[b]:kv_indptr[b+1]]`
(page size 1, so two branches of a search tree can share any prefix of slots and fork at
any token). Queries have `Hq` heads, a multiple of `Hkv`; query head h reads KV head
`h // (Hq // Hkv)` (grouped-query attention, GQA).

Everything here is written to be obviously right rather than fast: gather the slots,
group the query heads by KV head, softmax in fp32; extend loops over sequences, decode
pads all sequences to one batch and cascade batches its shared and private parts (both run
once per generated token and layer on a CPU, so they must not be Python loops). The Triton
kernels (decode_attention.py, extend_attention.py, cascade_attention.py) are tested
against these functions, and these functions are tested against torch's dense
`scaled_dot_product_attention` on gathered tensors.

A *partial* attention result is a pair (o, lse): `o` the softmax-weighted average of V over
a subset of the keys and `lse = log(sum(exp(scores)))` over that subset (natural log,
scores already multiplied by sm_scale). Partials over disjoint key sets merge exactly:
`o = sum_i exp(lse_i - lse) * o_i` with `lse = logsumexp_i(lse_i)`. Flash-decoding's
split-KV and the cascade (shared-prefix) kernel both rest on this identity. An empty key
set gives `o = 0, lse = -inf` and drops out of the merge; a query with no keys at all gets
an output of zeros.

The input checks live here too, because they state the contract that both versions of
every kernel share; the public entry points call them once before dispatching.
"""

from __future__ import annotations

import math

import torch

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------- checks


def check_index_tensor(name: str, t: torch.Tensor, device: torch.device) -> None:
    """Index tensors are contiguous 1-D int32 on the same device as the data they index."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.int32:
        raise TypeError(f"{name} must be int32, got {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device} (the device of q)")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (the kernels index it as a flat array)")


def check_kv_pools(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor) -> int:
    """Checks q against the pools and returns the GQA group size Hq // Hkv."""
    if q.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"q must be float32, float16 or bfloat16, got {q.dtype}")
    for name, pool in (("k_pool", k_pool), ("v_pool", v_pool)):
        if pool.dim() != 3:
            raise ValueError(f"{name} must be [num_slots, Hkv, D], got shape {tuple(pool.shape)}")
        if pool.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {pool.dtype}, q has {q.dtype}: they must match")
        if pool.device != q.device:
            raise ValueError(f"{name} is on {pool.device}, q on {q.device}")
        if pool.stride(-1) != 1:
            raise ValueError(f"{name} must be contiguous in its last (head_dim) dimension")
    if k_pool.shape != v_pool.shape:
        raise ValueError(f"k_pool {tuple(k_pool.shape)} and v_pool {tuple(v_pool.shape)} differ")
    num_q_heads, head_dim = q.shape[-2], q.shape[-1]
    num_kv_heads = k_pool.shape[1]
    if k_pool.shape[2] != head_dim:
        raise ValueError(f"k_pool head_dim {k_pool.shape[2]} != q head_dim {head_dim}")
    if num_q_heads % num_kv_heads != 0:
        raise ValueError(
            f"q has {num_q_heads} heads, not a multiple of the {num_kv_heads} KV heads of k_pool"
        )
    if q.stride(-1) != 1:
        raise ValueError("q must be contiguous in its last (head_dim) dimension")
    return num_q_heads // num_kv_heads


def check_csr(name_indptr: str, indptr: torch.Tensor, name_indices: str,
              indices: torch.Tensor, num_rows: int, device: torch.device) -> None:
    """A CSR pair: indptr has num_rows + 1 entries; indices is int32 (values unchecked,
    checking them would need a device-to-host copy on every call)."""
    check_index_tensor(name_indptr, indptr, device)
    check_index_tensor(name_indices, indices, device)
    if indptr.numel() != num_rows + 1:
        raise ValueError(
            f"{name_indptr} must have {num_rows + 1} entries (one per sequence, plus one), "
            f"got {indptr.numel()}"
        )


def check_decode_inputs(q, k_pool, v_pool, kv_indptr, kv_indices) -> int:
    """Checks the arguments of tree_decode_attention; returns the GQA group size."""
    if q.dim() != 3:
        raise ValueError(f"q must be [B, Hq, D] (one new token per sequence), got {tuple(q.shape)}")
    group = check_kv_pools(q, k_pool, v_pool)
    check_csr("kv_indptr", kv_indptr, "kv_indices", kv_indices, q.shape[0], q.device)
    return group


def check_extend_inputs(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices) -> int:
    """Checks the arguments of extend_attention; returns the GQA group size."""
    if q.dim() != 3:
        raise ValueError(f"q must be [Nq, Hq, D] (the new tokens of all sequences), got {tuple(q.shape)}")
    group = check_kv_pools(q, k_pool, v_pool)
    expected = (q.shape[0], k_pool.shape[1], q.shape[2])
    for name, t in (("k", k), ("v", v)):
        if tuple(t.shape) != expected:
            raise ValueError(f"{name} must be [Nq, Hkv, D] = {list(expected)}, got {tuple(t.shape)}")
        if t.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {t.dtype}, q has {q.dtype}: they must match")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, q on {q.device}")
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must be contiguous in its last (head_dim) dimension")
    check_index_tensor("qo_indptr", qo_indptr, q.device)
    num_seqs = qo_indptr.numel() - 1
    if num_seqs < 0:
        raise ValueError("qo_indptr must have at least one entry (B + 1 in all)")
    check_csr("kv_indptr", kv_indptr, "kv_indices", kv_indices, num_seqs, q.device)
    return group


def default_sm_scale(head_dim: int, sm_scale: float | None) -> float:
    return 1.0 / math.sqrt(head_dim) if sm_scale is None else float(sm_scale)


# ------------------------------------------------------------------------ references


def _padded_partial(q, k, v, mask, scale):
    """The one attention computation every reference here is built from: N independent
    problems, each M query rows over L padded keys, GQA as G query heads per KV head.
    q: [N, M, Hkv, G, D]; k, v: [N, L, Hkv, D]; mask: bool [N, M, L] (True = may attend). Returns o: fp32 [N, M, Hkv, G, D] and lse: fp32 [N, M, Hkv, G]
    (-inf, with o = 0, where a row may attend to no key)."""
    scores = torch.einsum("nmhgd,nlhd->nmhgl", q.float(), k.float()) * scale
    scores = scores.masked_fill(~mask[:, :, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - torch.where(torch.isfinite(lse), lse, 0.0)[..., None])
    return torch.einsum("nmhgl,nlhd->nmhgd", probs, v.float()), lse


def attention_partial_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                sm_scale: float, mask: torch.Tensor | None = None):
    """Attention of query rows over one set of keys, as a mergeable partial.

    q: [M, Hq, D]; k, v: [L, Hkv, D]; mask: optional bool [M, L] (True = may attend).
    Returns o: [M, Hq, D] fp32 and lse: [M, Hq] fp32 (natural log). Rows with no key
    to attend to get o = 0 and lse = -inf.
    """
    num_rows, num_q_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    if mask is None:
        mask = torch.ones(num_rows, k.shape[0], dtype=torch.bool, device=q.device)
    qg = q.reshape(1, num_rows, num_kv_heads, num_q_heads // num_kv_heads, head_dim)
    o, lse = _padded_partial(qg, k[None], v[None], mask[None], sm_scale)
    return o.reshape(num_rows, num_q_heads, head_dim), lse.reshape(num_rows, num_q_heads)


def merge_attention_partials_reference(o_part: torch.Tensor, lse_part: torch.Tensor,
                                       part_indptr: torch.Tensor) -> torch.Tensor:
    """Merges partials by log-sum-exp. o_part: [P, Hq, D]; lse_part: [P, Hq] (natural
    log); query b owns partials part_indptr[b]:part_indptr[b+1]. Returns fp32 [B, Hq, D]."""
    num_queries = part_indptr.numel() - 1
    out = torch.zeros(num_queries, *o_part.shape[1:], dtype=torch.float32, device=o_part.device)
    bounds = part_indptr.tolist()
    for b in range(num_queries):
        lse = lse_part[bounds[b]:bounds[b + 1]].float()  # [p, Hq]
        if lse.numel() == 0:
            continue
        total = torch.logsumexp(lse, dim=0)  # [Hq]
        weights = torch.exp(lse - torch.where(torch.isfinite(total), total, 0.0))  # [p, Hq]
        out[b] = (weights[..., None] * o_part[bounds[b]:bounds[b + 1]].float()).sum(0)
    return out


def tree_decode_attention_reference(q, k_pool, v_pool, kv_indptr, kv_indices, sm_scale=None,
                                    *, num_kv_splits=None):
    """One new token per sequence attends to all of its slots (its own included).

    q: [B, Hq, D]; k_pool, v_pool: [num_slots, Hkv, D]; kv_indptr: int32 [B+1];
    kv_indices: int32 [nnz]. Returns o: [B, Hq, D] in q's dtype.
    `num_kv_splits` is accepted for signature parity with the Triton version and ignored.

    All sequences at once, padded to the longest: this is the engine's decode step on a
    CPU, where one batched op per layer beats a Python loop over hundreds of branches.
    """
    check_decode_inputs(q, k_pool, v_pool, kv_indptr, kv_indices)
    scale = default_sm_scale(q.shape[-1], sm_scale)
    num_seqs, num_q_heads, head_dim = q.shape
    num_kv_heads = k_pool.shape[1]
    lengths = (kv_indptr[1:] - kv_indptr[:-1]).long()  # [B]
    longest = int(lengths.max()) if num_seqs else 0
    if longest == 0:
        return torch.zeros_like(q)
    col = torch.arange(longest, device=q.device)
    valid = col[None, :] < lengths[:, None]  # [B, Lmax]
    flat = (kv_indptr[:-1].long()[:, None] + col[None, :]).clamp(max=kv_indices.numel() - 1)
    slots = torch.where(valid, kv_indices.long()[flat], 0)  # padding reads slot 0, masked below
    qg = q.reshape(num_seqs, 1, num_kv_heads, num_q_heads // num_kv_heads, head_dim)  # [B, 1, Hkv, G, D]
    o, _ = _padded_partial(qg, k_pool[slots], v_pool[slots], valid[:, None], scale)  # no keys: zeros
    return o.reshape(num_seqs, num_q_heads, head_dim).to(q.dtype)


def extend_attention_reference(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices,
                               sm_scale=None, *, max_extend_len=None):
    """New tokens of each sequence attend to its cached slots and causally to each other.

    q: [Nq, Hq, D]; k, v: [Nq, Hkv, D] (the new tokens' own K/V, not yet read from the
    pool); sequence b's new tokens are rows qo_indptr[b]:qo_indptr[b+1]; its cached slots
    are kv_indices[kv_indptr[b]:kv_indptr[b+1]] (possibly none). New token i sees every
    cached slot and new tokens 0..i. Returns o: [Nq, Hq, D] in q's dtype.
    `max_extend_len` is accepted for signature parity with the Triton version and ignored.
    """
    check_extend_inputs(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices)
    scale = default_sm_scale(q.shape[-1], sm_scale)
    out = torch.empty_like(q)
    qo, kv = qo_indptr.tolist(), kv_indptr.tolist()
    for b in range(len(qo) - 1):
        rows = slice(qo[b], qo[b + 1])
        slots = kv_indices[kv[b]:kv[b + 1]].long()
        num_new, num_cached = qo[b + 1] - qo[b], slots.numel()
        keys = torch.cat([k_pool[slots], k[rows]])  # [num_cached + num_new, Hkv, D]
        values = torch.cat([v_pool[slots], v[rows]])
        col = torch.arange(num_cached + num_new, device=q.device)
        row = torch.arange(num_new, device=q.device)
        mask = (col[None, :] < num_cached) | (col[None, :] - num_cached <= row[:, None])
        o, _ = attention_partial_reference(q[rows], keys, values, scale, mask)
        out[rows] = o.to(q.dtype)
    return out


def _cascade_reference_plan(meta) -> dict:
    """Index tensors for cascade_decode_attention_reference, built once per decode step
    (host work, O(nodes + path lengths)) and cached on the metadata for every layer.

    A node two or more branches pass through is *shared*; a node with one branch is part
    of that branch's *private* tail (normally just its leaf). Branches that meet at a
    shared node form a component (one search tree, or several under a common prompt).

    shared, per component c, padded:  cols [C, U] (the pool slots of c's shared nodes),
        rows [C, R] (its query rows; padding = B), mask [C, R, U] (row r's path has col u);
    private, per query row, padded:   tail_slots [B, L], tail_valid [B, L].
    """
    plan = meta.plans.get("reference")
    if plan is not None:
        return plan
    kv_ptr, q_ptr = meta.host_kv_indptr.tolist(), meta.host_q_indptr.tolist()
    q_idx = meta.host_q_indices.tolist()
    slots = meta.node_kv_indices.cpu().long()
    num_queries, num_nodes = meta.num_queries, meta.num_nodes
    span = lambda n: slots[kv_ptr[n]:kv_ptr[n + 1]]  # noqa: E731
    queries = lambda n: q_idx[q_ptr[n]:q_ptr[n + 1]]  # noqa: E731

    parent = list(range(num_queries))  # union-find: rows meeting at a shared node

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    shared, private_of = [], [[] for _ in range(num_queries)]
    for n in range(num_nodes):
        rows = queries(n)
        if len(rows) > 1:
            shared.append(n)
            for r in rows[1:]:
                parent[find(r)] = find(rows[0])
        else:
            private_of[rows[0]].append(n)
    nodes_of: dict[int, list[int]] = {}
    for n in shared:
        nodes_of.setdefault(find(queries(n)[0]), []).append(n)
    rows_of: dict[int, list[int]] = {c: [] for c in nodes_of}
    for r in range(num_queries):
        if find(r) in rows_of:
            rows_of[find(r)].append(r)

    comps = list(nodes_of)
    col_slots = [torch.cat([span(n) for n in nodes_of[c]]) for c in comps]
    col_nodes = [torch.cat([torch.full((len(span(n)),), n) for n in nodes_of[c]]) for c in comps]
    width = max((len(c) for c in col_slots), default=0)
    height = max((len(rows_of[c]) for c in comps), default=0)
    cols = torch.zeros(len(comps), width, dtype=torch.long)
    col_node = torch.full((len(comps), width), num_nodes, dtype=torch.long)  # padding: node N
    rows = torch.full((len(comps), height), num_queries, dtype=torch.long)  # padding: row B
    for i, c in enumerate(comps):
        cols[i, :len(col_slots[i])], col_node[i, :len(col_slots[i])] = col_slots[i], col_nodes[i]
        rows[i, :len(rows_of[c])] = torch.tensor(rows_of[c])
    on_path = torch.zeros(num_queries + 1, num_nodes + 1, dtype=torch.bool)  # [B+1, N+1]
    for n in range(num_nodes):
        on_path[queries(n), n] = True
    mask = on_path[rows[:, :, None], col_node[:, None, :]]  # [C, R, U]

    tails = [torch.cat([span(n) for n in private_of[r]]) if private_of[r] else slots[:0]
             for r in range(num_queries)]
    length = max((len(t) for t in tails), default=0)
    tail_slots = torch.zeros(num_queries, length, dtype=torch.long)
    tail_valid = torch.zeros(num_queries, length, dtype=torch.bool)
    for r, t in enumerate(tails):
        tail_slots[r, :len(t)], tail_valid[r, :len(t)] = t, True

    plan = {name: t.to(meta.device) for name, t in (("cols", cols), ("rows", rows), ("mask", mask),
                                                     ("tail_slots", tail_slots), ("tail_valid", tail_valid))}
    meta.plans["reference"] = plan
    return plan


def cascade_decode_attention_reference(q, k_pool, v_pool, meta, sm_scale=None, *,
                                       chunk_tokens=None):
    """Shared-prefix attention in two levels (Hydragen's split), batched.

    q: [B, Hq, D]; meta: a CascadeMetadata (kernels/cascade_metadata.py). Equals
    tree_decode_attention on the branches the metadata describes. `chunk_tokens` is
    ignored (Triton-only knob).

    1. Shared nodes: per component, every query row attends to all of the component's
       shared slots at once, masked to the nodes on its own path: a matrix-matrix product
       in which each shared slot is gathered once, however many branches read it.
    2. Private tails: each row attends to its own slots, padded to the longest tail.
    3. The two partials of each row merge exactly by log-sum-exp.
    """
    check_kv_pools(q, k_pool, v_pool)
    scale = default_sm_scale(q.shape[-1], sm_scale)
    num_seqs, num_q_heads, head_dim = q.shape
    num_kv_heads = k_pool.shape[1]
    plan = _cascade_reference_plan(meta)
    qg = q.view(num_seqs, num_kv_heads, num_q_heads // num_kv_heads, head_dim)  # [B, Hkv, G, D]
    q_pad = torch.cat([qg, qg.new_zeros(1, *qg.shape[1:])])  # row B: padding

    o_shared, lse_shared = _padded_partial(q_pad[plan["rows"]], k_pool[plan["cols"]], v_pool[plan["cols"]],
                                           plan["mask"], scale)  # [C, R, Hkv, G, D], [C, R, Hkv, G]
    o_s = q_pad.new_zeros(num_seqs + 1, *qg.shape[1:], dtype=torch.float32)
    lse_s = torch.full(o_s.shape[:-1], float("-inf"), device=q.device)
    o_s[plan["rows"]], lse_s[plan["rows"]] = o_shared, lse_shared  # padding lands in row B
    o_s, lse_s = o_s[:-1], lse_s[:-1]

    o_t, lse_t = _padded_partial(qg[:, None], k_pool[plan["tail_slots"]], v_pool[plan["tail_slots"]],
                                 plan["tail_valid"][:, None], scale)
    o_t, lse_t = o_t[:, 0], lse_t[:, 0]  # [B, Hkv, G, D], [B, Hkv, G]

    total = torch.logaddexp(lse_s, lse_t)
    total = torch.where(torch.isfinite(total), total, 0.0)  # no keys at all: zeros
    o = torch.exp(lse_s - total)[..., None] * o_s + torch.exp(lse_t - total)[..., None] * o_t
    return o.reshape(num_seqs, num_q_heads, head_dim).to(q.dtype)