"""Watch history across a swap: each user's Jellyfin data is read before, restored after.

Pure parts are table-tested; the rest runs real HTTP against the stand-in Jellyfin
(tests/jellyfin_standin.py: user data keyed by user and item id, the 10.9+ and 10.8 routes),
a real SQLite store and, end to end, a real engine converting a real file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_castui
from engine_helpers import cpu_engine, wait_event
from jellyfin_fixtures import jellyfin  # noqa: F401
from jellyfin_standin import StandinJellyfin
from test_jellyfin_confirm import expect_in_job_detail, film_in_library

from castui.tui.app import make_app
from castui_core.bus import EventBus
from castui_core.events import JobStateChanged, LogLine
from castui_core.integrations.jellyfin.client import JellyfinClient
from castui_core.integrations.jellyfin.userdata import (
    Snapshot,
    UserState,
    WatchHistoryKeeper,
    api_style,
    item_id_for,
    lost_fields,
    restore,
    summarise,
    take_snapshot,
)
from castui_core.store import Store

pytestmark = pytest.mark.timeout(120)
TICKS = 10_000_000  # Jellyfin counts positions in 100 ns ticks


def state(**kw: object) -> UserState:
    return UserState("u1", "alice", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("before", "after", "lost"),
    [
        (state(), state(), {}),
        (state(played=True, play_count=2), state(), {"Played": True, "PlayCount": 2}),
        (state(played=True, play_count=2), state(played=True, play_count=2), {}),
        # watched on since the swap: more is never overwritten with less
        (state(play_count=1), state(play_count=3), {}),
        (state(position_ticks=5 * TICKS), state(), {"PlaybackPositionTicks": 5 * TICKS}),
        (state(position_ticks=5 * TICKS), state(position_ticks=9 * TICKS), {}),
        (state(position_ticks=5 * TICKS), state(played=True, play_count=1), {}),
        (state(favorite=True), state(), {"IsFavorite": True}),
        (state(favorite=True), state(favorite=True), {}),
    ],
)
def test_lost_fields_are_only_what_jellyfin_lost(
    before: UserState, after: UserState, lost: dict[str, object]
) -> None:
    assert lost_fields(before, after) == lost


@pytest.mark.parametrize(
    ("version", "style"),
    [
        ("10.8.13", "10.8"),
        ("10.9.0", "10.9"),
        ("10.10.7", "10.9"),
        ("12.0.0", "10.9"),
        ("", "10.9"),
    ],
)
def test_api_style(version: str, style: str) -> None:
    assert api_style(version) == style


def test_summaries_say_what_happened() -> None:
    assert summarise([], 2, []).message == "watch history: kept by Jellyfin"
    assert summarise(["a", "b", "c"], 0, []).message == "watch history: restored for 3 users"
    assert summarise([], 0, ["x"]).message == "watch history: lost: x"
    assert summarise([], 0, []).outcome == "nothing"
    snap = Snapshot("abc", "10.8", (state(played=True),))
    assert Snapshot.from_json(snap.to_json()) == snap


# --- against the stand-in -----------------------------------------------------------------------


def library(standin: StandinJellyfin, root: Path, name: str = "film") -> tuple[Path, Path]:
    """A library holding ``name.mkv`` that Jellyfin has listed; returns (old, new) paths."""
    root.mkdir(parents=True, exist_ok=True)
    old = root / f"{name}.mkv"
    old.write_bytes(b"old")
    standin.add_library("Movies", [str(root)])
    standin.scan()
    return old, root / f"{name}.mp4"


def new_item(standin: StandinJellyfin, path: Path) -> str:
    """The id Jellyfin gave the new file, which castui computes the same way."""
    item = standin.item_for(str(path))
    assert item is not None
    assert item_id_for(str(path), item.type_full_name) == item.id
    return item.id


def swap(standin: StandinJellyfin, old: Path, new: Path) -> None:
    """What castui's swap does to Jellyfin's view: the old path goes, a new one comes."""
    os.rename(old, new)
    standin.scan()


async def test_a_lost_state_comes_back_and_a_kept_one_is_not_touched(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    jellyfin.playback.users += [{"Name": "alice", "Id": "a" * 32}, {"Name": "bob", "Id": "b" * 32}]
    old, new = library(jellyfin, tmp_path / "lib")
    jellyfin.set_user_data("alice", str(old), Played=True, PlayCount=2, IsFavorite=True)
    jellyfin.set_user_data("bob", str(old), PlaybackPositionTicks=42 * TICKS)
    # Jellyfin re-attaches bob's state to the new item by itself, not alice's.
    jellyfin.set_user_data("bob", str(new), PlaybackPositionTicks=42 * TICKS)
    async with JellyfinClient(jellyfin.url, jellyfin.api_key) as client:
        snapshot = await take_snapshot(client, str(old))
        assert {u.user_name for u in snapshot.users} == {"alice", "bob"}  # not castui-test
        assert not jellyfin.requests_to("/Items")  # found by its id, no library listing
        swap(jellyfin, old, new)
        new_id = new_item(jellyfin, new)
        result = await restore(client, snapshot, new_id)
    assert result.message == "watch history: restored for 1 user"
    alice = jellyfin.user_data_for("alice", str(new))
    assert (alice["Played"], alice["PlayCount"], alice["IsFavorite"]) == (True, 2, True)
    assert jellyfin.user_data_for("bob", str(new))["PlaybackPositionTicks"] == 42 * TICKS
    written = {user for user, _, _ in jellyfin.user_data_writes}
    assert written == {"a" * 32}  # bob's data was read, never written
    (post,) = jellyfin.requests_to(f"/UserItems/{new_id}/UserData", "POST")
    assert post.json == {"Played": True, "PlayCount": 2, "IsFavorite": True}


async def test_jellyfin_10_8_restores_played_and_says_the_position_is_lost(
    tmp_path: Path,
) -> None:
    standin = StandinJellyfin(version="10.8.13", monitor_delay_s=0.3).start()
    try:
        standin.playback.users.append({"Name": "carol", "Id": "c" * 32})
        old, new = library(standin, tmp_path / "lib")
        standin.set_user_data("carol", str(old), Played=True, PlayCount=1, IsFavorite=True)
        standin.set_user_data("castui-test", str(old), PlaybackPositionTicks=7 * TICKS)
        async with JellyfinClient(standin.url, standin.api_key) as client:
            snapshot = await take_snapshot(client, str(old))
            assert snapshot.style == "10.8"
            swap(standin, old, new)
            new_id = new_item(standin, new)
            result = await restore(client, snapshot, new_id)
        carol = standin.user_data_for("carol", str(new))
        assert (carol["Played"], carol["PlayCount"], carol["IsFavorite"]) == (True, 1, True)
        assert standin.user_data_for("castui-test", str(new))["PlaybackPositionTicks"] == 0
        assert result.outcome == "restored"
        assert "castui-test's resume position cannot be set on Jellyfin 10.8" in result.message
        assert not standin.requests_to(f"/UserItems/{new_id}/UserData")  # 10.9+ only
    finally:
        standin.stop()


async def _job(store: Store, path: Path) -> int:
    return (await store.enqueue(str(path), "Movies", "remux", ["container"])).job_id


async def test_jellyfin_down_before_the_swap_is_recorded_as_unknown_and_never_raises(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    old, _ = library(jellyfin, tmp_path / "lib")
    jellyfin.down()
    bus = EventBus()
    async with (
        Store.open(tmp_path / "castui.db") as store,
        JellyfinClient(jellyfin.url, jellyfin.api_key, timeout_s=2) as client,
    ):
        job = await _job(store, old)
        keeper = WatchHistoryKeeper(client, store, bus, to_jellyfin=lambda p: p)
        started = time.monotonic()
        await keeper.before_swap(job, str(old))
        assert time.monotonic() - started < 10
        row = (await store.watch_history([job]))[job]
    assert row.status == "unknown"
    assert row.message == "watch history: unknown: Jellyfin unreachable before the swap"


async def test_a_snapshot_pending_at_a_restart_is_settled_by_the_next_start(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    jellyfin.playback.users.append({"Name": "erin", "Id": "e" * 32})
    old, new = library(jellyfin, tmp_path / "lib")
    jellyfin.set_user_data("erin", str(old), PlaybackPositionTicks=90 * TICKS)
    database = tmp_path / "castui.db"
    async with (
        Store.open(database) as store,
        JellyfinClient(jellyfin.url, jellyfin.api_key) as client,
    ):
        job = await _job(store, old)
        first = WatchHistoryKeeper(client, store, EventBus(), to_jellyfin=lambda p: p)
        await first.before_swap(job, str(old))  # then castui stops before the confirmation
        assert (await store.watch_history([job]))[job].status == "pending"
    swap(jellyfin, old, new)
    async with (
        Store.open(database) as store,
        JellyfinClient(jellyfin.url, jellyfin.api_key) as client,
    ):
        await store.record_jellyfin_confirmation(
            job_id=job,
            path=str(new),
            status="direct_play",
            generation="gen1",
            reasons=(),
            message="Jellyfin: direct play",
            item_id=new_item(jellyfin, new),
            at=time.time(),
        )
        again = WatchHistoryKeeper(client, store, EventBus(), to_jellyfin=lambda p: p)
        await again.start()
        try:
            await again.wait_idle()
        finally:
            await again.stop()
        row = (await store.watch_history([job]))[job]
    assert (row.status, row.message) == ("restored", "watch history: restored for 1 user")
    assert jellyfin.user_data_for("erin", str(new))["PlaybackPositionTicks"] == 90 * TICKS


# --- end to end: a real engine, a real conversion -----------------------------------------------


async def test_engine_restores_what_jellyfin_lost_and_records_it(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings, source = film_in_library(tmp_path, jellyfin, samples)
    jellyfin.scan()  # the old item exists in Jellyfin with the users' state
    jellyfin.playback.users.append({"Name": "dave", "Id": "d" * 32})
    jellyfin.set_user_data("dave", str(source), Played=True, PlayCount=3)
    jellyfin.set_user_data("castui-test", str(source), IsFavorite=True)
    jellyfin.set_user_data("castui-test", str(source.with_suffix(".mp4")), IsFavorite=True)
    engine = cpu_engine(settings)
    sub = engine.bus.subscribe()
    await engine.start()
    try:
        await wait_event(sub, lambda e: isinstance(e, JobStateChanged) and e.new == "done")
        jellyfin.scan()  # Jellyfin picks the new file up (its monitor or its own scan)
        line = await wait_event(
            sub, lambda e: isinstance(e, LogLine) and "watch history:" in e.message
        )
        job_ids = [j.id for j in await engine.store.history()]
        stored = await engine.store.watch_history(job_ids)
    finally:
        await engine.stop()
    assert isinstance(line, LogLine)
    (record,) = stored.values()
    assert record.status == "restored", record
    assert record.message == "watch history: restored for 1 user"
    new = str(source.with_suffix(".mp4"))
    dave = jellyfin.user_data_for("dave", new)
    assert (dave["Played"], dave["PlayCount"]) == (True, 3)
    assert {u for u, _, _ in jellyfin.user_data_writes} == {"d" * 32}
    # The key is sent only in the Authorization header: never in a URL, a log or the database.
    key = jellyfin.api_key
    assert key not in caplog.text
    assert all(key not in str(r.query) and key not in r.path for r in jellyfin.requests)
    assert key.encode() not in Path(settings.database).read_bytes()

    config = tmp_path / "castui.yaml"
    config.write_text(yaml.safe_dump({"database": str(settings.database)}))
    (tmp_path / "home").mkdir()
    as_json = run_castui("history", "--json", "--config", str(config), home=tmp_path / "home")
    (job,) = json.loads(as_json.stdout)
    assert job["watch_history"] == {
        "status": "restored",
        "message": "watch history: restored for 1 user",
    }
    shown = run_castui("history", "--config", str(config), home=tmp_path / "home", COLUMNS="300")
    assert "watch history: restored for 1 user" in " ".join(shown.stdout.split())


async def test_job_detail_shows_the_watch_history(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    settings, source = film_in_library(tmp_path, jellyfin, samples)
    jellyfin.scan()
    jellyfin.set_user_data("castui-test", str(source), Played=True, PlayCount=1)
    engine = cpu_engine(settings)
    sub = engine.bus.subscribe()
    app = make_app(engine)  # the dashboard starts the engine itself
    async with app.run_test(size=(140, 40)) as pilot:
        done = await wait_event(sub, lambda e: isinstance(e, JobStateChanged) and e.new == "done")
        assert isinstance(done, JobStateChanged)
        jellyfin.scan()
        await wait_event(sub, lambda e: isinstance(e, LogLine) and "watch history:" in e.message)
        await expect_in_job_detail(
            app,
            pilot,
            done.job_id,
            "watch history: restored for 1 user",
            what="the watch history in the job detail",
        )
