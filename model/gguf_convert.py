"""One GGUF file -> one Hugging Face model directory (config, safetensors, tokenizer, template).

Serves every embedded model. What differs between architectures is a row of
`ARCHITECTURES`; everything else — reading metadata, dequantising every tensor type the
file holds with the `gguf` package (Q4_K, Q6_K, Q8_0, Q4_1, F32, ...), naming tensors the
Hugging Face way, tying the head when the file has no ``output.weight`` — is shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .gguf_tokenizer import build_tokenizer


@dataclass(frozen=True)
class Architecture:
    hf_name: str  # config.json "architectures"
    model_type: str
    # llama.cpp's converter interleaves each head's q/k rows for its adjacent-pair RoPE;
    # Hugging Face Llama rotates halves, so those rows are put back. llama.cpp's Qwen2 path
    # uses the NEOX (rotate-half) RoPE and stores the rows unchanged.
    unpermute_qk: bool


ARCHITECTURES = {  # general.architecture -> how to convert it
    "llama": Architecture("LlamaForCausalLM", "llama", unpermute_qk=True),
    "qwen2": Architecture("Qwen2ForCausalLM", "qwen2", unpermute_qk=False),
}

# GGUF tensor names -> Hugging Face names ("{i}" is the layer). Biases only appear in
# files whose architecture has them (Qwen2's q/k/v).
_TENSOR_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_q.bias": "model.layers.{i}.self_attn.q_proj.bias",
    "blk.{i}.attn_k.bias": "model.layers.{i}.self_attn.k_proj.bias",
    "blk.{i}.attn_v.bias": "model.layers.{i}.self_attn.v_proj.bias",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}


class _Metadata:
    """GGUF key-value metadata with errors that name the file and the key."""

    def __init__(self, reader, source: Path):
        self.reader, self.source = reader, source

    def get(self, key: str, default=None):
        field = self.reader.fields.get(key)
        if field is None:
            if default is not None:
                return default
            raise ValueError(f"{self.source}: GGUF metadata has no '{key}'")
        return field.contents()


def unpermute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undoes llama.cpp's q/k row permutation.

    llama.cpp rotates adjacent channel pairs (2i, 2i+1); Hugging Face rotates (i, i+D/2).
    Its converter reorders each head's rows from [half0, half1] to interleaved; here each
    head's rows [D] are viewed as [D/2, 2] and transposed back to [2, D/2].
    w: [n_heads * D, hidden] (a bias [n_heads * D] is handled as one column).
    """
    if w.dim() == 1:
        return unpermute_rope_rows(w[:, None], n_heads)[:, 0]
    rows, cols = w.shape
    head_dim = rows // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def convert_gguf(source: Path, out_dir: Path, provenance: str) -> None:
    """Writes config.json, model.safetensors, tokenizer files and SOURCE.txt (`provenance`) into `out_dir`."""
    import gguf
    from safetensors.torch import save_file

    meta = _Metadata(gguf.GGUFReader(str(source)), source)
    arch_name = meta.get("general.architecture")
    if arch_name not in ARCHITECTURES:
        raise ValueError(f"{source}: GGUF architecture {arch_name!r}; supported: {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[arch_name]
    n_layers = int(meta.get(f"{arch_name}.block_count"))
    n_heads = int(meta.get(f"{arch_name}.attention.head_count"))
    n_kv_heads = int(meta.get(f"{arch_name}.attention.head_count_kv", n_heads))

    tensors = _dequantised_tensors(meta, arch, n_layers, n_heads, n_kv_heads)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})

    tokens = list(meta.get("tokenizer.ggml.tokens"))
    bos = int(meta.get("tokenizer.ggml.bos_token_id"))
    eos = int(meta.get("tokenizer.ggml.eos_token_id"))
    embed = tensors["model.embed_tokens.weight"]  # [vocab, hidden]
    hidden = int(meta.get(f"{arch_name}.embedding_length"))
    config = {
        "architectures": [arch.hf_name],
        "model_type": arch.model_type,
        "vocab_size": int(embed.shape[0]),
        "hidden_size": hidden,
        "intermediate_size": int(meta.get(f"{arch_name}.feed_forward_length")),
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": int(meta.get(f"{arch_name}.attention.key_length", hidden // n_heads)),
        "rms_norm_eps": float(meta.get(f"{arch_name}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(meta.get(f"{arch_name}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.get(f"{arch_name}.context_length")),
        "tie_word_embeddings": "lm_head.weight" not in tensors,  # no output.weight => tied
        "attention_bias": False,  # Qwen2's q/k/v biases follow from its architecture
        "hidden_act": "silu",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))

    tokenizer = build_tokenizer(
        source, meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre", "default"), tokens,
        list(meta.get("tokenizer.ggml.merges")), list(meta.get("tokenizer.ggml.token_type")),
    )
    tokenizer.save(str(out_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokens[bos],
        "eos_token": tokens[eos],
        "pad_token": tokens[int(meta.get("tokenizer.ggml.padding_token_id", eos))],
        "unk_token": tokens[int(meta.get("tokenizer.ggml.unknown_token_id", 0))],
        "chat_template": meta.get("tokenizer.chat_template"),
        "model_max_length": config["max_position_embeddings"],
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    (out_dir / "SOURCE.txt").write_text(provenance)


def _dequantised_tensors(meta: _Metadata, arch: Architecture, n_layers: int, n_heads: int,
                         n_kv_heads: int) -> dict[str, torch.Tensor]:
    import gguf

    names = {}
    for pattern, hf in _TENSOR_NAMES.items():
        for i in range(n_layers) if "{i}" in pattern else [None]:
            names[pattern.format(i=i)] = hf.format(i=i)
    tensors = {}
    for t in meta.reader.tensors:
        if t.name not in names:
            raise ValueError(f"{meta.source}: unexpected GGUF tensor '{t.name}'")
        values = gguf.quants.dequantize(t.data, t.tensor_type)  # numpy, HF orientation [out, in]
        # The reader maps the file read-only; torch wants a writeable float32 array.
        w = torch.from_numpy(np.require(values, np.float32, ["W", "C"]))
        if arch.unpermute_qk and ".attn_q." in t.name:
            w = unpermute_rope_rows(w, n_heads)
        elif arch.unpermute_qk and ".attn_k." in t.name:
            w = unpermute_rope_rows(w, n_kv_heads)
        tensors[names[t.name]] = w.contiguous()
    return tensors
