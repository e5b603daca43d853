"""A learning rate of their own for the functional tokens' rows of the embedding.

The 16 functional tokens are new rows of the embedding (and of the LM head when it is
not tied to it), started as the mean of the rows of the text each spells (model/vocab.py).
AdamW moves every weight by about lr a step, whatever the size of its gradient, so SFT at
the lr the rest of the model can take (bench/step_size.py) barely moves them: the paper
trains for thousands of steps at 7e-6, a miniature for ten. Measured on the Qwen default
after 9 steps at 5e-6 (bench/tag_logprobs.py, on its own 12 training rows): no functional
token reached p 0.5, `</output>` stayed at p ~0.08, and greedy decoding wrote the answer
line again instead of closing the step. These rows alone take a larger step.

AdamW's update of a weight, its decoupled weight decay included, is proportional to lr;
so stretching the step the optimiser just took on these rows by `factor` is exactly a
`factor`-times lr for them, warm-up and decay included, with no second optimiser and
nothing new to checkpoint.
"""

from __future__ import annotations

import torch


class RowStepScale:
    """Call `before_step()` before `optimizer.step()` and `after_step()` after it."""

    def __init__(self, model: torch.nn.Module, rows: list[int], factor: float):
        self.rows, self.factor = sorted(set(rows)), factor
        # The embedding and an untied LM head; a tied head is the same tensor, scaled once.
        weights = {id(w): w for w in (model.embed_tokens.weight, model.lm_head.weight)}
        self.weights = list(weights.values())
        self._saved: list[torch.Tensor] = []

    @torch.no_grad()
    def before_step(self) -> None:
        self._saved = [local[ids].clone() for local, ids in map(self._local_rows, self.weights)]

    @torch.no_grad()
    def after_step(self) -> None:
        for weight, saved in zip(self.weights, self._saved, strict=True):
            local, ids = self._local_rows(weight)
            local[ids] = saved + self.factor * (local[ids] - saved)  # [rows, hidden]
        self._saved = []

    def _local_rows(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(this process's rows of `weight`, the indices of self.rows among them). Under
        FSDP2 a weight is a DTensor sharded on dim 0 the way torch.chunk splits it: rank r
        holds rows [r * ceil(V / W), ...)."""
        if not hasattr(weight, "to_local"):
            return weight, torch.tensor(self.rows, dtype=torch.long, device=weight.device)
        local = weight.to_local()
        rank = weight.device_mesh.get_local_rank()
        start = rank * -(-weight.shape[0] // weight.device_mesh.size())
        ids = [r - start for r in self.rows if start <= r < start + local.shape[0]]
        return local, torch.tensor(ids, dtype=torch.long, device=local.device)
