"""Shared helpers for the store tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the package may not be installed in the test venv
    sys.path.insert(0, str(REPO_ROOT))

from worker_process import WorkerProcess  # noqa: E402  (tests/ is on sys.path)

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


class Worker(WorkerProcess):
    """A real OS process running tests/store/_worker.py (blocking reads: these tests are
    synchronous)."""

    script = WORKER

    def readline(self, timeout: float = 20.0) -> str:
        """Next stdout line; fails the test (instead of hanging) if the worker goes quiet."""
        return self.next_line(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)
