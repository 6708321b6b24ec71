"""The SQLite file: connection settings, schema migrations and sqlite3-error translation.

Durability choices, and why:

* WAL so readers (the dashboard, ``castui queue``) never block the workers' writes.
* ``synchronous=FULL`` so a committed claim/complete survives power loss, not just a crash:
  losing a "done" would re-convert a file, losing a claim could run a job twice.
* ``busy_timeout`` so processes queue up on the write lock instead of failing at once.
* Every write transaction starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads
  and then writes gets SQLITE_BUSY_SNAPSHOT, which does *not* honour busy_timeout.

The schema version lives in ``PRAGMA user_version`` and the file is tagged with
``PRAGMA application_id`` so castui never "migrates" somebody else's database. A file from a
newer castui is refused before anything is written to it (not even the WAL switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shlex
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from castui_core.errors import SchemaTooNewError, StoreError
from castui_core.paths import is_utf8

log = logging.getLogger("castui.store")

APPLICATION_ID = 0x63617374  # "cast"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_FINISHED_SQL = "('done', 'failed', 'dead', 'cancelled')"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "catalog, job queue and queue settings",
        (
            """
            CREATE TABLE files (
                path        TEXT PRIMARY KEY,
                library     TEXT NOT NULL,
                size        INTEGER NOT NULL,
                mtime_ns    INTEGER NOT NULL,
                inode       INTEGER,
                probe       TEXT,
                probed_at   REAL,
                decision    TEXT,
                reasons     TEXT NOT NULL DEFAULT '[]',
                updated_at  REAL NOT NULL
            )
            """,
            "CREATE INDEX files_library ON files(library)",
            """
            CREATE TABLE jobs (
                id               INTEGER PRIMARY KEY,
                path             TEXT NOT NULL,
                library          TEXT NOT NULL,
                action           TEXT NOT NULL CHECK (action IN ('remux', 'transcode')),
                state            TEXT NOT NULL CHECK (state IN
                                   ('queued', 'running', 'done', 'failed', 'dead', 'cancelled')),
                reasons          TEXT NOT NULL DEFAULT '[]',
                priority         INTEGER NOT NULL DEFAULT 0,
                attempts         INTEGER NOT NULL DEFAULT 0,
                max_attempts     INTEGER NOT NULL DEFAULT 3,
                run_after        REAL NOT NULL,
                lease_owner      TEXT,
                lease_token      INTEGER NOT NULL DEFAULT 0,
                lease_expires    REAL,
                progress_percent REAL,
                progress_fps     REAL,
                progress_speed   REAL,
                progress_eta_s   REAL,
                progress_at      REAL,
                output_path      TEXT,
                source_size      INTEGER,
                output_size      INTEGER,
                duration_s       REAL,
                encoder          TEXT,
                command          TEXT,
                exit_code        INTEGER,
                stderr_tail      TEXT,
                reason           TEXT,
                created_at       REAL NOT NULL,
                updated_at       REAL NOT NULL,
                started_at       REAL,
                finished_at      REAL
            )
            """,
            # The invariant "at most one active job per path" is enforced by SQLite itself, so
            # no code path (or future bug) can queue the same file twice.
            """
            CREATE UNIQUE INDEX jobs_one_active_per_path
                ON jobs(path) WHERE state IN ('queued', 'running')
            """,
            """
            CREATE INDEX jobs_ready
                ON jobs(priority DESC, run_after, id) WHERE state = 'queued'
            """,
            "CREATE INDEX jobs_leases ON jobs(lease_expires) WHERE state = 'running'",
            # History is read newest-first; one partial index serves every filter (state,
            # library, time) by walking finished_at backwards. No plain (state, ...) index: it
            # would tempt the planner to sort all queued rows for the claim query.
            f"""
            CREATE INDEX jobs_finished
                ON jobs(finished_at) WHERE state IN {_FINISHED_SQL}
            """,
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "audit log and re-run-on-change",
        (
            """
            CREATE TABLE events (
                id          INTEGER PRIMARY KEY,
                at          REAL NOT NULL,
                kind        TEXT NOT NULL,
                job_id      INTEGER,
                path        TEXT,
                actor       TEXT,
                from_state  TEXT,
                to_state    TEXT,
                reason      TEXT,
                details     TEXT
            )
            """,
            "CREATE INDEX events_at ON events(at)",
            "CREATE INDEX events_job ON events(job_id, at)",
            "CREATE INDEX events_kind ON events(kind, at)",
            # A job that is running when its file changes again carries the next run's
            # parameters here; they turn into a queued job when the current run ends.
            "ALTER TABLE jobs ADD COLUMN rerun_action TEXT",
            "ALTER TABLE jobs ADD COLUMN rerun_reasons TEXT",
            "ALTER TABLE jobs ADD COLUMN rerun_priority INTEGER",
            "ALTER TABLE jobs ADD COLUMN rerun_after REAL",
        ),
    ),
    Migration(
        3,
        "outputs castui wrote",
        (
            # Every file castui placed (whichever command wrote it), so a scan never queues
            # castui's own output and a rerun recognises "castui wrote that, from this
            # source" instead of refusing the name as somebody else's file.
            """
            CREATE TABLE outputs (
                path            TEXT PRIMARY KEY,
                source          TEXT NOT NULL,
                size            INTEGER NOT NULL,
                mtime_ns        INTEGER NOT NULL,
                inode           INTEGER,
                source_size     INTEGER,
                source_mtime_ns INTEGER,
                profile         TEXT NOT NULL,
                written_by      TEXT NOT NULL,
                written_at      REAL NOT NULL
            )
            """,
            "CREATE INDEX outputs_source ON outputs(source)",
        ),
    ),
    Migration(
        4,
        "Jellyfin outbox",
        (
            # Changes Jellyfin must be told about, written in the transaction that completes
            # the job, deleted once Jellyfin answered (castui_core.store.outbox). castui's
            # paths, not Jellyfin's: path_map is applied when sending. Never the API key.
            """
            CREATE TABLE jellyfin_outbox (
                id          INTEGER PRIMARY KEY,
                path        TEXT NOT NULL,
                folder      TEXT NOT NULL,
                update_type TEXT NOT NULL
                              CHECK (update_type IN ('Created', 'Modified', 'Deleted')),
                library     TEXT NOT NULL,
                job_id      INTEGER,
                state       TEXT NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'stopped')),
                attempts    INTEGER NOT NULL DEFAULT 0,
                next_at     REAL NOT NULL,
                last_error  TEXT,
                created_at  REAL NOT NULL
            )
            """,
            "CREATE INDEX jellyfin_outbox_due ON jellyfin_outbox(next_at) WHERE state = 'pending'",
        ),
    ),
    Migration(
        5,
        "Jellyfin confirmations",
        (
            # Jellyfin's PlaybackInfo verdict on each job's output (castui_core.store
            # .confirmations): 'pending' while castui waits for Jellyfin to list the file, so
            # a restart resumes it; then direct_play, transcode (with Jellyfin's reasons) or
            # unconfirmed (with why).
            """
            CREATE TABLE jellyfin_confirmations (
                job_id      INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
                path        TEXT NOT NULL,
                status      TEXT NOT NULL CHECK (status IN
                              ('pending', 'direct_play', 'transcode', 'unconfirmed')),
                generation  TEXT NOT NULL,
                reasons     TEXT NOT NULL DEFAULT '[]',
                message     TEXT NOT NULL,
                item_id     TEXT,
                at          REAL NOT NULL
            )
            """,
            "CREATE INDEX jellyfin_confirmations_pending ON jellyfin_confirmations(status)"
            " WHERE status = 'pending'",
        ),
    ),
    Migration(
        6,
        "archived originals",
        (
            # Originals the replace layout moved into <library>/.castui/originals
            # (castui_core.originals): list, restore and purge read this, not a walk of the
            # archive. 'restored' rows also mark a source put back on purpose, so it is not
            # converted again unless asked; 'purged' rows keep the freed bytes for the record.
            """
            CREATE TABLE originals (
                id          INTEGER PRIMARY KEY,
                library     TEXT NOT NULL,
                path        TEXT NOT NULL,
                archive     TEXT NOT NULL,
                output      TEXT,
                size        INTEGER NOT NULL,
                mtime_ns    INTEGER NOT NULL,
                archived_at REAL NOT NULL,
                state       TEXT NOT NULL DEFAULT 'archived'
                              CHECK (state IN ('archived', 'restored', 'purged')),
                ended_at    REAL
            )
            """,
            "CREATE INDEX originals_path ON originals(path)",
            "CREATE UNIQUE INDEX originals_archived ON originals(archive) WHERE state = 'archived'",
        ),
    ),
    Migration(
        7,
        "watch history across a swap, Sonarr/Radarr in the outbox",
        (
            # Each user's Jellyfin data for a job's old item, read right before the swap, and
            # what castui did with it once the new item was listed
            # (castui_core.store.watch_history): 'pending' until then, so a restart resumes.
            """
            CREATE TABLE watch_history (
                job_id      INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
                path        TEXT NOT NULL,
                status      TEXT NOT NULL CHECK (status IN
                              ('pending', 'kept', 'restored', 'lost', 'unknown', 'nothing')),
                snapshot    TEXT NOT NULL,
                message     TEXT NOT NULL,
                at          REAL NOT NULL
            )
            """,
            # The outbox gains a target: 'jellyfin' (every row so far) or 'arr:<name>' for a
            # Sonarr/Radarr entry, so one table, one transaction and one retry policy serve
            # every service a swap must reach (castui_core.store.outbox).
            "ALTER TABLE jellyfin_outbox ADD COLUMN target TEXT NOT NULL DEFAULT 'jellyfin'",
            "DROP INDEX jellyfin_outbox_due",
            "CREATE INDEX jellyfin_outbox_due ON jellyfin_outbox(target, next_at)"
            " WHERE state = 'pending'",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def translate_error(exc: sqlite3.Error, path: Path, doing: str) -> StoreError:
    """Turn a sqlite3 error into a :class:`StoreError` whose message says what to do."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        hint = (
            "another castui process kept the database busy for too long; check for a stuck "
            "castui process (or a slow/network disk) and try again"
        )
    elif "full" in low:
        hint = f"the disk holding {path} is full; free some space and try again"
    elif "readonly" in low or "read-only" in low or "unable to open" in low:
        hint = (
            f"castui cannot write {path}; check that the file and its folder are writable "
            "by this user, or point `database:` at another path"
        )
    elif "malformed" in low or "not a database" in low or "corrupt" in low:
        hint = (
            "the file is damaged or is not a castui database; move it aside (castui then "
            "starts a fresh one) or restore a copy made with `castui db backup`"
        )
    elif "disk i/o" in low:
        hint = f"the disk holding {path} reported an I/O error; check it, then try again"
    else:
        hint = "try again; if it keeps happening, keep a `castui db backup` and report the error"
    return StoreError(f"castui database {path}: {doing} failed ({text}): {hint}.")


# aiosqlite runs every call on its own thread; each ``await`` is a thread hop (~0.1 ms), and
# ``async with conn.execute(...)`` costs three (execute, fetch, close). ``execute_fetchall`` is
# one, so the helpers below use it; only ``execute_count`` pays for a cursor to read rowcount.
#
# File names: a POSIX name is bytes, and Python hands a name that is not valid UTF-8 to castui
# as a str with surrogate escapes ("b\udcff.mkv"), which SQLite cannot store as TEXT ("surrogates
# not allowed"). Every parameter goes through ``bind_value`` and every row through ``_Row``:
# such a str is stored as its raw bytes (a BLOB) and read back with os.fsdecode, so the round
# trip is lossless. A name that is valid UTF-8 stays TEXT, so existing databases keep working,
# and since each name has exactly one representation, equality and UNIQUE still hold. The same
# holds for any text that quotes such a name (an error, an ffmpeg command line). castui stores
# no other binary data: a BLOB read from its database is always such a text.


def bind_value(value: Any) -> Any:
    """``value`` as SQLite should store it: a str that is not valid UTF-8 becomes its OS bytes."""
    if type(value) is str and not is_utf8(value):
        return os.fsencode(value)
    return value


def _bind(params: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(bind_value(v) for v in params)


class _Row(sqlite3.Row):
    """The row factory: ``sqlite3.Row`` with each BLOB (a non-UTF-8 name) decoded back to str."""

    def __new__(cls, cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> _Row:
        if bytes in map(type, values):  # rare: the common row costs one C-level scan
            values = tuple(os.fsdecode(v) if type(v) is bytes else v for v in values)
        return super().__new__(cls, cursor, values)


async def execute(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> None:
    """Run one statement (fully stepped, so RETURNING/DML work completes)."""
    await conn.execute_fetchall(sql, _bind(params))


async def execute_count(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement; returns the number of rows it changed."""
    async with conn.execute(sql, _bind(params)) as cur:
        return cur.rowcount


async def fetchone(
    conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
) -> sqlite3.Row | None:
    # fetchall, not fetchone: an UPDATE ... RETURNING only finishes its work once stepped to
    # the end.
    rows = list(await conn.execute_fetchall(sql, _bind(params)))
    return rows[0] if rows else None


async def fetchall(
    conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, _bind(params)))


async def executemany(
    conn: aiosqlite.Connection, sql: str, params: Iterable[Sequence[Any]]
) -> None:
    async with conn.executemany(sql, (_bind(p) for p in params)):
        pass


async def _pragma_int(conn: aiosqlite.Connection, name: str) -> int:
    row = await fetchone(conn, f"PRAGMA {name}")
    assert row is not None
    return int(row[0])


async def check_identity(conn: aiosqlite.Connection, path: Path) -> int:
    """Refuse files that are not castui databases or come from a newer castui.

    Runs before any statement that could write, so a refused file is left byte-for-byte
    untouched. Returns the file's schema version (0 for a new, empty file).
    """
    app_id = await _pragma_int(conn, "application_id")
    version = await _pragma_int(conn, "user_version")
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(
            f"{path} is a SQLite database of another program (application id {app_id:#x}), "
            "not a castui database; point `database:` at another file."
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path} was written by a newer castui (schema version {version}; this castui "
            f"understands up to {SCHEMA_VERSION}). It was not modified. Upgrade castui, or "
            "point `database:` at another file." + restore_hint(path, version)
        )
    if version == 0:
        row = await fetchone(conn, "SELECT count(*) FROM sqlite_master")
        if row is not None and row[0] > 0:
            raise StoreError(
                f"{path} already holds tables but is not a castui database; point `database:` "
                "at another file."
            )
    return version


def migration_backup_path(path: Path, old: int, new: int) -> Path:
    """Where the copy taken before migrating ``old`` -> ``new`` goes: beside the database,
    named with both versions so a rollback finds the one its castui can read."""
    return path.with_name(f"{path.name}.v{old}-to-v{new}.backup")


def restore_hint(path: Path, version: int) -> str:
    """For a database newer than this castui: the exact commands that put back the copy taken
    before it was upgraded (what happened since is lost), if such a copy is there."""
    found: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(f"{glob_escape(path.name)}.v*-to-v{version}.backup"):
        old = candidate.name.removeprefix(f"{path.name}.v").split("-to-v")[0]
        if old.isdigit() and int(old) <= SCHEMA_VERSION:
            found.append((int(old), candidate))
    if not found:
        return ""
    _old, backup = max(found)
    db, keep = shlex.quote(str(path)), shlex.quote(f"{path}.v{version}.newer")
    wal, shm = shlex.quote(f"{path}-wal"), shlex.quote(f"{path}-shm")
    return (
        f" To go back to the copy taken before that upgrade (losing what happened since), stop"
        f" castui and run: mv {db} {keep} && rm -f {wal} {shm} &&"
        f" cp {shlex.quote(str(backup))} {db}"
    )


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


async def backup_before_migration(conn: aiosqlite.Connection, path: Path, old: int) -> Path:
    """Copy the database with SQLite's online backup API (as ``castui db backup`` does) before
    a migration changes it: an upgrade that goes wrong, or a rollback to the previous castui,
    then has the exact file to go back to. Written to ``.partial`` and renamed when complete."""
    dest = migration_backup_path(path, old, SCHEMA_VERSION)
    if dest.exists():  # an earlier start took it (and then failed): keep both
        dest = dest.with_name(f"{dest.name}.{int(time.time())}")
    partial = dest.with_name(dest.name + ".partial")

    def open_target() -> sqlite3.Connection:
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        return sqlite3.connect(partial, check_same_thread=False)

    try:
        target = await asyncio.to_thread(open_target)
    except OSError as exc:
        raise StoreError(
            f"cannot write the pre-upgrade backup {partial} ({exc.strerror}); castui upgrades"
            f" the database only after a backup: make {path.parent} writable and start again"
        ) from exc
    try:
        await conn.backup(target)

        def finish() -> None:
            # One self-contained file (no -wal beside it): a plain cp restores it.
            target.execute("PRAGMA journal_mode = DELETE")
            target.close()

        await asyncio.to_thread(finish)
        await asyncio.to_thread(os.replace, partial, dest)
    except BaseException:
        target.close()
        partial.unlink(missing_ok=True)
        raise
    log.warning(
        "database %s is at schema version %d; backed up to %s before upgrading it to %d",
        path,
        old,
        dest,
        SCHEMA_VERSION,
    )
    return dest


def setup_lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.setup-lock")


@contextlib.asynccontextmanager
async def setup_lock(path: Path, *, timeout_s: float) -> AsyncIterator[None]:
    """Hold an exclusive ``flock`` on ``<database>.setup-lock`` while this process creates
    the file, switches it to WAL and migrates it.

    Why: several castui processes started together on a database that does not exist yet
    (a service, a dashboard, ``castui scan``) raced through SQLite's own first-open steps;
    one failed with "disk I/O error" or "attempt to write a readonly database", and others
    saw a half-created file as an old schema and made a pointless pre-upgrade backup. A
    separate lock file, not the database: closing any descriptor of the database file
    would drop the POSIX locks SQLite holds on it in this process. ``flock`` is released by
    the kernel when a process dies, so a killed castui never leaves it held. When the file
    cannot be created (a read-only folder: someone only reading), go on without it.
    """
    with contextlib.suppress(OSError):  # connect() says why when the folder cannot be made
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(
            setup_lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + max(timeout_s, 1.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another castui has been setting up the database {path} for over "
                        f"{timeout_s:.0f} s; wait for it to finish, or stop it and try again."
                    ) from None
                await asyncio.sleep(0.02)  # a setup takes milliseconds; poll, never block
        yield
    finally:
        os.close(fd)  # also releases the flock


async def connect(path: Path, *, busy_timeout_s: float) -> aiosqlite.Connection:
    """Open ``path`` with castui's pragmas, refusing foreign or too-new files.

    The caller owns the returned connection and must close it. Raises ``StoreError``.
    """
    try:
        # The database lists the user's library: created readable by its owner only, whatever
        # the umask (SQLite gives its -wal and -shm files the database file's mode).
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder for the castui database {path} ({exc}); create it or "
            "point `database:` somewhere writable."
        ) from exc
    with contextlib.suppress(OSError):  # exists, or not creatable: SQLite says which below
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
    try:
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "opening") from exc
    try:
        conn.row_factory = _Row
        await execute(conn, f"PRAGMA busy_timeout = {max(0, int(busy_timeout_s * 1000))}")
        await check_identity(conn, path)
        row = await fetchone(conn, "PRAGMA journal_mode = WAL")
        mode = str(row[0]).lower() if row is not None else "?"
        if mode != "wal":
            raise StoreError(
                f"castui database {path}: SQLite could not switch to WAL mode (got {mode!r}); "
                "network file systems do not support it, so put the database on a local disk."
            )
        await execute(conn, "PRAGMA synchronous = FULL")
        await execute(conn, "PRAGMA foreign_keys = ON")
    except BaseException as exc:
        await conn.close()
        if isinstance(exc, sqlite3.Error):
            raise translate_error(exc, path, "opening") from exc
        raise
    return conn


async def migrate(conn: aiosqlite.Connection, path: Path, *, target: int | None = None) -> int:
    """Apply forward migrations up to ``target`` (default: latest); returns the final version.

    Each step runs in its own ``BEGIN IMMEDIATE`` and re-reads the version under the write lock,
    so two castui processes starting together never apply a step twice.
    """
    goal = SCHEMA_VERSION if target is None else target
    try:
        current = await _pragma_int(conn, "user_version")
        if 0 < current < goal and target is None:
            await backup_before_migration(conn, path, current)
        for migration in MIGRATIONS:
            if migration.version > goal:
                break
            await execute(conn, "BEGIN IMMEDIATE")
            try:
                current = await _pragma_int(conn, "user_version")
                if current >= migration.version:
                    await execute(conn, "COMMIT")
                    continue
                if current != migration.version - 1:
                    raise StoreError(
                        f"castui database {path} is at schema version {current}, which this "
                        f"castui cannot upgrade to {migration.version}; restore a backup."
                    )
                for statement in migration.statements:
                    await execute(conn, statement)
                await execute(conn, f"PRAGMA application_id = {APPLICATION_ID}")
                await execute(conn, f"PRAGMA user_version = {migration.version}")
                await execute(conn, "COMMIT")
            except BaseException:
                if conn.in_transaction:
                    await execute(conn, "ROLLBACK")
                raise
        final = await _pragma_int(conn, "user_version")
    except sqlite3.Error as exc:
        raise translate_error(exc, path, "upgrading the schema") from exc
    if final > SCHEMA_VERSION:
        # Another, newer castui migrated the file while we were starting: step aside.
        raise SchemaTooNewError(
            f"{path} was just upgraded by a newer castui (schema version {final}); upgrade "
            "this castui too."
        )
    return final
