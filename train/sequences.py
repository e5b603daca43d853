"""Training sequences: prompt + response token ids, and which targets carry the loss.

SFT and RL both train on `prompt ++ response` with the loss on the response only (paper
§3.1: the model learns to write reasoning, not to reproduce questions). A sequence of n
tokens gives n - 1 next-token predictions; prediction t (input tokens[:t+1], target
tokens[t+1]) counts when its target is a response token, i.e. t + 1 >= prompt_len.

    tokens   = [p0 p1 p2 | r0 r1 r2 eos]       prompt_len = 3
    inputs   = [p0 p1 p2   r0 r1 r2]
    targets  = [p1 p2 r0   r1 r2 eos]
    mask     = [ 0  0  1    1  1  1 ]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rftt.prompts import solve_prompt_ids


@dataclass(frozen=True)
class Sequence:
    tokens: list[int]  # prompt then response
    prompt_len: int  # tokens[:prompt_len] is the prompt (no loss)


def encode_sft_example(tokenizer, question: str, response: str) -> Sequence:
    """The solver prompt (rftt/prompts.py), then the tagged response and EOS: the model
    must learn to stop, and the stop is what greedy decoding and the search look for."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: SFT needs one to end responses")
    prompt = solve_prompt_ids(tokenizer, question)
    response_ids = tokenizer.encode(response) + [tokenizer.eos_token_id]
    return Sequence(prompt + response_ids, len(prompt))


@dataclass
class Batch:
    inputs: torch.Tensor  # int64[B, T]
    targets: torch.Tensor  # int64[B, T]
    loss_mask: torch.Tensor  # bool[B, T]: targets that are response tokens

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def to(self, device) -> "Batch":
        return Batch(self.inputs.to(device), self.targets.to(device), self.loss_mask.to(device))


def collate(sequences: list[Sequence], pad_id: int) -> Batch:
    """Right-pads to the longest sequence; padding is masked out of the loss (and, the
    attention being causal, never seen by a real token)."""
    if not sequences:
        raise ValueError("cannot collate an empty list of sequences")
    width = max(len(s.tokens) for s in sequences) - 1
    inputs = torch.full((len(sequences), width), pad_id, dtype=torch.int64)
    targets = torch.full((len(sequences), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, s in enumerate(sequences):
        if len(s.tokens) < 2 or not 0 < s.prompt_len < len(s.tokens):
            raise ValueError(f"sequence {i} needs a non-empty prompt and response, got "
                             f"{len(s.tokens)} tokens with prompt_len {s.prompt_len}")
        n = len(s.tokens) - 1
        t = torch.tensor(s.tokens, dtype=torch.int64)
        inputs[i, :n], targets[i, :n] = t[:-1], t[1:]
        mask[i, s.prompt_len - 1:n] = True
    return Batch(inputs, targets, mask)
