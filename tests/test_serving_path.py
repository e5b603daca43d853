"""The serving forward (flat tokens + KV pool + kernels) equals the training forward."""

import pytest
import torch

from model import load_model
from model.serving import serving_logits
from search.attention_batch import AttentionBatch
from tests.tiny_models import FAMILIES, relative_error, write_checkpoint


def _csr(lists):
    indptr = torch.tensor([0] + [len(x) for x in lists]).cumsum(0).to(torch.int32)
    indices = torch.tensor([s for x in lists for s in x], dtype=torch.int32)
    return indptr, indices


CASES = [(f, "auto") for f in sorted(FAMILIES)] + [("qwen3", "triton")]  # Triton needs head_dim >= 16


@pytest.mark.parametrize("family,kernels", CASES)
def test_extend_then_decode_equals_full_recompute(family, kernels, tmp_path, monkeypatch):
    """Extend a ragged two-branch prompt, decode 4 greedy steps, compare with full recompute
    (on CPU "auto" runs the references; "triton" runs the Triton kernels in the interpreter)."""
    monkeypatch.setenv("RFTT_KERNELS", kernels)
    write_checkpoint(tmp_path / "ckpt", family, seed=11)
    model, _ = load_model(tmp_path / "ckpt")
    cfg = model.config
    shape = (cfg.num_hidden_layers, 64, cfg.num_key_value_heads, cfg.head_dim)
    k_pool, v_pool = torch.zeros(shape), torch.zeros(shape)
    g = torch.Generator().manual_seed(3)
    # Two branches with ragged prompts, placed at scattered (non-contiguous) slots.
    prompts = [torch.randint(0, 300, (n,), generator=g) for n in (5, 9)]
    free = torch.randperm(64, generator=g).tolist()
    slots = [[free.pop() for _ in p] for p in prompts]
    batch = AttentionBatch(
        k_pool, v_pool, torch.tensor(sum(slots, [])), *_csr([[], []]),
        qo_indptr=torch.tensor([0, 5, 14], dtype=torch.int32),
    )
    tokens = torch.cat(prompts)
    positions = torch.cat([torch.arange(len(p)) for p in prompts])
    logits = serving_logits(model, tokens, positions, batch, last_index=torch.tensor([4, 13]))
    seqs = [p.tolist() for p in prompts]
    for step in range(4):
        with torch.no_grad():
            for b, seq in enumerate(seqs):
                ref = model(torch.tensor([seq]))[0, -1]
                assert relative_error(logits[b], ref) <= 1e-5, (family, step, b)
        next_tokens = logits.argmax(-1)
        for b in range(2):
            seqs[b].append(int(next_tokens[b]))
            slots[b].append(free.pop())
        batch = AttentionBatch(k_pool, v_pool, torch.tensor([s[-1] for s in slots]), *_csr(slots))
        positions = torch.tensor([len(s) - 1 for s in seqs])
        logits = serving_logits(model, next_tokens, positions, batch, last_index=torch.arange(2))
