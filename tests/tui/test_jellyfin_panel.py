"""Jellyfin's state in the dashboard's guardrail panel (issue 11).

The panel shows what ``JellyfinState`` says (link, server version, outbox, last error, failed
health checks), nothing when Jellyfin is not configured, and never the API key. An attached
dashboard gets it from the service's first events (``Engine.initial_events``), not only from
the sender's next report (up to 30 s later when idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_engine import NOW, FakeEngine, fake_settings, free_space
from jellyfin_fixtures import jellyfin  # noqa: F401
from jellyfin_standin import StandinJellyfin
from textual.pilot import Pilot
from textual.widgets import Label
from tui_helpers import make_engine, wait_until

from castui.tui.app import CastuiApp, make_app
from castui.tui.state import LiveState
from castui.tui.widgets.active_jobs import ActiveJobs
from castui.tui.widgets.guardrail_panel import GuardrailPanel
from castui_core.control import ControlServer, RemoteEngine
from castui_core.events import GpuSample, JellyfinState
from castui_core.settings import parse_settings

SIZES = [(80, 24), (120, 40)]
CONNECTED = JellyfinState(connected=True, version="10.10.3", outbox_pending=3)
UNREACHABLE = JellyfinState(
    connected=False,
    outbox_pending=12,
    last_error="cannot reach Jellyfin at http://jf.lan:8096: connection refused; 12 retried",
)


@pytest.mark.parametrize(
    "event,expected",
    [
        (None, ""),
        (CONNECTED, "Jellyfin 10.10.3: connected · outbox 3 pending"),
        (
            UNREACHABLE,
            "Jellyfin: unreachable — cannot reach Jellyfin at http://jf.lan:8096: connection"
            " refused; 12 retried · outbox 12 pending",
        ),
        (
            JellyfinState(connected=False, version="10.9.11", outbox_pending=1_234),
            "Jellyfin 10.9.11: unreachable · outbox 1,234 pending",
        ),
        (  # a refused batch: counted, and the error says what to do
            JellyfinState(
                connected=True,
                version="10.10.3",
                outbox_pending=0,
                outbox_stopped=4,
                last_error="Jellyfin notifications stopped: key refused (401); fix it and reload",
            ),
            "Jellyfin 10.10.3: connected · outbox 0 pending, 4 stopped · Jellyfin notifications"
            " stopped: key refused (401); fix it and reload",
        ),
        (  # the health check: each problem on its own line, the last one not said twice
            JellyfinState(
                connected=True,
                version="10.10.3",
                problems=("library 'Movies' is not in Jellyfin", "library 'Shows' is not either"),
                last_error="Jellyfin check: library 'Shows' is not either",
            ),
            "Jellyfin 10.10.3: connected · outbox 0 pending\n"
            "check: library 'Movies' is not in Jellyfin",
        ),
    ],
)
def test_jellyfin_text(event: JellyfinState | None, expected: str) -> None:
    state = LiveState(clock=lambda: NOW)
    if event is not None:
        assert state.apply(event) == {"jellyfin"}
    assert state.jellyfin_text() == expected


def build(tmp_path: Path) -> CastuiApp:
    return make_app(FakeEngine(fake_settings(tmp_path)), clock=lambda: NOW, free_space=free_space)


def jellyfin_line(app: CastuiApp) -> Label:
    return app.screen.query_one(GuardrailPanel).query_one("#jellyfin-line", Label)


def shown(app: CastuiApp) -> str:
    line = jellyfin_line(app)
    return str(line.render()) if line.display else ""


async def test_an_update_reaching_a_dashboard_without_its_tables_is_left_for_its_next_draw(
    tmp_path: Path,
) -> None:
    """At exit, a queue re-read reached the dashboard as its tables were being removed, and
    its NoMatches failed the app's worker (a traceback at the end of a run)."""
    app = build(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.screen.query_one(ActiveJobs).remove()
        app._tell_screens({"jobs", "progress"})  # must not raise
        await pilot.pause()
        assert app.return_code is None and app.is_running


async def test_panel_follows_jellyfin_state(tmp_path: Path) -> None:
    app = build(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_ready.wait()
        await pilot.pause()
        assert shown(app) == ""  # not configured: no line, no space taken
        assert jellyfin_line(app).region.height == 0

        app.engine.bus.publish(CONNECTED)
        await wait_until(pilot, lambda: shown(app) != "", what="the Jellyfin line")
        assert shown(app) == "Jellyfin 10.10.3: connected · outbox 3 pending"
        assert not jellyfin_line(app).has_class("-trouble")
        assert jellyfin_line(app).region.height >= 1  # really on screen, not just in the DOM

        app.engine.bus.publish(UNREACHABLE)
        await wait_until(pilot, lambda: "unreachable" in shown(app), what="unreachable")
        assert "connection refused" in shown(app)
        assert shown(app).endswith("outbox 12 pending")
        assert jellyfin_line(app).has_class("-trouble")


async def test_error_text_is_not_markup(tmp_path: Path) -> None:
    """The last error quotes a server; ``[b]`` in it is text, not a style."""
    app = build(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_ready.wait()
        app.engine.bus.publish(JellyfinState(connected=False, last_error="HTTP 502: [b]Bad[/b]"))
        await wait_until(pilot, lambda: "502" in shown(app), what="the error")
        assert "[b]Bad[/b]" in shown(app)


def settings_yaml(tmp_path: Path, server: StandinJellyfin) -> str:
    (tmp_path / "lib").mkdir(exist_ok=True)
    data = {
        "database": f"{tmp_path}/data/castui.db",
        "libraries": [{"name": "Movies", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"settle_seconds": 0},
        "operational": {"encoder": "cpu", "min_free_gb": 0},
        "jellyfin": {"url": server.url, "api_key": server.api_key},
    }
    return yaml.safe_dump(data)


async def test_attached_dashboard_gets_jellyfin_from_the_first_events(
    tmp_path: Path,
    jellyfin: StandinJellyfin,  # noqa: F811
) -> None:
    """A real engine talking to a stand-in Jellyfin serves the control socket; a dashboard
    attached later shows Jellyfin at once (the idle sender reports only every 30 s), and
    the API key appears nowhere on the screen."""
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    settings = parse_settings(settings_yaml(tmp_path, jellyfin))
    engine = make_engine(settings, scan=False)
    reports: list[JellyfinState] = []

    async def next_report(timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while True:
                event = await sub.get()
                if isinstance(event, JellyfinState):
                    reports.append(event)
                    return

    sub = engine.bus.subscribe()
    async with engine, ControlServer(engine):
        assert engine.jellyfin is not None
        # The sender reports after its health check and once more when it finds the outbox
        # empty, then stays quiet for 30 s: attach in that quiet time.
        await next_report(10)
        with contextlib.suppress(TimeoutError):
            await next_report(3)
        first = await engine.initial_events()
        assert [e for e in first if isinstance(e, JellyfinState)] == [reports[-1]]
        before = len(reports)

        app = make_app(RemoteEngine(settings), attached=True, clock=time.time)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(
                pilot,
                lambda: "connected" in shown(app),
                timeout=10,
                what="Jellyfin's line on the attached dashboard",
            )
            assert shown(app).startswith(f"Jellyfin {jellyfin.version}: connected · outbox 0")
            # The line's widget holds the text before the next frame is drawn: wait for it.
            await wait_until(
                pilot,
                lambda: "Jellyfin" in app.export_screenshot(),
                timeout=10,
                what="Jellyfin's line in a drawn frame",
            )
            assert jellyfin.api_key not in app.export_screenshot()
        with contextlib.suppress(TimeoutError):  # anything the sender said meanwhile
            await next_report(0.01)
        # Not from a report published after attaching: from the service's first events.
        assert len(reports) == before
    sub.close()


def keys_then_jellyfin(event: JellyfinState) -> Any:
    async def run(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, CastuiApp)
        await app.engine_ready.wait()
        for temp, load in ((70, 20), (74, 45), (79, 60), (83, 72), (86, 80)):
            app.engine.bus.publish(GpuSample(0, "RTX 3060", temp, load, 1))
            await pilot.pause()
        app.engine.bus.publish(event)
        while not app.queued_jobs or not app.disk or not shown(app):
            await pilot.pause(0.02)
        await pilot.pause(0.2)

    return run


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name,event", [("connected", CONNECTED), ("unreachable", UNREACHABLE)])
def test_dashboard_with_jellyfin(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int], name: str, event: JellyfinState
) -> None:
    """At 80×24 the GPU sparklines give way so the Jellyfin line fits beside the queue."""
    assert snap_compare(build(tmp_path), terminal_size=size, run_before=keys_then_jellyfin(event))
