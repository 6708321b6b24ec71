"""Sonarr and Radarr hear about every committed swap through the durable outbox.

Pure parts are table-tested; the rest is real HTTP to a stand-in Sonarr/Radarr on 127.0.0.1
(tests/arr_standin.py), a real SQLite store and, end to end, a real engine converting a file.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from arr_standin import StandinArr
from cli_helpers import run_castui
from engine_helpers import cpu_engine, place_settled, wait_event

from castui_core.bus import EventBus
from castui_core.errors import ConfigError
from castui_core.events import LogLine
from castui_core.integrations.arr import (
    ArrSender,
    arr_entries,
    check,
    owner_of,
    rescan_command,
)
from castui_core.settings import Settings, parse_settings
from castui_core.store import Store
from castui_core.store.outbox import OutboxEntry, arr_target

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sonarr() -> Iterator[StandinArr]:
    server = StandinArr("sonarr").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def radarr() -> Iterator[StandinArr]:
    server = StandinArr("radarr", version="5.14.0").start()
    try:
        yield server
    finally:
        server.stop()


LISTING = [
    {"id": 1, "title": "Show", "path": "/tv/Show"},
    {"id": 2, "title": "Show 2", "path": "/tv/Show 2"},
    {"id": 3, "title": "Nested", "path": "/tv/Show/Specials"},
    {"id": "x", "title": "bad id", "path": "/tv/Bad"},
]


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        ("/tv/Show/Season 01/Show - S01E01.mp4", (1, "Show")),
        ("/tv/Show 2/Season 01/a.mp4", (2, "Show 2")),  # not a prefix match of /tv/Show
        ("/tv/Show/Specials/x.mp4", (3, "Nested")),  # the deepest folder wins
        ("/tv/Bad/x.mp4", None),
        ("/movies/Film (2019)/Film (2019).mp4", None),
    ],
)
def test_owner_of(path: str, owner: tuple[int, str] | None) -> None:
    assert owner_of(LISTING, path) == owner


def test_rescan_commands_are_the_v3_ones() -> None:
    assert rescan_command("sonarr", 7) == {"name": "RescanSeries", "seriesId": 7}
    assert rescan_command("radarr", 9) == {"name": "RescanMovie", "movieId": 9}


def settings_for(tmp_path: Path, *arr: dict[str, Any], libraries: Any = None) -> Settings:
    data = {
        "database": f"{tmp_path}/state/castui.db",
        "libraries": libraries or [{"name": "TV", "path": f"{tmp_path}/tv", "watch": "off"}],
        "scan": {"settle_seconds": 0.3, "probe_workers": 2},
        "service": {"lease_seconds": 5, "shutdown_grace_s": 0},
        "guardrails": {"sample_interval_s": 0.2},
        "operational": {"encoder": "cpu", "min_free_gb": 0, "max_concurrent_jobs": 1},
        "arr": list(arr),
    }
    (tmp_path / "tv").mkdir(parents=True, exist_ok=True)
    return parse_settings(yaml.safe_dump(data))


def test_entries_follow_the_libraries_setting(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        {"kind": "sonarr", "url": "http://127.0.0.1:1", "api_key": "k", "libraries": ["TV"]},
        {"kind": "radarr", "url": "http://127.0.0.1:2", "api_key": "k", "libraries": ["Films"]},
    )
    (entry,) = arr_entries(settings, "TV", "/tv/a.mp4")
    assert (entry.target, entry.path) == ("arr:sonarr", "/tv/a.mp4")
    assert arr_entries(settings, "TV", None) == []


def test_the_key_comes_from_a_file_or_the_environment_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "sonarr.key"
    key_file.write_text("filekey123\n")
    base = {"kind": "sonarr", "url": "http://127.0.0.1:8989"}
    from_file = settings_for(tmp_path, {**base, "api_key_file": str(key_file)}).arr[0]
    assert from_file.api_key_value() == "filekey123"
    monkeypatch.setenv("CASTUI_SONARR_API_KEY", "envkey456")
    from_env = settings_for(tmp_path, base).arr[0]
    assert from_env.api_key_value() == "envkey456"
    assert "envkey456" not in repr(from_env) and "filekey123" not in repr(from_file)
    monkeypatch.delenv("CASTUI_SONARR_API_KEY")
    with pytest.raises(ConfigError, match=r"\$CASTUI_SONARR_API_KEY"):
        settings_for(tmp_path, base).arr[0].api_key_value()


async def test_down_then_up_is_retried_until_sonarr_answers(
    sonarr: StandinArr, tmp_path: Path
) -> None:
    sonarr.add("Show", f"{tmp_path}/tv/Show")
    settings = settings_for(
        tmp_path, {"kind": "sonarr", "url": sonarr.url, "api_key": sonarr.api_key}
    )
    episode = f"{tmp_path}/tv/Show/Season 01/Show - S01E01.mp4"
    sonarr.down()
    bus = EventBus()
    sub = bus.subscribe()
    async with Store.open(settings.database) as store:
        await store.outbox_add([OutboxEntry(episode, "Modified", "TV", arr_target("sonarr"))])
        sender = ArrSender(store, settings, settings.arr[0], bus, backoff_base_s=0.2)
        await sender.start()
        try:
            await wait_event(sub, lambda e: isinstance(e, LogLine) and "retried in" in e.message)
            (row,) = await store.outbox_rows(target=arr_target("sonarr"))
            assert row.attempts == 1 and row.last_error  # kept, not lost
            assert await store.outbox_rows() == []  # Jellyfin's rows are apart
            sonarr.up()
            assert await asyncio.to_thread(sonarr.wait_for, lambda: bool(sonarr.commands), 20)
            await wait_event(sub, lambda e: isinstance(e, LogLine) and "requested" in e.message)
            assert await store.outbox_rows(target=arr_target("sonarr")) == []
        finally:
            await sender.stop()
    assert sonarr.commands == [{"name": "RescanSeries", "seriesId": 1}]


async def test_a_refused_key_stops_the_rows_and_says_what_to_do(
    radarr: StandinArr, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    radarr.add("Film", f"{tmp_path}/tv/Film (2019)")
    wrong = "0123456789abcdef0123456789abcdef"
    settings = settings_for(tmp_path, {"kind": "radarr", "url": radarr.url, "api_key": wrong})
    bus = EventBus()
    sub = bus.subscribe()
    async with Store.open(settings.database) as store:
        path = f"{tmp_path}/tv/Film (2019)/Film (2019).mp4"
        await store.outbox_add([OutboxEntry(path, "Modified", "TV", arr_target("radarr"))])
        sender = ArrSender(store, settings, settings.arr[0], bus)
        await sender.start()
        try:
            line = await wait_event(
                sub, lambda e: isinstance(e, LogLine) and "stopped:" in e.message
            )
            counts = await store.outbox_counts(arr_target("radarr"))
        finally:
            await sender.stop()
    assert isinstance(line, LogLine) and "API key was refused" in line.message
    assert counts == {"pending": 0, "stopped": 1}
    assert radarr.commands == []
    assert wrong not in caplog.text
    assert all(r.headers.get("x-api-key") == wrong for r in radarr.requests)
    assert all(wrong not in str(r.query) and wrong not in r.path for r in radarr.requests)


async def test_check_says_when_a_library_is_outside_its_root_folders(
    sonarr: StandinArr, tmp_path: Path
) -> None:
    sonarr.root_folders = ["/elsewhere"]
    settings = settings_for(
        tmp_path, {"kind": "sonarr", "url": sonarr.url, "api_key": sonarr.api_key}
    )
    health = await check(settings.arr[0], settings)
    assert health.exit_code == 1, health
    assert any("under none of its root folders" in line for line in health.lines)
    sonarr.root_folders = [str(tmp_path)]
    health = await check(settings.arr[0], settings)
    assert health.exit_code == 0 and health.ok, health
    sonarr.down()
    assert (await check(settings.arr[0], settings)).exit_code == 2


def test_castui_arr_check_command(sonarr: StandinArr, tmp_path: Path) -> None:
    sonarr.root_folders = [f"{tmp_path}/tv"]
    key_file = tmp_path / "sonarr.key"
    key_file.write_text(sonarr.api_key)
    config = tmp_path / "castui.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": f"{tmp_path}/state/castui.db",
                "libraries": [{"name": "TV", "path": f"{tmp_path}/tv"}],
                "arr": [{"kind": "sonarr", "url": sonarr.url, "api_key_file": str(key_file)}],
            }
        )
    )
    (tmp_path / "tv").mkdir()
    (tmp_path / "home").mkdir()
    shown = run_castui("arr", "check", "--config", str(config), home=tmp_path / "home")
    assert shown.returncode == 0, shown.stderr
    assert "Sonarr 4.0.10.2544" in shown.stdout and "key accepted" in shown.stdout
    assert sonarr.api_key not in shown.stdout + shown.stderr
    sonarr.down()
    shown = run_castui("arr", "check", "--config", str(config), home=tmp_path / "home")
    assert shown.returncode == 2 and "cannot reach Sonarr" in shown.stdout, shown


async def test_engine_swap_asks_sonarr_to_rescan_the_series(
    sonarr: StandinArr,
    samples: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    show = tmp_path / "tv" / "Show"
    sonarr.add("Other", f"{tmp_path}/tv/Other")
    series = sonarr.add("Show", str(show))
    sonarr.root_folders = [f"{tmp_path}/tv"]
    settings = settings_for(
        tmp_path, {"kind": "sonarr", "url": sonarr.url, "api_key": sonarr.api_key}
    )
    source = show / "Season 01" / "Show - S01E01.mkv"
    place_settled(samples["compliant.mkv"], source)
    engine = cpu_engine(settings)
    sub = engine.bus.subscribe()
    await engine.start()
    try:
        await wait_event(
            sub, lambda e: isinstance(e, LogLine) and "rescan of 'Show' requested" in e.message, 60
        )
        left = await engine.store.outbox_rows(target=arr_target("sonarr"))
    finally:
        await engine.stop()
    assert sonarr.commands == [{"name": "RescanSeries", "seriesId": series}]
    assert left == []
    assert sonarr.api_key not in caplog.text
    assert sonarr.api_key.encode() not in Path(settings.database).read_bytes()


async def test_a_reload_with_the_right_key_resumes_stopped_rescans(
    sonarr: StandinArr, tmp_path: Path
) -> None:
    series = sonarr.add("Show", f"{tmp_path}/tv/Show")
    wrong = {"kind": "sonarr", "url": sonarr.url, "api_key": "0" * 32}
    settings = settings_for(tmp_path, wrong)
    engine = cpu_engine(settings, scan_at_start=False)
    sub = engine.bus.subscribe()
    await engine.start()
    try:
        path = f"{tmp_path}/tv/Show/Season 01/Show - S01E02.mp4"
        await engine.store.outbox_add([OutboxEntry(path, "Modified", "TV", arr_target("sonarr"))])
        engine.arr[0].poke()
        await wait_event(sub, lambda e: isinstance(e, LogLine) and "stopped:" in e.message)
        assert sonarr.commands == []
        await engine.reload(settings_for(tmp_path, {**wrong, "api_key": sonarr.api_key}))
        await wait_event(sub, lambda e: isinstance(e, LogLine) and "requested" in e.message)
        left = await engine.store.outbox_counts(arr_target("sonarr"))
    finally:
        await engine.stop()
    assert sonarr.commands == [{"name": "RescanSeries", "seriesId": series}]
    assert left == {"pending": 0, "stopped": 0}


def test_castui_convert_queues_a_rescan_for_the_service_to_deliver(
    sonarr: StandinArr, samples: dict[str, Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    show = tmp_path / "tv" / "Show"
    series = sonarr.add("Show", str(show))
    source = show / "Show - S01E03.mkv"
    source.parent.mkdir(parents=True)
    shutil.copy(samples["compliant.mkv"], source)
    entry = {"kind": "sonarr", "url": sonarr.url, "api_key": sonarr.api_key}
    settings = settings_for(tmp_path, entry)
    config = tmp_path / "settings.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": str(settings.database),
                "libraries": [{"name": "TV", "path": f"{tmp_path}/tv", "watch": "off"}],
                "arr": [entry],
            }
        )
    )
    done = run_castui("convert", str(source), "--config", str(config), home=home, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sonarr.requests == []  # the command itself does not wait for Sonarr

    async def deliver() -> None:
        bus = EventBus()
        sub = bus.subscribe()
        async with Store.open(settings.database) as store:
            (row,) = await store.outbox_rows(target=arr_target("sonarr"))
            assert row.path == str(source.with_suffix(".mp4"))
            sender = ArrSender(store, settings, settings.arr[0], bus)
            await sender.start()
            try:
                await wait_event(sub, lambda e: isinstance(e, LogLine) and "requested" in e.message)
            finally:
                await sender.stop()

    asyncio.run(deliver())
    assert sonarr.commands == [{"name": "RescanSeries", "seriesId": series}]
