"""search/greedy.py: the one greedy loop (chat, solver, accuracy) on an engine sized by
Engine.for_search gives the full-recompute greedy text and fills the pool exactly."""

import torch

from model import load_model
from search.engine import Engine
from search.greedy import greedy_decode
from tests.tiny_models import write_checkpoint


def _recompute_greedy(model, tokens: list[int], n: int) -> list[int]:
    out = []
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([tokens + out]))[0, -1].argmax()))
    return out


def test_batched_and_streamed_greedy_match_recompute_and_fill_the_pool_exactly(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "llama3", seed=5)
    model, _ = load_model(tmp_path / "ckpt")
    prompts, n = [[3, 17, 29, 4], [8, 8, 2]], 6
    expected = [_recompute_greedy(model, p, n) for p in prompts]

    engine = Engine.for_search(model, sum(map(len, prompts)), len(prompts), n)
    assert greedy_decode(engine, prompts, n, stop_ids=set(), eos_id=None) == expected
    assert engine.pool.num_free == 0  # the bound is exact: every slot used, none short

    streamed = []
    engine = Engine.for_search(model, len(prompts[0]), 1, n)
    (out,) = greedy_decode(engine, prompts[:1], n, set(), None, on_token=lambda ids: streamed.append(list(ids)))
    assert out == expected[0] and streamed == [expected[0][:k] for k in range(1, n + 1)]


def test_a_stop_token_ends_the_text_and_a_trailing_eos_is_dropped(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "qwen2", seed=6)
    model, _ = load_model(tmp_path / "ckpt")
    prompt = [5, 6, 7]
    free_run = _recompute_greedy(model, prompt, 5)
    stop = free_run[2]
    cut = free_run[:free_run.index(stop) + 1]
    engine = Engine.for_search(model, len(prompt), 1, 5)
    assert greedy_decode(engine, [prompt], 5, {stop}, eos_id=None) == [cut]  # a closing tag stays
    engine = Engine.for_search(model, len(prompt), 1, 5)
    assert greedy_decode(engine, [prompt], 5, {stop}, eos_id=stop) == [cut[:-1]]  # EOS is not text


def test_on_finish_is_called_once_per_answer_as_it_ends(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "qwen2", seed=6)
    model, _ = load_model(tmp_path / "ckpt")
    prompts = [[5, 6, 7], [9, 2], [4, 4, 4, 1]]
    stop = _recompute_greedy(model, prompts[0], 5)[1]  # the first answer stops after 2 tokens
    ended = []
    engine = Engine.for_search(model, sum(map(len, prompts)), len(prompts), 5)
    outs = greedy_decode(engine, prompts, 5, {stop}, eos_id=None, on_finish=lambda: ended.append(len(ended)))
    assert ended == [0, 1, 2]
    assert len(outs[0]) <= 2 and all(len(o) <= 5 for o in outs)
