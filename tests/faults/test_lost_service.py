"""Issue 10 item 12: the dashboard never hides a lost service.

Before: after the service died the dashboard still said "attached" and showed the last
progress, frozen, forever; and the ``%`` column, sized by its first value ("—"), showed
54 % as "5". Now the loss is shown plainly ("service lost: … retrying"), live progress is
dropped, the dashboard keeps trying and re-attaches (re-subscribed, state refreshed) when the
service is back. A real service process, a real encode, a real SIGKILL, a real restart; the
dashboard under Textual's pilot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from realtime_site import Service, clip, make_site, wait_until
from textual.widgets import Label
from textual.widgets.data_table import ColumnKey

from castui.tui.app import CastuiApp, make_app
from castui.tui.widgets.active_jobs import ActiveJobs
from castui_core.control import RemoteEngine


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Path]]:
    site = make_site(tmp_path)
    clip(site["lib"] / "movie.avi", 40)  # read in real time: the encode lasts 40 s
    yield site


@pytest.fixture
def service(site: dict[str, Path]) -> Iterator[Service]:
    svc = Service(site)
    try:
        yield svc
    finally:
        svc.stop_all()


def _live_percent(app: CastuiApp) -> float:
    return max((j.percent or 0.0 for j in app.state.live.values()), default=0.0)


async def test_lost_service_is_shown_and_the_dashboard_reattaches(service: Service) -> None:
    first = service.start()
    app = make_app(RemoteEngine(service.settings), attached=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine_ready.is_set(), "attached")
        assert "attached" in str(app.sub_title)
        await wait_until(pilot, lambda: _live_percent(app) >= 3, "live progress", 60)

        first.kill()  # SIGKILL: no goodbye on the socket, the kernel just closes it
        first.wait(timeout=10)
        await wait_until(pilot, lambda: "service lost" in str(app.sub_title), "the loss shown")
        assert "retrying" in str(app.sub_title)
        banner = app.screen.query_one("#service-banner", Label)
        await wait_until(pilot, lambda: banner.display, "the banner")
        assert "service lost" in str(banner.render())
        assert _live_percent(app) == 0  # no frozen progress passed off as live
        assert any("lost the connection" in text for _, _, text in app.state.log)
        lost_title = str(app.screen.query_one("#active-title", Label).render())
        assert "not reachable" in lost_title or "none running" in lost_title

        second = service.start()  # the service is back (a restart, an upgrade)
        await wait_until(
            pilot,
            lambda: getattr(app.engine, "remote_pid", None) == second.pid,
            "re-attached to the new service",
        )
        await wait_until(pilot, lambda: "attached" in str(app.sub_title), "attached again")
        assert "lost" not in str(app.sub_title)
        assert not banner.display
        # Re-subscribed: a command goes to the new service, its event comes back on the stream.
        await pilot.press("p")
        await wait_until(pilot, lambda: app.state.paused, "paused through the new service")
        await pilot.press("q")
    assert second.poll() is None  # leaving the dashboard leaves the service running


async def test_percent_column_shows_the_whole_value(service: Service) -> None:
    """The row is added while the job has no progress ("—"); 54.0 must still fit."""
    service.start()
    app = make_app(RemoteEngine(service.settings), attached=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine_ready.is_set(), "attached")
        await wait_until(pilot, lambda: _live_percent(app) >= 10, "progress past 10 %", 60)
        table = app.screen.query_one(ActiveJobs)
        await wait_until(pilot, lambda: table.row_count == 1, "the running row")
        shown = str(table.get_cell_at((0, 3)))
        assert shown[0].isdigit() and "." in shown, shown  # "12.3", not "—"
        column = table.columns[ColumnKey("%")]
        assert column.get_render_width(table) - 2 * table.cell_padding >= len(shown)
        await pilot.press("q")
