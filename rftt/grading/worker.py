"""SymPy in child processes under a hard time limit: a stuck check is killed with its
process, which works from any thread (``signal.alarm`` only works in the main thread)."""

from __future__ import annotations

import atexit
import json
import os
import selectors
import subprocess
import sys
import threading
import time

from rftt.grading.compare import compare_texts
from rftt.grading.sympy_compare import SympyComparer


class _Worker:
    """A child Python process that compares answers with SymPy, one request at a time,
    over JSON lines on its stdin/stdout. Started with subprocess (fork+exec), never with
    fork alone: forking a threaded parent (PyTorch, a data loader) can deadlock."""

    STARTUP_TIMEOUT = 60.0   # importing SymPy on a loaded machine can take seconds

    def __init__(self):
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from rftt.grading.worker import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,   # stderr: the parent's, for errors
            env=env, bufsize=0)
        self.buffer = b""
        # A selector, not select.select: a training process can hold more than 1024 open
        # files, and select() cannot watch descriptors above that.
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        if self._read_line(time.monotonic() + self.STARTUP_TIMEOUT) != b"ready":
            self.kill()
            raise RuntimeError("the SymPy grading worker did not start")

    def compare(self, pred: str, gold: str, timeout: float) -> bool | None:
        """The verdict, or None if the worker ran out of time (or died)."""
        try:
            self.proc.stdin.write(json.dumps({"pred": pred, "gold": gold}).encode() + b"\n")
        except OSError:
            return None
        line = self._read_line(time.monotonic() + timeout)
        return None if line is None else bool(json.loads(line)["equal"])

    def _read_line(self, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self.selector.select(remaining):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:                  # the worker died (memory limit, crash)
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.selector.close()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


class _WorkerPool:
    """A few reusable workers shared by all threads. A worker that runs out of time is
    killed (that is the hard time limit) and replaced on the next request."""

    def __init__(self, size: int):
        self.size = size
        self.idle: list[_Worker] = []
        self.started = 0
        self.lock = threading.Condition()

    def compare(self, pred: str, gold: str, deadline: float) -> bool | None:
        """The verdict, or None when `deadline` (time.monotonic()) passes first, waiting
        for a free worker included (starting a new one is not counted)."""
        worker, startup = self._acquire(deadline)
        if worker is None:
            return None
        remaining = deadline + startup - time.monotonic()
        verdict = worker.compare(pred, gold, remaining) if remaining > 0 else None
        if verdict is None and remaining > 0:
            worker.kill()                  # it may still be busy: never reuse it
            worker = None
        self._release(worker)
        return verdict

    def _acquire(self, deadline: float = float("inf")) -> tuple[_Worker | None, float]:
        """(an idle or new worker, or None when the deadline passed first; the seconds spent
        starting a new one, which the caller does not count against its time limit)."""
        with self.lock:
            while not self.idle and self.started >= self.size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, 0.0
                self.lock.wait(min(remaining, 3600.0))
            if self.idle:
                return self.idle.pop(), 0.0
            self.started += 1
        start = time.monotonic()
        try:
            return _Worker(), time.monotonic() - start
        except BaseException:
            self._release(None)
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self.lock:
            if worker is None:
                self.started -= 1
            else:
                self.idle.append(worker)
            self.lock.notify()

    def close(self) -> None:
        with self.lock:
            for worker in self.idle:
                worker.kill()
            self.started -= len(self.idle)
            self.idle.clear()


POOL = _WorkerPool(size=max(1, min(4, (os.cpu_count() or 2) // 2)))
atexit.register(POOL.close)


def serve() -> None:
    """The worker's main loop (runs in the child process)."""
    try:
        import resource
        limit = 4 << 30                    # 4 GiB: a runaway expansion dies, not the host
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass
    import sympy  # noqa: F401  (imported once here, before saying ready)

    out = sys.stdout.buffer
    sys.stdout = sys.stderr               # nothing else may write on the protocol pipe
    out.write(b"ready\n")
    out.flush()
    comparer = SympyComparer()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            verdict = compare_texts(request["pred"], request["gold"], comparer)
        except Exception:                 # a SymPy failure is "not shown equal"
            verdict = False
        out.write(json.dumps({"equal": verdict is True}).encode() + b"\n")
        out.flush()


def warm_up() -> None:
    """Start a SymPy worker now, so the first graded answer does not wait for it."""
    POOL._release(POOL._acquire()[0])
