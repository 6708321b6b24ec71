"""Issue 10 item 1 (the dashboard's part): ``castui`` opened while ``castui --no-ui --once``
runs attaches to it, never starts a second engine on the same database.

Before: ``--once`` served no control socket, so the dashboard found nothing to attach to and
started its own engine in-process beside the running one (its journal recovery at start was
what destroyed the first one's encode). Now ``--once`` serves the socket like the service
(claimed before its engine starts), and the dashboard built by the real CLI path attaches.
A real ``--once`` process with a real (real-time) encode; the dashboard under Textual's pilot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from realtime_site import clip, make_site, start, until
from textual.pilot import Pilot

from castui import cli
from castui.tui.app import CastuiApp


async def wait_until(
    pilot: Pilot[object],
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float = 30.0,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
        await asyncio.sleep(0.02)


async def test_dashboard_beside_once_attaches_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path)
    clip(site["lib"] / "movie.avi", 12)  # read in real time: --once runs for ~12 s
    once = start(site, "--no-ui", "--once")
    try:
        list(until(once, "%"))  # a progress line: its encode is under way
        built: list[CastuiApp] = []

        def capture(self: CastuiApp, *args: Any, **kwargs: Any) -> int:
            built.append(self)  # the app exactly as `castui` builds it; run below, by pilot
            return 0

        monkeypatch.setattr(CastuiApp, "run", capture)
        assert cli.main(["--config", str(site["settings"])]) == 0
        (app,) = built
        assert app.attached, "the dashboard started its own engine beside --once"
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.engine_ready.is_set(), "attached")
            assert getattr(app.engine, "remote_pid", None) == once.pid
            assert "attached" in str(app.sub_title)
            await wait_until(
                pilot,
                lambda: any((j.percent or 0) > 0 for j in app.state.live.values()),
                "the --once encode's progress, seen through the socket",
            )
            await pilot.press("q")
        assert once.poll() is None  # leaving the dashboard leaves --once running
        out, err = once.communicate(timeout=120)
    finally:
        if once.poll() is None:
            once.kill()
            once.wait()
    assert once.returncode == 0, err
    assert "summary: 1 done, 0 failed" in out, out + err
    assert (site["lib"] / "movie.mp4").exists()
