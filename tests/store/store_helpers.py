"""Shared helpers for the store tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the package may not be installed in the test venv
    sys.path.insert(0, str(REPO_ROOT))

WORKER = Path(__file__).with_name("_worker.py")
T0 = 1_700_000_000.0


class FakeClock:
    """Deterministic time for lease and backoff tests: only moves when told to."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Worker:
    """A real OS process running tests/store/_worker.py, talked to over stdin/stdout lines.

    A thread drains stdout into a queue so ``readline`` can time out (the test fails with the
    worker's stderr instead of hanging) without the select-vs-buffered-pipe pitfalls.
    """

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # EOF

    def readline(self, timeout: float = 20.0) -> str:
        """Next stdout line; fails the test (instead of hanging) if the worker goes quiet."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"worker silent for {timeout}s; stderr: {self.stderr()}") from None
        if line is None:
            self.proc.wait(10)
            raise AssertionError(f"worker exited early; stderr: {self.stderr()}")
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no cleanup handlers, no atexit, like `kill -9`
        self.proc.wait(10)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self) -> None:
        self.kill()
        self._reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
