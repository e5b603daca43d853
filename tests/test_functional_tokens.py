"""Adding RFTT's functional tokens: new whole tokens, mean-initialised rows, save/load round trip."""

import pytest
import torch

from model import load_model, save_pretrained
from rftt.tokens import FUNCTIONAL_TOKENS, add_functional_tokens
from tests.tiny_models import relative_error, write_checkpoint

transformers = pytest.importorskip("transformers")


@pytest.fixture(params=["llama3", "qwen3"])  # untied and tied embeddings
def loaded(request, tmp_path):
    write_checkpoint(tmp_path / "ckpt", request.param, seed=7)
    return load_model(tmp_path / "ckpt")


def test_sixteen_tokens_each_encode_whole(loaded):
    model, tok = loaded
    before_len, before_rows = len(tok), model.config.vocab_size
    spelled = {t: tok.encode(t) for t in FUNCTIONAL_TOKENS}
    assert all(len(ids) > 1 for ids in spelled.values())  # they were multi-token text before

    ids = add_functional_tokens(model, tok)

    assert len(ids) == len(set(ids)) == 16
    for text, i in zip(FUNCTIONAL_TOKENS, ids):
        assert tok.encode(text) == [i]
        assert tok.encode(f"a\n{text}\nb") == tok.encode("a\n") + [i] + tok.encode("\nb")
    step = "<verify>\nStep 2 is wrong.\n</verify>\n"
    assert tok.decode(tok.encode(step)) == step
    assert len(tok) == before_len + 16
    assert model.config.vocab_size >= len(tok) and model.config.vocab_size >= before_rows
    assert ids[0] >= before_len  # appended, nothing renumbered


def test_new_rows_are_the_mean_of_their_spelling(loaded):
    model, tok = loaded
    spelled = {t: tok.encode(t) for t in FUNCTIONAL_TOKENS}
    embed_before = model.embed_tokens.weight.detach().clone()
    head_before = model.lm_head.weight.detach().clone()
    ids = add_functional_tokens(model, tok)
    for text, i in zip(FUNCTIONAL_TOKENS, ids):
        torch.testing.assert_close(model.embed_tokens.weight[i], embed_before[spelled[text]].mean(0))
        if not model.config.tie_word_embeddings:
            torch.testing.assert_close(model.lm_head.weight[i], head_before[spelled[text]].mean(0))
    # Old rows are untouched and the head is still tied where it was.
    n_old = embed_before.shape[0]
    torch.testing.assert_close(model.embed_tokens.weight[: min(n_old, ids[0])], embed_before[: min(n_old, ids[0])])
    assert (model.lm_head.weight is model.embed_tokens.weight) == model.config.tie_word_embeddings


def test_idempotent(loaded):
    model, tok = loaded
    first = add_functional_tokens(model, tok)
    weights = model.embed_tokens.weight.detach().clone()
    assert add_functional_tokens(model, tok) == first
    assert len(tok) == len(set(range(len(tok))))
    torch.testing.assert_close(model.embed_tokens.weight, weights, rtol=0, atol=0)


def test_survives_save_and_load(loaded, tmp_path):
    model, tok = loaded
    ids = add_functional_tokens(model, tok)
    out = save_pretrained(model, tok, tmp_path / "with_tokens")
    again, tok2 = load_model(out)
    assert [tok2.encode(t) for t in FUNCTIONAL_TOKENS] == [[i] for i in ids]
    assert add_functional_tokens(again, tok2) == ids
    tokens = torch.tensor([[5, ids[0], 40, 41, ids[1], 60, ids[9]]])
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        ref = model(tokens)
        torch.testing.assert_close(again(tokens), ref, rtol=0, atol=0)
        assert relative_error(hf(tokens).logits, ref) <= 1e-5
    assert hf_tok.encode("<clarify>", add_special_tokens=False) == [ids[0]]
