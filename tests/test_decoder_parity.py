"""The hand-written decoder against transformers on tiny random checkpoints of each family."""

import pytest
import torch

from model import load_model, save_pretrained
from tests.tiny_models import FAMILIES, relative_error, write_checkpoint

transformers = pytest.importorskip("transformers")


@pytest.fixture(params=sorted(FAMILIES))
def checkpoint(request, tmp_path):
    hf = write_checkpoint(tmp_path / "ckpt", request.param, seed=hash(request.param) % 1000)
    return request.param, tmp_path / "ckpt", hf


def _tokens(seed: int, batch: int = 2, length: int = 23, vocab: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def test_logits_match_transformers(checkpoint):
    family, path, hf = checkpoint
    ours, _ = load_model(path)
    tokens = _tokens(1)
    with torch.no_grad():
        err = relative_error(ours(tokens), hf(tokens).logits)
    print(f"{family}: max relative logits error {err:.2e}")
    assert err <= 1e-5


def test_logits_match_at_long_positions(checkpoint):
    """Positions far past the llama3 'original' context exercise the scaled RoPE bands."""
    family, path, hf = checkpoint
    ours, _ = load_model(path)
    tokens = _tokens(2, batch=1, length=9)
    positions = torch.arange(5000, 5009)[None]
    with torch.no_grad():
        err = relative_error(ours(tokens, positions), hf(tokens, position_ids=positions).logits)
    assert err <= 1e-5


def test_hidden_states_feed_the_head(checkpoint):
    _, path, _ = checkpoint
    ours, _ = load_model(path)
    tokens = _tokens(3)
    with torch.no_grad():
        h = ours.hidden_states(tokens)
        assert h.shape == (2, 23, ours.config.hidden_size)
        torch.testing.assert_close(h @ ours.lm_head_weight.T, ours(tokens), rtol=0, atol=0)


def test_targets_give_token_logprobs_and_entropy(checkpoint):
    """model(tokens, targets=...) is what training calls: the log-prob of each target and
    the entropy, equal to log_softmax of the logits (tempered), with gradients."""
    _, path, _ = checkpoint
    ours, _ = load_model(path)
    tokens, targets = _tokens(4), _tokens(5)
    logits = ours(tokens).detach() / 0.7
    logprobs, entropy = ours(tokens, targets=targets, temperature=0.7)
    assert logprobs.shape == entropy.shape == (2, 23)
    expected = logits.log_softmax(-1)
    torch.testing.assert_close(logprobs, expected.gather(-1, targets[..., None])[..., 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy, -(expected.exp() * expected).sum(-1), rtol=1e-5, atol=1e-5)
    logprobs.sum().backward()
    assert ours.embed_tokens.weight.grad is not None and ours.embed_tokens.weight.grad.abs().sum() > 0


def test_save_then_transformers_loads_same_logits(checkpoint, tmp_path):
    family, path, _ = checkpoint
    ours, tok = load_model(path)
    out = save_pretrained(ours, tok, tmp_path / "export")
    reloaded_hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    reloaded_ours, _ = load_model(out)
    tokens = _tokens(4)
    with torch.no_grad():
        ref = ours(tokens)
        assert relative_error(reloaded_hf(tokens).logits, ref) <= 1e-5
        torch.testing.assert_close(reloaded_ours(tokens), ref, rtol=0, atol=0)


def test_bf16_load_runs_close_to_fp32(checkpoint):
    _, path, _ = checkpoint
    fp32, _ = load_model(path)
    bf16, _ = load_model(path, dtype=torch.bfloat16)
    assert bf16.embed_tokens.weight.dtype == torch.bfloat16
    tokens = _tokens(5)
    with torch.no_grad():
        err = relative_error(bf16(tokens).float(), fp32(tokens))
    assert err < 5e-2


def test_training_path_has_gradients(checkpoint):
    _, path, _ = checkpoint
    ours, _ = load_model(path)
    ours.train()
    tokens = _tokens(6)
    loss = torch.nn.functional.cross_entropy(ours(tokens)[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    grads = [p.grad for p in ours.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert ours.embed_tokens.weight.grad.abs().sum() > 0


def test_large_export_is_sharded_and_loads(checkpoint, tmp_path, monkeypatch):
    import model.weights as weights

    _, path, _ = checkpoint
    ours, tok = load_model(path)
    monkeypatch.setattr(weights, "MAX_SHARD_BYTES", 20_000)  # force several shards
    out = save_pretrained(ours, tok, tmp_path / "sharded")
    assert (out / "model.safetensors.index.json").is_file() and len(list(out.glob("model-*.safetensors"))) > 2
    tokens = _tokens(7)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = ours(tokens)
        torch.testing.assert_close(load_model(out)[0](tokens), ref, rtol=0, atol=0)
        assert relative_error(hf(tokens).logits, ref) <= 1e-5
