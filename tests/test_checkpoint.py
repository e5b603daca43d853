"""Checkpoint/resume: a run stopped and resumed ends with the same weights as one that never stopped."""

import json

import torch

from model import load_model
from train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from train.distributed import init_distributed
from train.metrics import MetricsLog
from train.schedule import make_scheduler, warmup_cosine
from tests.tiny_models import write_checkpoint


def _train(model, optimizer, scheduler, start: int, stop: int):
    for step in range(start, stop):
        g = torch.Generator().manual_seed(1000 + step)  # the data at step `step`
        tokens = torch.randint(0, 300, (2, 12), generator=g)
        noise = torch.rand(()) * 0.01  # draws from the global RNG, which must resume too
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()) + noise
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def _fresh(path):
    model, _ = load_model(path)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    return model, opt, make_scheduler(opt, warmup_steps=2, total_steps=8)


def test_resume_matches_uninterrupted(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "llama-tied", seed=5)
    info = init_distributed("cpu")

    torch.manual_seed(0)
    model, opt, sched = _fresh(tmp_path / "ckpt")
    _train(model, opt, sched, 0, 8)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    torch.manual_seed(0)
    model, opt, sched = _fresh(tmp_path / "ckpt")
    _train(model, opt, sched, 0, 3)
    save_checkpoint(tmp_path / "run", 3, model, opt, {"scheduler": sched.state_dict(), "data_pos": 3}, info)
    torch.rand(5)  # the "killed" process kept drawing; the resume must not see this
    del model, opt, sched

    model, opt, sched = _fresh(tmp_path / "ckpt")
    latest = find_latest(tmp_path / "run")
    state = load_checkpoint(latest, model, opt, info)
    sched.load_state_dict(state["scheduler"])
    assert state["step"] == 3 and state["data_pos"] == 3
    _train(model, opt, sched, state["data_pos"], 8)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0, msg=k)


def test_keeps_last_checkpoints_and_ignores_partial(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "qwen2", seed=1)
    info = init_distributed("cpu")
    model, opt, sched = _fresh(tmp_path / "ckpt")
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / "run", step, model, opt, {}, info, keep=2)
    (tmp_path / "run" / "checkpoints" / "step_00000009.tmp").mkdir()  # a save that was killed
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step_00000002", "step_00000003", "step_00000009.tmp"]
    assert find_latest(tmp_path / "run").name == "step_00000003"


def test_a_failed_save_says_why_drops_its_partial_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    # A full disk shows up deep in torch.save as "unexpected pos 704 vs 598" (seen on a
    # PPO run of the 0.5B model); the run must stop with a line that says what failed.
    import pytest

    import train.checkpoint as checkpoint

    write_checkpoint(tmp_path / "ckpt", "qwen2", seed=1)
    info = init_distributed("cpu")
    model, opt, _ = _fresh(tmp_path / "ckpt")
    save_checkpoint(tmp_path / "run", 1, model, opt, {"data_pos": 1}, info)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if str(f).endswith("trainer_state.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(checkpoint.CheckpointError) as err:
        save_checkpoint(tmp_path / "run", 2, model, opt, {"data_pos": 2}, info)
    message = str(err.value)
    assert "step_00000002.tmp" in message and "step-2 checkpoint failed" in message
    assert "unexpected pos 704 vs 598" in message and "GiB free" in message
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_00000001"]
    monkeypatch.undo()
    latest = find_latest(tmp_path / "run")
    assert latest.name == "step_00000001"
    assert load_checkpoint(latest, *_fresh(tmp_path / "ckpt")[:2], info)["data_pos"] == 1


def test_schedule_shape():
    values = [warmup_cosine(s, 3, 13, min_ratio=0.1) for s in range(14)]
    assert values[:3] == [1 / 3, 2 / 3, 1.0]
    assert all(a >= b for a, b in zip(values[2:], values[3:]))
    assert abs(values[-1] - 0.1) < 1e-9


def test_metrics_resume_drops_rerun_steps(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for s in range(5):
        log.log(step=s, loss=1.0 / (s + 1))
    with (tmp_path / "m.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')  # cut by a kill
    MetricsLog(tmp_path / "m.jsonl", resume_step=2)
    steps = [json.loads(line)["step"] for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]


def test_a_resume_on_another_thread_count_is_announced(tmp_path, capsys):
    """Float sums split over another number of threads round differently, so a checkpoint
    records the count and a resume with a different one says it will not be bit-exact."""
    write_checkpoint(tmp_path / "ckpt", "llama-tied", seed=2)
    info = init_distributed("cpu")  # pins the thread count (MKL's dynamic threading off)
    threads = torch.get_num_threads()
    model, opt, _ = _fresh(tmp_path / "ckpt")
    path = save_checkpoint(tmp_path / "run", 1, model, opt, {}, info)
    assert load_checkpoint(path, model, opt, info)["cpu_threads"] == threads
    assert "CPU threads" not in capsys.readouterr().err
    torch.set_num_threads(threads + 1)
    try:
        load_checkpoint(path, model, opt, info)
    finally:
        torch.set_num_threads(threads)
    assert f"written with {threads} CPU threads" in capsys.readouterr().err
