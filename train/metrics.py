"""Metrics as JSON lines: one object per logged step, appended and flushed at once."""

from __future__ import annotations

import json
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
