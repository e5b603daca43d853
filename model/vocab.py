"""Growing the vocabulary with new special tokens.

A new token's embedding (and, for untied models, its LM-head row) starts as the mean of
the rows of the tokens its text was split into before it existed: ``<verify>`` begins
near the average of ``<``, ``verify``, ``>``, so the model starts out reading and writing
it as the text it spells instead of as noise. (A random or zero row would make the first
SFT steps spend their gradient learning what the token means.)
"""

from __future__ import annotations

import torch
from torch import nn

from .tokenizer import Tokenizer
from .transformer import Transformer


@torch.no_grad()
def add_tokens_with_mean_init(model: Transformer, tokenizer: Tokenizer, tokens: list[str]) -> list[int]:
    """Adds `tokens` as special tokens to both; returns their ids. Idempotent."""
    spelled = {t: tokenizer.encode(t) for t in tokens if tokenizer.token_to_id(t) is None}
    ids = tokenizer.add_special_tokens(list(tokens))
    if not spelled:
        return ids
    needed = max(ids) + 1
    if needed > model.config.vocab_size:
        _grow_rows(model, needed)
    embed = model.embed_tokens.weight
    head = None if model.config.tie_word_embeddings else model.lm_head.weight
    for text, pieces in spelled.items():
        new_id = tokenizer.token_to_id(text)
        embed[new_id] = embed[pieces].float().mean(0).to(embed.dtype)
        if head is not None:
            head[new_id] = head[pieces].float().mean(0).to(head.dtype)
    return ids


def _grow_rows(model: Transformer, new_vocab: int) -> None:
    """Resizes embedding (and untied head) to `new_vocab` rows, keeping the old rows."""
    old = model.embed_tokens.weight
    grown = nn.Embedding(new_vocab, old.shape[1], device=old.device, dtype=old.dtype)
    grown.weight[: old.shape[0]] = old
    model.embed_tokens = grown
    if not model.config.tie_word_embeddings:
        old_head = model.lm_head.weight
        head = nn.Linear(old_head.shape[1], new_vocab, bias=False, device=old_head.device, dtype=old_head.dtype)
        head.weight[: old_head.shape[0]] = old_head
        model.lm_head = head
    model.config.vocab_size = new_vocab
    model.tie_weights()
