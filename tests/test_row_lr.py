"""train/row_lr.py: the functional tokens' rows take `factor` times AdamW's step (weight
decay included), every other weight exactly the optimiser's own step."""

import copy

import pytest
import torch

from model import load_model
from tests.tiny_models import write_checkpoint
from train.row_lr import RowStepScale

ROWS = [7, 9, 40]  # 9 is an input and a target below; 7 and 40 get gradient only through the softmax


def _one_step(model, scale: RowStepScale | None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    tokens = torch.tensor([[1, 5, 9, 2, 9, 3]])
    logits = model(tokens)
    torch.nn.functional.cross_entropy(logits[0, :-1], tokens[0, 1:]).backward()
    if scale:
        scale.before_step()
    opt.step()
    if scale:
        scale.after_step()


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])  # untied and tied LM head
def test_scaled_rows_move_factor_times_as_far_and_nothing_else_changes(tmp_path, family):
    write_checkpoint(tmp_path / family, family, seed=3)
    base, _ = load_model(tmp_path / family)
    plain, scaled = copy.deepcopy(base), copy.deepcopy(base)
    _one_step(plain, None)
    _one_step(scaled, RowStepScale(scaled, ROWS, factor=50.0))
    names = ["embed_tokens.weight"] + ([] if base.config.tie_word_embeddings else ["lm_head.weight"])
    for (name, b), p, s in zip(base.named_parameters(), plain.parameters(), scaled.parameters(), strict=True):
        if name not in names:
            assert torch.equal(s, p), name
            continue
        others = [r for r in range(b.shape[0]) if r not in ROWS]
        assert torch.equal(s[others], p[others]), name
        assert (p[ROWS] - b[ROWS]).abs().min() > 0, name  # every scaled row did take a step
        torch.testing.assert_close(s[ROWS] - b[ROWS], 50.0 * (p[ROWS] - b[ROWS]), rtol=1e-4, atol=1e-7)
