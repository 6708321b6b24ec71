"""Library scans against the catalog: probe only what changed, queue what needs work."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from redis_server import RedisServer

from castui_core.bus import EventBus
from castui_core.errors import QueueUnreachableError
from castui_core.events import JobCancelled, JobQueued, ScanFinished
from castui_core.ingest.catalog_scan import CatalogScanner, WalkedFile
from castui_core.probe import ProbePool
from castui_core.profiles import builtin_profiles
from castui_core.queue.open import open_queue
from castui_core.scan import IgnoreRules
from castui_core.settings import (
    DEFAULT_EXTENSIONS,
    DEFAULT_IGNORE,
    LibrarySettings,
    parse_settings,
)
from castui_core.store import JobState, Store

RULES = IgnoreRules(DEFAULT_EXTENSIONS, DEFAULT_IGNORE)
PROFILE = builtin_profiles()["chromecast-1080p"]
OLD_NS = 1_600_000_000 * 10**9


@pytest.fixture(scope="module")
def pool() -> ProbePool:
    with ProbePool(2, timeout=20) as p:
        yield p  # type: ignore[misc]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "castui.db") as s:
        yield s


def _place(src: Path, dest: Path, *, old: bool = True) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    if old:
        os.utime(dest, ns=(OLD_NS, OLD_NS))
    return dest


def _events(sub: object) -> list[object]:
    out = []
    while (e := sub.get_nowait()) is not None:  # type: ignore[attr-defined]
        out.append(e)
    return out


async def test_first_scan_queues_work_and_an_unchanged_rescan_probes_nothing(
    samples: dict[str, Path], tmp_path: Path, store: Store, pool: ProbePool
) -> None:
    lib = tmp_path / "lib"
    _place(samples["compliant.mkv"], lib / "a" / "remux.mkv")
    _place(samples["high10.mkv"], lib / "b" / "transcode.mkv")
    _place(samples["compliant.mp4"], lib / "ok.mp4")
    _place(samples["compliant.mkv"], lib / "dl.mkv.part")
    _place(samples["compliant.mkv"], lib / ".hidden.mkv")
    _place(samples["compliant.mkv"], lib / "x.original.mkv")
    _place(samples["compliant.mkv"], lib / "Sample" / "s.mkv")
    bus = EventBus()
    sub = bus.subscribe()
    scanner = CatalogScanner(store, pool, bus, RULES, settle_seconds=30)
    library = LibrarySettings(name="Movies", path=lib)

    first = await scanner.scan(library, PROFILE)
    assert first.paused_reason is None
    assert (first.seen, first.probed, scanner.probes) == (3, 3, 3)
    jobs = {Path(j.path).name: j for j in await store.active_jobs()}
    assert {n: str(j.action) for n, j in jobs.items()} == {
        "remux.mkv": "remux",
        "transcode.mkv": "transcode",
    }
    events = _events(sub)
    queued = [e for e in events if isinstance(e, JobQueued)]
    assert sorted(e.outcome for e in queued) == ["created", "created"]
    finished = [e for e in events if isinstance(e, ScanFinished)][-1]
    assert dict(finished.counts)["remux"] == 1 and dict(finished.counts)["skip"] == 1
    entries = {Path(e.path).name: e for e in await store.list_files("Movies")}
    assert entries["ok.mp4"].decision == "skip" and entries["ok.mp4"].probe

    again = await scanner.scan(library, PROFILE)
    assert (again.unchanged, again.probed, scanner.probes) == (3, 0, 3)
    assert not [e for e in _events(sub) if isinstance(e, JobQueued)]


async def test_changed_file_is_reprobed_and_deleted_file_cancels_its_job(
    samples: dict[str, Path], tmp_path: Path, store: Store, pool: ProbePool
) -> None:
    lib = tmp_path / "lib"
    keep = _place(samples["compliant.mp4"], lib / "keep.mp4")
    gone = _place(samples["compliant.mkv"], lib / "gone.mkv")
    bus = EventBus()
    sub = bus.subscribe()
    scanner = CatalogScanner(store, pool, bus, RULES, settle_seconds=30)
    library = LibrarySettings(name="Movies", path=lib)
    await scanner.scan(library, PROFILE)
    [job] = await store.active_jobs()

    _place(samples["high10.mkv"], keep)  # replaced by something that needs work
    os.utime(keep, ns=(OLD_NS + 10**9, OLD_NS + 10**9))
    gone.unlink()
    result = await scanner.scan(library, PROFILE)
    assert result.probed == 1 and result.removed == [str(gone)]
    cancelled = await store.get_job(job.id)
    assert cancelled.state is JobState.CANCELLED and "deleted or moved away" in str(
        cancelled.reason
    )
    assert any(isinstance(e, JobCancelled) and e.path == str(gone) for e in _events(sub))
    assert [Path(j.path).name for j in await store.active_jobs()] == ["keep.mp4"]
    assert [Path(e.path).name for e in await store.list_files("Movies")] == ["keep.mp4"]


async def test_files_a_scan_could_not_queue_are_queued_by_the_next_scan(
    samples: dict[str, Path],
    tmp_path: Path,
    store: Store,
    pool: ProbePool,
    redis_url: str,
    redis_server: RedisServer,
) -> None:
    """A real redis-server stopped while the catalog (local SQLite) still answers: the scan
    fails at the queue, and the next scan, Redis back, queues both files. Before, the catalog
    was written first, so the next scan found the files unchanged and never queued them."""
    lib = tmp_path / "lib"
    _place(samples["compliant.mkv"], lib / "remux.mkv")
    _place(samples["high10.mkv"], lib / "transcode.mkv")
    settings = parse_settings(
        yaml.safe_dump(
            {
                "database": str(tmp_path / "castui.db"),
                "queue": {"backend": "redis", "url": redis_url, "prefix": "scan"},
            }
        )
    )
    queue = await open_queue(settings, store)
    scanner = CatalogScanner(store, pool, EventBus(), RULES, settle_seconds=30, queue=queue)
    library = LibrarySettings(name="Movies", path=lib)
    try:
        await asyncio.to_thread(redis_server.stop)
        with pytest.raises(QueueUnreachableError):
            await scanner.scan(library, PROFILE)
        await asyncio.to_thread(redis_server.start)
        again = await scanner.scan(library, PROFILE)
        active = await queue.active_jobs()
    finally:
        await queue.close()
    assert again.probed == 2, again
    assert sorted(Path(j.path).name for j in active) == ["remux.mkv", "transcode.mkv"]
    assert sorted(Path(e.path).name for e in await store.list_files("Movies")) == [
        "remux.mkv",
        "transcode.mkv",
    ]


async def test_missing_or_suddenly_empty_root_pauses_and_changes_nothing(
    samples: dict[str, Path], tmp_path: Path, store: Store, pool: ProbePool
) -> None:
    lib = tmp_path / "lib"
    _place(samples["compliant.mkv"], lib / "a.mkv")
    scanner = CatalogScanner(store, pool, EventBus(), RULES, settle_seconds=30)
    library = LibrarySettings(name="Movies", path=lib)
    await scanner.scan(library, PROFILE)

    (lib / "a.mkv").unlink()  # an unmounted mount point: an empty folder
    empty = await scanner.scan(library, PROFILE)
    assert empty.paused_reason is not None and "suddenly empty" in empty.paused_reason
    lib.rmdir()
    missing = await scanner.scan(library, PROFILE)
    assert missing.paused_reason is not None and "does not exist" in missing.paused_reason
    assert len(await store.list_files("Movies")) == 1
    assert [j.state for j in await store.active_jobs()] == [JobState.QUEUED]


async def test_recently_written_files_go_to_the_settle_tracker_not_the_prober(
    samples: dict[str, Path], tmp_path: Path, store: Store, pool: ProbePool
) -> None:
    lib = tmp_path / "lib"
    fresh = _place(samples["compliant.mkv"], lib / "fresh.mkv", old=False)
    _place(samples["compliant.mkv"], lib / "old.mkv")
    scanner = CatalogScanner(store, pool, EventBus(), RULES, settle_seconds=30)
    unsettled: list[WalkedFile] = []
    result = await scanner.scan(
        LibrarySettings(name="Movies", path=lib), PROFILE, on_unsettled=unsettled.append
    )
    assert [w.path for w in unsettled] == [str(fresh)] == result.unsettled
    assert result.probed == 1
    assert [Path(j.path).name for j in await store.active_jobs()] == ["old.mkv"]
    assert unsettled[0].stat.size == fresh.stat().st_size
    assert time.time_ns() - unsettled[0].stat.mtime_ns < 30 * 10**9


async def test_unreadable_file_is_recorded_as_reject_and_not_reprobed(
    tmp_path: Path, store: Store, pool: ProbePool
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    bad = lib / "garbage.mkv"
    bad.write_bytes(b"not a video" * 100)
    os.utime(bad, ns=(OLD_NS, OLD_NS))
    scanner = CatalogScanner(store, pool, EventBus(), RULES, settle_seconds=30)
    library = LibrarySettings(name="Movies", path=lib)
    await scanner.scan(library, PROFILE)
    entry = await store.get_file(str(bad))
    assert entry is not None and entry.decision == "reject" and "failure" in dict(entry.probe or {})
    await scanner.scan(library, PROFILE)
    assert scanner.probes == 1
    assert await store.active_jobs() == []
