"""Catalog (rescan skips unchanged files), audit log queries/retention, and online backup."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from store_helpers import FakeClock

from castui_core.errors import StoreError
from castui_core.store import CatalogEntry, EventKind, JobResult, Store


async def test_needs_probe_only_when_fingerprint_changes(store: Store, clock: FakeClock) -> None:
    assert await store.needs_probe("/m/a.mkv", 100, 5)
    await store.upsert_file(
        CatalogEntry("/m/a.mkv", "movies", 100, 5, inode=77, probe={"video": "hevc"})
    )
    assert not await store.needs_probe("/m/a.mkv", 100, 5)
    assert not await store.needs_probe("/m/a.mkv", 100, 5, inode=77)
    assert await store.needs_probe("/m/a.mkv", 101, 5)
    assert await store.needs_probe("/m/a.mkv", 100, 6)
    assert await store.needs_probe("/m/a.mkv", 100, 5, inode=78)
    # Known but never successfully probed: probe again.
    await store.upsert_file(CatalogEntry("/m/b.mkv", "movies", 1, 1))
    assert await store.needs_probe("/m/b.mkv", 1, 1)


async def test_catalog_round_trip_and_listing(store: Store, clock: FakeClock) -> None:
    entry = CatalogEntry(
        "/m/a.mkv",
        "movies",
        100,
        5,
        inode=7,
        probe={"streams": [{"codec": "hevc", "bits": 10}]},
        decision="transcode",
        reasons=("video: hevc 10-bit", "audio: dts"),
    )
    await store.upsert_files([entry, CatalogEntry("/t/b.mkv", "tv", 1, 2, probe={})])
    got = await store.get_file("/m/a.mkv")
    assert got is not None
    assert got.probe == entry.probe and got.reasons == entry.reasons
    assert got.decision == "transcode" and got.probed_at == clock.now
    assert got.updated_at == clock.now
    clock.advance(5)
    await store.upsert_file(CatalogEntry("/m/a.mkv", "movies", 200, 9, probe={"x": 1}))
    got = await store.get_file("/m/a.mkv")
    assert got is not None and (got.size, got.mtime_ns, got.probed_at) == (200, 9, clock.now)
    assert [e.path for e in await store.list_files()] == ["/m/a.mkv", "/t/b.mkv"]
    assert [e.path for e in await store.list_files("tv")] == ["/t/b.mkv"]
    assert await store.fingerprints("movies") == {"/m/a.mkv": (200, 9)}
    assert await store.remove_files(["/t/b.mkv", "/nope"]) == 1
    assert await store.get_file("/t/b.mkv") is None


async def test_audit_records_transitions_operator_actions_and_guardrails(
    store: Store, clock: FakeClock
) -> None:
    r = await store.enqueue("/m/a.mkv", "movies", "transcode", ["audio: dts"])
    job = await store.claim("w1")
    assert job is not None
    await store.complete(job.id, job.token, JobResult(source_size=10, output_size=4))
    await store.record_event(
        EventKind.PROFILE_EDIT,
        actor="operator",
        details={"before": {"crf": 23}, "after": {"crf": 21}},
    )
    await store.record_event(
        EventKind.GUARDRAIL, path="/m/a.mkv", reason="output shorter than source by 12 s"
    )
    transitions = await store.list_events(job_id=r.job_id, kind=EventKind.JOB_STATE)
    assert [(e.from_state, e.to_state) for e in reversed(transitions)] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "done"),
    ]
    assert transitions[-1].reason == "transcode: audio: dts"
    [edit] = await store.list_events(kind=EventKind.PROFILE_EDIT)
    assert edit.details == {"after": {"crf": 21}, "before": {"crf": 23}}
    [trip] = await store.list_events(kind=EventKind.GUARDRAIL)
    assert trip.path == "/m/a.mkv" and "shorter" in (trip.reason or "")


async def test_event_time_queries_and_retention(db_path: Path, clock: FakeClock) -> None:
    async with Store.open(db_path, clock=clock) as store:
        for i in range(5):
            await store.record_event("note", reason=str(i))
            clock.advance(10)
        assert [e.reason for e in await store.list_events(since=clock.now - 25)] == ["4", "3"]
        assert [e.reason for e in await store.list_events(until=clock.now - 35)] == ["1", "0"]
        assert await store.prune_events(older_than=clock.now - 35) == 2
        assert await store.prune_events(older_than=0, keep_last=2) == 1
        assert [e.reason for e in await store.list_events()] == ["4", "3"]
    clock.advance(200 * 86400)  # default retention (180 days) applies at open
    async with Store.open(db_path, clock=clock) as store:
        assert await store.list_events() == []


async def test_backup_is_consistent_copy(store: Store, tmp_path: Path) -> None:
    for i in range(20):
        await store.enqueue(f"/m/{i}.mkv", "movies", "remux")
    dest = tmp_path / "backups" / "castui-backup.sqlite3"

    async def keep_writing() -> None:
        for i in range(20, 60):
            await store.enqueue(f"/m/{i}.mkv", "movies", "remux")

    writer = asyncio.create_task(keep_writing())
    assert await store.backup(dest) == dest
    await writer
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        assert 20 <= count <= 60
    finally:
        conn.close()
    async with Store.open(dest) as copy:
        assert len(await copy.active_jobs()) == count
    assert not dest.with_name(dest.name + ".partial").exists()
    with pytest.raises(StoreError, match="already exists"):
        await store.backup(dest)
    await store.backup(dest, overwrite=True)
    with pytest.raises(StoreError, match="live database"):
        await store.backup(store.path, overwrite=True)
