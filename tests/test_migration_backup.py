"""Before a migration castui backs the database up (online backup API, named with both schema
versions) and says so; a database newer than castui is refused with the restore command."""

from __future__ import annotations

import logging
import shlex
import sqlite3
import subprocess
from pathlib import Path

import pytest

from castui_core.errors import SchemaTooNewError
from castui_core.store import JobState, Store
from castui_core.store.db import SCHEMA_VERSION, connect, migrate, migration_backup_path

PREVIOUS = SCHEMA_VERSION - 1
STATES = ["queued", "done", "dead", "failed", "cancelled"]


async def old_database(path: Path) -> None:
    """A database as the previous castui left it: migrations up to N-1, with jobs in it."""
    conn = await connect(path, busy_timeout_s=5)
    try:
        assert await migrate(conn, path, target=PREVIOUS) == PREVIOUS
        for n, state in enumerate(STATES):
            await conn.execute(
                "INSERT INTO jobs (path, library, action, state, reason, run_after, created_at,"
                " updated_at) VALUES (?, 'Movies', 'transcode', ?, ?, 0, ?, ?)",
                (f"/media/Movies/film{n}.mkv", state, f"reason {n}", n, n),
            )
    finally:
        await conn.close()


def jobs_in(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT path, state, reason FROM jobs ORDER BY id").fetchall()
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def test_upgrade_backs_up_first_and_keeps_every_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "castui.db"
    await old_database(database)
    before = jobs_in(database)
    assert len(before) == len(STATES)
    caplog.set_level(logging.WARNING, logger="castui.store")
    # Listen on the store's logger itself: an in-process headless run earlier in the session
    # stops "castui" from propagating to the root logger, where caplog listens by default.
    store_log = logging.getLogger("castui.store")
    store_log.addHandler(caplog.handler)
    try:
        async with Store.open(database) as store:
            history = await store.history(limit=100)
            active = await store.active_jobs()
    finally:
        store_log.removeHandler(caplog.handler)
    backup = migration_backup_path(database, PREVIOUS, SCHEMA_VERSION)
    assert backup.name == f"castui.db.v{PREVIOUS}-to-v{SCHEMA_VERSION}.backup"
    assert backup.is_file() and not list(tmp_path.glob("*.partial"))
    assert user_version(backup) == PREVIOUS and jobs_in(backup) == before
    assert user_version(database) == SCHEMA_VERSION
    assert jobs_in(database) == before  # every job kept through the migration
    assert {j.state for j in history} | {j.state for j in active} == {JobState(s) for s in STATES}
    said = [r.getMessage() for r in caplog.records if "backed up" in r.getMessage()]
    assert said and str(backup) in said[0]
    # A second start has nothing to migrate: no second backup.
    async with Store.open(database):
        pass
    assert sorted(p.name for p in tmp_path.glob("*.backup*")) == [backup.name]


async def test_a_downgrade_is_refused_with_the_command_that_restores_the_backup(
    tmp_path: Path,
) -> None:
    database = tmp_path / "castui.db"
    await old_database(database)
    async with Store.open(database):
        pass
    before = jobs_in(database)
    backup = migration_backup_path(database, PREVIOUS, SCHEMA_VERSION)
    # Pretend a newer castui upgraded it past this one (the next schema version).
    conn = sqlite3.connect(database)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    newer = migration_backup_path(database, SCHEMA_VERSION, SCHEMA_VERSION + 1)
    backup.rename(newer)  # as the newer castui would have named its pre-upgrade copy
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    with pytest.raises(SchemaTooNewError) as refused:
        await Store.connect(database)
    message = str(refused.value)
    assert "It was not modified" in message
    command = message.split("stop castui and run: ", 1)[1]
    assert shlex.quote(str(newer)) in command
    # The command, run as given, brings back a database this castui opens, jobs and all.
    subprocess.run(["sh", "-c", command], check=True)
    async with Store.open(database) as store:
        assert len(await store.history(limit=100)) + len(await store.active_jobs()) == len(before)
    assert (tmp_path / f"castui.db.v{SCHEMA_VERSION + 1}.newer").is_file()
