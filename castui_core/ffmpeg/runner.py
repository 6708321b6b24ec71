"""Run one ffmpeg process: progress, pause/resume, stall and time limits, cancel, classified result.

Why it is built this way:

- ffmpeg runs in its own session (``start_new_session=True``), so signals go to its process
  group: a pause, cancel or kill reaches every process ffmpeg might start, and a Ctrl-C in the
  terminal running castui does not hit ffmpeg behind the worker's back.
- stdout (``-progress pipe:1``) and stderr are read concurrently, in chunks, from the start
  to EOF. A pipe nobody reads fills up (64 KiB) and then ffmpeg blocks forever; reading in
  chunks rather than ``readline`` also means an endless line cannot raise mid-run. Only a
  bounded head and tail of stderr are kept, so a source that makes ffmpeg print a warning per
  frame cannot eat memory.
- A stall is "no new ``-progress`` block for ``stall_timeout_s``". ffmpeg emits a block every
  0.5 s while it makes progress, so silence means it is stuck (dead NFS mount, hung demuxer,
  wedged driver). Stall detection and the overall timeout are suspended while paused: a
  stopped process is silent by design.
- Stopping is SIGTERM, then SIGKILL after ``grace_s``. SIGCONT follows every SIGTERM, because
  a paused (SIGSTOPped) process would not act on SIGTERM until continued.
- The process is always awaited (also when ``run()`` itself is cancelled), so no zombie
  remains and the result always has an exit code when there was a process.
- If the executable cannot be started at all, ``run()`` raises ``ToolNotFoundError`` rather
  than returning a failed result: that is a setup problem of the machine, not of the file, and
  a worker that recorded it as a job failure would fail every job in the queue one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from castui_core.errors import ToolNotFoundError
from castui_core.ffmpeg.failures import Failure, FailureKind, classify_failure
from castui_core.ffmpeg.progress import Progress, ProgressParser

log = logging.getLogger(__name__)

#: How much stderr a result keeps (and classification sees): the end of the output, where
#: ffmpeg prints the error that stopped it.
TAIL_MAX_LINES = 64
TAIL_MAX_BYTES = 8 * 1024
#: The first bytes of stderr are also kept: an early decisive line (``No space left on
#: device``) can be followed by a flood of consequential errors that push it out of the tail.
_HEAD_MAX_BYTES = 4 * 1024
_READ_CHUNK = 64 * 1024
#: A stdout "line" longer than this is not a progress line; it is dropped instead of buffered.
_MAX_PROGRESS_LINE = 64 * 1024
#: The watchdog re-checks deadlines at least this often, so an injected clock that jumps is
#: noticed promptly without relying on wake-ups.
_WATCH_INTERVAL_S = 0.25
#: After the process exits, how long to wait for its pipes to reach EOF (a stray grandchild
#: holding them open must not hang the worker).
_DRAIN_TIMEOUT_S = 5.0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when castui dies (Linux ``PR_SET_PDEATHSIG``).

    ffmpeg runs in its own session (so signals to castui's group don't reach it), which
    means a ``kill -9`` of castui would otherwise leave it running, still writing a temp
    file that the next start's journal recovery is about to remove. Only async-signal-safe
    work happens here: one prctl call through an already loaded libc.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
except OSError:  # not glibc/musl Linux: no parent-death signal, ffmpeg may outlive a crash
    _LIBC = None

#: util-linux's ``setpriv --pdeathsig KILL -- ffmpeg ...`` sets the same parent-death signal
#: and execs ffmpeg in place (same pid, same session). Preferred to ``_die_with_parent``
#: because any ``preexec_fn`` makes Python fork the whole interpreter (~200 MB of page tables)
#: and run Python in the child, where without one it uses vfork: ~9-15 ms less per ffmpeg
#: start on the 2-core machine, twice per job (encode, integrity read), during which the
#: event loop is blocked. Where setpriv is missing or too old, the preexec_fn stays.
_SETPRIV_PDEATHSIG = ("--pdeathsig", "KILL", "--")
_setpriv: list[str] | None = None  # the wrapper's argv prefix ([] once found unusable)


async def _death_wrapper() -> list[str]:
    """``[setpriv, --pdeathsig, KILL, --]`` when that works here, else ``[]`` (checked once,
    by running it: an old setpriv without ``--pdeathsig`` fails the check)."""
    global _setpriv
    if _setpriv is None:
        found = shutil.which("setpriv")
        usable = False
        if found is not None:
            with contextlib.suppress(OSError):
                check = await asyncio.create_subprocess_exec(
                    found,
                    *_SETPRIV_PDEATHSIG,
                    "true",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                usable = await check.wait() == 0
        _setpriv = [found, *_SETPRIV_PDEATHSIG] if usable and found else []
    return _setpriv


def _not_startable(program: str) -> OSError | None:
    """Why ``program`` cannot be executed, or None. Behind the setpriv wrapper a missing
    ffmpeg would be setpriv's exit 127, not the OSError that says "install ffmpeg"."""
    path = program if os.sep in program else shutil.which(program)
    if path is None or not os.path.isfile(path):
        return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    if not os.access(path, os.X_OK):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    return None


@dataclass(frozen=True)
class RunResult:
    """What one ffmpeg run did. ``failure`` is None exactly when it succeeded."""

    args: tuple[str, ...]
    exit_code: int | None  # None when no process ran (cancelled before start)
    seconds: float  # wall time, pauses included
    stderr_tail: str  # last ~64 lines / 8 KB of stderr
    last_progress: Progress | None
    failure: Failure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


class _StderrBuffer:
    """Keeps the first few KB and the last ~8 KB of a byte stream of any length."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(self._head) < _HEAD_MAX_BYTES:
            self._head += chunk[: _HEAD_MAX_BYTES - len(self._head)]
        self._tail += chunk
        if len(self._tail) > 2 * TAIL_MAX_BYTES:
            del self._tail[: len(self._tail) - TAIL_MAX_BYTES]

    def tail(self) -> str:
        data = bytes(self._tail[-TAIL_MAX_BYTES:])
        trimmed = self.total > len(data)
        lines = data.decode("utf-8", errors="replace").splitlines()
        if trimmed and lines:
            lines = lines[1:]  # the first line was cut in the middle
        return "\n".join(lines[-TAIL_MAX_LINES:])

    def for_classification(self) -> str:
        """Head plus tail (just the whole text when it was short): what ``classify`` reads."""
        if self.total <= len(self._head):
            return self._head.decode("utf-8", errors="replace")
        head = self._head.decode("utf-8", errors="replace")
        return head + "\n" + self.tail()


class FfmpegRun:
    """One ffmpeg process, started by ``run()``; steer it from other tasks meanwhile.

    ``args`` is the full argv (``EncodePlan.args``; any program works, which the tests use).
    ``duration_s`` is the source duration for percent/ETA. ``on_progress`` is called on the
    event loop for every ``-progress`` block; it must not block, and an exception from it is
    logged and ignored (it must never stop the pipes from being drained). ``timeout_s`` limits
    the running time (paused time excluded); ``clock`` drives every deadline and ``seconds``.
    A ``FfmpegRun`` runs once.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        duration_s: float | None,
        on_progress: Callable[[Progress], None] | None = None,
        stall_timeout_s: float = 120.0,
        timeout_s: float | None = None,
        grace_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_stderr: Callable[[str], None] | None = None,
    ) -> None:
        if not args:
            raise ValueError("FfmpegRun needs a non-empty argv")
        self.on_stderr = on_stderr
        self.args = tuple(args)
        self.duration_s = duration_s
        self.on_progress = on_progress
        self.stall_timeout_s = stall_timeout_s
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self._clock = clock
        self._parser = ProgressParser(duration_s)
        self._stderr = _StderrBuffer()
        self._proc: asyncio.subprocess.Process | None = None
        self._started = False
        self._finished = asyncio.Event()
        self._wake = asyncio.Event()
        self._stop: Failure | None = None  # why castui is stopping the process, once asked
        self._paused = False
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._last_activity = 0.0
        self._start_time = 0.0  # clock() when the process started
        self._result: RunResult | None = None

    # -- state -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The ffmpeg process id (also its process group id), None before it started."""
        return None if self._proc is None else self._proc.pid

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def result(self) -> RunResult | None:
        """The result once ``run()`` has finished, else None."""
        return self._result

    def _running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def _signal(self, sig: signal.Signals) -> None:
        """Signal ffmpeg's process group; a process that already exited is not an error."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return  # never signal a reaped pid: it may belong to someone else by now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    # -- control from other tasks ------------------------------------------------------

    def pause(self) -> None:
        """Freeze ffmpeg (SIGSTOP) and suspend stall/timeout detection until ``resume()``.

        Called before the process starts, it is applied right after the start. Ignored once a
        stop was requested or the run has ended.
        """
        if self._paused or self._stop is not None or self._finished.is_set():
            return
        self._paused = True
        self._paused_since = self._clock()
        self._signal(signal.SIGSTOP)
        self._wake.set()

    def resume(self) -> None:
        """Continue a paused ffmpeg (SIGCONT); the stall timer starts afresh."""
        if not self._paused:
            return
        self._paused = False
        now = self._clock()
        if self._paused_since is not None:
            self._paused_total += now - self._paused_since
        self._paused_since = None
        self._last_activity = now
        self._signal(signal.SIGCONT)
        self._wake.set()

    async def cancel(self, reason: str = "cancelled") -> None:
        """Stop the run (SIGTERM, SIGKILL after ``grace_s``) and wait until it has ended.

        Safe at any time: before ``run()`` started, ``run()`` returns a cancelled result
        without starting ffmpeg; after it ended, this does nothing and the result stands.
        """
        self._request_stop(Failure(FailureKind.cancelled, reason))
        if self._started and not self._finished.is_set():
            await self._finished.wait()

    def stop(self, reason: str = "cancelled") -> None:
        """Ask the run to stop, without waiting (usable from sync code, e.g. right after the
        run was created and before anything awaited ``run()``)."""
        self._request_stop(Failure(FailureKind.cancelled, reason))

    def _request_stop(self, failure: Failure) -> None:
        if self._proc is not None and self._proc.returncode is not None:
            return  # ffmpeg already exited on its own: its result stands
        if self._stop is None and not self._finished.is_set():
            self._stop = failure
            self._wake.set()

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Start ffmpeg, supervise it to the end, and return what happened.

        Raises ``ToolNotFoundError`` when the program cannot be started (see module doc).
        """
        if self._started:
            raise RuntimeError("FfmpegRun.run() may only be called once")
        self._started = True
        start = self._clock()
        try:
            if self._stop is not None:  # cancelled before it started
                return self._finish(start, exit_code=None)
            wrapper = await _death_wrapper()
            try:
                problem = _not_startable(self.args[0]) if wrapper else None
                if problem is not None:
                    raise problem
                self._proc = await asyncio.create_subprocess_exec(
                    *wrapper,
                    *self.args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                    preexec_fn=None if wrapper else _die_with_parent,
                )
            except OSError as exc:
                raise ToolNotFoundError(
                    f"cannot start {self.args[0]}: {exc.strerror or exc}: install ffmpeg or "
                    "set the ffmpeg path in the settings"
                ) from exc
            self._start_time = self._last_activity = self._clock()
            if self._paused:  # pause() came before the process existed
                self._paused_since = self._last_activity
                self._signal(signal.SIGSTOP)
            exit_code = await self._supervise(self._proc)
            return self._finish(start, exit_code=exit_code)
        finally:
            self._finished.set()

    async def _supervise(self, proc: asyncio.subprocess.Process) -> int:
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(self._read_stdout(proc.stdout)),
            asyncio.create_task(self._read_stderr(proc.stderr)),
        ]
        waiter = asyncio.create_task(proc.wait())
        try:
            await self._watch(waiter)
            exit_code = await waiter
            await self._drain(readers)
            return exit_code
        finally:
            if proc.returncode is None:  # run() itself was cancelled: do not leave ffmpeg behind
                self._signal(signal.SIGKILL)
                self._signal(signal.SIGCONT)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(waiter)
            for task in readers:
                task.cancel()

    async def _watch(self, waiter: asyncio.Task[int]) -> None:
        """Until the process exits: enforce stall/timeout and carry out stop requests."""
        term_sent = False
        kill_at: float | None = None
        while not waiter.done():
            now = self._clock()
            if self._stop is None and not self._paused:
                self._check_deadlines(now)
            if self._stop is not None and not term_sent:
                self._signal(signal.SIGTERM)
                self._signal(signal.SIGCONT)  # a stopped process only acts on SIGTERM when woken
                term_sent = True
                kill_at = now + self.grace_s
            if kill_at is not None and now >= kill_at:
                log.warning(
                    "ffmpeg pid %s ignored SIGTERM for %.1f s: SIGKILL", self.pid, self.grace_s
                )
                self._signal(signal.SIGKILL)
                kill_at = None
            delay = self._next_delay(now, kill_at)
            self._wake.clear()
            wake = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait(
                    {waiter, wake}, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                wake.cancel()

    def _check_deadlines(self, now: float) -> None:
        if now - self._last_activity >= self.stall_timeout_s:
            self._stop = Failure(
                FailureKind.stalled,
                f"no progress for {self.stall_timeout_s:g} s: ffmpeg was stopped",
            )
        elif self.timeout_s is not None and self._active_seconds(now) >= self.timeout_s:
            self._stop = Failure(
                FailureKind.timed_out,
                f"took longer than the {self.timeout_s:g} s time limit: ffmpeg was stopped",
            )

    def _active_seconds(self, now: float) -> float:
        """Seconds since the start, paused time excluded."""
        paused = self._paused_total
        if self._paused_since is not None:
            paused += now - self._paused_since
        return now - self._start_time - paused

    def _next_delay(self, now: float, kill_at: float | None) -> float:
        deadlines: list[float] = [now + _WATCH_INTERVAL_S]
        if kill_at is not None:
            deadlines.append(kill_at)
        if self._stop is None and not self._paused:
            deadlines.append(self._last_activity + self.stall_timeout_s)
            if self.timeout_s is not None:
                deadlines.append(now + self.timeout_s - self._active_seconds(now))
        return max(0.0, min(deadlines) - now)

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(_READ_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > _MAX_PROGRESS_LINE:
                pending = b""
            for raw in lines:
                self._feed_progress(raw)
        if pending:
            self._feed_progress(pending)

    def _feed_progress(self, raw: bytes) -> None:
        snapshot = self._parser.feed(raw.decode("utf-8", errors="replace"))
        if snapshot is None:
            return
        self._last_activity = self._clock()
        if self.on_progress is not None:
            try:
                self.on_progress(snapshot)
            except Exception:
                log.exception("on_progress callback failed (ignored so ffmpeg keeps running)")

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            self._stderr.feed(chunk)
            if self.on_stderr is not None:
                try:
                    self.on_stderr(chunk.decode("utf-8", errors="replace"))
                except Exception:
                    log.exception("on_stderr callback failed (ignored so ffmpeg keeps running)")

    async def _drain(self, readers: list[asyncio.Task[None]]) -> None:
        """Let the readers reach EOF after the exit, so the final ``progress=end`` is seen."""
        done, pending = await asyncio.wait(readers, timeout=_DRAIN_TIMEOUT_S)
        for task in pending:
            log.warning("ffmpeg pid %s exited but its pipes stayed open", self.pid)
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("reading ffmpeg output failed", exc_info=task.exception())

    def _finish(self, start: float, *, exit_code: int | None) -> RunResult:
        failure: Failure | None
        if self._stop is not None:
            failure = self._stop  # castui stopped it: its own reason beats ffmpeg's exit code
        elif exit_code == 0:
            # ffmpeg can exit 0 after a write failed with ENOSPC (the muxer's write errors
            # are only logged): a disk-full line makes it a failure of the disk, not a
            # success whose damaged output then fails validation and costs an attempt.
            seen = classify_failure(self._stderr.for_classification(), exit_code)
            failure = seen if seen.kind is FailureKind.disk_full else None
        else:
            failure = classify_failure(self._stderr.for_classification(), exit_code)
        self._result = RunResult(
            args=self.args,
            exit_code=exit_code,
            seconds=max(0.0, self._clock() - start),
            stderr_tail=self._stderr.tail(),
            last_progress=self._parser.last,
            failure=failure,
        )
        return self._result
