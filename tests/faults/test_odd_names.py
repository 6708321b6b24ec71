"""Issue 10 item 2: every file name the OS can give survives castui, or is refused by name.

A POSIX name is any bytes but ``/`` and NUL. Before, a name that is not valid UTF-8 (bytes
0xFF 0xFE) could not be bound to SQLite ("surrogates not allowed"): the engine's scan of the
whole library failed and was retried forever without naming the file, nothing of that library
was queued and ``--once`` never ended; ``castui scan --json`` printed invalid UTF-8; the JSON
log lost the line with a "Logging error" traceback; and a newline in a name wrote a second,
forged line into the text log. The names below sit in one library with a normal file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import castui_env
from realtime_site import FFMPEG, clip, make_site

NOT_UTF8 = b"bad\xff\xfe.avi"
NEWLINE = b"new\n2026-01-01 00:00:00 ERROR   forged line.avi"
DASH = b"-dash.avi"
LONG = b"L" * 246 + b".avi"  # 250 bytes
ODD = (NOT_UTF8, NEWLINE, DASH, LONG)
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\s")


def _library(tmp_path: Path) -> dict[str, Path]:
    site = make_site(tmp_path)
    data = clip(site["lib"] / "normal.avi", 1).read_bytes()
    for name in ODD:
        with open(os.path.join(os.fsencode(site["lib"]), name), "wb") as f:
            f.write(data)
    return site


def _castui(
    site: dict[str, Path], *args: str, timeout: float = 100
) -> subprocess.CompletedProcess[bytes]:
    """``castui ARGS`` with its output as bytes: the test, not the decoder, judges them.

    Its stdout is strict UTF-8, as on a terminal with a UTF-8 locale (a C locale would let
    Python write undecodable bytes through).
    """
    return subprocess.run(
        [sys.executable, "-m", "castui", *args, "--config", str(site["settings"])],
        capture_output=True,
        env=castui_env(site["root"], CASTUI_REAL_FFMPEG=FFMPEG, PYTHONIOENCODING="utf-8:strict"),
        cwd=site["root"],
        timeout=timeout,
        check=False,
    )


def test_once_converts_every_odd_name_and_the_logs_stay_true(tmp_path: Path) -> None:
    site = _library(tmp_path)
    lib = os.fsencode(site["lib"])
    # Before: the scan retried forever, so --once never ended (the timeout fails the test).
    result = _castui(site, "--no-ui", "--once")
    stdout, stderr = result.stdout.decode(), result.stderr.decode("utf-8")
    assert result.returncode == 0, stdout + stderr
    assert "summary: 5 done, 0 failed" in stdout, stdout + stderr
    for name in (b"normal.avi", *ODD):
        output = os.path.join(lib, name[: -len(b".avi")] + b".mp4")
        assert os.path.getsize(output) > 0, name
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr

    # The text log: one line per record, none forged by the newline in a name.
    lines = stderr.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), [
        line for line in lines if not LOG_LINE.match(line)
    ]
    assert not any("forged line" in line and "ERROR" in line.split()[2] for line in lines)
    assert any("new\\n2026-01-01 00:00:00 ERROR   forged line.avi" in line for line in lines)
    assert any("bad\\xff\\xfe.avi" in line for line in lines)

    # The JSON log file: valid UTF-8 JSON on every line, the exact name kept in base64.
    records = [json.loads(raw) for raw in (site["root"] / "state/logs/castui.log").open("rb")]
    done = [r for r in records if r.get("event") == "JobFinished" and r["status"] == "done"]
    names = {base64.b64decode(r["path_bytes_b64"]) for r in done if "path_bytes_b64" in r}
    assert names == {os.path.join(lib, NOT_UTF8)}
    assert os.path.join(site["lib"], NEWLINE.decode()) in {r["path"] for r in done}

    # The job history as JSON: valid UTF-8, every exact name recoverable.
    history = json.loads(_castui(site, "history", "--json").stdout)
    exact = {
        base64.b64decode(j["path_bytes_b64"]) if "path_bytes_b64" in j else j["path"].encode()
        for j in history
    }
    assert exact == {os.path.join(lib, n) for n in (b"normal.avi", *ODD)}


def test_scan_json_is_valid_json_with_the_exact_names(tmp_path: Path) -> None:
    site = _library(tmp_path)
    result = _castui(site, "scan", "--json")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    files = json.loads(result.stdout)  # bytes: must be valid UTF-8 JSON
    lib = os.fsencode(site["lib"])
    exact = {
        base64.b64decode(f["path_bytes_b64"]) if "path_bytes_b64" in f else f["path"].encode()
        for f in files
    }
    assert exact == {os.path.join(lib, n) for n in (b"normal.avi", *ODD)}
    by_bytes = {f["path"]: f for f in files}
    assert by_bytes[f"{site['lib']}/bad\\xff\\xfe.avi"]["action"] == "transcode"
    assert {f["action"] for f in files} == {"transcode"}


def test_convert_prints_every_odd_name_on_one_line(tmp_path: Path) -> None:
    site = _library(tmp_path)
    lib = os.fsencode(site["lib"])
    files = [os.fsdecode(os.path.join(lib, n)) for n in (NOT_UTF8, NEWLINE, DASH, LONG)]
    result = _castui(site, "convert", *files)
    stdout = result.stdout.decode("utf-8")
    assert result.returncode == 0, stdout + result.stderr.decode(errors="replace")
    assert "Traceback" not in result.stderr.decode(errors="replace")
    done = [line for line in stdout.splitlines() if line.startswith("done transcode: ")]
    assert len(done) == 4, stdout
    assert f"{site['lib']}/bad\\xff\\xfe.avi -> " in done[0]
    assert f"{site['lib']}/new\\n2026-01-01 00:00:00 ERROR   forged line.avi -> " in done[1]
    assert not any(line.startswith("2026-01-01") for line in stdout.splitlines())
    for name in ODD:
        assert os.path.getsize(os.path.join(lib, name[: -len(b".avi")] + b".mp4")) > 0


def test_a_file_castui_cannot_record_is_named_and_the_rest_converts(tmp_path: Path) -> None:
    """A modification time past the year 2262 does not fit SQLite's 64-bit INTEGER.

    Before, that one file failed its whole batch and was retried forever (so ``--once`` never
    ended), without its name in the log.
    """
    site = make_site(tmp_path)
    data = clip(site["lib"] / "normal.avi", 1).read_bytes()
    (site["lib"] / "other.avi").write_bytes(data)
    future = site["lib"] / "future.avi"
    future.write_bytes(data)
    t = 2**63 + 10**18
    os.utime(future, ns=(t, t))
    assert os.stat(future).st_mtime_ns == t
    result = _castui(site, "--no-ui", "--once")
    stdout, stderr = result.stdout.decode(), result.stderr.decode("utf-8")
    assert result.returncode == 0, stdout + stderr
    assert "summary: 2 done, 0 failed" in stdout, stdout + stderr
    problem = [line for line in stderr.splitlines() if f"{future}: castui cannot record" in line]
    assert problem and "WARNING" in problem[0], stderr
    assert "OverflowError" in problem[0]
    assert not future.with_suffix(".mp4").exists()
    assert (site["lib"] / "other.mp4").exists()


async def test_the_dashboard_shows_each_name_on_one_line_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's tables show names as text: no markup from "[b]", no broken rows."""
    from rich.text import Text
    from textual.widgets._data_table import default_cell_formatter

    from castui.tui.app import make_app
    from castui_core.engine import Engine
    from castui_core.guardrails.gpu import NoGpu
    from castui_core.settings import load_settings

    site = _library(tmp_path)
    markup = b"[b]bold [red]red.avi"
    (site["lib"] / markup.decode()).write_bytes((site["lib"] / "normal.avi").read_bytes())
    monkeypatch.setenv("CASTUI_REAL_FFMPEG", FFMPEG)  # the site's ffmpeg wrapper runs it
    settings = load_settings(site["settings"])
    engine = Engine(settings, watch=False, gpu=NoGpu("no GPU: tests"), idle_poll_s=0.2)
    app = make_app(engine)
    async with app.run_test(size=(160, 40)) as pilot:
        end = time.monotonic() + 90
        while getattr(engine, "store", None) is None or len(await engine.store.history()) < 6:
            assert time.monotonic() < end, "the six files were never converted"
            await pilot.pause(0.2)
        await pilot.press("h")
        table = app.screen.query_one("#history")
        end = time.monotonic() + 10
        while table.row_count < 6:  # type: ignore[attr-defined]
            assert time.monotonic() < end, "history rows never shown"
            await pilot.pause(0.1)
        names = set()
        for row in range(6):
            # What the table draws for the cell (a str is parsed as markup).
            shown = default_cell_formatter(table.get_row_at(row)[2])  # type: ignore[attr-defined]
            assert isinstance(shown, Text) and not shown.spans, shown
            names.add(shown.plain)
        assert names == {
            "normal.avi",
            "bad\\xff\\xfe.avi",
            "new\\n2026-01-01 00:00:00 ERROR   forged line.avi",
            "-dash.avi",
            LONG.decode(),
            markup.decode(),
        }
        await pilot.press("q")


async def test_events_over_the_control_socket_keep_the_exact_names(tmp_path: Path) -> None:
    """A dashboard attached to a service gets every name exactly, and can act on its job."""
    from castui_core.control import ControlServer, RemoteEngine
    from castui_core.engine import Engine
    from castui_core.events import JobQueued
    from castui_core.guardrails.gpu import NoGpu
    from castui_core.settings import load_settings

    site = make_site(tmp_path)  # the files move in once the dashboard is attached
    data = clip(site["elsewhere"] / "normal.avi", 1).read_bytes()
    for name in ODD:
        with open(os.path.join(os.fsencode(site["elsewhere"]), name), "wb") as f:
            f.write(data)
    settings = load_settings(site["settings"])
    lib = os.fsencode(site["lib"])
    expected = {os.fsdecode(os.path.join(lib, n)) for n in (b"normal.avi", *ODD)}
    engine = Engine(settings, watch=False, scan_at_start=True, gpu=NoGpu("no GPU: tests"))
    async with engine, ControlServer(engine):
        await engine.pause_queue()  # the jobs stay queued
        async with RemoteEngine(settings) as remote:
            sub = remote.bus.subscribe()
            elsewhere = os.fsencode(site["elsewhere"])
            for name in os.listdir(elsewhere):
                os.rename(os.path.join(elsewhere, name), os.path.join(lib, name))
            await remote.scan()
            seen: set[str] = set()
            async with asyncio.timeout(60):
                async for event in sub:
                    if isinstance(event, JobQueued):
                        seen.add(event.path)
                        if len(seen) == len(expected):
                            break
            sub.close()
            assert seen == expected
            bad = os.fsdecode(os.path.join(lib, NOT_UTF8))
            job = next(j for j in await engine.store.active_jobs() if j.path == bad)
            cancelled = await remote.cancel_job(job.id)
            assert cancelled.state == "cancelled"
            assert (await engine.store.get_job(job.id)).path == bad


async def test_the_database_keeps_each_name_exactly_once(tmp_path: Path) -> None:
    """A non-UTF-8 name is stored as its bytes (BLOB), a UTF-8 one as TEXT as before."""
    import sqlite3

    from castui_core.store import EnqueueOutcome, NewJob, Store

    bad = os.fsdecode(b"/lib/bad\xff\xfe.avi")
    lookalike = "/lib/bad\\xff\\xfe.avi"  # its display form: another file
    utf8 = "/lib/été\n.avi"
    db = tmp_path / "castui.db"
    async with Store.open(db) as store:
        first = await store.enqueue(bad, "lib", "transcode", ["r"])
        assert first.outcome is EnqueueOutcome.CREATED
        again = await store.enqueue(bad, "lib", "transcode", ["r"])
        assert again.outcome is not EnqueueOutcome.CREATED and again.job_id == first.job_id
        jobs = [NewJob(p, "lib", "transcode", ("r",)) for p in (bad, lookalike, utf8)]
        batch = await store.enqueue_many(jobs)
        assert batch[0].job_id == first.job_id
        assert batch[1].outcome is batch[2].outcome is EnqueueOutcome.CREATED
        assert {j.path for j in await store.active_jobs()} == {bad, lookalike, utf8}
        assert (await store.get_job(first.job_id)).path == bad
        cancelled = await store.cancel(first.job_id, actor="test", reason="test")
        assert cancelled.path == bad
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT path, typeof(path) FROM jobs").fetchall())
    assert rows == {b"/lib/bad\xff\xfe.avi": "blob", lookalike: "text", utf8: "text"}


async def test_files_arriving_under_watch_are_converted_whatever_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inotify watcher hands castui the same names as the walk: each is converted."""
    from castui_core.engine import Engine
    from castui_core.events import JobFinished
    from castui_core.guardrails.gpu import NoGpu
    from castui_core.settings import load_settings

    site = make_site(tmp_path)
    site["settings"].write_text(site["settings"].read_text().replace("watch: false", "watch: auto"))
    monkeypatch.setenv("CASTUI_REAL_FFMPEG", FFMPEG)  # the site's ffmpeg wrapper runs it
    data = clip(site["elsewhere"] / "clip.avi", 1).read_bytes()
    lib = os.fsencode(site["lib"])
    expected = {os.fsdecode(os.path.join(lib, n)) for n in (NOT_UTF8, NEWLINE, DASH)}
    engine = Engine(load_settings(site["settings"]), watch=True, gpu=NoGpu("no GPU: tests"))
    async with engine:
        sub = engine.bus.subscribe()
        await engine.ingest.wait_scans()  # type: ignore[union-attr]
        for name in (NOT_UTF8, NEWLINE, DASH):
            with open(os.path.join(lib, name), "wb") as f:
                f.write(data)
        finished: dict[str, str] = {}
        async with asyncio.timeout(90):
            async for event in sub:
                if isinstance(event, JobFinished):
                    finished[event.path] = event.status
                    if len(finished) == len(expected):
                        break
        sub.close()
    assert finished == dict.fromkeys(expected, "done")
