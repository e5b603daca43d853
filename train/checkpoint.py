"""Checkpoints that let a killed run continue exactly where it stopped.

A checkpoint holds everything that decides the rest of the run:

- model and optimiser state, via torch.distributed.checkpoint (DCP): every rank writes
  its own shards in parallel, and a checkpoint written by N ranks loads on M;
- the trainer state (step, data position, scheduler, anything the loop adds): one small
  file written by rank 0;
- every rank's RNG states (torch CPU/CUDA, Python, NumPy), so sampling and dropout after
  the resume draw what the uninterrupted run would have drawn.

Writes go to ``step_N.tmp`` and are renamed to ``step_N`` only when complete, so a run
killed mid-save still finds its previous checkpoint intact.
"""

from __future__ import annotations

import random
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from .distributed import DistInfo, barrier

_PREFIX = "step_"


def _no_dist() -> bool:
    return not dist.is_initialized()


@contextmanager
def _quiet_single_process():
    """DCP warns that it 'assumes' a single process; here that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def find_latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if p.name.startswith(_PREFIX) and p.name[len(_PREFIX):].isdigit()]
    return max(done, key=lambda p: int(p.name[len(_PREFIX):]), default=None)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | Path, step: int, model, optimizer, trainer_state: dict, info: DistInfo, keep: int = 2
) -> Path:
    root = checkpoint_root(run_dir)
    final = root / f"{_PREFIX}{step:08d}"
    tmp = root / f"{_PREFIX}{step:08d}.tmp"
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    with _quiet_single_process():
        dcp.save(state, checkpoint_id=str(tmp), no_dist=_no_dist())
    torch.save(_rng_state(), tmp / f"rng_rank{info.rank}.pt")
    if info.is_main:
        torch.save(dict(trainer_state, step=step, cpu_threads=torch.get_num_threads()), tmp / "trainer_state.pt")
    barrier()
    if info.is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        old = sorted(p for p in root.iterdir() if p.name.startswith(_PREFIX) and not p.name.endswith(".tmp"))
        for stale in old[:-keep]:
            shutil.rmtree(stale, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(path: str | Path, model, optimizer, info: DistInfo) -> dict:
    """Restores model, optimiser and this rank's RNG in place; returns the trainer state."""
    path = Path(path)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    with _quiet_single_process():
        dcp.load(state, checkpoint_id=str(path), no_dist=_no_dist())
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    rng_file = path / f"rng_rank{info.rank}.pt"
    if rng_file.is_file():  # absent when resuming on more ranks than wrote it
        _set_rng_state(torch.load(rng_file, weights_only=False))
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    threads = state.get("cpu_threads", torch.get_num_threads())
    if threads != torch.get_num_threads() and info.is_main:
        # Float sums split over a different number of threads round differently.
        print(f"warning: {path} was written with {threads} CPU threads and this process has "
              f"{torch.get_num_threads()}; the run continues, but not bit-identically to an uninterrupted one "
              f"(OMP_NUM_THREADS={threads} restores that)", file=sys.stderr)
    return state
