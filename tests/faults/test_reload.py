"""Issue 10 item 16: a reload applies everything that can change at run time, on a live engine.

``Engine.reload`` (SIGHUP, the dashboard's profile editor, the control socket) used to swap
the settings object and restart ingest only: guardrail thresholds and the schedule kept their
start-up values, ``max_concurrent_jobs`` never changed the number of workers, ingest's reload
re-ran ``__init__`` (dropping the files it was waiting on to settle), and nothing said which
settings need a restart. Here: one live engine, reloaded three times.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_engine import Recorder, make_engine

from castui_core.events import Event, LogLine
from castui_core.guardrails import JobNeeds
from castui_core.settings import Settings, parse_settings

pytestmark = pytest.mark.timeout(90)
NOON = datetime(2026, 1, 1, 12, 0)


def _settings(tmp_path: Path, *, database: str = "castui.db", **changes: Any) -> Settings:
    data: dict[str, Any] = {
        "database": f"{tmp_path}/state/{database}",
        "libraries": [{"name": "Test", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"settle_seconds": 0.3, "probe_workers": 1},
        "service": {"lease_seconds": 5, "shutdown_grace_s": 0},
        "guardrails": {"sample_interval_s": 0.2, **changes.pop("guardrails", {})},
        "operational": {"encoder": "cpu", "min_free_gb": 0, **changes.pop("operational", {})},
    }
    return parse_settings(yaml.safe_dump(data))


async def _until(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def _can_start(engine: Any) -> str | None:
    answer = engine.guardrails.can_start(JobNeeds("cpu"))  # async since issue 10 #17
    return await answer if inspect.isawaitable(answer) else answer


def _workers() -> int:
    """Live worker tasks, counted from the loop itself (not from the engine's own say)."""
    return sum(
        1
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Engine._worker"
    )


def _restart_line(e: Event) -> bool:
    return isinstance(e, LogLine) and "needs a restart" in e.message


async def test_reload_applies_workers_guardrails_and_names_what_needs_a_restart(
    tmp_path: Path,
) -> None:
    (tmp_path / "lib").mkdir()
    engine = make_engine(_settings(tmp_path), now=lambda: NOON)
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        assert engine.ingest is not None
        ingest, tracker = engine.ingest, engine.ingest.tracker
        assert _workers() == 1
        assert await _can_start(engine) is None

        # Up: more workers, a processing window that excludes noon, a load limit.
        await engine.reload(
            _settings(
                tmp_path,
                operational={"max_concurrent_jobs": 3},
                guardrails={"schedule": ["01:00-02:00"], "max_cpu_percent": 99},
            )
        )
        await _until(lambda: _workers() == 3 == engine.worker_count, "3 workers")
        reason = await _can_start(engine)
        assert reason is not None and "01:00" in reason, reason
        assert "schedule" in engine.guardrails.active

        # Down: surplus workers exit; the window goes, so work may start again.
        await engine.reload(_settings(tmp_path, operational={"max_concurrent_jobs": 1}))
        await _until(lambda: _workers() == 1 == engine.worker_count, "1 worker")
        assert await _can_start(engine) is None
        assert "schedule" not in engine.guardrails.active

        # Ingest was updated in place: its settle state is the same object.
        assert engine.ingest is ingest and engine.ingest.tracker is tracker

        # What cannot change while running is named, with both values.
        await engine.reload(_settings(tmp_path, database="other.db"))
        line = await rec.wait_for(_restart_line)
        assert isinstance(line, LogLine)
        assert "database" in line.message and "other.db" in line.message, line.message
        assert engine.store.path == tmp_path / "state" / "castui.db"  # still the old one
    finally:
        await engine.stop()


def _rescan_line(e: Event) -> bool:
    return isinstance(e, LogLine) and e.message == "scanning library 'Test': settings reloaded"


async def test_a_reload_that_changes_nothing_ingest_reads_restarts_no_watcher_and_no_scan(
    tmp_path: Path,
) -> None:
    """A guardrail saved from the settings screen restarted every watcher and rescanned every
    library; only a change to libraries, scan settings or profiles may."""
    (tmp_path / "lib").mkdir()
    engine = make_engine(_settings(tmp_path), now=lambda: NOON)
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        await engine.reload(_settings(tmp_path, guardrails={"gpu_max_temp_c": 80}))
        assert engine.settings.guardrails.gpu_max_temp_c == 80
        # A scan of our own: a rescan the reload started would have begun (and said so)
        # while this one awaited its work; a marker then ends the observation.
        await engine.scan("Test")
        engine.bus.publish(LogLine(level="info", message="test: marker"))
        await rec.wait_for(lambda e: isinstance(e, LogLine) and e.message == "test: marker")
        assert [e for e in rec.events if _rescan_line(e)] == []
        # A real library change still rescans.
        changed = _settings(tmp_path)
        libraries = (changed.libraries[0].model_copy(update={"follow_symlinks": True}),)
        await engine.reload(changed.model_copy(update={"libraries": libraries}))
        await rec.wait_for(_rescan_line)
    finally:
        await engine.stop()
