"""Greedy decoding through the engine: many prompts in one batch, each until a stop token
or the length cap. The one greedy loop the command-line chat, the solver and accuracy
evaluation share, so a model answers the same whichever of them asks.
"""

from __future__ import annotations

from typing import Callable

import torch

from .engine import Branch, Engine
from .sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)


@torch.inference_mode()
def greedy_decode(engine: Engine, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                  eos_id: int | None, on_token: Callable[[list[int]], None] | None = None,
                  on_finish: Callable[[], None] | None = None) -> list[list[int]]:
    """The greedy continuation of each prompt. A trailing EOS is dropped (it is not text);
    any other stop token (e.g. a closing tag) stays, it ends the text the model wrote.
    `on_token(ids)`: called with the first prompt's continuation after every new token
    (for streaming one answer to a terminal); the batch then advances a token at a time.
    `on_finish()` (without on_token): called as each continuation ends, e.g. to move a
    progress bar over a large batch."""
    branches = engine.prefill(prompts, seeds=[0] * len(prompts))  # greedy: the seeds draw nothing
    if on_token is None:
        engine.decode(branches, GREEDY, max_new_tokens, stop_ids,
                      on_finish=None if on_finish is None else (lambda _: on_finish()))
    else:
        for _ in range(max_new_tokens):
            running = [b for b in branches if b.stop_reason != "stop"]
            if not running:
                break
            for b in running:
                b.stop_reason = None  # "length" after each one-token call: keep going
            engine.decode(running, GREEDY, 1, stop_ids)
            on_token(_text_ids(branches[0], eos_id))
    return [_text_ids(b, eos_id) for b in branches]


def _text_ids(branch: Branch, eos_id: int | None) -> list[int]:
    ids = branch.generated
    return ids[:-1] if ids and ids[-1] == eos_id else list(ids)
