"""Restore an archived original from the dashboard's job detail (issue 12).

A real engine converts a real file in the replace layout (the default): the original moves
into ``<library>/.castui/originals``. The job detail shows where it is and, after a
confirmation, puts it back through the EngineAPI: byte-identical, castui's output gone. When
the dashboard is attached, the service (a real ControlServer) does the restore, never the
dashboard itself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from textual.pilot import Pilot
from tui_helpers import make_engine, wait_until

from castui.tui.app import CastuiApp, make_app
from castui.tui.format import format_bytes
from castui.tui.screens.history import HistoryScreen
from castui.tui.screens.job_detail import JobDetailScreen
from castui.tui.screens.restore import RestoreScreen
from castui_core.control import ControlServer, RemoteEngine
from castui_core.engine import Engine
from castui_core.errors import CastuiError
from castui_core.events import OriginalChanged
from castui_core.layout import archive_path
from castui_core.settings import Settings
from castui_core.store import JobState


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _place(settings: Settings, samples: dict[str, Path]) -> tuple[Path, str, os.stat_result]:
    """``clip.avi`` in a folder of the library (an old mtime, so the scan queues it)."""
    source = settings.libraries[0].path / "Clip" / "clip.avi"
    source.parent.mkdir(parents=True)
    source.write_bytes(samples["mpeg4.avi"].read_bytes())
    os.utime(source, ns=(1_500_000_000_000_000_000, 1_500_000_000_123_456_789))
    return source, _digest(source), os.stat(source)


async def _converted(engine: Engine, pilot: Pilot[object]) -> int:
    """The id of the one job, once the engine has finished it."""
    await wait_until(pilot, lambda: hasattr(engine, "store"), what="the engine to start")

    async def done() -> bool:
        jobs = await engine.store.history(states=[JobState.DONE], limit=5)
        return bool(jobs)

    await wait_until(pilot, done, timeout=60, what="the conversion to finish")
    return (await engine.store.history(states=[JobState.DONE], limit=5))[0].id


def _head(app: CastuiApp) -> str:
    """The job detail's head ("" while that screen is not there yet)."""
    found = app.screen.query("#detail-head")
    return str(found.first().render()) if found else ""


def _check_restored(source: Path, digest: str, before: os.stat_result, root: Path) -> None:
    assert _digest(source) == digest  # byte-identical...
    st = os.stat(source)
    assert (st.st_mode, st.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert not source.with_suffix(".mp4").exists()  # castui's output is gone
    assert not archive_path(root, source).exists()


async def test_restore_from_the_job_detail(settings: Settings, samples: dict[str, Path]) -> None:
    source, digest, before = _place(settings, samples)
    root = settings.libraries[0].path
    engine = make_engine(settings)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        job_id = await _converted(engine, pilot)
        assert not source.exists() and source.with_suffix(".mp4").exists()
        archived = archive_path(root, source)
        assert _digest(archived) == digest

        # History says where the original is.
        await pilot.press("h")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen), what="history")
        table = app.screen.query_one("#history")

        def archived_shown() -> bool:
            if not table.row_count:  # type: ignore[attr-defined]
                return False
            cell = table.get_cell(str(job_id), "original")  # type: ignore[attr-defined]
            return f"archived: {archived}" in str(cell)

        await wait_until(pilot, archived_shown, what="the archive in the history")
        await pilot.press("escape")

        # The job detail shows the archive and its size, asks, and restores.
        app.open_job(job_id)
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="detail")
        shown = f"original: {archived} ({format_bytes(before.st_size)})"
        await wait_until(pilot, lambda: shown in _head(app), what="the archive and its size")
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, RestoreScreen), what="question")
        await pilot.press("escape")  # no: nothing happens
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="back")
        assert archived.exists() and not source.exists()
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, RestoreScreen), what="question")
        await pilot.press("y")
        await wait_until(pilot, lambda: "original: restored to" in _head(app), what="result")
        _check_restored(source, digest, before, root)

        # A second restore is refused with what to do, not a traceback.
        with pytest.raises(CastuiError, match="no archived original"):
            await engine.restore_original(job_id, actor="test")
        events = await engine.store.list_events(kind="original_restored", path=str(source))
        assert [e.actor for e in events] == ["dashboard"]
        await pilot.press("escape")
        await pilot.press("q")


async def test_an_attached_dashboard_has_the_service_restore(
    settings: Settings, samples: dict[str, Path]
) -> None:
    source, digest, before = _place(settings, samples)
    root = settings.libraries[0].path
    engine = make_engine(settings)
    service_events = engine.bus.subscribe()
    await engine.start()
    try:
        async with ControlServer(engine):
            app = make_app(RemoteEngine(settings), attached=True)
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_until(pilot, lambda: app.engine_ready.is_set(), what="attached")
                job_id = await _converted(engine, pilot)
                app.open_job(job_id)
                await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
                archived = archive_path(root, source)
                await wait_until(pilot, lambda: f"original: {archived}" in _head(app))
                await pilot.press("o")
                await wait_until(pilot, lambda: isinstance(app.screen, RestoreScreen))
                await pilot.press("y")
                await wait_until(pilot, lambda: "original: restored to" in _head(app))
                _check_restored(source, digest, before, root)
                await pilot.press("escape")
                await pilot.press("q")
        # The service did it: the restore was announced on its own bus.
        seen = []
        while (event := service_events.get_nowait()) is not None:
            seen.append(event)
        assert any(isinstance(e, OriginalChanged) and e.action == "restored" for e in seen)
        events = await engine.store.list_events(kind="original_restored", path=str(source))
        assert [e.actor for e in events] == ["dashboard"]
    finally:
        await engine.stop(0.0)


async def test_a_restore_that_cannot_be_done_is_said_plainly(
    settings: Settings, samples: dict[str, Path]
) -> None:
    """The archived file went missing behind castui's back: the detail says the restore
    failed and why, and castui's output (the only copy left) stays."""
    source, _digest_before, _before = _place(settings, samples)
    root = settings.libraries[0].path
    engine = make_engine(settings)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        job_id = await _converted(engine, pilot)
        archived = archive_path(root, source)
        app.open_job(job_id)
        await wait_until(pilot, lambda: f"original: {archived}" in _head(app), what="archive")
        archived.unlink()
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, RestoreScreen), what="question")
        await pilot.press("y")
        await wait_until(pilot, lambda: "restore failed: " in _head(app), what="the failure")
        assert "the archived original is missing; nothing was changed" in _head(app)
        assert source.with_suffix(".mp4").exists() and not source.exists()
        await pilot.press("escape")
        await pilot.press("q")
