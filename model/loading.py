"""Loading a checkpoint directory (or the embedded default) and writing one back."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import ModelConfig
from .embedded import DEFAULT_MODEL, EMBEDDED_MODELS, embedded_model_dir
from .tokenizer import Tokenizer
from .transformer import Transformer
from .weights import load_weights, save_weights

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def resolve_model_dir(name_or_path: str | Path) -> Path:
    if str(name_or_path) in EMBEDDED_MODELS:
        return embedded_model_dir(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: not a model directory (give a Hugging Face directory or an embedded name: "
            f"{', '.join(EMBEDDED_MODELS)})"
        )
    return path


def build_model(config: ModelConfig, dtype: torch.dtype = torch.float32, device="cpu") -> Transformer:
    """A model with uninitialised weights, allocated once, directly on `device` in `dtype`."""
    with torch.device("meta"):
        model = Transformer(config)
    model = model.to(dtype).to_empty(device=device)
    model.tie_weights()  # to_empty gives the two tied modules separate storage; share again
    model.reset_rope()
    return model


@torch.no_grad()
def random_model(config: ModelConfig, seed: int, dtype: torch.dtype = torch.float32, device="cpu",
                 std: float = 0.02) -> Transformer:
    """A model of `config`'s shape with seeded random weights (norms at 1): for tests,
    presets and profiling a shape whose weights are not at hand.

    The draws come from a generator on `device`: a 7B shape's 7.6e9 normal draws would
    take about two minutes on the CPU (70 M/s measured on the 2-core sandbox) before a GPU
    benchmark could start. So a seed gives the same weights on every machine of one device
    type, and other weights on another device type."""
    model = build_model(config, dtype, device)
    g = torch.Generator(device=model.embed_tokens.weight.device).manual_seed(seed)
    for name, p in model.named_parameters():  # a tied head is the embedding: drawn once
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.copy_(torch.randn(p.shape, generator=g, device=p.device) * std)
    return model


def load_model(
    name_or_path: str | Path = DEFAULT_MODEL, dtype: torch.dtype = torch.float32, device="cpu"
) -> tuple[Transformer, Tokenizer]:
    """Loads a Hugging Face directory or the embedded default; returns (model, tokenizer)."""
    directory = resolve_model_dir(name_or_path)
    config, tokenizer = load_config_and_tokenizer(directory)
    model = build_model(config, dtype, device)
    load_weights(model, directory)
    model.eval()
    return model, tokenizer


def load_config_and_tokenizer(directory: Path) -> tuple[ModelConfig, Tokenizer]:
    """A model directory's config.json and tokenizer, without its weights (the tokenizer's
    EOS is the config's, the first where it lists several)."""
    config = ModelConfig.from_file(directory / "config.json")
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    return config, Tokenizer.from_dir(directory, eos_token_id=eos)


def save_pretrained(model: Transformer, tokenizer: Tokenizer, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Writes config, weights and tokenizer so transformers and `load_model` both read them."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dtype = dtype or model.embed_tokens.weight.dtype
    config = model.config
    if config.eos_token_id is None and tokenizer.eos_token_id is not None:
        config.eos_token_id = tokenizer.eos_token_id
    (path / "config.json").write_text(json.dumps(config.to_hf_dict(_DTYPE_NAMES[dtype]), indent=2))
    save_weights(model, path, dtype)
    tokenizer.save(path)
    generation = {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return path
