"""``--once`` wastes no wall time between its parts (issue 14: within 1.15x of bare ffmpeg).

The engine here polls its queue only every 60 s, so each test can tell an event-driven hand-off
from a poll: queued work must start at once (the scan's ``JobQueued`` wakes the idle worker)
and ``wait_idle`` must return as soon as the last job is recorded (a parking worker wakes it).
Real ffmpeg, a real SQLite store, a real probe pool.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_helpers import place_settled

from castui_core.engine import Engine
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.guardrails import FakeGpu
from castui_core.settings import Settings, parse_settings
from castui_core.store import JobState, Store

#: Far longer than the work takes: a test that passes did not wait for a poll.
POLL_S = 60.0
#: Converting two 2 s clips on a shared 2-core machine: seconds, not a minute.
WITHIN_S = 40.0

pytestmark = pytest.mark.timeout(120)


def settings_for(tmp_path: Path, **operational: Any) -> Settings:
    data = {
        "database": f"{tmp_path}/state/castui.db",
        "libraries": [{"name": "Test", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"probe_workers": 1},
        "service": {"shutdown_grace_s": 0},
        "operational": {"encoder": "cpu", **operational},
    }
    return parse_settings(yaml.safe_dump(data))


def slow_polling_engine(settings: Settings) -> Engine:
    return Engine(
        settings,
        gpu=FakeGpu(),
        nvenc=NvencStatus(available=False, reason="test: CPU only"),
        watch=False,
        scan_at_start=True,
        idle_poll_s=POLL_S,
    )


@pytest.mark.parametrize("workers", [1, 2])
async def test_scan_work_starts_at_once_and_wait_idle_ends_with_the_last_job(
    samples: dict[str, Path], tmp_path: Path, workers: int
) -> None:
    lib = tmp_path / "lib"
    sources = [
        place_settled(samples["mpeg4.avi"], lib / "a.avi"),
        place_settled(samples["compliant.mkv"], lib / "b.mkv"),
    ]
    engine = slow_polling_engine(settings_for(tmp_path, max_concurrent_jobs=workers))
    started = time.monotonic()
    await engine.start()
    try:
        # Every worker looked at the queue before the scan queued anything (the scan waits
        # for its probe process): only the JobQueued wake-up makes them claim before POLL_S.
        async with asyncio.timeout(WITHIN_S):
            await engine.wait_idle(poll_s=POLL_S)
        took = time.monotonic() - started
    finally:
        await engine.stop()
    assert took < WITHIN_S
    async with Store.open(tmp_path / "state" / "castui.db") as store:
        done = {j.path for j in await store.history(states=[JobState.DONE])}
        # Seen once in a full run: a.avi not done when wait_idle returned (not reproduced in
        # 30 runs under load). If it recurs, say what each job went through.
        jobs = await store.history(limit=10) + await store.active_jobs()
        trail = [
            (j.path, j.state, j.attempts, j.reason, [(e.kind, e.details) for e in events])
            for j in jobs
            for events in [await store.list_events(job_id=j.id)]
        ]
    assert done == {str(s) for s in sources}, trail
    for source in sources:
        assert source.with_suffix(".mp4").is_file()
