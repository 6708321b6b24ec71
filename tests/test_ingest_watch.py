"""Ingest end to end: real inotify in tmp dirs, real SQLite, real probes, settle ~0.5 s."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from castui_core.bus import EventBus, Subscription
from castui_core.events import Event, JobCancelled, JobQueued, LibraryState, LogLine, ScanFinished
from castui_core.fsinfo import Mount
from castui_core.ingest import Ingest, WatchKind
from castui_core.probe import ProbePool
from castui_core.settings import LibrarySettings, ScanSettings, Settings
from castui_core.store import JobResult, JobState, Store

SETTLE = 0.5


@pytest.fixture(scope="module")
def pool() -> ProbePool:
    with ProbePool(2, timeout=20) as p:
        yield p  # type: ignore[misc]


async def wait_for(
    sub: Subscription, predicate: Callable[[Event], bool], timeout: float = 10.0
) -> Any:
    async with asyncio.timeout(timeout):
        async for event in sub:
            if predicate(event):
                return event
    raise AssertionError("bus closed")


def queued(path: Path, outcome: str | None = None) -> Callable[[Event], bool]:
    return lambda e: (
        isinstance(e, JobQueued)
        and e.path == str(path)
        and (outcome is None or e.outcome == outcome)
    )


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, pool: ProbePool, *, watch: str = "events", **kwargs: Any
) -> AsyncIterator[tuple[Ingest, Store, Subscription, Path]]:
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    settings = Settings(
        database=tmp_path / "castui.db",
        libraries=(LibrarySettings(name="Movies", path=lib, watch=watch),),
        scan=ScanSettings(settle_seconds=SETTLE, poll_interval_s=1),
    )
    bus = EventBus()
    sub = bus.subscribe()
    async with Store.open(tmp_path / "castui.db") as store:
        kwargs.setdefault("health_interval_s", 0.3)
        async with Ingest(settings, store, pool, bus, **kwargs) as ingest:
            await wait_for(sub, lambda e: isinstance(e, ScanFinished))
            yield ingest, store, sub, lib


async def jobs_for(store: Store, path: Path) -> list[Any]:
    active = [j for j in await store.active_jobs() if j.path == str(path)]
    done = [j for j in await store.history(limit=1000) if j.path == str(path)]
    return active + done


def _slow_copy(src: Path, dest: Path, chunks: int, pause: float) -> float:
    data = src.read_bytes()
    step = len(data) // chunks + 1
    with open(dest, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            os.fsync(f.fileno())
            last = time.monotonic()
            time.sleep(pause)
    return last


async def test_slow_copy_is_queued_once_after_the_last_write(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (_, store, sub, lib):
        dest = lib / "slow.mkv"
        last_write = await asyncio.to_thread(_slow_copy, samples["compliant.mkv"], dest, 6, 0.4)
        event = await wait_for(sub, queued(dest))
        assert time.monotonic() - last_write >= SETTLE - 0.45  # the last sleep counts too
        assert event.outcome == "created" and event.action == "remux"
        marker = lib / "marker.mkv"
        shutil.copyfile(samples["compliant.mkv"], marker)
        await wait_for(sub, queued(marker))
        assert len(await jobs_for(store, dest)) == 1


async def test_part_rename_and_moved_in_tree(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    outside = tmp_path / "downloads"
    (outside / "Show" / "S01").mkdir(parents=True)
    shutil.copyfile(samples["high10.mkv"], outside / "Show" / "S01" / "e1.mkv")
    shutil.copyfile(samples["compliant.mkv"], outside / "Show" / "e0.mkv")
    async with running(tmp_path, pool) as (_, store, sub, lib):
        part = lib / "name.mkv.part"
        shutil.copyfile(samples["compliant.mkv"], part)
        os.rename(part, lib / "name.mkv")
        await wait_for(sub, queued(lib / "name.mkv", "created"))
        os.rename(outside / "Show", lib / "Show")
        want = {str(lib / "Show" / "S01" / "e1.mkv"), str(lib / "Show" / "e0.mkv")}
        got: set[str] = set()
        await wait_for(
            sub,
            lambda e: isinstance(e, JobQueued) and (got.add(e.path) or want <= got),
        )
        paths = sorted(Path(j.path).relative_to(lib).as_posix() for j in await store.active_jobs())
        assert paths == ["Show/S01/e1.mkv", "Show/e0.mkv", "name.mkv"]


async def test_delete_while_queued_cancels_the_job(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (_, store, sub, lib):
        path = lib / "a.mkv"
        shutil.copyfile(samples["compliant.mkv"], path)
        event = await wait_for(sub, queued(path))
        [job] = await jobs_for(store, path)
        path.unlink()
        cancel = await wait_for(sub, lambda e: isinstance(e, JobCancelled) and e.path == str(path))
        assert "deleted" in cancel.reason
        assert (await store.get_job(job.id)).state is JobState.CANCELLED
        assert await store.get_file(str(path)) is None
        assert event.outcome == "created"


async def test_modify_while_running_is_requeued_after_the_run(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (_, store, sub, lib):
        path = lib / "a.mkv"
        shutil.copyfile(samples["compliant.mkv"], path)
        await wait_for(sub, queued(path, "created"))
        claimed = await store.claim("worker-1")
        assert claimed is not None and claimed.path == str(path)
        await asyncio.to_thread(shutil.copyfile, samples["high10.mkv"], path)
        event = await wait_for(sub, queued(path, "rerun_scheduled"))
        assert event.action == "transcode"
        assert (await store.get_job(claimed.id)).rerun_requested
        await store.complete(claimed.id, claimed.token, JobResult())
        [again] = [j for j in await store.active_jobs() if j.path == str(path)]
        assert again.state is JobState.QUEUED and str(again.action) == "transcode"


async def test_a_hundred_rapid_events_make_one_job(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (_, store, sub, lib):
        path = lib / "burst.mkv"
        data = samples["compliant.mkv"].read_bytes()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            step = len(data) // 100 + 1
            for i in range(0, len(data), step):
                os.write(fd, data[i : i + step])
        finally:
            os.close(fd)
        for _ in range(5):
            os.utime(path)
        await wait_for(sub, queued(path, "created"))
        marker = lib / "marker.mkv"
        shutil.copyfile(samples["compliant.mkv"], marker)
        await wait_for(sub, queued(marker))
        assert len(await jobs_for(store, path)) == 1


async def test_output_swap_queues_nothing(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (ingest, store, sub, lib):
        source = lib / "x.mkv"
        shutil.copyfile(samples["compliant.mkv"], source)
        await wait_for(sub, queued(source))
        claimed = await store.claim("worker-1")
        assert claimed is not None
        await store.complete(claimed.id, claimed.token, JobResult())
        # The swap: a hidden temp, renamed into place. Its content is MKV on purpose, so that
        # probing it as a library file would queue a remux: only the catalog prevents that.
        temp = lib / ".x.castui-7.tmp.mp4"
        shutil.copyfile(samples["compliant.mkv"], temp)
        os.rename(temp, lib / "x.mp4")
        await ingest.note_output(lib / "x.mp4", "Movies")
        assert ingest.is_own_output(str(lib / "x.mp4")) and ingest.is_own_output(str(temp))
        marker = lib / "marker.mkv"
        shutil.copyfile(samples["compliant.mkv"], marker)
        seen: list[Event] = []
        await wait_for(sub, lambda e: seen.append(e) or queued(marker)(e))
        assert not [e for e in seen if isinstance(e, JobQueued) and "x.mp4" in e.path]
        assert await jobs_for(store, lib / "x.mp4") == []
        result = await ingest.scan_library("Movies")
        assert result.probed == 0 and result.queued == []


async def test_stopped_observer_is_restarted_and_a_reconciliation_scan_queues_missed_files(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (ingest, _, sub, lib):
        watcher = ingest.watcher("Movies")
        assert watcher is not None and watcher.observer is not None
        watcher.observer.stop()
        watcher.observer.join()
        missed = lib / "missed.mkv"
        shutil.copyfile(samples["compliant.mkv"], missed)
        await wait_for(sub, lambda e: isinstance(e, LogLine) and "watcher stopped" in e.message)
        await wait_for(sub, queued(missed, "created"))


async def test_missing_root_pauses_the_library_and_keeps_history(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (ingest, store, sub, lib):
        path = lib / "a.mkv"
        shutil.copyfile(samples["compliant.mkv"], path)
        await wait_for(sub, queued(path))
        os.rename(lib, tmp_path / "unmounted")
        state = await wait_for(sub, lambda e: isinstance(e, LibraryState) and e.state == "paused")
        assert "does not exist" in state.reason
        assert ingest.library_states()["Movies"].state == "paused"
        result = await ingest.scan_library("Movies")
        assert result.paused_reason is not None
        assert [j.state for j in await jobs_for(store, path)] == [JobState.QUEUED]
        assert await store.get_file(str(path)) is not None
        assert await store.list_events(kind="library_paused")
        os.rename(tmp_path / "unmounted", lib)
        await wait_for(sub, lambda e: isinstance(e, LibraryState) and e.state == "watching")
        assert [j.state for j in await jobs_for(store, path)] == [JobState.QUEUED]


class _LimitedObserver(Observer):  # type: ignore[misc,valid-type]
    def start(self) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def _limited_factory(kind: WatchKind, interval: float) -> Any:
    return _LimitedObserver() if kind is WatchKind.EVENTS else PollingObserver(timeout=interval)


async def test_watch_limit_falls_back_to_polling_with_a_clear_message(
    samples: dict[str, Path], tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool, observer_factory=_limited_factory) as (
        ingest,
        store,
        sub,
        lib,
    ):
        state = ingest.library_states()["Movies"]
        assert state.state == "polling" and "fs.inotify.max_user_watches" in state.reason
        assert await store.list_events(kind="watch_fallback")
        path = lib / "polled.mkv"
        shutil.copyfile(samples["compliant.mkv"], path)
        await wait_for(sub, queued(path, "created"))


async def test_auto_mode_polls_network_shares(tmp_path: Path, pool: ProbePool) -> None:
    def nfs(path: Path) -> Mount:
        return Mount(str(path), "nfs4", "nas:/media")

    async with running(tmp_path, pool, watch="auto", mount_of=nfs) as (ingest, _, _, _):
        state = ingest.library_states()["Movies"]
        assert state.state == "polling" and "nfs4" in state.reason
        watcher = ingest.watcher("Movies")
        assert watcher is not None and watcher.kind is WatchKind.POLL


async def test_inotify_overflow_triggers_a_reconciliation_scan(
    tmp_path: Path, pool: ProbePool
) -> None:
    async with running(tmp_path, pool) as (_, _, sub, _):
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        await wait_for(sub, lambda e: isinstance(e, LogLine) and "overflowed" in e.message)
        await wait_for(sub, lambda e: isinstance(e, ScanFinished))
