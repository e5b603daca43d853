"""Attention kernels: Triton vs the PyTorch references, and the references vs dense SDPA.

On CPU the Triton kernels run in Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so shapes are tiny; the `gpu` tests repeat the checks at real
sizes. Every tensor a kernel allocates is poisoned with NaN (see `poisoned_allocations`),
so a single element that is read before it is written, or never written, fails a test.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from kernels import attention_reference as ref
from kernels.cascade_attention import (
    cascade_decode_attention,
    cascade_decode_attention_triton,
    plan_cascade,
    queries_per_tile,
)
from kernels.cascade_metadata import (
    build_cascade_metadata,
    cascade_metadata_from_branches,
    split_branches_into_nodes,
)
from kernels.decode_attention import (
    kv_block_size,
    merge_attention_partials,
    tree_decode_attention,
    tree_decode_attention_triton,
)
from kernels.extend_attention import extend_attention, extend_attention_triton

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BLOCK = kv_block_size(64, DEVICE)  # the same for head_dim 64 and 128

# Tolerances that fit each dtype: fp32 is computed exactly (ieee dots); 16-bit outputs
# differ from the rounded fp32 reference by an ulp or so (interpreter: a truncation).
TOLERANCES = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=1e-3, rtol=1e-3),
    torch.bfloat16: dict(atol=1e-2, rtol=1e-2),
}
# On a GPU 16-bit inputs stay 16-bit in the tensor cores (probabilities rounded before
# the P @ V product), and real sizes sum thousands of terms.
GPU_TOLERANCES = {
    torch.float32: dict(atol=1e-4, rtol=1e-4),
    torch.float16: dict(atol=3e-3, rtol=3e-3),
    torch.bfloat16: dict(atol=3e-2, rtol=3e-2),
}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DTYPE_IDS = ["fp32", "fp16", "bf16"]
# (GQA group size, head_dim): ratios 1/4/8, head dims 64 and 128.
HEAD_CONFIGS = [(1, 64), (4, 128), (8, 64)]


def assert_close(actual, expected, dtype, what, tolerances=TOLERANCES):
    err = (actual.float() - expected.float()).abs().max().item() if actual.numel() else 0.0
    print(f"\n[max abs err] {what} {str(dtype).removeprefix('torch.')}: {err:.3g}")
    assert not torch.isnan(actual).any(), f"{what}: NaN in the output (an unwritten element?)"
    torch.testing.assert_close(actual.float(), expected.float(), **tolerances[dtype])


@pytest.fixture
def poisoned_allocations(monkeypatch):
    """torch.empty / torch.empty_like return NaN-filled float tensors while the test runs."""
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def poison(t):
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poison(real_empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: poison(real_empty_like(*a, **k)))


# ------------------------------------------------------------------------ inputs


def make_pools(num_slots, num_kv_heads, head_dim, dtype, gen, device=DEVICE):
    shape = (num_slots, num_kv_heads, head_dim)
    k_pool = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    v_pool = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    return k_pool, v_pool


def csr(lists, device=DEVICE):
    """(indptr, indices) int32 from a list of int lists."""
    lengths = torch.tensor([0] + [len(x) for x in lists])
    indices = torch.tensor([s for x in lists for s in x], dtype=torch.int32)
    return lengths.cumsum(0).to(device=device, dtype=torch.int32), indices.to(device)


def random_slot_lists(lengths, num_slots, gen):
    """One list of distinct random slots per length; different lists may share slots."""
    return [torch.randperm(num_slots, generator=gen)[:n].tolist() for n in lengths]


def random_branches(num_branches, num_slots, rng, max_new=20, p_fork=0.8):
    """Branches as slot lists: each one copies a random prefix (cut at any token) of an
    earlier branch, then appends fresh slots, like a search tree growing."""
    free = list(range(num_slots))
    rng.shuffle(free)
    branches = []
    for _ in range(num_branches):
        prefix = []
        if branches and rng.random() < p_fork:
            parent = rng.choice(branches)
            prefix = parent[:rng.randint(0, len(parent))]
        branches.append(prefix + [free.pop() for _ in range(rng.randint(1, max_new))])
    return branches


def shared_prefix_branches(num_branches, prefix_len, private_lens, num_slots, gen):
    """num_branches branches = one shared prefix + a private tail each."""
    order = torch.randperm(num_slots, generator=gen).tolist()
    prefix, pos, branches = order[:prefix_len], prefix_len, []
    for b in range(num_branches):
        n = private_lens[b % len(private_lens)]
        branches.append(prefix + order[pos:pos + n])
        pos += n
    return branches


# ---------------------------------------------------------- the oracle vs dense SDPA


def dense_attention(q, k, v, mask=None):
    """q: [M, Hq, D]; k, v: [L, Hkv, D]; mask: bool [M, L]. torch SDPA, fp32."""
    group = q.shape[1] // k.shape[1]
    qh = q.float().transpose(0, 1)                                  # [Hq, M, D]
    kh = k.float().repeat_interleave(group, 1).transpose(0, 1)      # [Hq, L, D]
    vh = v.float().repeat_interleave(group, 1).transpose(0, 1)
    return F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask).transpose(0, 1)


@pytest.mark.parametrize("group,head_dim", HEAD_CONFIGS)
def test_decode_reference_matches_dense_sdpa(group, head_dim):
    gen = torch.Generator().manual_seed(1)
    k_pool, v_pool = make_pools(64, 2, head_dim, torch.float32, gen)
    lists = random_slot_lists([1, 7, 33], 64, gen)
    indptr, indices = csr(lists)
    q = torch.randn(3, 2 * group, head_dim, generator=gen).to(DEVICE)
    out = ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices)
    for b, slots in enumerate(lists):
        s = torch.tensor(slots, device=DEVICE)
        expected = dense_attention(q[b:b + 1], k_pool[s], v_pool[s])[0]
        assert_close(out[b], expected, torch.float32, "decode reference vs SDPA")


@pytest.mark.parametrize("group,head_dim", HEAD_CONFIGS)
def test_extend_reference_matches_dense_sdpa(group, head_dim):
    gen = torch.Generator().manual_seed(2)
    num_new, num_cached = [3, 1, 6], [5, 0, 2]
    k_pool, v_pool = make_pools(32, 2, head_dim, torch.float32, gen)
    cached = random_slot_lists(num_cached, 32, gen)
    kv_indptr, kv_indices = csr(cached)
    qo_indptr = torch.tensor([0, 3, 4, 10], dtype=torch.int32, device=DEVICE)
    q = torch.randn(10, 2 * group, head_dim, generator=gen).to(DEVICE)
    k = torch.randn(10, 2, head_dim, generator=gen).to(DEVICE)
    v = torch.randn(10, 2, head_dim, generator=gen).to(DEVICE)
    out = ref.extend_attention_reference(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices)
    start = 0
    for b, n in enumerate(num_new):
        s = torch.tensor(cached[b], dtype=torch.long, device=DEVICE)
        rows = slice(start, start + n)
        keys, values = torch.cat([k_pool[s], k[rows]]), torch.cat([v_pool[s], v[rows]])
        # Token i of the chunk sits at position num_cached + i: a causal mask, shifted.
        mask = torch.ones(n, num_cached[b] + n, dtype=torch.bool, device=DEVICE).tril(num_cached[b])
        assert_close(out[rows], dense_attention(q[rows], keys, values, mask), torch.float32,
                     "extend reference vs SDPA")
        start += n


def _two_trees(gen):
    """Two separate trees (two problems, no common prompt), three branches each."""
    a = shared_prefix_branches(3, 40, [1, 7, 16], 300, gen)
    taken = {s for b in a for s in b}
    rest = [s for s in range(300) if s not in taken]
    b = [rest[:25] + rest[25 + 10 * i:25 + 10 * i + 1 + 3 * i] for i in range(3)]
    return a + b


CASCADE_REFERENCE_CASES = {
    "random tree": lambda gen: random_branches(9, 300, random.Random(3)),
    "one branch": lambda gen: [[5, 9, 2]],
    "one token each, no sharing": lambda gen: [[1], [2], [3]],
    "many branches, one prefix": lambda gen: shared_prefix_branches(24, 64, [1, 2, 33], 300, gen),
    "prefix only, no tails": lambda gen: [[4, 5, 6]] * 3,
    "two separate trees": _two_trees,
}


@pytest.mark.parametrize("case", CASCADE_REFERENCE_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cascade_reference_matches_decode_reference(case, dtype):
    """The batched two-level reference (shared part per component, private tails, LSE
    merge) against the flat decode reference on the same branches."""
    gen = torch.Generator().manual_seed(3)
    k_pool, v_pool = make_pools(300, 2, 64, dtype, gen)
    branches = CASCADE_REFERENCE_CASES[case](gen)
    meta = cascade_metadata_from_branches(branches, DEVICE)
    q = torch.randn(len(branches), 8, 64, generator=gen).to(DEVICE, dtype)
    indptr, indices = meta.branch_kv_lists()
    expected = ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices)
    out = ref.cascade_decode_attention_reference(q, k_pool, v_pool, meta)
    assert out.dtype == dtype
    assert_close(out, expected, dtype, f"cascade reference vs decode reference ({case})")
    # The plan is cached on the metadata: a second layer's call reuses it.
    assert "reference" in meta.plans
    assert_close(ref.cascade_decode_attention_reference(q, k_pool, v_pool, meta), out, dtype, "cached plan")


def test_cascade_reference_gives_zeros_to_a_branch_with_no_kv():
    gen = torch.Generator().manual_seed(5)
    k_pool, v_pool = make_pools(50, 2, 16, torch.float32, gen)
    meta = build_cascade_metadata([[0], [0, 1], []], [[3, 4], [7]], DEVICE)
    q = torch.randn(3, 4, 16, generator=gen).to(DEVICE)
    out = ref.cascade_decode_attention_reference(q, k_pool, v_pool, meta)
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    indptr, indices = meta.branch_kv_lists()
    assert_close(out, ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices), torch.float32,
                 "with an empty branch")


def test_partial_reference_merges_exactly():
    """Attention over a key set = the LSE merge of attention over its two halves."""
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 4, 16, generator=gen) for _ in range(3))
    o_all, lse_all = ref.attention_partial_reference(q, k, v, 0.25)
    o1, lse1 = ref.attention_partial_reference(q, k[:1], v[:1], 0.25)
    o2, lse2 = ref.attention_partial_reference(q, k[1:], v[1:], 0.25)
    merged = ref.merge_attention_partials_reference(
        torch.stack([o1[0], o2[0], o1[1], o2[1]]), torch.stack([lse1[0], lse2[0], lse1[1], lse2[1]]),
        torch.tensor([0, 2, 4]))
    assert_close(merged, o_all, torch.float32, "two-half merge")
    assert_close(torch.logaddexp(lse1, lse2), lse_all, torch.float32, "two-half lse")


# ------------------------------------------------------------------ Triton: merge


def test_merge_kernel_matches_reference(poisoned_allocations):
    gen = torch.Generator().manual_seed(5)
    counts = [1, 0, 3, 20, 2]  # a query with no partial; one with more than BLOCK_P
    indptr = torch.tensor([0] + counts).cumsum(0).to(torch.int32)
    o_part = torch.randn(sum(counts), 3, 32, generator=gen)
    lse_part = torch.randn(sum(counts), 3, generator=gen) * 5
    lse_part[indptr[4]] = float("-inf")          # an empty split: drops out
    lse_part[indptr[0], :] = float("-inf")       # a query all of whose partials are empty
    out = torch.empty(len(counts), 3, 32, device=DEVICE)  # NaN: poisoned
    merge_attention_partials(o_part.to(DEVICE), lse_part.to(DEVICE), indptr.to(DEVICE), out)
    expected = ref.merge_attention_partials_reference(o_part, lse_part, indptr)
    assert torch.equal(expected[0], torch.zeros_like(expected[0]))
    assert_close(out.cpu(), expected, torch.float32, "merge kernel")


# ----------------------------------------------------------------- Triton: decode


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("group,head_dim", HEAD_CONFIGS)
def test_decode_triton_matches_reference(poisoned_allocations, dtype, group, head_dim):
    gen = torch.Generator().manual_seed(10 + group + head_dim)
    num_kv_heads = 2 if group < 8 else 1
    lengths = [1, BLOCK, BLOCK + 1, 3 * BLOCK + 5, 0]  # ragged, 1, block edges, empty
    k_pool, v_pool = make_pools(4 * BLOCK, num_kv_heads, head_dim, dtype, gen)
    indptr, indices = csr(random_slot_lists(lengths, 4 * BLOCK, gen))
    q = torch.randn(len(lengths), num_kv_heads * group, head_dim, generator=gen).to(DEVICE, dtype)
    expected = ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices)
    assert torch.equal(expected[-1], torch.zeros_like(expected[-1]))  # no slots: zeros
    for splits in (1, 3):  # 3 pieces of a 3-block list: a split per block, some empty
        out = tree_decode_attention_triton(q, k_pool, v_pool, indptr, indices,
                                           num_kv_splits=splits)
        assert_close(out, expected, dtype, f"decode G={group} D={head_dim} splits={splits}")


def test_decode_branches_sharing_one_prefix(poisoned_allocations, monkeypatch):
    """The public entry point (forced to Triton) on 12 branches of one tree."""
    monkeypatch.setenv("RFTT_KERNELS", "triton")
    gen = torch.Generator().manual_seed(11)
    k_pool, v_pool = make_pools(200, 2, 64, torch.float16, gen)
    branches = shared_prefix_branches(12, 2 * BLOCK + 3, [1, 5, BLOCK], 200, gen)
    indptr, indices = csr(branches)
    q = torch.randn(12, 8, 64, generator=gen).to(DEVICE, torch.float16)
    out = tree_decode_attention(q, k_pool, v_pool, indptr, indices, sm_scale=0.2)
    expected = ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices, 0.2)
    assert_close(out, expected, torch.float16, "decode 12 branches, shared prefix")


# ----------------------------------------------------------------- Triton: extend


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("group,head_dim", HEAD_CONFIGS)
def test_extend_triton_matches_reference(poisoned_allocations, dtype, group, head_dim):
    gen = torch.Generator().manual_seed(20 + group + head_dim)
    num_kv_heads = 2 if group < 8 else 1
    # New tokens: 1, a block, a block + 1 (two query blocks), none; cached: none, a
    # block + 1, some, some.
    num_new, num_cached = [1, BLOCK, BLOCK + 1, 0], [0, BLOCK + 1, 5, 3]
    k_pool, v_pool = make_pools(4 * BLOCK, num_kv_heads, head_dim, dtype, gen)
    kv_indptr, kv_indices = csr(random_slot_lists(num_cached, 4 * BLOCK, gen))
    qo_indptr = torch.tensor([0] + num_new).cumsum(0).to(DEVICE, torch.int32)
    total = sum(num_new)
    q = torch.randn(total, num_kv_heads * group, head_dim, generator=gen).to(DEVICE, dtype)
    k = torch.randn(total, num_kv_heads, head_dim, generator=gen).to(DEVICE, dtype)
    v = torch.randn(total, num_kv_heads, head_dim, generator=gen).to(DEVICE, dtype)
    out = extend_attention_triton(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices)
    expected = ref.extend_attention_reference(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr,
                                              kv_indices)
    assert_close(out, expected, dtype, f"extend G={group} D={head_dim}")


# ---------------------------------------------------------------- Triton: cascade


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("group,head_dim", HEAD_CONFIGS)
def test_cascade_triton_matches_tree_decode(poisoned_allocations, dtype, group, head_dim):
    gen, rng = torch.Generator().manual_seed(30 + group), random.Random(30 + head_dim)
    num_kv_heads = 2 if group < 8 else 1
    k_pool, v_pool = make_pools(400, num_kv_heads, head_dim, dtype, gen)
    branches = random_branches(10, 400, rng, max_new=BLOCK + 4)
    meta = cascade_metadata_from_branches(branches, DEVICE)
    indptr, indices = csr(branches)
    q = torch.randn(10, num_kv_heads * group, head_dim, generator=gen).to(DEVICE, dtype)
    expected = ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices)
    # chunk_tokens=BLOCK cuts every node longer than a block into several partials.
    for chunk_tokens in (None, BLOCK):
        out = cascade_decode_attention_triton(q, k_pool, v_pool, meta, chunk_tokens=chunk_tokens)
        assert_close(out, expected, dtype, f"cascade G={group} D={head_dim} chunk={chunk_tokens}")


def test_cascade_many_branches_one_prefix(poisoned_allocations, monkeypatch):
    """20 branches under one root: several query tiles per node (G=8 -> 8 queries a tile),
    the root cut into chunks, private tails of 1 token and of a block + 1."""
    monkeypatch.setenv("RFTT_KERNELS", "triton")
    gen = torch.Generator().manual_seed(40)
    k_pool, v_pool = make_pools(300, 1, 64, torch.bfloat16, gen)
    branches = shared_prefix_branches(20, 3 * BLOCK + 1, [1, BLOCK + 1, 2], 300, gen)
    meta = cascade_metadata_from_branches(branches, DEVICE)
    assert meta.num_nodes == 21 and queries_per_tile(8)[0] == 8
    plan = plan_cascade(meta, 8, 1, chunk_tokens=2 * BLOCK)
    assert plan.items.shape[0] == 2 * 3 + 20  # root: 2 chunks x 3 query tiles; tails: 1 each
    q = torch.randn(20, 8, 64, generator=gen).to(DEVICE, torch.bfloat16)
    indptr, indices = csr(branches)
    out = cascade_decode_attention(q, k_pool, v_pool, meta, chunk_tokens=2 * BLOCK)
    expected = tree_decode_attention(q, k_pool, v_pool, indptr, indices)  # Triton too
    assert_close(out, expected, torch.bfloat16, "cascade 20 branches vs Triton decode")


def test_cascade_single_branch_is_decode(poisoned_allocations):
    gen = torch.Generator().manual_seed(41)
    k_pool, v_pool = make_pools(100, 2, 128, torch.float32, gen)
    slots = torch.randperm(100, generator=gen)[:2 * BLOCK + 1].tolist()
    meta = cascade_metadata_from_branches([slots], DEVICE)
    q = torch.randn(1, 4, 128, generator=gen).to(DEVICE)
    out = cascade_decode_attention_triton(q, k_pool, v_pool, meta, chunk_tokens=BLOCK)
    expected = ref.tree_decode_attention_reference(q, k_pool, v_pool, *csr([slots]))
    assert_close(out, expected, torch.float32, "cascade, one branch")


# ------------------------------------------------------------- cascade metadata


def test_split_branches_into_nodes_finds_the_tree():
    branches = [[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 7], [1, 2, 3], [9]]
    branch_nodes, node_slots = split_branches_into_nodes(branches)
    paths = [[node_slots[n] for n in path] for path in branch_nodes]
    assert paths[0] == [[1, 2], [3], [4]]
    assert paths[1] == [[1, 2], [3], [5, 6]]
    assert paths[2] == [[1, 2], [7]]
    assert paths[3] == [[1, 2], [3]]  # a prefix of other branches ends at a shared node
    assert paths[4] == [[9]]
    assert sorted(map(tuple, node_slots)) == [(1, 2), (3,), (4,), (5, 6), (7,), (9,)]


def test_build_cascade_metadata_layout():
    # Node 0 root, 1 and 2 children, 3 unused, 4 empty.
    meta = build_cascade_metadata([[0, 1, 4], [0, 2], [0, 1]],
                                  [[10, 11], torch.tensor([12]), [13, 14], [15], []], DEVICE)
    assert meta.num_queries == 3 and meta.num_nodes == 3
    assert meta.node_kv_indptr.tolist() == [0, 2, 3, 5]
    assert meta.node_kv_indices.tolist() == [10, 11, 12, 13, 14]
    assert meta.node_q_indptr.tolist() == [0, 3, 5, 6]
    assert meta.node_q_indices.tolist() == [0, 1, 2, 0, 2, 1]
    indptr, indices = meta.branch_kv_lists()
    assert indptr.tolist() == [0, 3, 7, 10]
    assert indices.tolist() == [10, 11, 12, 10, 11, 13, 14, 10, 11, 12]
    plan = plan_cascade(meta, group=1, num_kv_heads=1, chunk_tokens=1)
    # Query-major partial rows: query 0 has 2 + 1, query 1 has 2 + 2, query 2 has 2 + 1.
    assert plan.query_part_indptr.tolist() == [0, 3, 7, 10]
    assert plan.pair_part_start.tolist() == [0, 3, 7, 2, 9, 5]


def test_build_cascade_metadata_rejects_bad_trees():
    with pytest.raises(ValueError, match=r"branch_nodes\[0\] names node 2"):
        build_cascade_metadata([[0, 2]], [[1], [2]], DEVICE)
    with pytest.raises(ValueError, match=r"branch_nodes\[1\] visits node 0 twice"):
        build_cascade_metadata([[0], [0, 1, 0]], [[1], [2]], DEVICE)
    with pytest.raises(TypeError, match=r"node_slots\[1\]"):
        build_cascade_metadata([[0, 1]], [[1], torch.tensor([2.0])], DEVICE)


# ------------------------------------------------------------------ input checks


def test_bad_inputs_name_the_argument():
    q = torch.randn(2, 4, 16)
    k_pool = v_pool = torch.randn(10, 2, 16)
    indptr = torch.tensor([0, 1, 2], dtype=torch.int32)
    indices = torch.tensor([3, 4], dtype=torch.int32)
    with pytest.raises(TypeError, match="kv_indptr must be int32"):
        tree_decode_attention(q, k_pool, v_pool, indptr.long(), indices)
    with pytest.raises(TypeError, match="kv_indices must be int32"):
        tree_decode_attention(q, k_pool, v_pool, indptr, indices.long())
    with pytest.raises(ValueError, match="kv_indices must be contiguous"):
        tree_decode_attention(q, k_pool, v_pool, indptr, torch.arange(4, dtype=torch.int32)[::2])
    with pytest.raises(ValueError, match="kv_indptr must have 3 entries"):
        tree_decode_attention(q, k_pool, v_pool, indptr[:2], indices)
    with pytest.raises(ValueError, match="not a multiple of the 3 KV heads"):
        tree_decode_attention(q, torch.randn(10, 3, 16), torch.randn(10, 3, 16), indptr, indices)
    with pytest.raises(TypeError, match="v_pool has dtype"):
        tree_decode_attention(q, k_pool, v_pool.half(), indptr, indices)
    with pytest.raises(ValueError, match=r"k must be \[Nq, Hkv, D\]"):
        extend_attention(q, torch.randn(2, 1, 16), torch.randn(2, 2, 16), k_pool, v_pool,
                         indptr, indptr, indices)
    with pytest.raises(TypeError, match="qo_indptr must be int32"):
        extend_attention(q, torch.randn(2, 2, 16), torch.randn(2, 2, 16), k_pool, v_pool,
                         indptr.long(), indptr, indices)
    meta = cascade_metadata_from_branches([[3], [3, 4], [5]], "cpu")
    with pytest.raises(ValueError, match="meta describes 3 branches, q has 2 rows"):
        cascade_decode_attention(q, k_pool, v_pool, meta)
    with pytest.raises(ValueError, match="head_dim must be a power of two"):
        tree_decode_attention_triton(torch.randn(2, 4, 24), torch.randn(10, 2, 24),
                                     torch.randn(10, 2, 24), indptr, indices)


def test_dispatch_reference_mode(monkeypatch):
    """RFTT_KERNELS=reference: the public entry points run the references."""
    monkeypatch.setenv("RFTT_KERNELS", "reference")
    gen = torch.Generator().manual_seed(50)
    k_pool, v_pool = make_pools(40, 1, 16, torch.float32, gen, device="cpu")
    branches = [[1, 2, 3], [1, 2, 4]]
    indptr, indices = csr(branches, device="cpu")
    q = torch.randn(2, 2, 16, generator=gen)
    expected = ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices)
    assert torch.equal(tree_decode_attention(q, k_pool, v_pool, indptr, indices), expected)
    meta = cascade_metadata_from_branches(branches, "cpu")
    assert_close(cascade_decode_attention(q, k_pool, v_pool, meta), expected, torch.float32,
                 "cascade reference path")


# ------------------------------------------------------------ GPU, real sizes


LLAMA3_8B, QWEN25_7B = (32, 8, 128), (28, 4, 128)  # (Hq, Hkv, D)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("heads", [LLAMA3_8B, QWEN25_7B])
def test_gpu_decode_real_size(dtype, heads):
    num_q_heads, num_kv_heads, head_dim = heads
    gen = torch.Generator().manual_seed(60)
    lengths = torch.randint(1, 2049, (64,), generator=gen).tolist() + [1, 64, 65, 4096]
    k_pool, v_pool = make_pools(150_000, num_kv_heads, head_dim, dtype, gen)
    indptr, indices = csr(random_slot_lists(lengths, 150_000, gen))
    q = torch.randn(len(lengths), num_q_heads, head_dim, generator=gen).to(DEVICE, dtype)
    expected = ref.tree_decode_attention_reference(q, k_pool, v_pool, indptr, indices)
    for splits in (None, 1, 16):
        out = tree_decode_attention_triton(q, k_pool, v_pool, indptr, indices, num_kv_splits=splits)
        assert_close(out, expected, dtype, f"GPU decode {heads} splits={splits}", GPU_TOLERANCES)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("heads", [LLAMA3_8B, QWEN25_7B])
def test_gpu_extend_real_size(dtype, heads):
    num_q_heads, num_kv_heads, head_dim = heads
    gen = torch.Generator().manual_seed(61)
    num_new, num_cached = [1, 64, 65, 700, 300], [0, 1000, 0, 1500, 63]
    k_pool, v_pool = make_pools(20_000, num_kv_heads, head_dim, dtype, gen)
    kv_indptr, kv_indices = csr(random_slot_lists(num_cached, 20_000, gen))
    qo_indptr = torch.tensor([0] + num_new).cumsum(0).to(DEVICE, torch.int32)
    total = sum(num_new)
    q = torch.randn(total, num_q_heads, head_dim, generator=gen).to(DEVICE, dtype)
    k = torch.randn(total, num_kv_heads, head_dim, generator=gen).to(DEVICE, dtype)
    v = torch.randn(total, num_kv_heads, head_dim, generator=gen).to(DEVICE, dtype)
    out = extend_attention_triton(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices)
    expected = ref.extend_attention_reference(q, k, v, k_pool, v_pool, qo_indptr, kv_indptr, kv_indices)
    assert_close(out, expected, dtype, f"GPU extend {heads}", GPU_TOLERANCES)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("heads", [LLAMA3_8B, QWEN25_7B])
@pytest.mark.parametrize("num_branches,prefix_len", [(8, 4096), (32, 1024), (128, 1024)])
def test_gpu_cascade_real_size(dtype, heads, num_branches, prefix_len):
    num_q_heads, num_kv_heads, head_dim = heads
    gen, rng = torch.Generator().manual_seed(62), random.Random(62)
    num_slots = prefix_len + 512 * num_branches + 4096
    k_pool, v_pool = make_pools(num_slots, num_kv_heads, head_dim, dtype, gen)
    branches = shared_prefix_branches(num_branches, prefix_len, [128, 300, 512],
                                      num_slots - 4096, gen)
    # ... and a ragged subtree in the last 4096 slots.
    branches += [[s + num_slots - 4096 for s in br]
                 for br in random_branches(6, 4096, rng, max_new=200)]
    meta = cascade_metadata_from_branches(branches, DEVICE)
    indptr, indices = csr(branches)
    q = torch.randn(len(branches), num_q_heads, head_dim, generator=gen).to(DEVICE, dtype)
    expected = tree_decode_attention_triton(q, k_pool, v_pool, indptr, indices)
    out = cascade_decode_attention_triton(q, k_pool, v_pool, meta)
    assert_close(out, expected, dtype, f"GPU cascade {num_branches}x{prefix_len}", GPU_TOLERANCES)
