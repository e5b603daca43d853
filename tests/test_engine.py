"""The engine: greedy text is identical with tree sharing on, off, and by full recompute."""

import pytest
import torch

from model import load_model
from search.engine import Engine
from search.sampling import SamplingParams
from tests.tiny_models import relative_error, write_checkpoint

GREEDY = SamplingParams(temperature=0)


def _recompute_greedy(model, tokens: list[int], n: int) -> list[int]:
    """The obviously-right baseline: the training forward over the whole text, per token."""
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([tokens + out]))[0, -1].argmax())
            out.append(nxt)
    return out


def _tree_rollout(engine: Engine, prompts, forced, n_new: int):
    """Two problems; each forks into len(forced) branches with different forced tokens,
    then every branch decodes greedily. Returns each branch's full token list and the
    logits the engine holds for its next token."""
    roots = engine.prefill(prompts, seeds=[0, 1])
    engine.decode(roots, GREEDY, 3)  # some shared text before the fork
    branches = [engine.fork(r, seed=10 * i + j) for i, r in enumerate(roots) for j in range(len(forced))]
    engine.extend(branches, [forced[j] for _ in roots for j in range(len(forced))])
    engine.decode(branches, GREEDY, n_new)
    return [engine.text_tokens(b) for b in branches], [b.next_logits for b in branches]


@pytest.mark.parametrize("family,kernels,cascade", [
    ("llama3", "auto", None), ("qwen2", "auto", False), ("qwen3", "triton", None),
])
def test_sharing_on_off_and_recompute_agree(family, kernels, cascade, tmp_path, monkeypatch):
    """Sharing on decodes with the cascade kernel (the branches share their roots) unless
    told not to (then flat); off, with private copies and flat decode. "triton": the
    Triton kernels, interpreted."""
    monkeypatch.setenv("RFTT_KERNELS", kernels)
    write_checkpoint(tmp_path / "ckpt", family, seed=21)
    model, _ = load_model(tmp_path / "ckpt")
    prompts = [[5, 17, 99, 200, 3], [8, 8, 42]]
    forced = [[250], [251, 252], [7, 7, 7]]
    shared = Engine(model, num_slots=512, share_prefix=True, cascade=cascade)
    unshared = Engine(model, num_slots=512, share_prefix=False)
    on, on_logits = _tree_rollout(shared, prompts, forced, 6)
    off, off_logits = _tree_rollout(unshared, prompts, forced, 6)
    assert on == off
    # The oracle: the training forward on the PyTorch reference kernels (in the "triton"
    # case that also keeps ~40 interpreted full forwards out of the test's time).
    monkeypatch.setenv("RFTT_KERNELS", "reference")
    for text, a, b in zip(on, on_logits, off_logits):
        # the last 6 tokens were generated greedily from the text before them ...
        assert text[-6:] == _recompute_greedy(model, text[:-6], 6)
        # ... and the cached next-token logits equal a full recompute of the whole text
        with torch.no_grad():
            ref = model(torch.tensor([text]))[0, -1]
        assert relative_error(a, ref) <= 1e-5 and relative_error(b, ref) <= 1e-5
    assert shared.tokens_computed < unshared.tokens_computed  # sharing skipped the prefixes
    shared.tree.check_invariants()
    assert (shared.cascade_steps > 0) == (cascade is not False)
    assert unshared.cascade_steps == 0


def test_stops_and_length_cap(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "qwen3", seed=2)
    model, _ = load_model(tmp_path / "ckpt")
    engine = Engine(model, num_slots=256)
    (probe,) = engine.prefill([[1, 2, 3]], seeds=[0])
    engine.decode([probe], GREEDY, 4)
    first = probe.generated[0]
    a, b = engine.prefill([[1, 2, 3], [1, 2, 3]], seeds=[0, 1])
    engine.decode([a], GREEDY, 10, stop_ids={first})
    assert a.generated == [first] and a.stop_reason == "stop"
    engine.decode([b], GREEDY, 4, stop_ids=set())
    assert len(b.generated) == 4 and b.stop_reason == "length"
    assert b.generated == probe.generated


def test_a_branch_holds_its_own_logits_row_not_the_batch(tmp_path):
    """Every branch that leaves prefill, extend or decode keeps only its [V] row: a view
    would pin the whole step's [B, V] logits for as long as the branch lives (a search's
    leaves, stopping at different steps, held ~10 GB of them on the 0.5B model)."""
    write_checkpoint(tmp_path / "ckpt", "qwen2", seed=6)
    model, _ = load_model(tmp_path / "ckpt")
    vocab = model.config.vocab_size
    engine = Engine(model, num_slots=512)
    roots = engine.prefill([[4, 5, 6], [7, 8]], seeds=[0, 1])
    branches = [engine.fork(r, seed=2 + 3 * i + j) for i, r in enumerate(roots) for j in range(3)]
    engine.extend(branches[:2], [[9], [10, 11]])
    row_bytes = vocab * roots[0].next_logits.element_size()
    assert all(b.next_logits.untyped_storage().nbytes() == row_bytes for b in roots + branches[:2])
    engine.decode(branches, SamplingParams(temperature=1.0), 12, stop_ids={3, 4, 5, 6, 7})
    assert len({len(b.generated) for b in branches}) > 1  # they stopped at different steps
    assert all(b.next_logits.shape == (vocab,) and b.next_logits.untyped_storage().nbytes() == row_bytes
               for b in branches)


def test_seeded_sampling_is_reproducible_and_batch_invariant(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "llama-tied", seed=4)
    model, _ = load_model(tmp_path / "ckpt")
    params = SamplingParams(temperature=1.0, top_p=0.95)
    runs = []
    for batch_size in (1, 3):
        engine = Engine(model, num_slots=256)
        branches = engine.prefill([[9, 10, 11]] * batch_size, seeds=list(range(7, 7 + batch_size)))
        engine.decode(branches, params, 8)
        runs.append([b.generated for b in branches])
        assert all(len(b.logprobs) == 8 and all(lp <= 0 for lp in b.logprobs) for b in branches)
    assert runs[0][0] == runs[1][0]  # seed 7 draws the same text alone or in a batch of 3
    assert len({tuple(g) for g in runs[1]}) > 1  # different seeds, different text


def test_embedded_model_greedy_matches_recompute():
    model, tok = load_model("smollm2-135m-instruct")
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "What is 17 + 25?"}]))
    texts = {}
    for share in (True, False):  # sharing on (the branches share the root: cascade decode) and off
        engine = Engine(model, num_slots=1024, share_prefix=share)
        (root,) = engine.prefill([prompt], seeds=[0])
        branches = [engine.fork(root, seed=s) for s in range(2)]
        engine.extend(branches, [tok.encode("The answer"), tok.encode("Let me")])
        engine.decode(branches, GREEDY, 8)
        assert (engine.cascade_steps > 0) == share
        texts[share] = [engine.text_tokens(b) for b in branches]
    assert texts[True] == texts[False]
    for text in texts[True]:
        assert text[-8:] == _recompute_greedy(model, text[:-8], 8)
