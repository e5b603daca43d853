"""The stage clock: a stage's wall time summed over its runs, a killed run counted to its last tick."""

import json
import time

import pytest

from train.stage_clock import StageClock

NEVER = 1e9  # a tick interval the test never reaches: only enter, exit and tick() write


class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def read_runs(path):
    return json.loads(path.read_text())["runs"]


def test_runs_of_a_stage_add_up(tmp_path):
    path, now = tmp_path / "clock.json", FakeTime()
    with StageClock(path, every_s=NEVER, now=now) as first:
        assert read_runs(path)[-1]["seconds"] == 0.0  # written on entry
        now.t += 5.0
    assert first.total_s == 5.0 and len(first.runs) == 1
    with StageClock(path, resumed=True, every_s=NEVER, now=now) as second:
        now.t += 3.25
    assert [r["seconds"] for r in read_runs(path)] == [5.0, 3.2]  # 3.25 rounds to even
    assert second.total_s == 8.2 and second.untimed_runs == 0


def test_a_killed_run_counts_up_to_its_last_tick(tmp_path):
    path, now = tmp_path / "clock.json", FakeTime()
    killed = StageClock(path, every_s=NEVER, now=now).__enter__()
    now.t += 42.0
    killed.tick()  # the heartbeat's last write
    now.t += 30.0  # ... then the process dies: these seconds are never written
    resumed = StageClock(path, resumed=True, every_s=NEVER, now=now)
    with resumed:
        now.t += 1.0
    assert [r["seconds"] for r in resumed.runs] == [42.0, 1.0] and resumed.total_s == 43.0
    killed.__exit__(None, None, None)  # stops the first clock's thread (it rewrites its own copy)


def test_an_exception_still_records_the_run(tmp_path):
    path, now = tmp_path / "clock.json", FakeTime()
    with pytest.raises(SystemExit):
        with StageClock(path, every_s=NEVER, now=now):
            now.t += 9.0
            raise SystemExit(3)
    assert read_runs(path)[0]["seconds"] == 9.0


def test_a_stage_started_before_the_clock_has_one_untimed_run(tmp_path):
    path, now = tmp_path / "clock.json", FakeTime()
    with StageClock(path, resumed=True, every_s=NEVER, now=now) as clock:
        now.t += 2.0
    assert clock.untimed_runs == 1 and len(clock.runs) == 2 and clock.total_s == 2.0
    assert read_runs(path)[0] == {"started": None, "seconds": None}


def test_the_heartbeat_writes_while_the_stage_runs(tmp_path):
    path, now = tmp_path / "clock.json", FakeTime()
    with StageClock(path, every_s=0.01, now=now):
        now.t += 7.0  # only the background thread writes from here until the exit
        deadline = time.monotonic() + 60
        while read_runs(path)[-1]["seconds"] != 7.0:
            assert time.monotonic() < deadline, "the clock's thread never ticked"
            time.sleep(0.01)
