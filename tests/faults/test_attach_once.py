"""Issue 10 item 1 (the dashboard's part): ``castui`` opened while ``castui --no-ui --once``
runs attaches to it, never starts a second engine on the same database.

Before: ``--once`` served no control socket, so the dashboard found nothing to attach to and
started its own engine in-process beside the running one (its journal recovery at start was
what destroyed the first one's encode). Now ``--once`` serves the socket like the service
(claimed before its engine starts), and the dashboard built by the real CLI path attaches.
A real ``--once`` process with a real (real-time) encode; the dashboard under Textual's pilot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from realtime_site import clip, make_site, start, until, wait_until

from castui import cli
from castui.tui.app import CastuiApp


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


#: A castui engine in its own process, stopped between claiming the database's control lock
#: and listening (where `castui --no-ui` is while its engine starts: recovery, probes, GPU).
STARTING = r"""
import asyncio, sys
from castui_core.control import ControlServer
from castui_core.engine import Engine
from castui_core.guardrails.gpu import NoGpu
from castui_core.settings import load_settings

async def main():
    engine = Engine(load_settings(sys.argv[1]), watch=False, scan_at_start=False,
                    gpu=NoGpu("no GPU: tests"))
    control = ControlServer(engine)
    await control.claim()
    print("claimed", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the test says when the engine may start
    try:
        async with engine:
            await control.start()
            print("serving", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
    finally:
        await control.stop()

asyncio.run(main())
"""


async def test_dashboard_opened_while_an_engine_starts_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTING, str(site["settings"])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "claimed"
        built: list[CastuiApp] = []
        monkeypatch.setattr(CastuiApp, "run", lambda self, *a, **k: built.append(self) or 0)
        assert cli.main(["--config", str(site["settings"])]) == 0
        (app,) = built
        assert app.attached, "the dashboard started a second engine beside a starting one"
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(
                pilot, lambda: "waiting for the castui service" in str(app.sub_title), "waiting"
            )
            proc.stdin.write("\n")  # the engine starts and listens
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "serving"
            await wait_until(
                pilot,
                lambda: getattr(app.engine, "remote_pid", None) == proc.pid,
                "attached to the engine that was starting",
            )
            assert "attached" in str(app.sub_title)
            await pilot.press("q")
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
