"""Fixtures for the dashboard tests: a real engine on tiny samples, or fixed data."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from textual.css.query import NoMatches
from textual.pilot import Pilot

from castui.tui.app import CastuiApp, make_app
from castui_core.control import ControlServer, RemoteEngine
from castui_core.engine import Engine
from castui_core.guardrails.gpu import NoGpu
from castui_core.settings import Settings, load_settings

SETTINGS_TEMPLATE = """\
# castui settings for the dashboard tests
database: {db}   # keep it local

libraries:
  - name: media      # the one library
    path: {lib}
    watch: off
    profile: tv

profiles:
  # a profile the editor changes
  tv:
    extends: chromecast-1080p
    video:
      max_width: 1920   # full HD
      quality: 23

scan:
  settle_seconds: 0

operational:
  encoder: cpu
  max_concurrent_jobs: 1
"""


def write_settings(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    path = tmp_path / "settings.yaml"
    path.write_text(SETTINGS_TEMPLATE.format(db=tmp_path / "data" / "castui.db", lib=lib))
    return path


def add_sample(settings: Settings, sample: Path, name: str | None = None) -> Path:
    target = settings.libraries[0].path / (name or sample.name)
    shutil.copy2(sample, target)
    return target


def make_engine(settings: Settings, *, scan: bool = True) -> Engine:
    return Engine(
        settings,
        watch=False,
        scan_at_start=scan,
        gpu=NoGpu("no GPU: tests"),
        idle_poll_s=0.2,
    )


async def wait_until(
    pilot: Pilot[object],
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 20.0,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if not isinstance(result, bool):
                result = await result
        except NoMatches:
            # A screen is current a moment before its widgets are composed (more so on a
            # loaded machine): a condition on a widget that is not there yet is not met yet.
            result = False
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
        await asyncio.sleep(0.02)


@asynccontextmanager
async def attached_to_service(
    settings: Settings, local_file: Path
) -> AsyncIterator[tuple[Engine, CastuiApp]]:
    """A real engine on ``settings`` serving its control socket, and a dashboard attached to
    it whose own settings file is ``local_file`` (a different copy, same database): saves
    must go through the service and write the service's file, never the dashboard's."""
    engine = make_engine(settings, scan=False)
    await engine.start()
    try:
        async with ControlServer(engine):
            yield engine, make_app(RemoteEngine(load_settings(local_file)), attached=True)
    finally:
        await engine.stop(0.0)
