"""The GGUF -> Hugging Face converter on tiny files written here, against transformers' GGUF loader.

Each row of the converter's architecture table gets a file: Llama (q/k rows permuted by
llama.cpp, untied head) and Qwen2 (q/k/v biases, no ``output.weight`` so a tied head).
Matrices are stored as Q8_0 blocks and norms as F32, so dequantisation of a quantised
type is exercised too. Seconds, where the real models take minutes.
"""

import numpy as np
import pytest
import torch

from model import load_model
from model.gguf_convert import convert_gguf
from tests.tiny_models import relative_error

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 64, 4, 2, 128, 2
HEAD_DIM = HIDDEN // HEADS


def _vocab():
    """A byte-level BPE vocabulary: GPT-2's 256 byte symbols, a few merges, control tokens."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    merges = ["Ġ t", "h e", "Ġt he", "1 2"]
    tokens = symbols + [m.replace(" ", "") for m in merges] + ["<|endoftext|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]  # 1 normal, 3 control
    return tokens, types, merges


def _write_gguf(path, arch: str, pre: str, tied: bool, seed: int):
    rng = np.random.default_rng(seed)
    tokens, types, merges = _vocab()
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(tokens) - 2)
    w.add_eos_token_id(len(tokens) - 1)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}")

    def matrix(name, rows, cols):  # [out, in], Q8_0 blocks of 32 along `in`
        values = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def vector(name, n, around):
        w.add_tensor(name, (around + 0.1 * rng.standard_normal(n)).astype(np.float32))

    matrix("token_embd.weight", len(tokens), HIDDEN)
    vector("output_norm.weight", HIDDEN, 1.0)
    if not tied:
        matrix("output.weight", len(tokens), HIDDEN)
    for i in range(LAYERS):
        vector(f"blk.{i}.attn_norm.weight", HIDDEN, 1.0)
        vector(f"blk.{i}.ffn_norm.weight", HIDDEN, 1.0)
        matrix(f"blk.{i}.attn_q.weight", HEADS * HEAD_DIM, HIDDEN)
        matrix(f"blk.{i}.attn_k.weight", KV_HEADS * HEAD_DIM, HIDDEN)
        matrix(f"blk.{i}.attn_v.weight", KV_HEADS * HEAD_DIM, HIDDEN)
        if arch == "qwen2":
            vector(f"blk.{i}.attn_q.bias", HEADS * HEAD_DIM, 0.0)
            vector(f"blk.{i}.attn_k.bias", KV_HEADS * HEAD_DIM, 0.0)
            vector(f"blk.{i}.attn_v.bias", KV_HEADS * HEAD_DIM, 0.0)
        matrix(f"blk.{i}.attn_output.weight", HIDDEN, HEADS * HEAD_DIM)
        matrix(f"blk.{i}.ffn_gate.weight", FFN, HIDDEN)
        matrix(f"blk.{i}.ffn_up.weight", FFN, HIDDEN)
        matrix(f"blk.{i}.ffn_down.weight", HIDDEN, FFN)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("arch,pre,tied", [("llama", "smollm", False), ("qwen2", "qwen2", True)])
def test_tiny_gguf_converts_like_transformers_loads_it(tmp_path, arch, pre, tied):
    source = tmp_path / f"tiny-{arch}.gguf"
    _write_gguf(source, arch, pre, tied, seed=1)
    out = tmp_path / "hf"
    out.mkdir()
    convert_gguf(source, out, "tiny test model\n")
    model, tok = load_model(out)
    assert model.config.tie_word_embeddings == tied
    assert model.config.qkv_bias == (arch == "qwen2")

    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=source.name,
                                                            dtype=torch.float32).eval()
    assert ref.config.tie_word_embeddings == tied
    ids = torch.tensor([tok.encode("the 12 the the12")])
    assert ids.shape[1] < len("the 12 the the12")  # the merges applied
    with torch.no_grad():
        err = relative_error(model(ids), ref(ids).logits)
    assert err <= 1e-5, err
    assert tok.eos_token_id == tok.token_to_id("<|im_end|>")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "hi<|im_end|>"


def test_unknown_architecture_names_the_file(tmp_path):
    source = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(source), "mamba")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=r"odd\.gguf: GGUF architecture 'mamba'; supported: llama, qwen2"):
        convert_gguf(source, tmp_path, "")
