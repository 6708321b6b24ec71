"""Issue 10 item 5: SIGTERM while a job is being validated requeues it, no attempt used.

Before, a graceful shutdown stopped only the encode: a job in validation was left "running"
(the service exited 0), stayed so until its lease expired, and then cost an attempt. Now every
phase stops on a graceful shutdown and the job is handed back. A real ``castui --no-ui``
process, a real encode, and an integrity read that hangs (``validation_shim.py`` behind a
``/bin/sh`` wrapper); the test waits for the read to start (its pid line), not for time.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import castui_env
from validation_shim import alive, kill_leftovers, recorded_pids, wait_until, write_wrapper

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
pytestmark = pytest.mark.timeout(150)


def test_sigterm_during_validation_requeues_the_job_with_no_attempt_used(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    source = lib / "movie.avi"
    shutil.copyfile(samples["mpeg4.avi"], source)
    before = source.read_bytes()
    pids = tmp_path / "validation-pids"
    database = tmp_path / "state" / "castui.db"
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"database: {database}\n"
        f"ffmpeg: {write_wrapper(tmp_path)}\n"
        "libraries:\n"
        "  - name: Movies\n"
        f"    path: {lib}\n"
        "    watch: false\n"
        "operational: {encoder: cpu, min_free_gb: 0, stall_timeout_s: 300}\n"
        "scan: {settle_seconds: 0.2}\n"
        "service: {shutdown_grace_s: 0, lease_seconds: 30}\n"
    )
    env = castui_env(
        tmp_path,
        CASTUI_REAL_FFMPEG=FFMPEG,
        CASTUI_VALIDATE="hang",
        CASTUI_VALIDATE_PIDS=str(pids),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "castui", "--no-ui", "--config", str(settings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: len(recorded_pids(pids)) == 3, 90, "validation to start")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        _check(proc.returncode, out, err, database, source, before, pids, lib)
    finally:
        kill_leftovers(pids)  # hygiene only: the check above ran first


def _check(
    returncode: int,
    out: str,
    err: str,
    database: Path,
    source: Path,
    before: bytes,
    pids: Path,
    lib: Path,
) -> None:
    assert returncode == 0, out + err
    assert "Traceback" not in err
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT path, state, attempts FROM jobs").fetchall()
    assert rows == [(str(source), "queued", 0)], (rows, err[-3000:])
    wait_until(lambda: not any(alive(p) for p in recorded_pids(pids)), 10, "the shim to die")
    assert source.read_bytes() == before
    assert sorted(p.name for p in lib.iterdir()) == ["movie.avi"]  # no temp, no output
