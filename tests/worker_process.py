"""A real worker OS process that a test speaks to in lines on stdin/stdout (shared by the
store tests and the queue conformance suite, which each run their own ``_worker.py``).

A thread drains stdout into a queue so that reading a line can time out: the test fails with
the worker's stderr instead of hanging, without the select-vs-buffered-pipe pitfalls.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class WorkerProcess:
    """``python SCRIPT ARGS...`` with the repository importable and unbuffered output."""

    #: The worker script (set by each suite's subclass).
    script: Path

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), *args],
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

    def next_line(self, timeout: float) -> str:
        """The next stdout line (blocking); fails the test if the worker goes quiet or exits."""
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
