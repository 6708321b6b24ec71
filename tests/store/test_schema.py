"""Opening, pragmas, migrations and refusal of databases castui must not touch."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import aiosqlite
import pytest
from store_helpers import FakeClock

from castui_core.errors import SchemaTooNewError, StoreError
from castui_core.store import SCHEMA_VERSION, EnqueueOutcome, JobResult, JobState, Store
from castui_core.store.db import APPLICATION_ID, MIGRATIONS, migrate


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wal_exists(db: Path) -> bool:
    return Path(f"{db}-wal").exists()


async def test_new_database_pragmas(db_path: Path) -> None:
    async with Store.open(db_path / ".." / "sub" / "db.sqlite3") as store:
        conn = store._require()
        async with conn.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"  # type: ignore[index]
        async with conn.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone())[0] == 2  # type: ignore[index]  # FULL
        async with conn.execute("PRAGMA busy_timeout") as cur:
            assert (await cur.fetchone())[0] == 10_000  # type: ignore[index]
        async with conn.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == SCHEMA_VERSION  # type: ignore[index]
        assert await store.integrity_check() == ["ok"]


async def test_migration_from_v1_keeps_data(db_path: Path, clock: FakeClock) -> None:
    assert SCHEMA_VERSION >= 2 and MIGRATIONS[0].version == 1
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode = WAL")
        assert await migrate(conn, db_path, target=1) == 1
        await conn.execute(
            "INSERT INTO jobs (path, library, action, state, run_after, created_at, updated_at,"
            " lease_owner, lease_token, lease_expires, attempts)"
            " VALUES ('/m/a.mkv', 'movies', 'remux', 'running', 0, 1, 1, 'old', 7, ?, 1)",
            (clock.now + 600,),
        )
        await conn.execute(
            "INSERT INTO jobs (path, library, action, state, run_after, created_at, updated_at,"
            " finished_at, source_size, output_size)"
            " VALUES ('/m/b.mkv', 'tv', 'transcode', 'done', 0, 1, 1, 5, 100, 60)"
        )
        await conn.execute(
            "INSERT INTO files (path, library, size, mtime_ns, probe, updated_at)"
            " VALUES ('/m/a.mkv', 'movies', 10, 20, '{\"codec\": \"hevc\"}', 1)"
        )
        await conn.execute("INSERT INTO meta VALUES ('queue_paused', '0')")
    async with Store.open(db_path, clock=clock) as store:
        [running] = await store.active_jobs()
        assert (running.path, running.state, running.lease_token) == (
            "/m/a.mkv",
            JobState.RUNNING,
            7,
        )
        [done] = await store.history()
        assert done.result.bytes_saved == 40
        entry = await store.get_file("/m/a.mkv")
        assert entry is not None and entry.probe == {"codec": "hevc"}
        # Columns and tables added by migration 2 work on the old rows.
        r = await store.enqueue("/m/a.mkv", "movies", "transcode")
        assert r.outcome is EnqueueOutcome.RERUN_SCHEDULED
        await store.complete(running.id, 7, JobResult())
        assert len(await store.list_events()) >= 2
        assert await store.integrity_check() == ["ok"]


async def test_newer_schema_is_refused_untouched(db_path: Path) -> None:
    async with Store.open(db_path):
        pass
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")  # so the file alone is the whole database
    conn.close()
    before = digest(db_path)
    with pytest.raises(SchemaTooNewError, match="newer castui") as info:
        async with Store.open(db_path):
            pass
    assert "Upgrade castui" in str(info.value)
    assert digest(db_path) == before
    assert not wal_exists(db_path)


async def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "photos.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE albums (name TEXT)")
    conn.commit()
    conn.close()
    before = digest(other)
    with pytest.raises(StoreError, match="not a castui database"):
        async with Store.open(other):
            pass
    assert digest(other) == before

    tagged = tmp_path / "tagged.db"
    conn = sqlite3.connect(tagged)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    with pytest.raises(StoreError, match="another program"):
        async with Store.open(tagged):
            pass


async def test_garbage_file_gives_actionable_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="move it aside"):
        async with Store.open(junk):
            pass


async def test_two_stores_open_and_migrate_same_file(db_path: Path) -> None:
    async with Store.open(db_path) as a, Store.open(db_path) as b:
        await a.enqueue("/m/a.mkv", "movies", "remux")
        job = await b.claim("w")
        assert job is not None
        assert (await a.active_jobs())[0].lease_owner == "w"


async def test_closed_store_says_so(db_path: Path) -> None:
    store = await Store.connect(db_path)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.active_jobs()


async def test_application_id_set(db_path: Path) -> None:
    async with Store.open(db_path):
        pass
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


async def test_castui_processes_starting_together_on_a_new_database_all_open_it(
    tmp_path: Path,
) -> None:
    """A service, a dashboard and ``castui scan`` started at once on a fresh machine: each
    open creates, switches to WAL and migrates the same new file. Before the setup lock one
    of them failed ("not a castui database", "disk I/O error") in about one round in ten,
    and another wrote a pre-upgrade backup of a half-created file. Separate connections in
    one process race the same way as processes (flock is per open file)."""
    failures: list[str] = []
    for round_ in range(20):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        opened = await asyncio.gather(
            *(
                Store.connect(folder / "castui.db", reclaim_on_open=False, busy_timeout_s=30)
                for _ in range(4)
            ),
            return_exceptions=True,
        )
        for result in opened:
            if isinstance(result, BaseException):
                failures.append(f"round {round_}: {result!r}")
            else:
                await result.close()
        backups = [p.name for p in folder.iterdir() if p.name.endswith(".backup")]
        assert backups == [], f"round {round_}: a backup of a database being created"
    assert failures == []
