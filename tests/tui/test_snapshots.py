"""Every screen at 80×24 and 120×40 with fixed data and a fixed clock (pytest-textual-snapshot)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fake_engine import NOW, FakeEngine, fake_settings, free_space
from textual.pilot import Pilot

from castui.tui.app import CastuiApp, make_app
from castui.tui.screens.profiles import ProfileEditorScreen
from castui_core.events import GpuSample

SIZES = [(80, 24), (120, 40)]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def build(tmp_path: Path) -> CastuiApp:
    return make_app(FakeEngine(fake_settings(tmp_path)), clock=lambda: NOW, free_space=free_space)


async def ready(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, CastuiApp)
    await app.engine_ready.wait()
    for temp, load in ((70, 20), (74, 45), (79, 60), (83, 72), (86, 80)):
        app.engine.bus.publish(GpuSample(0, "RTX 3060", temp, load, 1))
        await pilot.pause()
    while not app.queued_jobs or not app.disk:
        await pilot.pause(0.02)
    await pilot.pause()


def keys(*pressed: str) -> Any:
    async def run(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        for key in pressed:
            if key.startswith("open_job:"):
                app = pilot.app
                assert isinstance(app, CastuiApp)
                app.open_job(int(key.partition(":")[2]))
            else:
                await pilot.press(key)
            await pilot.pause(0.1)
        # A screen that reads the engine when it opens (the profile editor) is shot once it
        # has: under CI's load 0.3 s was not always enough, and the snapshot caught "reading…".
        screen = pilot.app.screen
        if isinstance(screen, ProfileEditorScreen):
            async with asyncio.timeout(30):
                while screen.view is None or screen.draft is None:
                    await pilot.pause(0.02)
        await pilot.pause(0.2)

    return run


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    "screen,pressed",
    [
        ("dashboard", ()),
        ("history", ("h",)),
        ("job_detail", ("open_job:3",)),
        ("libraries", ("l",)),
        ("profiles", ("e",)),
        ("help", ("question_mark",)),
    ],
)
def test_screen(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int], screen: str, pressed: tuple[str, ...]
) -> None:
    assert snap_compare(build(tmp_path), terminal_size=size, run_before=keys(*pressed))
