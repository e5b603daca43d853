"""Stages of a long pipeline that a rerun skips once finished and never mixes.

A stage owns a directory. Before it runs, its settings (the exact argv it is given, or
whatever else decides its result) are written to DIR/settings.json; when it finishes,
DIR/done.json holds the settings, the result and the wall time: summed over every run of
the stage, a killed one included (train/stage_clock.py). Started again:

- a finished stage with the same settings is skipped and its recorded result returned;
- an unfinished one runs again (train.sft and train.ppo resume from their checkpoints
  in the same directory);
- a stage, finished or not, recorded with *other* settings is refused, naming the stage
  and each setting that differs: its checkpoints or results belong to another run, and
  resuming or reusing them would mix two experiments in one table.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from train.stage_clock import StageClock


class StageSettingsChanged(ValueError):
    """A stage's directory holds a run made with other settings (a ValueError: the
    command line prints it as one line)."""


@dataclass
class Stage:
    name: str
    directory: Path
    settings: dict          # JSON-able; `argv` (a list of strings) is compared flag by flag
    run: Callable[[], dict]  # does the work, returns the result recorded in done.json

    @property
    def done_path(self) -> Path:
        return self.directory / "done.json"

    @property
    def settings_path(self) -> Path:
        return self.directory / "settings.json"


def flag_values(argv: list[str]) -> dict[str, str]:
    """['--epochs', '2', '--no-eval'] -> {'--epochs': '2', '--no-eval': ''}; a flag given
    twice keeps its last value, as argparse does."""
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            name, eq, inline = token.partition("=")
            if eq:
                values[name] = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                values[name] = argv[i + 1]
                i += 1
            else:
                values[name] = ""
        else:
            values[f"(argument {i})"] = token
        i += 1
    return values


def settings_differences(recorded: dict, wanted: dict) -> list[str]:
    """Human-readable differences: "--epochs: '2' before, '3' now" (argv flags), or
    "levels: [1, 2] before, [1, 2, 3] now" (other settings)."""
    out = []
    for key in sorted(set(recorded) | set(wanted)):
        old, new = recorded.get(key), wanted.get(key)
        if old == new:
            continue
        if key == "argv" and isinstance(old, list) and isinstance(new, list):
            a, b = flag_values(old), flag_values(new)
            flags = [f"{f}: {a.get(f, '(absent)')!r} before, {b.get(f, '(absent)')!r} now"
                     for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
            out += flags or [f"argv: {old} before, {new} now"]  # same flags, another order
        else:
            out.append(f"{key}: {old!r} before, {new!r} now")
    return out


def check_settings(stage: Stage) -> None:
    """Raises StageSettingsChanged when the stage's directory was used with other settings."""
    for path in (stage.done_path, stage.settings_path):
        if path.is_file():
            recorded = json.loads(path.read_text())["settings"]
            diff = settings_differences(recorded, stage.settings)
            if diff:
                state = "finished" if path == stage.done_path else "started"
                raise StageSettingsChanged(
                    f"stage '{stage.name}' ({stage.directory}) was {state} with other settings: "
                    + "; ".join(diff) + f". Rerun with the settings it had, use another --out, or delete "
                    f"{stage.directory} to run it again")
            return  # done.json settles it; settings.json is only read for an unfinished stage


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_stage(stage: Stage, log=stderr_log) -> dict:
    """The stage's done.json record, running the stage first unless it finished earlier."""
    check_settings(stage)
    if stage.done_path.is_file():
        record = json.loads(stage.done_path.read_text())
        log(f"[reproduce] {stage.name}: finished earlier ({record['wall_s']:.1f} s), skipped")
        return record
    stage.directory.mkdir(parents=True, exist_ok=True)
    resumed = stage.settings_path.is_file()
    stage.settings_path.write_text(json.dumps({"settings": stage.settings}, indent=2))
    log(f"[reproduce] {stage.name}: {'resuming' if resumed else 'running'}")
    with StageClock(stage.directory / "clock.json", resumed=resumed) as clock:
        result = stage.run()
    record = {"stage": stage.name, "settings": stage.settings, "result": result,
              "wall_s": clock.total_s, "resumed": resumed, "runs": len(clock.runs),
              "untimed_runs": clock.untimed_runs,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    stage.done_path.write_text(json.dumps(record, indent=2, default=str))
    log(f"[reproduce] {stage.name}: done in {record['wall_s']:.1f} s")
    return record
