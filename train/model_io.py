"""The model in and out of a training run: the base model to start from, and its full
weights gathered from FSDP shards (for the Hugging Face export and for the plain copy
that runs RL rollouts)."""

from __future__ import annotations

from pathlib import Path

import torch

from model import SMALL_MODEL, ModelConfig, Tokenizer, load_model, random_model, save_pretrained
from model.embedded import embedded_model_dir
from rftt.tokens import add_functional_tokens

from .distributed import DistInfo, barrier

# `--model tiny`: a random 2-layer model for tests (trains in seconds, nothing to download).
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=True)


def load_base_model(name: str, device: torch.device, seed: int) -> tuple[torch.nn.Module, Tokenizer]:
    """The model to fine-tune, with the functional tokens added. `tiny`: a random 2-layer
    model with SmolLM2's tokenizer (a 49k vocabulary, a third of Qwen's: the tests' tiny
    models stay cheap)."""
    if name == "tiny":
        tok = Tokenizer.from_dir(embedded_model_dir(SMALL_MODEL))
        config = ModelConfig.from_dict(dict(TINY_SHAPE, architectures=["LlamaForCausalLM"], vocab_size=len(tok),
                                            eos_token_id=tok.eos_token_id))
        model = random_model(config, seed=seed, device=device)
    else:
        model, tok = load_model(name, device=device)
    add_functional_tokens(model, tok)
    return model, tok


def full_weights(model: torch.nn.Module, submodule: str = "", cpu_offload: bool = False) -> dict:
    """The unsharded state dict of `model.get_submodule(submodule)`, gathered from every
    rank's FSDP shards (a collective: every rank calls it). With `cpu_offload` only rank 0
    receives the weights (in CPU memory): enough for an export, and no rank holds two
    copies on its accelerator."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload))
    prefix = f"{submodule}." if submodule else ""
    return {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}


def export_pretrained(model: torch.nn.Module, tok: Tokenizer, path: Path, info: DistInfo, submodule: str = "") -> None:
    """A Hugging Face directory of `model.get_submodule(submodule)` (the decoder; under
    FSDP its full weights are gathered and written by rank 0)."""
    decoder = model.get_submodule(submodule)
    if info.distributed:
        full = full_weights(model, submodule, cpu_offload=True)
        if info.is_main:
            plain = random_model(decoder.config, seed=0)  # shape only: overwritten next
            plain.load_state_dict(full)
            save_pretrained(plain, tok, path)
    else:
        save_pretrained(decoder, tok, path)
    barrier()
