"""A `tokenizers` tokenizer rebuilt from a GGUF file's vocabulary, merges and token types.

A GGUF has no ``tokenizer.json``: it stores the byte-level BPE vocabulary (already spelled
in GPT-2's byte alphabet), the merges, each token's type, and the *name* of the
pre-tokenizer (``tokenizer.ggml.pre``) that llama.cpp hard-codes. The name picks the
splitting and normalisation below; the rest is the same for every byte-level vocabulary.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

# llama.cpp token types (llama_token_type).
_CONTROL = 3  # <|im_start|>, <|endoftext|>: special, never split, skipped when asked
_USER_DEFINED = 4  # added tokens that are ordinary text (Qwen's <tool_call>, fim markers)

# llama.cpp's `qwen2` pre-tokenizer: GPT-4-style words, each digit alone (\p{N}), runs of
# punctuation with their trailing newlines, whitespace runs that leave the last space to
# the next word. Contractions match in either case.
_QWEN2_SPLIT = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _smollm():
    # llama.cpp's `smollm`: every digit its own piece, then the GPT-2 split (as in
    # SmolLM2's own tokenizer.json). No normaliser.
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    return None, pre


def _qwen2():
    # Qwen2's own tokenizer.json normalises to NFC before splitting (llama.cpp skips this;
    # the two differ only on decomposed accents, where NFC is what the model was trained on).
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    return normalizers.NFC(), pre


# tokenizer.ggml.pre -> (normaliser, pre-tokenizer)
PRE_TOKENIZERS = {"smollm": _smollm, "qwen2": _qwen2}


def build_tokenizer(source, model_kind: str, pre: str, tokens: list[str], merges: list[str],
                    token_types: list[int]) -> Tokenizer:
    """source: the GGUF path, for error messages; the rest is its tokenizer metadata."""
    if model_kind != "gpt2":
        raise ValueError(f"{source}: tokenizer.ggml.model is {model_kind!r}; only byte-level BPE ('gpt2') is built")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{source}: tokenizer.ggml.pre is {pre!r}; supported: {', '.join(sorted(PRE_TOKENIZERS))}")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    normalizer, tok.pre_tokenizer = PRE_TOKENIZERS[pre]()
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.decoder = decoders.ByteLevel()
    # Added tokens are matched whole before any splitting, as llama.cpp does; only control
    # tokens are special (dropped by decode(skip_special_tokens=True)).
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, token_types) if ty == _CONTROL]
    )
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, token_types) if ty == _USER_DEFINED]
    if user:
        tok.add_tokens(user)
    return tok
