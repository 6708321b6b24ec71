"""The readiness report screen (``r``): real probed samples in the fake engine's real store."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fake_engine import NOW, FakeEngine, fake_settings, free_space
from textual.pilot import Pilot
from textual.widgets import DataTable, Label

from castui.tui.app import CastuiApp, make_app
from castui.tui.screens.report import ReportScreen
from castui_core.probe import probe_ffprobe
from castui_core.store.models import CatalogEntry

NAMES = ("compliant.mp4", "compliant.mkv", "mpeg4.avi", "audio_only.m4a")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def build(tmp_path: Path) -> CastuiApp:
    return make_app(FakeEngine(fake_settings(tmp_path)), clock=lambda: NOW, free_space=free_space)


async def fill_catalog(app: CastuiApp, samples: dict[str, Path]) -> None:
    """Probe the samples with the real ffprobe and write them through the store's API."""
    ffprobe = Path(shutil.which("ffprobe") or "ffprobe")
    entries = []
    for name in NAMES:
        path = samples[name]
        info = await probe_ffprobe(ffprobe, str(path))
        entries.append(CatalogEntry(str(path), "films", 1_000_000, 1, probe=info.to_json()))
    await app.engine.store.upsert_files(entries)  # type: ignore[attr-defined]


async def show_report(pilot: Pilot[Any], samples: dict[str, Path]) -> DataTable[Any]:
    app = pilot.app
    assert isinstance(app, CastuiApp)
    await app.engine_ready.wait()
    await fill_catalog(app, samples)
    await pilot.press("r")
    deadline = time.monotonic() + 10
    while True:
        screen = app.screen
        if isinstance(screen, ReportScreen):
            table = screen.query_one("#report-profiles", DataTable)
            if table.row_count:
                return table
        assert time.monotonic() < deadline, "the report screen never filled its table"
        await pilot.pause(0.02)


async def test_r_shows_the_report_from_the_catalog(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    app = build(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await show_report(pilot, samples)
        row = table.get_row("chromecast-1080p")
        assert row[1:5] == ["1", "1", "1", "1"]  # direct, remux, transcode, reject
        assert table.get_row("chromecast-4k-hevc")[1:5] == ["0", "0", "3", "1"]
        reasons = app.screen.query_one("#report-reasons", DataTable)
        cells = [reasons.get_row_at(i) for i in range(reasons.row_count)]
        assert ["chromecast-1080p", "remux", "1", "container is not MP4"] in cells
        assert "r" in app.active_bindings or any(
            b.binding.id == "castui.report" for b in app.active_bindings.values()
        )


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_report_snapshot(
    snap_compare: Any, tmp_path: Path, samples: dict[str, Path], size: tuple[int, int]
) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        await show_report(pilot, samples)
        await pilot.pause(0.2)

    assert snap_compare(build(tmp_path), terminal_size=size, run_before=run)


def speed_row(app: CastuiApp, cls: str) -> list[Any]:
    table = app.screen.query_one("#report-speeds", DataTable)
    return list(table.get_row(cls))


async def test_c_calibrates_and_the_estimate_comes_from_the_calibration(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    """No history: sd's speed is the default model's; c runs a real calibration encode through
    the engine API (in-process here), shows that it runs, then the measured speed and its
    encoder, read back from the cache the engine wrote. The palette offers it too."""
    app = build(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_report(pilot, samples)
        assert speed_row(app, "sd")[2:] == ["-", "default"]
        status = app.screen.query_one("#report-calibration", Label)
        assert "sd is the default model's guess" in str(status.content)
        await pilot.press("c")
        assert "calibrating" in str(status.content)
        deadline = time.monotonic() + 60
        while speed_row(app, "sd")[3] == "default":
            assert time.monotonic() < deadline, f"no calibration: {status.content}"
            await pilot.pause(0.05)
        speed, encoder, source = speed_row(app, "sd")[1:]
        assert (encoder, source) == ("libx264", "calibration (libx264, 2 s testsrc2)")
        assert str(status.content).startswith("calibrated with libx264: sd ")
        assert (tmp_path / "calibration.json").exists()
        cached = json.loads((tmp_path / "calibration.json").read_text())["speeds"]
        assert speed == f"{cached['libx264:sd']:.2f}x"  # the screen shows what was measured
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Calibrate encode speed" in titles


async def test_a_failed_nvenc_calibration_shows_its_reason_and_keeps_the_default(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    """encoder: nvenc on this machine without NVENC: c reports the encoder's reason on the
    screen and the sd speed stays the default, with that reason as its source."""
    settings = fake_settings(tmp_path)
    settings = settings.model_copy(
        update={"operational": settings.operational.model_copy(update={"encoder": "nvenc"})}
    )
    app = make_app(FakeEngine(settings), clock=lambda: NOW, free_space=free_space)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_report(pilot, samples)
        await pilot.press("c")
        status = app.screen.query_one("#report-calibration", Label)
        deadline = time.monotonic() + 60
        while speed_row(app, "sd")[3] == "default":
            assert time.monotonic() < deadline, f"no failure shown: {status.content}"
            await pilot.pause(0.05)
        speed, encoder, source = speed_row(app, "sd")[1:]
        assert (speed, encoder) == ("8.00x", "-")  # DEFAULT_SPEED["sd"]
        assert source.startswith("default (calibration with h264_nvenc failed: NVENC")
        assert "calibration with h264_nvenc failed: NVENC" in str(status.content)
        assert "uses the default speed" in str(status.content)
