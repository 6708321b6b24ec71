"""Issue 10 item 15: job state changes are published only after the store committed them.

``JobFinished`` used to be published by the converter before the engine wrote the job's
completion, and cancel/retry/priority published nothing: a subscriber (the dashboard,
metrics, the Jellyfin notifier) could act on a state a crash would undo, or never hear of a
change. Now every transition is a ``JobStateChanged`` published right after the store call
returned. The subscriber here checks each one the moment it arrives, by reading the job's
row through its own SQLite connection: it must already see the new state, committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_engine import add_to_library, make_engine, make_settings, progress_of, shim_tools

from castui_core import events as core_events
from castui_core.bus import EventBus
from castui_core.events import Event, JobFinished

pytestmark = pytest.mark.timeout(120)
TIMEOUT_S = 60.0


class CommitChecker:
    """Reads the database, in another connection, on every job event as it arrives."""

    def __init__(self, bus: EventBus, database: Path) -> None:
        self._sub = bus.subscribe()
        self._database = database
        self.changes: list[Any] = []
        self.problems: list[str] = []
        self.finished: list[JobFinished] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def _row(self, job_id: int | None, path: str) -> tuple[Any, ...] | None:
        with contextlib.closing(sqlite3.connect(self._database, timeout=10)) as db:
            if job_id is not None:
                query, key = "SELECT * FROM jobs WHERE id = ?", job_id
            else:
                query, key = "SELECT * FROM jobs WHERE path = ? ORDER BY id DESC", path
            cur = db.execute(
                query.replace("*", "id, state, priority, attempts, output_path, library"), (key,)
            )
            return cur.fetchone()

    def _check(self, event: Event) -> None:
        if type(event).__name__ == "JobStateChanged":
            row = self._row(event.job_id, event.path)  # type: ignore[attr-defined]
            self.changes.append(event)
            if row is None:
                self.problems.append(f"{event}: no row")
                return
            _, state, priority, attempts, output_path, library = row
            seen = (state, priority, attempts, library)
            sent = (event.new, event.priority, event.attempts, event.library)  # type: ignore[attr-defined]
            if seen != sent:
                self.problems.append(f"{event}: the database says {seen}")
            if event.new == "done" and output_path != event.output_path:  # type: ignore[attr-defined]
                self.problems.append(f"{event}: output in the database {output_path!r}")
        elif isinstance(event, JobFinished):
            self.finished.append(event)
            row = self._row(None, event.path)
            wanted = {"done": "done", "skipped": "done", "rejected": "failed"}.get(event.status)
            if wanted is not None and (row is None or row[1] != wanted):
                self.problems.append(f"{event} published while the database says {row}")

    async def _run(self) -> None:
        async for event in self._sub:
            self._check(event)
            self._arrived.set()

    async def wait_for(self, job_path: str, new: str) -> Any:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                for change in self.changes:
                    if change.path == job_path and change.new == new:
                        self.changes.remove(change)
                        return change
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        self._sub.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def test_the_committed_state_event_exists() -> None:
    assert hasattr(core_events, "JobStateChanged"), "no committed job-state event"


async def test_every_transition_is_published_after_it_is_committed(
    samples: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    good = add_to_library(tmp_path, samples["mpeg4.avi"], "good.avi")
    engine = make_engine(settings)
    checker = CommitChecker(engine.bus, settings.database)
    await engine.start()
    try:
        # claimed -> done, with job id, path, library and output path.
        running = await checker.wait_for(str(good), "running")
        assert running.old == "queued"
        done = await checker.wait_for(str(good), "done")
        assert done.old == "running" and done.library == "Test"
        assert done.job_id == running.job_id
        assert done.output_path == str(good.with_suffix(".mp4"))
        assert Path(done.output_path).is_file()

        # Operator transitions while the queue is paused: priority, cancel, retry.
        await engine.pause_queue()
        missing = tmp_path / "lib" / "gone.avi"
        queued = await engine.store.enqueue(str(missing), "Test", "transcode", ["test"])
        job_id = queued.job_id
        await engine.set_priority(job_id, 5)
        changed = await checker.wait_for(str(missing), "queued")
        assert (changed.old, changed.priority) == ("queued", 5)
        await engine.cancel_job(job_id)
        cancelled = await checker.wait_for(str(missing), "cancelled")
        assert cancelled.old == "queued"
        await engine.retry_job(job_id)
        retried = await checker.wait_for(str(missing), "queued")
        assert retried.old == "cancelled"

        # claimed -> failed (the file is gone: not retryable).
        await engine.resume_queue()
        await checker.wait_for(str(missing), "running")
        failed = await checker.wait_for(str(missing), "failed")
        assert failed.old == "running" and failed.reason

        # claimed -> released (queued again, no attempt used) when castui stops mid-encode.
        monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")
        engine.converter.tools = shim_tools(tmp_path)
        slow = add_to_library(tmp_path, samples["mpeg4.avi"], "slow.avi")
        await engine.scan("Test")
        await checker.wait_for(str(slow), "running")
        sub = engine.bus.subscribe()
        async with asyncio.timeout(TIMEOUT_S):
            async for event in sub:
                if progress_of(slow)(event):
                    break
        sub.close()
    finally:
        await engine.stop()
    released = await checker.wait_for(str(slow), "queued")
    assert released.old == "running" and released.attempts == 0
    await checker.close()
    assert checker.problems == []
    assert {e.status for e in checker.finished} >= {"done", "rejected"}
