"""Bad checkpoints fail with errors that name the file and the field or tensor."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import ConfigError, TokenizerError, WeightsError, load_model
from tests.tiny_models import write_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "qwen2", seed=3)
    return tmp_path / "ckpt"


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (path / "config.json").write_text(json.dumps(cfg))


def test_unsupported_architecture(ckpt):
    _edit_config(ckpt, architectures=["MistralForCausalLM"])
    with pytest.raises(ConfigError, match=r"config\.json.*'architectures'.*MistralForCausalLM"):
        load_model(ckpt)


@pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"])
def test_missing_field(ckpt, field):
    _edit_config(ckpt, **{field: None})
    with pytest.raises(ConfigError, match=rf"config\.json: missing field '{field}'"):
        load_model(ckpt)


def test_bad_field_value(ckpt):
    _edit_config(ckpt, num_key_value_heads=3)  # 8 heads are not divisible into 3 groups
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        load_model(ckpt)


def test_unsupported_rope_scaling(ckpt):
    _edit_config(ckpt, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ConfigError, match="rope_scaling.*yarn"):
        load_model(ckpt)


def test_invalid_json(ckpt):
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        load_model(ckpt)


def test_missing_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model(tmp_path / "nowhere")


def test_missing_weights_file(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="no weights"):
        load_model(ckpt)


def test_missing_tensor(ckpt):
    tensors = load_file(ckpt / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"missing tensor.*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(ckpt)


def test_shape_mismatch_names_file_and_tensor(ckpt):
    tensors = load_file(ckpt / "model.safetensors")
    tensors["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(8, 64)
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"model\.safetensors: tensor 'model\.layers\.0\.self_attn\.k_proj\.weight' has shape \[8, 64\]"):
        load_model(ckpt)


def test_unexpected_tensor(ckpt):
    tensors = load_file(ckpt / "model.safetensors")
    tensors["model.layers.0.mystery.weight"] = torch.zeros(2)
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="unexpected tensor 'model.layers.0.mystery.weight'"):
        load_model(ckpt)


def test_sharded_checkpoint_loads_and_missing_shard_is_named(ckpt, tmp_path):
    reference, _ = load_model(ckpt)
    tensors = load_file(ckpt / "model.safetensors")
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, ckpt / shard, metadata={"format": "pt"})
    (ckpt / "model.safetensors").unlink()
    index = {"weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded, _ = load_model(ckpt)
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(sharded(tokens), reference(tokens), rtol=0, atol=0)
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightsError, match="model-00002-of-00002.safetensors', which does not exist"):
        load_model(ckpt)


def test_missing_tokenizer(ckpt):
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: missing"):
        load_model(ckpt)
