"""Checkpoints that let a killed run continue exactly where it stopped.

A checkpoint holds everything that decides the rest of the run:

- model and optimiser state, via torch.distributed.checkpoint (DCP): every rank writes
  its own shards in parallel, and a checkpoint written by N ranks loads on M;
- the trainer state (step, data position, scheduler, anything the loop adds): one small
  file written by rank 0;
- every rank's RNG states (torch CPU/CUDA, Python, NumPy), so sampling and dropout after
  the resume draw what the uninterrupted run would have drawn.

Writes go to ``step_N.tmp`` and are renamed to ``step_N`` only when complete, so a run
killed mid-save still finds its previous checkpoint intact. A checkpoint damaged later (a
file truncated by a full disk or a bad copy) is skipped with a warning and the run resumes
from the newest intact one; the damaged one is never deleted: when its step is saved
again it is moved aside to ``step_N.corrupt``.
"""

from __future__ import annotations

import random
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from .distributed import DistInfo, barrier, shutdown

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


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names its directory."""


def _step_dirs(root: Path) -> list[Path]:
    """Complete checkpoints (``step_N``, not ``.tmp`` or ``.corrupt``), oldest first."""
    done = [p for p in root.iterdir() if p.name.startswith(_PREFIX) and p.name[len(_PREFIX):].isdigit()]
    return sorted(done, key=lambda p: int(p.name[len(_PREFIX):]))


def checkpoint_damage(path: Path) -> str | None:
    """What is wrong with a checkpoint's files, or None when they are all there and
    whole: DCP's metadata parses, every byte range it points to exists, and the small
    torch files load. (A flipped bit inside a tensor would pass: there are no checksums.)"""
    try:
        metadata = dcp.FileSystemReader(str(path)).read_metadata()
    except (Exception, CheckpointException) as e:  # any failure to read it means the same thing
        return f"its .metadata is unreadable ({type(e).__name__}: {_first_line(e)})"
    ends: dict[str, int] = {}
    for info in metadata.storage_data.values():
        ends[info.relative_path] = max(ends.get(info.relative_path, 0), info.offset + info.length)
    for name, end in sorted(ends.items()):
        size = (path / name).stat().st_size if (path / name).is_file() else None
        if size is None or size < end:
            return f"{name} is {'missing' if size is None else f'{size:,} bytes, cut short of {end:,}'}"
    for small in sorted(path.glob("*.pt")):
        try:
            torch.load(small, weights_only=False)
        except Exception as e:  # a truncated zip, a bad pickle: unreadable either way
            return f"{small.name} is unreadable ({type(e).__name__}: {_first_line(e)})"
    if not (path / "trainer_state.pt").is_file():
        return "trainer_state.pt is missing"
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _cause(error: BaseException) -> str:
    """A DCP CheckpointException's text is every rank's traceback: its last line is the cause."""
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def find_latest(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint of a run directory, or None when it has none. Newer
    damaged ones are reported on stderr and left where they are; when every checkpoint
    is damaged the run does not silently start over: CheckpointError names them."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    damaged = []
    for path in reversed(_step_dirs(root)):
        damage = checkpoint_damage(path)
        if damage is None:
            return path
        damaged.append(f"{path} ({damage})")
        print(f"warning: checkpoint {path} is corrupt ({damage}); falling back to an older one "
              "(the corrupt one is kept)", file=sys.stderr)
    if damaged:
        raise CheckpointError(f"{root}: no intact checkpoint to resume from: {'; '.join(damaged)}. Move them away "
                              "to start over, or use a new --out")
    return None


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
    try:
        with _quiet_single_process():
            dcp.save(state, checkpoint_id=str(tmp), no_dist=_no_dist())
        torch.save(_rng_state(), tmp / f"rng_rank{info.rank}.pt")
        if info.is_main:
            torch.save(dict(trainer_state, step=step, cpu_threads=torch.get_num_threads()), tmp / "trainer_state.pt")
    except (Exception, CheckpointException) as e:
        # A full disk surfaces as torch's "unexpected pos 704 vs 598" deep in DCP. Drop
        # the partial directory (it only takes space; the previous checkpoints are untouched)
        # and say where and how much room is left.
        shutil.rmtree(tmp, ignore_errors=True)
        free_gb = shutil.disk_usage(root).free / 2**30
        raise CheckpointError(f"{tmp}: writing the step-{step} checkpoint failed ({_cause(e)}); {free_gb:.1f} GiB free "
                              f"on that disk. Earlier checkpoints in {root} are intact: free space and run "
                              "the same command to resume from the last one") from e
    barrier()
    if info.is_main:
        if final.exists():  # only a damaged one that find_latest skipped: keep it for inspection
            final.rename(_aside(final))
        tmp.rename(final)
        for stale in _step_dirs(root)[:-keep]:
            shutil.rmtree(stale, ignore_errors=True)
    barrier()
    return final


def stop_as_if_killed() -> NoReturn:
    """`--stop-after`: end the run right after a checkpoint, as a kill would (nothing after
    the checkpoint runs), with exit code 3 so a test can tell it from a crash. SystemExit
    rather than os._exit: a test can catch it in-process, and the process group is shut
    down first so the other ranks end cleanly too."""
    shutdown()
    raise SystemExit(3)


def _aside(path: Path) -> Path:
    """``step_N.corrupt`` (or ``.corrupt2``, ... if that exists)."""
    candidates = (path.with_name(f"{path.name}.corrupt{'' if i == 1 else i}") for i in range(1, 10_000))
    return next(p for p in candidates if not p.exists())


def load_checkpoint(path: str | Path, model, optimizer, info: DistInfo) -> dict:
    """Restores model, optimiser and this rank's RNG in place; returns the trainer state."""
    path = Path(path)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    try:
        with _quiet_single_process():
            dcp.load(state, checkpoint_id=str(path), no_dist=_no_dist())
        set_model_state_dict(model, state["model"])
        set_optimizer_state_dict(model, optimizer, state["optim"])
    except (Exception, CheckpointException) as e:  # DCP's errors name no path
        raise CheckpointError(f"{path}: cannot load it into this model and optimiser ({_cause(e)}); was the run "
                              "started with another --model or other flags? Use a new --out") from e
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
