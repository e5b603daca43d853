"""A stage's wall time summed over every run of it, the killed ones included.

train.reproduce runs stages that take hours; one killed half-way (a machine shut down, a
session that ends) resumes from its checkpoint when the command is run again, and the
run that finishes it has only seen its own part. The clock keeps DIR/clock.json, one
entry a run: when it started and how many seconds it had run at its last tick. A
background thread ticks every `every_s` seconds and the run's end (a return, an
exception, a SystemExit) writes a last one, so a run killed without warning (SIGKILL,
power) loses at most `every_s` seconds of its time. A run from before the clock existed
(the stage had started, but left no clock.json) is an entry with no times: counted as a
run, its seconds unknown.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable


class StageClock:
    """with StageClock(DIR / "clock.json", resumed=...) as clock: ...; then clock.total_s."""

    def __init__(self, path: Path, resumed: bool = False, every_s: float = 60.0,
                 now: Callable[[], float] = time.monotonic):
        self.path, self.every_s, self.now = Path(path), every_s, now
        if self.path.is_file():
            self.runs: list[dict] = json.loads(self.path.read_text())["runs"]
        else:  # a stage resumed with no clock.json was started before the clock: one untimed run
            self.runs = [{"started": None, "seconds": None}] if resumed else []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick_until_stopped, daemon=True)

    def __enter__(self) -> "StageClock":
        self._start = self.now()
        self.runs.append({"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": 0.0})
        self.tick()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.tick()

    def _tick_until_stopped(self) -> None:
        while not self._stop.wait(self.every_s):
            self.tick()

    def tick(self) -> None:
        """Records this run's seconds so far (atomically: a kill mid-write leaves the last tick)."""
        with self._lock:
            self.runs[-1]["seconds"] = round(self.now() - self._start, 1)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"runs": self.runs}, indent=2))
            os.replace(tmp, self.path)

    @property
    def total_s(self) -> float:
        """Seconds over every timed run."""
        return round(sum(r["seconds"] for r in self.runs if r["seconds"] is not None), 1)

    @property
    def untimed_runs(self) -> int:
        return sum(r["seconds"] is None for r in self.runs)
