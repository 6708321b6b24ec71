#!/usr/bin/env python3
"""ffmpeg stand-in for validation faults: every call runs the real ffmpeg, except the
integrity read (the only call with ``-xerror``) when ``$CASTUI_VALIDATE`` says otherwise:

- ``hang``: start a child that sleeps forever, then hang without output (a dead demuxer);
- ``busy``: the same child, then write ``-progress`` blocks forever (only the overall time
  limit can stop it).

Either way it appends ``<parent pid> <own pid> <child pid>`` to ``$CASTUI_VALIDATE_PIDS``
first: the test waits for that line (validation has started) and then checks that every one
of those processes is gone. Run behind a ``/bin/sh`` wrapper that does not ``exec``, the
parent is the wrapper: the process group must die, not only castui's direct child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    real = os.environ.get("CASTUI_REAL_FFMPEG") or shutil.which("ffmpeg") or "ffmpeg"
    mode = os.environ.get("CASTUI_VALIDATE", "")
    if "-xerror" not in args or mode not in ("hang", "busy"):
        os.execv(real, [real, *args])
    child = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"])
    with open(os.environ["CASTUI_VALIDATE_PIDS"], "a") as fh:
        fh.write(f"{os.getppid()} {os.getpid()} {child.pid}\n")
    n = 0
    while True:
        if mode == "busy":
            n += 1
            sys.stdout.write(f"frame={n}\nout_time_us={n * 40_000}\nprogress=continue\n")
            sys.stdout.flush()
            time.sleep(0.2)
        else:
            time.sleep(3600)


# --- helpers for the tests that use this shim -------------------------------------------------


def write_wrapper(directory: Path) -> Path:
    """A ``/bin/sh`` ffmpeg wrapper that runs this shim as its child (no ``exec``)."""
    wrapper = directory / "ffmpeg-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` (cheap /proc and file reads) until true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


async def await_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """:func:`wait_until` for async tests (the loop keeps running between checks)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)
    _ = what


def recorded_pids(pid_file: Path) -> list[int]:
    if not pid_file.exists():
        return []
    return [int(p) for line in pid_file.read_text().splitlines() for p in line.split()]


def kill_leftovers(pid_file: Path) -> None:
    """Test hygiene: never leave a hung shim behind, whatever the code under test did."""
    for pid in recorded_pids(pid_file):
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
