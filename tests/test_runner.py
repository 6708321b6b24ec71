"""FfmpegRun with real processes: the fake ffmpeg for the failure modes, real ffmpeg for encodes.

Nothing sleeps to wait for something: tests wait on events set from ``on_progress`` or poll a
condition with a deadline. The only fixed waits are short observation windows that prove
something does *not* happen (no progress while paused).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from castui_core.errors import ToolNotFoundError
from castui_core.ffmpeg.failures import FailureKind
from castui_core.ffmpeg.progress import Progress
from castui_core.ffmpeg.runner import TAIL_MAX_BYTES, TAIL_MAX_LINES, FfmpegRun

FAKE = Path(__file__).with_name("fake_ffmpeg.py")
WAIT = 15.0  # generous upper bound for anything we wait on; tests finish far sooner

COMMON = ["ffmpeg", "-nostdin", "-y", "-hide_banner", "-v", "error", "-progress", "pipe:1"]
COMMON += ["-nostats"]


def fake(mode: str) -> list[str]:
    return [sys.executable, str(FAKE), mode]


def encode_args(out: Path, *, seconds: int = 2, realtime: bool = False) -> list[str]:
    src = f"testsrc2=size=320x240:rate=25:duration={seconds}"
    return [
        *COMMON,
        *(["-re"] if realtime else []),
        *["-f", "lavfi", "-i", src, "-c:v", "libx264", "-preset", "ultrafast", str(out)],
    ]


class Recorder:
    """Collects progress snapshots and lets a test await the n-th one."""

    def __init__(self) -> None:
        self.snaps: list[Progress] = []
        self._changed = asyncio.Event()

    def __call__(self, snap: Progress) -> None:
        self.snaps.append(snap)
        self._changed.set()

    async def wait_for(self, count: int = 1) -> None:
        async def loop() -> None:
            while len(self.snaps) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), WAIT)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition the event loop cannot be told about (process state) with a deadline."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def stopped(pid: int) -> bool:
    """True while the process is stopped by a signal (a process already gone is not)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def gone(pid: int) -> bool:
    """True when no process (not even a zombie) has this pid."""
    return not psutil.pid_exists(pid)


# -- fake ffmpeg -----------------------------------------------------------------------------


async def test_progress_ok() -> None:
    rec = Recorder()
    result = await FfmpegRun(fake("progress-ok"), duration_s=2.0, on_progress=rec).run()
    assert result.ok and result.failure is None
    assert result.exit_code == 0
    assert len(rec.snaps) == 6
    assert result.last_progress is not None and result.last_progress.done
    assert result.last_progress.percent == pytest.approx(100.0)
    assert result.args[-1] == "progress-ok"
    assert result.seconds > 0


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        ("nvenc-missing", FailureKind.nvenc_unavailable, "libcuda.so.1"),
        ("session-limit", FailureKind.nvenc_session_limit, "max_concurrent_jobs"),
        ("driver-old", FailureKind.nvenc_driver_too_old, "too old"),
        ("unsupported-device", FailureKind.nvenc_unsupported_device, "no NVENC encoder"),
    ],
)
async def test_nvenc_failures_are_classified(mode: str, kind: FailureKind, words: str) -> None:
    result = await FfmpegRun(fake(mode), duration_s=None).run()
    assert not result.ok
    assert result.exit_code == 1
    assert result.failure is not None
    assert result.failure.kind is kind
    assert result.failure.nvenc_related
    assert words in result.failure.reason
    assert "Error initializing output stream" in result.stderr_tail


async def test_stall_is_detected_and_process_stopped() -> None:
    run = FfmpegRun(fake("progress-then-hang"), duration_s=10.0, stall_timeout_s=0.5)
    result = await asyncio.wait_for(run.run(), WAIT)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.stalled
    assert result.failure.reason == "no progress for 0.5 s: ffmpeg was stopped"
    assert result.last_progress is not None and result.last_progress.frame == 30
    assert result.exit_code == -15  # python dies of the SIGTERM
    assert run.pid is not None and gone(run.pid)


async def test_overall_timeout_while_progress_keeps_coming() -> None:
    run = FfmpegRun(fake("progress-forever"), duration_s=None, timeout_s=0.6, stall_timeout_s=5)
    result = await asyncio.wait_for(run.run(), WAIT)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.timed_out
    assert "0.6 s time limit" in result.failure.reason


async def test_pause_suspends_stall_detection_then_cancel_a_paused_process() -> None:
    rec = Recorder()
    run = FfmpegRun(
        fake("progress-then-hang"), duration_s=10.0, on_progress=rec, stall_timeout_s=0.3
    )
    task = asyncio.create_task(run.run())
    await rec.wait_for(1)
    run.pause()
    assert run.paused
    pid = run.pid
    assert pid is not None
    await until(lambda: state(pid) == "T", "SIGSTOP")
    await asyncio.sleep(0.8)  # observation window: > stall_timeout_s, yet no stall
    assert not task.done()
    await asyncio.wait_for(run.cancel("operator stopped it"), WAIT)  # SIGTERM reaches it
    result = await task
    assert result.failure is not None
    assert result.failure.kind is FailureKind.cancelled
    assert result.failure.reason == "operator stopped it"
    assert gone(pid)


async def test_flood_of_stderr_does_not_deadlock_and_tail_is_bounded() -> None:
    rec = Recorder()
    run = FfmpegRun(fake("flood-stderr"), duration_s=None, on_progress=rec)
    result = await asyncio.wait_for(run.run(), WAIT)
    assert result.ok, result.failure
    assert result.last_progress is not None and result.last_progress.done
    assert len(rec.snaps) > 100
    assert len(result.stderr_tail.encode()) <= TAIL_MAX_BYTES
    assert len(result.stderr_tail.splitlines()) <= TAIL_MAX_LINES
    assert result.stderr_tail.endswith("FLOOD-END marker")
    assert result.stderr_tail.splitlines()[0].startswith("[h264 @")  # no half line at the top


async def test_sigterm_ignored_gets_sigkill_after_grace() -> None:
    rec = Recorder()
    run = FfmpegRun(fake("ignore-sigterm"), duration_s=None, on_progress=rec, grace_s=0.4)
    task = asyncio.create_task(run.run())
    await rec.wait_for(1)
    started = time.monotonic()
    await asyncio.wait_for(run.cancel(), WAIT)
    waited = time.monotonic() - started
    result = await task
    assert result.exit_code == -9
    assert result.failure is not None and result.failure.kind is FailureKind.cancelled
    assert result.failure.reason == "cancelled"
    assert waited >= 0.4
    assert run.pid is not None and gone(run.pid)


async def test_cancel_before_start_and_after_end() -> None:
    early = FfmpegRun(fake("progress-ok"), duration_s=None)
    await early.cancel("shutting down")
    result = await early.run()
    assert result.exit_code is None and early.pid is None
    assert result.failure is not None and result.failure.kind is FailureKind.cancelled
    assert result.failure.reason == "shutting down"

    late = FfmpegRun(fake("progress-ok"), duration_s=None)
    done = await late.run()
    await late.cancel()  # no error, no change
    assert done.ok and late.result is done


async def test_missing_program_raises_tool_not_found(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFoundError, match="cannot start"):
        await FfmpegRun([str(tmp_path / "ffmpeg")], duration_s=None).run()


@pytest.mark.parametrize("kind", ["not executable", "not on PATH"])
async def test_unstartable_program_raises_tool_not_found(tmp_path: Path, kind: str) -> None:
    """Also behind the ``setpriv --pdeathsig`` wrapper, where the exec is setpriv's."""
    if kind == "not executable":
        program = tmp_path / "ffmpeg"
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o644)
        argv = [str(program)]
    else:
        argv = ["castui-no-such-ffmpeg"]
    with pytest.raises(ToolNotFoundError, match="cannot start"):
        await FfmpegRun(argv, duration_s=None).run()


def test_ffmpeg_dies_with_its_parent(tmp_path: Path) -> None:
    """``kill -9`` of the process that started ffmpeg kills ffmpeg too (parent-death signal,
    set by the setpriv wrapper or the preexec fallback): no orphan writes on for minutes. The
    stand-in hangs without writing, so a closed pipe cannot be what ends it."""
    pid_file = tmp_path / "pid"
    script = tmp_path / "parent.py"
    note_pid = f"lambda p: open({str(pid_file)!r}, 'w').write(str(run.pid))"
    script.write_text(
        "import asyncio\n"
        "from castui_core.ffmpeg.runner import FfmpegRun\n"
        "async def main():\n"
        f"    run = FfmpegRun({fake('progress-then-hang')!r}, duration_s=None,\n"
        f"                    on_progress={note_pid})\n"
        "    await run.run()\n"
        "asyncio.run(main())\n"
    )
    parent = psutil.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "ffmpeg never reported progress"
            assert parent.poll() is None, "the parent exited early"
            time.sleep(0.02)  # polling the condition (a file written by the child)
        child = psutil.Process(int(pid_file.read_text()))
        parent.kill()
        parent.wait(timeout=10)
    finally:
        if parent.poll() is None:
            parent.kill()
    _gone, alive = psutil.wait_procs([child], timeout=10)
    assert alive == []


async def test_broken_progress_callback_does_not_stop_the_run() -> None:
    def boom(_: Progress) -> None:
        raise RuntimeError("callback bug")

    result = await FfmpegRun(fake("progress-ok"), duration_s=2.0, on_progress=boom).run()
    assert result.ok


async def test_cancelling_the_run_task_kills_and_reaps_ffmpeg() -> None:
    rec = Recorder()
    run = FfmpegRun(fake("ignore-sigterm"), duration_s=None, on_progress=rec)
    task = asyncio.create_task(run.run())
    await rec.wait_for(1)
    pid = run.pid
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: gone(pid), "the process to be reaped")


# -- real ffmpeg -----------------------------------------------------------------------------


async def test_real_encode_ok(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    rec = Recorder()
    result = await FfmpegRun(encode_args(out), duration_s=2.0, on_progress=rec).run()
    assert result.ok, result.failure
    assert out.stat().st_size > 0
    assert rec.snaps
    last = result.last_progress
    assert last is not None and last.done and last.frame == 50
    assert last.percent == pytest.approx(100.0, abs=3.0)


async def test_real_pause_resume(tmp_path: Path) -> None:
    rec = Recorder()
    run = FfmpegRun(
        encode_args(tmp_path / "out.mp4", seconds=3, realtime=True),
        duration_s=3.0,
        on_progress=rec,
        stall_timeout_s=1.0,
    )
    task = asyncio.create_task(run.run())
    await rec.wait_for(1)
    run.pause()
    pid = run.pid
    assert pid is not None
    await until(lambda: stopped(pid), "SIGSTOP")
    await asyncio.sleep(0.3)  # let a block written just before the stop reach us
    count = len(rec.snaps)
    await asyncio.sleep(1.2)  # observation window, longer than stall_timeout_s
    assert len(rec.snaps) == count, "progress arrived while paused"
    assert not task.done()
    run.resume()
    await until(lambda: not stopped(pid), "SIGCONT")
    result = await asyncio.wait_for(task, WAIT)
    assert result.ok, result.failure
    assert len(rec.snaps) > count
    assert result.last_progress is not None and result.last_progress.done


async def test_real_cancel(tmp_path: Path) -> None:
    rec = Recorder()
    out = tmp_path / "out.mp4"
    run = FfmpegRun(encode_args(out, seconds=20, realtime=True), duration_s=20.0, on_progress=rec)
    task = asyncio.create_task(run.run())
    await rec.wait_for(1)
    pid = run.pid
    assert pid is not None
    await asyncio.wait_for(run.cancel("user cancelled"), WAIT)
    result = await task
    assert result.failure is not None and result.failure.kind is FailureKind.cancelled
    assert result.failure.reason == "user cancelled"
    assert result.exit_code is not None
    assert result.seconds < 10
    assert gone(pid)


async def test_real_garbage_input_is_a_decode_error(tmp_path: Path) -> None:
    src = tmp_path / "garbage.mkv"
    src.write_bytes(os.urandom(64 * 1024))
    args = [*COMMON, "-i", str(src), "-c:v", "libx264", str(tmp_path / "o.mp4")]
    result = await FfmpegRun(args, duration_s=10.0).run()
    assert result.failure is not None
    assert result.failure.kind is FailureKind.decode_error
    assert "damaged or not a media file" in result.failure.reason
    assert "Invalid data found" in result.stderr_tail


async def test_real_missing_input(tmp_path: Path) -> None:
    src = tmp_path / "gone.mkv"
    args = [*COMMON, "-i", str(src), "-c:v", "libx264", str(tmp_path / "o.mp4")]
    result = await FfmpegRun(args, duration_s=10.0).run()
    assert result.failure is not None
    assert result.failure.kind is FailureKind.input_missing
    assert str(src) in result.failure.reason
    assert not result.failure.nvenc_related
