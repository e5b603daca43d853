"""Tiny random checkpoints of every supported family, written the way Hugging Face writes them.

Each test builds its models here from a seed (nothing is downloaded): a transformers model
with a small random config, saved with its own `save_pretrained`, plus a byte-level BPE
tokenizer with a ChatML template, so `model.load_model` sees a real checkpoint directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Small enough for milliseconds on a CPU, large enough to exercise GQA (4 q heads per kv
# head), several layers, and RoPE frequencies on both sides of the llama3 scaling bands.
_COMMON = dict(
    vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
    num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=8192,
    bos_token_id=1, eos_token_id=2,
)

FAMILIES = {
    "llama3": ("LlamaConfig", dict(_COMMON, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256}, tie_word_embeddings=False)),
    "llama-tied": ("LlamaConfig", dict(_COMMON, rope_theta=100000.0, tie_word_embeddings=True)),
    "qwen2": ("Qwen2Config", dict(_COMMON, rope_theta=1000000.0, tie_word_embeddings=False)),
    "qwen3": ("Qwen3Config", dict(_COMMON, head_dim=16, rope_theta=1000000.0, tie_word_embeddings=True)),
}


def write_tokenizer(directory: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {tok: i + len(SPECIALS) for i, tok in enumerate(alphabet)}
    vocab.update({s: i for i, s in enumerate(SPECIALS)})
    # A few merges so multi-byte tokens exist (functional-token text splits into several).
    merges = [("Ġ", "t"), ("e", "r"), ("i", "f"), ("y", "s")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(str(directory / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "bos_token": "<|im_start|>", "chat_template": CHATML}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def make_hf_model(family: str, seed: int = 0):
    import transformers

    class_name, kwargs = FAMILIES[family]
    config = getattr(transformers, class_name)(**kwargs)
    torch.manual_seed(seed)
    hf = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Default init leaves norms at 1 and biases at 0; perturb them so parity tests see them.
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return hf.eval()


def write_checkpoint(directory: Path, family: str, seed: int = 0):
    """Writes an HF checkpoint + tokenizer to `directory`; returns the transformers model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf = make_hf_model(family, seed)
    hf.save_pretrained(directory, safe_serialization=True)
    write_tokenizer(directory)
    return hf


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| — the scale-free error the issue's tolerances refer to."""
    return ((ours.double() - ref.double()).abs().max() / ref.double().abs().max()).item()
