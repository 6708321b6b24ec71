"""Every log line about a job says which job, which library and which host (text and JSON)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from pathlib import Path

from castui.headless import EventFormatter, _log_events, setup_logging
from castui_core.bus import EventBus
from castui_core.events import (
    Event,
    JobFinished,
    JobQueued,
    JobStarted,
    JobStateChanged,
    ScanStarted,
)
from castui_core.settings import parse_settings

FILM = "/media/Movies/Film (2001)/Film (2001).mkv"


def job_events() -> list[Event]:
    return [
        JobQueued(FILM, "Movies", "transcode", ("video: mpeg4",), "created"),
        JobStateChanged(job_id=42, path=FILM, library="Movies", old="queued", new="running"),
        JobStarted(FILM, "transcode", "cpu", "libx264", ("ffmpeg",)),
        JobFinished(FILM, "failed", "transcode", "ffmpeg exited 1", None, 10, None, 1.0, None),
        ScanStarted("Movies", "/media/Movies"),
    ]


async def logged(tmp_path: Path, fmt: str) -> list[str]:
    (tmp_path / "lib").mkdir(exist_ok=True)
    settings = parse_settings(
        f"database: {tmp_path}/state/c.db\nlibraries: [{{name: Movies, path: {tmp_path}/lib}}]\n"
    )
    stream = io.StringIO()
    # setup_logging configures the process-wide "castui" logger (as the service wants): put it
    # back afterwards so later tests in this process still see castui's records.
    castui_log = logging.getLogger("castui")
    saved = (list(castui_log.handlers), castui_log.propagate, castui_log.level)
    setup_logging(settings, fmt, stream)
    try:
        bus = EventBus()
        task = asyncio.create_task(_log_events(bus.subscribe(), EventFormatter()))
        for event in job_events():
            bus.publish(event)
        bus.close()
        async with asyncio.timeout(10):
            await task
    finally:
        for handler in castui_log.handlers:
            handler.close()
        castui_log.handlers[:] = saved[0]
        castui_log.propagate, castui_log.level = saved[1], saved[2]
    return stream.getvalue().splitlines()


async def test_json_lines_carry_job_library_and_node(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in await logged(tmp_path, "json")]
    by_event = {line["event"]: line for line in lines}
    node = socket.gethostname()
    assert by_event["JobQueued"]["library"] == "Movies"
    assert by_event["JobQueued"]["node"] == node
    for name in ("JobStarted", "JobFinished"):
        assert (by_event[name]["job_id"], by_event[name]["library"]) == (42, "Movies"), name
        assert by_event[name]["node"] == node
    assert "job_id" not in by_event["ScanStarted"]  # not a line about a job


async def test_text_lines_carry_job_library_and_node(tmp_path: Path) -> None:
    lines = await logged(tmp_path, "text")
    node = socket.gethostname()
    started = [line for line in lines if " started " in line]
    failed = [line for line in lines if " failed " in line]
    assert started and started[0].endswith(f"[job=42 library=Movies node={node}]")
    assert failed and failed[0].endswith(f"[job=42 library=Movies node={node}]")
    queued = [line for line in lines if " queued " in line]
    assert queued[0].endswith(f"[job=- library=Movies node={node}]")  # no id before it is stored
    assert not [line for line in lines if "scan Movies" in line and "job=" in line]
