"""Short helper processes (ffprobe, capability probes, integrity checks) with a time limit.

Every such call has the same duties: an argument list (never a shell), stdin closed, output
captured, and on timeout *or* cancellation the process killed and reaped so no helper
outlives its caller. The helper runs in its own session and the kill goes to its whole
process group: a wrapper script (a distribution's ``ffprobe`` launcher, a container shim)
would otherwise die alone and leave its child running, holding the file and the pipes.
Long encodes use ``castui_core.ffmpeg.runner`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    def last_stderr_line(self) -> str:
        """The last non-empty stderr line (ffmpeg puts the actual error there), or ''."""
        lines = [ln.strip() for ln in self.stderr.decode(errors="replace").splitlines()]
        return next((ln for ln in reversed(lines) if ln), "")


async def run_bounded(
    argv: Sequence[str], *, timeout_s: float, capture_stdout: bool = False
) -> Completed:
    """Run ``argv`` to completion within ``timeout_s``.

    Raises ``TimeoutError`` (after killing and reaping it) when it runs too long and
    ``OSError`` when it cannot be started. ``TimeoutError`` is itself an ``OSError``: callers
    must catch it first.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except BaseException:  # timeout or cancellation: never leave the helper running
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: a wrapper's children too
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out or b"", err or b"")
