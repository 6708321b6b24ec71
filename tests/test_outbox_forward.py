"""A restore's Jellyfin notice on a shared Redis queue (issue 13): the restore writes it into
this host's SQLite outbox in its own transaction, and castui_core.queue.forward moves it to the
shared outbox the library host's sender reads. Real redis-server (tests/redis_server.py), real
HTTP to the Jellyfin stand-in, a real conversion and restore."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from cli_helpers import run_castui
from engine_helpers import cpu_engine, place_settled, wait_event
from jellyfin_fixtures import jellyfin  # noqa: F401
from jellyfin_standin import StandinJellyfin
from redis_server import RedisServer

from castui_core.events import JobFinished
from castui_core.queue.forward import OutboxForwarder, entry_of, forward_outbox
from castui_core.queue.open import open_queue
from castui_core.settings import Settings, load_settings, parse_settings
from castui_core.store import JobState, Store
from castui_core.store.outbox import JELLYFIN, NOTIFY, OutboxEntry, OutboxRow

TIMEOUT_S = 60.0


def redis_settings(tmp_path: Path, redis_url: str, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "database": f"{tmp_path}/state/castui.db",
        "queue": {"backend": "redis", "url": redis_url, "prefix": "fwd"},
        "libraries": [{"name": "Movies", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"settle_seconds": 0.3, "probe_workers": 1},
        "service": {"lease_seconds": 5, "shutdown_grace_s": 0},
        "guardrails": {"sample_interval_s": 0.2},
        "operational": {"encoder": "cpu", "min_free_gb": 0, "max_concurrent_jobs": 1},
        **extra,
    }
    return parse_settings(yaml.safe_dump(data))


def _row(id_: int, path: str, target: str = JELLYFIN, folder: str = "") -> OutboxRow:
    return OutboxRow(
        id=id_,
        path=path,
        folder=folder,
        update_type="Created",
        library="M",
        job_id=None,
        attempts=0,
        next_at=0.0,
        last_error=None,
        created_at=0.0,
        target=target,
    )


def test_entry_of_maps_paths_out_but_keeps_a_notifications_text() -> None:
    mapped = entry_of(_row(1, "/mnt/nas/a.mkv"), {"/media": "/mnt/nas"})
    assert mapped == OutboxEntry("/media/a.mkv", "Created", "M", JELLYFIN)
    unmapped = entry_of(_row(2, "/elsewhere/a.mkv", "arr:sonarr"), {"/media": "/mnt/nas"})
    assert unmapped.path == "/elsewhere/a.mkv" and unmapped.target == "arr:sonarr"
    note = entry_of(_row(3, "/mnt/nas/a.mkv", NOTIFY, folder="job 3 is dead"), {"/m": "/mnt"})
    assert note.message == "job 3 is dead" and note.target == NOTIFY


async def test_restore_on_redis_reaches_jellyfin(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
    redis_url: str,
) -> None:
    lib = tmp_path / "lib"
    source = place_settled(samples["compliant.mkv"], lib / "Film.mkv")
    output = lib / "Film.mp4"
    jellyfin.add_library("Movies", [str(lib)])
    jellyfin.scan()
    settings = redis_settings(
        tmp_path,
        redis_url,
        jellyfin={"url": jellyfin.url, "api_key": jellyfin.api_key, "batch_window_s": 0.1},
    )
    engine = cpu_engine(settings)
    sub = engine.bus.subscribe()
    try:
        async with engine:
            assert engine.forwarder is not None and engine.queue is not engine.store
            await wait_event(
                sub, lambda e: isinstance(e, JobFinished) and e.status == "done", TIMEOUT_S
            )
            (job,) = await engine.queue.history()
            assert job.state is JobState.DONE and job.result.output_path == str(output)
            swap_notices = [str(source), str(output)]
            assert await asyncio.to_thread(
                jellyfin.wait_for,
                lambda: sorted(jellyfin.updated_paths()) == sorted(swap_notices),
                TIMEOUT_S,
            ), jellyfin.updated_paths()
            before = len(jellyfin.updated_paths())
            line = await engine.restore_original(job.id, actor="test")
            assert "restored" in line, line
            assert source.is_file() and not output.exists()
            # The local row went to Redis at once, and the sender was poked: Jellyfin hears
            # that the original is back and the output is gone.
            assert await engine.store.outbox_all_rows() == []
            restore_notices = [(str(source), "Created"), (str(output), "Deleted")]

            def heard() -> list[tuple[str, object]]:
                return [(str(u.get("Path")), u.get("UpdateType")) for u in jellyfin.updates]

            assert await asyncio.to_thread(
                jellyfin.wait_for,
                lambda: all(n in heard()[before:] for n in restore_notices),
                TIMEOUT_S,
            ), heard()
    finally:
        sub.close()


async def test_redis_down_during_the_forward_keeps_the_rows_for_the_next_try(
    tmp_path: Path, redis_url: str, redis_server: RedisServer
) -> None:
    settings = redis_settings(tmp_path, redis_url)
    (tmp_path / "state").mkdir()
    entries = [
        OutboxEntry("/mnt/nas/Film.mkv", "Created", "Movies"),
        OutboxEntry("/mnt/nas/Film.mp4", "Deleted", "Movies"),
    ]
    problems: list[str] = []
    moved: list[set[str]] = []
    arrived = asyncio.Event()

    def on_moved(targets: set[str]) -> None:
        moved.append(targets)
        arrived.set()

    async with Store.open(settings.database) as store:
        await store.outbox_add(entries)
        queue = await open_queue(settings, store)
        forwarder = OutboxForwarder(
            store,
            queue,
            path_map={"/media": "/mnt/nas"},
            on_moved=on_moved,
            on_problem=problems.append,
            retry_s=0.2,
        )
        try:
            assert await forward_outbox(store, store) == set()  # one host: nothing to move
            await asyncio.to_thread(redis_server.stop)
            assert await forwarder.forward_now() == set()
            assert len(problems) == 1 and "queue unreachable" in problems[0], problems
            assert [r.path for r in await store.outbox_all_rows()] == [e.path for e in entries]
            await asyncio.to_thread(redis_server.start)
            forwarder.start()  # the next try (the engine's 10 s retry, shortened)
            async with asyncio.timeout(TIMEOUT_S):
                await arrived.wait()
            shared = await queue.outbox_rows()
            local = await store.outbox_all_rows()
        finally:
            await forwarder.stop()
            await queue.close()
    assert moved == [{JELLYFIN}]
    assert local == []
    assert [(r.path, r.update_type) for r in shared] == [
        ("/media/Film.mkv", "Created"),
        ("/media/Film.mp4", "Deleted"),
    ]
    assert forwarder.problem is None


async def test_an_engine_forwards_rows_left_by_an_earlier_command_at_start(
    tmp_path: Path, redis_url: str
) -> None:
    """``castui originals restore`` (no engine running) leaves its notice in this host's
    outbox: the next engine start moves it to the shared queue."""
    (tmp_path / "lib").mkdir()
    settings = redis_settings(tmp_path, redis_url)
    (tmp_path / "state").mkdir()
    async with Store.open(settings.database) as store:
        await store.outbox_add([OutboxEntry(f"{tmp_path}/lib/a.mkv", "Created", "Movies")])
    engine = cpu_engine(settings, scan_at_start=False)
    async with engine:
        async with asyncio.timeout(TIMEOUT_S):
            while await engine.store.outbox_all_rows():
                await engine.wait_heartbeat()
        shared = await engine.queue.outbox_rows()
    assert [r.path for r in shared] == [f"{tmp_path}/lib/a.mkv"]


def test_castui_originals_restore_puts_its_notices_in_the_shared_queue(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
    redis_url: str,
) -> None:
    """The command (no engine running) moves its notices to Redis itself, where the library
    host's sender reads them."""
    lib = tmp_path / "lib"
    source = place_settled(samples["compliant.mkv"], lib / "Film.mkv")
    output = lib / "Film.mp4"
    document = {
        "database": f"{tmp_path}/state/castui.db",
        "queue": {"backend": "redis", "url": redis_url, "prefix": "fwd"},
        "libraries": [{"name": "Movies", "path": str(lib), "watch": "off"}],
        "jellyfin": {"url": jellyfin.url, "api_key": jellyfin.api_key},
    }
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(document))
    home = tmp_path / "home"
    home.mkdir()
    done = run_castui("convert", str(source), "--config", str(config), home=home, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    restored = run_castui(
        "originals", "restore", "--config", str(config), str(source), home=home, timeout=120
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "kept on this host" not in restored.stdout

    async def outboxes() -> tuple[list[OutboxRow], list[OutboxRow]]:
        settings = load_settings(config)
        async with Store.open(settings.database) as store:
            queue = await open_queue(settings, store)
            try:
                return await store.outbox_all_rows(), await queue.outbox_rows()
            finally:
                await queue.close()

    local, shared = asyncio.run(outboxes())
    assert local == []
    assert [(r.path, r.update_type) for r in shared][2:] == [
        (str(source), "Created"),
        (str(output), "Deleted"),
    ], shared
