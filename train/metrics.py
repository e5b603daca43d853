"""Metrics as JSON lines: one object per logged step, appended and flushed at once."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


class MetricsLog:
    def __init__(self, path: str | Path, enabled: bool = True, resume_step: int | None = None):
        self.path = Path(path)
        self.enabled = enabled
        if enabled and resume_step is not None and self.path.is_file():
            self._drop_after(resume_step)

    def _drop_after(self, step: int) -> None:
        """After a resume, steps past the checkpoint will be run (and logged) again."""
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", -1) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, **values) -> None:
        if not self.enabled:
            return
        values.setdefault("time", round(time.time(), 3))
        with self.path.open("a") as f:
            f.write(json.dumps(values, default=float) + "\n")


def process_cpu_seconds() -> dict[str, float]:
    """CPU seconds this process has used so far, every thread: `user` (its own code) and
    `system` (the kernel working for it). On CPU training the system time is mostly page
    faults: glibc unmaps every freed block of 32 MiB or more, so each large temporary is
    faulted in again on the next step."""
    t = os.times()
    return {"user": t.user, "system": t.system}


def cpu_seconds_since(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """The CPU seconds between two `process_cpu_seconds()` readings."""
    return {k: round(end[k] - start[k], 2) for k in start}


def peak_rss_gb() -> float:
    """The process's peak resident memory so far, GB: a high-water mark that never falls,
    what a machine must hold for the run (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak * (1 if sys.platform == "darwin" else 1024) / 1e9, 2)
