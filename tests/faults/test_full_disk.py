"""Issue 10 item 4 (the engine's half): a disk that fills up during the encode is waited out.

The free-space pre-check passed, then something else filled the disk while ffmpeg wrote:
ffmpeg failed with "No space left on device", and castui counted that against the file
(attempts used, eventually ``dead``). A full disk is not the file's fault: the job is handed
back without using an attempt, with the reason shown, the disk guard holds new work, and
once space is freed the same job runs to the end. A real, small tmpfs holds the library;
a real (real-time paced) ffmpeg writes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_engine import Recorder, add_to_library, make_engine, make_settings, shim_tools

from castui_core.events import Event, GuardrailCleared, GuardrailTripped, JobProgress

pytestmark = pytest.mark.timeout(150)
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
TIMEOUT_S = 60.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/lib`` as its own 16 MB tmpfs (we run as root in CI and here)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(lib)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield lib
    finally:
        subprocess.run(["umount", "-l", str(lib)], check=False)


def _fill(directory: Path) -> Path:
    """Write zeros until the filesystem is full (what another program would do)."""
    filler = directory / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1024 * 1024, 64 * 1024, 4096, 1):  # down to the last bytes
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def _job_row(database: Path) -> tuple[Any, ...]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT state, attempts FROM jobs").fetchone()


def _state(path: Path, new: str) -> Any:
    def match(e: Event) -> bool:
        return (
            type(e).__name__ == "JobStateChanged"
            and e.path == str(path)  # type: ignore[attr-defined]
            and e.new == new  # type: ignore[attr-defined]
        )

    return match


async def test_enospc_during_the_encode_waits_for_space_then_finishes(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")  # a 4 s encode: time to fill the disk
    clip = tmp_path / "clip.avi"
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
            "-c:v", "mpeg4", "-c:a", "libmp3lame", str(clip),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    settings = make_settings(tmp_path)
    source = add_to_library(tmp_path, clip, "movie.avi")
    engine = make_engine(settings, tools=shim_tools(tmp_path))
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        await rec.wait_for(lambda e: isinstance(e, JobProgress) and e.path == str(source))
        filler = await asyncio.to_thread(_fill, small_disk)

        released = await rec.wait_for(_state(source, "queued"), TIMEOUT_S)
        assert released.old == "running"  # type: ignore[attr-defined]
        assert released.attempts == 0, released  # type: ignore[attr-defined]
        assert "disk" in released.reason and "space" in released.reason, released  # type: ignore[attr-defined]
        assert _job_row(settings.database) == ("queued", 0)
        tripped = await rec.wait_for(
            lambda e: isinstance(e, GuardrailTripped) and e.name.startswith("disk")
        )
        assert "waiting" in tripped.reason, tripped  # type: ignore[attr-defined]
        assert any(n.startswith("disk") for n in engine.guardrails.active), engine.guardrails.active
        assert not engine.running  # nothing is started into the full disk

        await asyncio.to_thread(os.unlink, filler)  # the operator frees space
        await rec.wait_for(lambda e: isinstance(e, GuardrailCleared) and e.name.startswith("disk"))
        done = await rec.wait_for(_state(source, "done"), TIMEOUT_S)
        assert done.attempts == 1  # type: ignore[attr-defined]
    finally:
        await engine.stop()
    assert source.with_suffix(".mp4").is_file()
    assert _job_row(settings.database) == ("done", 1)
    assert not [p for p in small_disk.rglob("*") if ".castui-" in p.name]  # no temp left
