"""The durable Jellyfin outbox and its sender, over real HTTP to the stand-in Jellyfin.

Real parts throughout: a real SQLite file, real ffmpeg jobs through a real Engine, real HTTP
on 127.0.0.1 to tests/jellyfin_standin.py (which keeps to Jellyfin's 204/auth/refresh rules).
Waiting is on the bus's events or the stand-in's condition variable, never a guessed sleep.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import run_castui
from jellyfin_fixtures import jellyfin, jellyfin12  # noqa: F401
from jellyfin_standin import StandinJellyfin

from castui_core.bus import EventBus
from castui_core.engine import Engine
from castui_core.errors import LeaseLostError
from castui_core.events import Event, JellyfinState, JobFinished, LogLine
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.guardrails import FakeGpu
from castui_core.integrations.jellyfin.sender import (
    BACKOFF_MAX_S,
    JellyfinSender,
    backoff_s,
    coalesce,
    outbox_entries,
    swap_changes,
)
from castui_core.metrics import Metrics
from castui_core.queue.open import open_queue
from castui_core.settings import Settings, load_settings, parse_settings
from castui_core.store import JobResult, Store
from castui_core.store.outbox import OutboxEntry, OutboxRow
from castui_core.tools import Tools

pytestmark = pytest.mark.timeout(120)
TIMEOUT_S = 30.0


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "output", "exists", "changes"),
    [
        ("/m/a.mkv", None, True, []),  # skipped: nothing changed
        ("/m/a.mkv", "/m/a.mp4", True, [("/m/a.mp4", "Created")]),
        ("/m/a.mkv", "/m/a.mp4", False, [("/m/a.mp4", "Created"), ("/m/a.mkv", "Deleted")]),
        ("/m/a.mp4", "/m/a.mp4", True, [("/m/a.mp4", "Modified")]),  # replaced in place
        ("/m/a.mkv", "/cast/a.mp4", True, [("/cast/a.mp4", "Created")]),  # output_dir
    ],
)
def test_what_a_swap_changed(
    source: str, output: str | None, exists: bool, changes: list[tuple[str, str]]
) -> None:
    assert swap_changes(source, output, source_exists=exists) == changes


async def test_only_libraries_with_jellyfin_on_add_rows(tmp_path: Path) -> None:
    lib_on, lib_off = tmp_path / "on", tmp_path / "off"
    settings = parse_settings(
        yaml.safe_dump(
            {
                "libraries": [
                    {"name": "On", "path": str(lib_on)},
                    {"name": "Off", "path": str(lib_off), "jellyfin": False},
                ],
                "jellyfin": {"url": "http://127.0.0.1:1", "api_key": "k"},
            }
        )
    )
    source = str(lib_on / "a.mkv")  # gone: delete_source removed it
    assert await outbox_entries(settings, "On", source, str(lib_on / "a.mp4")) == [
        OutboxEntry(str(lib_on / "a.mp4"), "Created", "On"),
        OutboxEntry(source, "Deleted", "On"),
    ]
    assert (
        await outbox_entries(settings, "Off", str(lib_off / "b.mkv"), str(lib_off / "b.mp4")) == []
    )
    assert await outbox_entries(settings, "On", source, None) == []  # skipped: nothing new


def row(i: int, path: str, kind: str = "Created") -> OutboxRow:
    return OutboxRow(i, path, os.path.dirname(path), kind, "M", None, 0, 0.0, None, 0.0)  # type: ignore[arg-type]


def test_coalesce_keeps_the_newest_change_per_path_grouped_by_folder() -> None:
    rows = [
        row(1, "/m/b/x.mp4"),
        row(2, "/m/a/y.mp4"),
        row(3, "/m/b/x.mp4", "Deleted"),
        row(4, "/m/a/z.mp4"),
    ]
    assert coalesce(rows) == [
        ("/m/a/y.mp4", "Created", [2]),
        ("/m/a/z.mp4", "Created", [4]),
        ("/m/b/x.mp4", "Deleted", [1, 3]),
    ]


def test_backoff_grows_with_jitter_up_to_an_hour() -> None:
    rng = random.Random(7)
    first = [backoff_s(0, rng) for _ in range(50)]
    late = [backoff_s(40, rng) for _ in range(200)]
    assert all(d == 2.0 for d in first)
    assert all(2.0 <= d <= BACKOFF_MAX_S for d in late)
    assert max(late) > 1800 and len({round(d) for d in late}) > 100  # spread, capped


# --- helpers -----------------------------------------------------------------------------------


class Events:
    """Everything a bus publishes, collected by a background task."""

    def __init__(self, bus: EventBus) -> None:
        self._sub = bus.subscribe()
        self.seen: list[Event] = []
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            event = await self._sub.get()
            async with self._changed:
                self.seen.append(event)
                self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = TIMEOUT_S
    ) -> Event:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: any(predicate(e) for e in self.seen))
                return next(e for e in self.seen if predicate(e))
        except TimeoutError:
            tail = "\n".join(repr(e) for e in self.seen[-30:])
            pytest.fail(f"no matching event within {timeout:g} s; last events:\n{tail}")

    async def wait_state(self, predicate: Callable[[JellyfinState], bool]) -> JellyfinState:
        event = await self.wait_for(lambda e: isinstance(e, JellyfinState) and predicate(e))
        assert isinstance(event, JellyfinState)
        return event

    def text(self) -> str:
        return "\n".join(repr(e) for e in self.seen)

    async def close(self) -> None:
        self._task.cancel()
        with __import__("contextlib").suppress(asyncio.CancelledError):
            await self._task


async def wait_standin(server: StandinJellyfin, predicate: Callable[[], bool]) -> None:
    """Wait on the stand-in's condition from a thread (the event loop keeps running)."""
    assert await asyncio.to_thread(server.wait_for, predicate, TIMEOUT_S), "stand-in never saw it"


def settings_for(
    tmp_path: Path, server: StandinJellyfin, *, key: str | None = None, **options: Any
) -> Settings:
    data = {
        "database": f"{tmp_path}/state/castui.db",
        "libraries": [{"name": "Movies", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"settle_seconds": 0.3, "probe_workers": 2},
        "service": {"lease_seconds": 5, "shutdown_grace_s": 0},
        "guardrails": {"sample_interval_s": 0.2},
        "operational": {"encoder": "cpu", "min_free_gb": 0},
        "jellyfin": {
            "url": server.url,
            "api_key": key or server.api_key,
            "batch_window_s": 0.2,
            **options,
        },
    }
    return parse_settings(yaml.safe_dump(data))


def make_engine(settings: Settings) -> Engine:
    return Engine(
        settings,
        gpu=FakeGpu(),
        nvenc=NvencStatus(available=False, reason="test: CPU only"),
        tools=Tools(ffmpeg=Path(shutil.which("ffmpeg") or "ffmpeg"), ffprobe=Path("ffprobe")),
        watch=False,
        scan_at_start=True,
        idle_poll_s=0.2,
    )


def add_file(tmp_path: Path, source: Path, name: str) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    target = lib / name
    shutil.copy(source, target)
    past = time.time() - 60
    os.utime(target, (past, past))
    return target


def done(path: Path) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, JobFinished) and e.path == str(path) and e.status == "done"


def database_bytes(settings: Settings) -> bytes:
    db = settings.database
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


# --- the store: rows exist exactly when the swap committed -------------------------------------


async def test_outbox_rows_are_written_with_the_completion_or_not_at_all(tmp_path: Path) -> None:
    entries = [OutboxEntry("/m/a.mp4", "Created", "M"), OutboxEntry("/m/a.mkv", "Deleted", "M")]
    async with Store.open(tmp_path / "castui.db") as store:
        await store.enqueue("/m/a.mkv", "M", "remux")
        claimed = await store.claim("w")
        assert claimed is not None
        with pytest.raises(LeaseLostError):  # fenced out: neither the done nor the rows
            await store.complete(claimed.id, claimed.token + 1, JobResult(), entries)
        assert await store.outbox_counts() == {"pending": 0, "stopped": 0}
        await store.complete(claimed.id, claimed.token, JobResult(output_path="/m/a.mp4"), entries)
        stored = await store.outbox_rows()
    assert [(r.path, r.update_type, r.job_id) for r in stored] == [
        ("/m/a.mp4", "Created", claimed.id),
        ("/m/a.mkv", "Deleted", claimed.id),
    ]


# --- a real job, a real POST ------------------------------------------------------------------


async def test_a_finished_job_is_posted_with_the_12_0_header_and_body(
    jellyfin12: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("castui", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    server = jellyfin12
    source = add_file(tmp_path, samples["compliant.mkv"], "Film.mkv")
    server.add_library("Movies", [str(tmp_path / "lib")])
    server.scan()
    settings = settings_for(tmp_path, server)
    engine = make_engine(settings)
    events = Events(engine.bus)
    async with engine:
        await events.wait_for(done(source))
        output = str(tmp_path / "lib" / "Film.mp4")
        await wait_standin(server, lambda: server.item_for(output) is not None)
        # The output is new and the original left the library (replace layout: archived).
        state = await events.wait_state(lambda s: s.sent == 2 and s.outbox_pending == 0)
    await events.close()
    (post,) = server.requests_to("/Library/Media/Updated")
    assert post.headers["authorization"] == (
        f'MediaBrowser Client="castui", Version="0.1.0", Token="{server.api_key}"'
    )
    assert post.headers["content-type"] == "application/json"
    assert post.json == {
        "Updates": [
            {"Path": str(source), "UpdateType": "Deleted"},
            {"Path": output, "UpdateType": "Created"},
        ]
    }
    assert server.dropped == [] and server.refreshes == 0  # never /Library/Refresh
    assert state.connected and state.version == "12.0.0" and not state.problems
    async with Store.open(settings.database) as store:
        assert await store.outbox_counts() == {"pending": 0, "stopped": 0}
    # The key went only into the Authorization header: not into any URL, log, event or the db.
    key = server.api_key
    assert all(key not in r.path + str(r.query) + r.body.decode() for r in server.requests)
    assert key not in events.text()
    assert key not in caplog.text
    assert key.encode() not in database_bytes(settings)


async def test_many_changes_go_out_in_one_request_per_batch(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    lib = tmp_path / "lib"
    jellyfin.add_library("Movies", [str(lib)])
    settings = settings_for(tmp_path, jellyfin, batch_window_s=0.3)
    entries = [
        OutboxEntry(f"{lib}/Show {n % 5}/Episode {n}.mp4", "Created", "Movies") for n in range(60)
    ]
    bus = EventBus()
    events = Events(bus)
    async with (
        Store.open(settings.database) as store,
        JellyfinSender(store, settings, bus) as sender,
    ):
        await events.wait_state(lambda s: s.connected)  # the health check ran
        await store.outbox_add(entries)
        sender.poke()
        await events.wait_state(lambda s: s.sent == 60)
    await events.close()
    (post,) = jellyfin.requests_to("/Library/Media/Updated")
    paths = [u["Path"] for u in post.json["Updates"]]
    assert sorted(paths) == sorted(e.path for e in entries)
    assert paths == sorted(paths, key=lambda p: (os.path.dirname(p), p))  # by folder


@pytest.mark.parametrize("reload_first", [False, True], ids=["stop", "reload-then-stop"])
async def test_a_stop_while_a_batch_is_on_its_way_sends_it_once_and_leaves_no_loop(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
    reload_first: bool,
) -> None:
    """Seen in CI as a duplicate notice: stop() cancelled a POST that Jellyfin had received,
    the rows stayed pending, and stop()'s own last try posted them again. With a reload first
    (SIGHUP then SIGTERM), the reload waits for the batch: the stop must neither post the
    same rows again nor let the reload start a loop after it."""
    lib = tmp_path / "lib"
    jellyfin.add_library("Movies", [str(lib)])
    settings = settings_for(tmp_path, jellyfin, batch_window_s=0)
    bus = EventBus()
    events = Events(bus)
    async with Store.open(settings.database) as store:
        sender = JellyfinSender(store, settings, bus)
        await sender.start()
        reloading: asyncio.Task[None] | None = None
        try:
            await events.wait_state(lambda s: s.connected)  # the health check ran
            jellyfin.slow_s = 1.0  # Jellyfin answers the POST a second after receiving it
            await store.outbox_add([OutboxEntry(f"{lib}/Film.mp4", "Created", "Movies")])
            sender.poke()
            await wait_standin(
                jellyfin, lambda: bool(jellyfin.requests_to("/Library/Media/Updated"))
            )
            if reload_first:
                reloading = asyncio.create_task(sender.reload(settings))
                await asyncio.sleep(0)  # the reload begins: it ends the loop, then waits
        finally:
            await sender.stop()
            if reloading is not None:
                await reloading
        loops = [t for t in asyncio.all_tasks() if t.get_name().startswith("castui-jellyfin")]
        counts = await store.outbox_counts()
    await events.close()
    assert len(jellyfin.requests_to("/Library/Media/Updated")) == 1
    assert loops == []
    assert counts["pending"] == 0 and counts["stopped"] == 0, counts
    assert sender.sent == 1


# --- failures ---------------------------------------------------------------------------------


async def test_500_twice_then_204_delivers_once(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    lib = tmp_path / "lib"
    jellyfin.add_library("Movies", [str(lib)])
    settings = settings_for(tmp_path, jellyfin)
    path = f"{lib}/Film/Film.mp4"
    bus = EventBus()
    events = Events(bus)
    metrics = Metrics(bus)
    async with (
        Store.open(settings.database) as store,
        JellyfinSender(store, settings, bus, backoff_base_s=0.05) as sender,
    ):
        await events.wait_state(lambda s: s.connected)
        jellyfin.fail_next(2, 500)
        await store.outbox_add([OutboxEntry(path, "Created", "Movies")])
        sender.poke()
        final = await events.wait_state(lambda s: s.sent == 1)
        assert await store.outbox_counts() == {"pending": 0, "stopped": 0}
    await events.close()
    assert len(jellyfin.requests_to("/Library/Media/Updated")) == 3
    assert jellyfin.updated_paths() == [path]  # accepted exactly once
    assert (final.failed, final.last_error) == (2, "")
    retried = [e for e in events.seen if isinstance(e, LogLine) and "retried in" in e.message]
    assert len(retried) == 2 and "answered 500" in retried[0].message

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    async with asyncio.timeout(TIMEOUT_S):  # the metrics task reads the same events
        while sample("castui_jellyfin_notifications_sent_total") != 1:
            await asyncio.sleep(0.01)
    assert sample("castui_jellyfin_notifications_failed_total") == 2
    assert sample("castui_jellyfin_notifications_pending", state="pending") == 0
    assert sample("castui_jellyfin_connected") == 1
    metrics.close()


async def test_401_stops_the_batch_reports_it_and_a_reload_resumes(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    lib = tmp_path / "lib"
    jellyfin.add_library("Movies", [str(lib)])
    settings = settings_for(tmp_path, jellyfin)
    key = jellyfin.api_key
    path = f"{lib}/Film/Film.mp4"
    bus = EventBus()
    events = Events(bus)
    async with (
        Store.open(settings.database) as store,
        JellyfinSender(store, settings, bus) as sender,
    ):
        await events.wait_state(lambda s: s.connected)
        jellyfin.keys.clear()  # the key was deleted in Jellyfin's dashboard
        await store.outbox_add([OutboxEntry(path, "Created", "Movies")])
        sender.poke()
        stopped = await events.wait_state(lambda s: s.outbox_stopped == 1)
        assert await store.outbox_counts() == {"pending": 0, "stopped": 1}  # kept
        posts = len(jellyfin.requests_to("/Library/Media/Updated"))
        jellyfin.keys.add(key)  # a new key in the settings file; castui reloads
        await sender.reload(settings)
        await events.wait_state(lambda s: s.sent == 1 and s.outbox_stopped == 0)
    await events.close()
    assert posts == 1  # stopped at once: no retry loop against a refusal
    assert "answered 401" in stopped.last_error and "API Keys" in stopped.last_error
    assert "kept; fix it and reload" in stopped.last_error
    warnings = [e.message for e in events.seen if isinstance(e, LogLine) and e.level == "warning"]
    assert any("notifications stopped" in w for w in warnings)
    assert key not in events.text()
    assert jellyfin.updated_paths() == [path]


async def test_down_during_jobs_then_up_delivers_everything_after_a_restart(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    sources = [
        add_file(tmp_path, samples["compliant.mkv"], "One.mkv"),
        add_file(tmp_path, samples["compliant.mkv"], "Two.mkv"),
    ]
    outputs = sorted(str(s.with_suffix(".mp4")) for s in sources)
    # Each swap: the output Created, the original (archived by the replace layout) Deleted.
    changed = sorted([*outputs, *(str(s) for s in sources)])
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    settings = settings_for(tmp_path, jellyfin)
    jellyfin.down()
    first = make_engine(settings)
    events = Events(first.bus)
    async with first:  # conversions go on while Jellyfin is down
        for source in sources:
            await events.wait_for(done(source))
        down = await events.wait_state(lambda s: s.failed >= 2 and s.outbox_pending == 4)
    await events.close()
    assert not down.connected and "cannot reach Jellyfin" in down.last_error
    async with Store.open(settings.database) as store:  # kept across the restart
        assert sorted(r.path for r in await store.outbox_rows()) == changed
    jellyfin.up()
    second = make_engine(settings)
    events = Events(second.bus)
    async with second:
        await events.wait_state(lambda s: s.sent == 4 and s.outbox_pending == 0)
        await wait_standin(jellyfin, lambda: all(jellyfin.item_for(o) for o in outputs))
    await events.close()
    assert sorted(jellyfin.updated_paths()) == changed  # each exactly once


async def test_path_map_is_applied_before_sending(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    """castui sees /…/lib, Jellyfin (in a container) sees /data/movies."""
    lib = tmp_path / "lib"
    (lib / "Film").mkdir(parents=True)
    (lib / "Film" / "Film.mp4").write_bytes(b"\0" * 64)
    jellyfin.path_map = {"/data/movies": str(lib)}
    jellyfin.add_library("Movies", ["/data/movies"])
    settings = settings_for(tmp_path, jellyfin, path_map={str(lib): "/data/movies"})
    bus = EventBus()
    events = Events(bus)
    async with (
        Store.open(settings.database) as store,
        JellyfinSender(store, settings, bus) as sender,
    ):
        state = await events.wait_state(lambda s: s.connected)
        assert state.problems == ()  # the check maps the library through path_map
        await store.outbox_add([OutboxEntry(str(lib / "Film" / "Film.mp4"), "Created", "Movies")])
        sender.poke()
        await events.wait_state(lambda s: s.sent == 1)
    await events.close()
    assert jellyfin.updated_paths() == ["/data/movies/Film/Film.mp4"]
    await wait_standin(
        jellyfin, lambda: jellyfin.item_for("/data/movies/Film/Film.mp4") is not None
    )
    assert jellyfin.dropped == []


# --- a real headless castui, restarted ---------------------------------------------------------


def test_headless_castui_keeps_notifications_across_a_restart(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    """``castui --no-ui --once`` while Jellyfin is down converts and keeps the notification in
    the database; the next run, with Jellyfin up, delivers it. The key (from a key file) is in
    no log, no output and not in the database."""
    home = tmp_path / "home"
    home.mkdir()
    source = add_file(tmp_path, samples["compliant.mkv"], "Film.mkv")
    output = str(source.with_suffix(".mp4"))
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    key_file = tmp_path / "jellyfin.key"
    key_file.write_text(jellyfin.api_key + "\n")
    config = tmp_path / "settings.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": f"{tmp_path}/state/castui.db",
                "libraries": [{"name": "Movies", "path": f"{tmp_path}/lib", "watch": "off"}],
                "operational": {"encoder": "cpu", "min_free_gb": 0},
                "scan": {"settle_seconds": 0.2},
                "service": {"shutdown_grace_s": 0, "lease_seconds": 3},
                "jellyfin": {
                    "url": jellyfin.url,
                    "api_key_file": str(key_file),
                    "timeout_s": 2,
                    "batch_window_s": 0.2,
                },
            }
        )
    )
    jellyfin.down()
    first = run_castui("--no-ui", "--once", "--config", str(config), home=home, timeout=120)
    assert first.returncode == 0, first.stderr
    assert Path(output).is_file()
    assert "cannot reach Jellyfin" in first.stderr  # said, not hidden
    assert jellyfin.requests == []
    settings = parse_settings(config.read_text())
    pending = asyncio.run(_outbox_paths(settings))
    assert sorted(pending) == sorted([output, str(source)])  # the original was archived

    jellyfin.up()
    second = run_castui("--no-ui", "--once", "--config", str(config), home=home, timeout=120)
    assert second.returncode == 0, second.stderr
    assert sorted(jellyfin.updated_paths()) == sorted([output, str(source)])
    assert asyncio.run(_outbox_paths(settings)) == []
    key = jellyfin.api_key
    logs = "".join(p.read_text() for p in (tmp_path / "state" / "logs").iterdir())
    for text in (first.stdout, first.stderr, second.stdout, second.stderr, logs):
        assert key not in text
    assert key.encode() not in database_bytes(settings)


async def _outbox_paths(settings: Settings) -> list[str]:
    async with Store.open(settings.database, reclaim_on_open=False) as store:
        queue = await open_queue(settings, store)
        try:
            return [r.path for r in await queue.outbox_rows()]
        finally:
            if queue is not store:
                await queue.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_castui_convert_queues_its_swap_for_the_service_to_deliver(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    """The outbox lives with the jobs: with the shared Redis queue, ``castui convert``'s
    notices must land there, where the library host's sender reads them (they went to this
    host's database, which no sender reads, before)."""
    home = tmp_path / "home"
    home.mkdir()
    source = add_file(tmp_path, samples["compliant.mkv"], "Film.mkv")
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    database = settings_for(tmp_path, jellyfin).database
    document: dict[str, object] = {
        "database": str(database),
        "libraries": [{"name": "Movies", "path": f"{tmp_path}/lib", "watch": "off"}],
        "jellyfin": {"url": jellyfin.url, "api_key": jellyfin.api_key},
    }
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        document["queue"] = {"backend": "redis", "url": url, "prefix": "convert-test"}
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(document))
    settings = load_settings(config)
    done = run_castui("convert", str(source), "--config", str(config), home=home, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert jellyfin.requests == []  # the command itself does not wait for Jellyfin
    changed = sorted([str(source.with_suffix(".mp4")), str(source)])  # original archived
    assert sorted(asyncio.run(_outbox_paths(settings))) == changed

    async def deliver() -> None:
        bus = EventBus()
        events = Events(bus)
        async with Store.open(settings.database) as store:
            queue = await open_queue(settings, store)
            try:
                async with JellyfinSender(queue, settings, bus):
                    await events.wait_state(lambda s: s.sent == 2)
            finally:
                if queue is not store:
                    await queue.close()
        await events.close()

    asyncio.run(deliver())
    assert sorted(jellyfin.updated_paths()) == changed


class _SwallowsOneCancel:
    """The real store, except that its first ``outbox_due`` swallows a cancellation the way
    Python 3.11's ``asyncio.wait_for`` does when the wrapped call completes as the cancel
    lands (redis-py runs every command through it): the caller never sees CancelledError."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.entered = asyncio.Event()
        self.swallowed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def outbox_due(self, limit: int) -> list[OutboxRow]:
        if not self.swallowed and not self.entered.is_set():
            self.entered.set()
            try:
                await asyncio.Event().wait()  # stop() cancels the sender here
            except asyncio.CancelledError:
                self.swallowed = True
        return await self._store.outbox_due(limit)


async def test_stop_returns_even_when_a_library_swallowed_the_cancellation(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Seen on the Redis queue: stop() took the whole 30 s idle poll (38 s tests), because the
    cancellation vanished inside redis-py and the loop went on to wait for its next poll."""
    settings = settings_for(tmp_path, jellyfin)
    async with Store.open(settings.database) as store:
        queue = _SwallowsOneCancel(store)
        sender = JellyfinSender(queue, settings, EventBus())  # type: ignore[arg-type]
        await sender.start()
        async with asyncio.timeout(TIMEOUT_S):
            await queue.entered.wait()
        started = time.monotonic()
        try:
            async with asyncio.timeout(5):
                await sender.stop()
        except TimeoutError:
            pytest.fail("stop() did not return within 5 s of a swallowed cancellation")
        assert queue.swallowed, "the test did not reproduce the swallowed cancellation"
        assert time.monotonic() - started < 5
