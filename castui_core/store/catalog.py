"""The ``files`` catalog: what castui last saw and decided about each media file.

Probing is the slow part of a scan (it opens every file, often over the network), so the
catalog remembers (size, mtime_ns) per path and a rescan only re-probes files whose
fingerprint changed. Runs on a connection the Store has put in a transaction (or autocommit
for reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, NamedTuple

import aiosqlite

from castui_core.store.db import bind_value, execute_count, executemany, fetchall, fetchone
from castui_core.store.models import CatalogEntry, catalog_from_row, dump_json

_UPSERT = """
    INSERT INTO files (path, library, size, mtime_ns, inode, probe, probed_at, decision,
                       reasons, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(path) DO UPDATE SET
        library = excluded.library, size = excluded.size, mtime_ns = excluded.mtime_ns,
        inode = excluded.inode, probe = excluded.probe, probed_at = excluded.probed_at,
        decision = excluded.decision, reasons = excluded.reasons,
        updated_at = excluded.updated_at
"""


def _params(entry: CatalogEntry, now: float) -> tuple[Any, ...]:
    probed_at = entry.probed_at
    if probed_at is None and entry.probe is not None:
        probed_at = now
    return (
        entry.path,
        entry.library,
        entry.size,
        entry.mtime_ns,
        entry.inode,
        dump_json(entry.probe),
        probed_at,
        entry.decision,
        dump_json(list(entry.reasons)),
        now,
    )


async def upsert_files(
    conn: aiosqlite.Connection, entries: Iterable[CatalogEntry], now: float
) -> None:
    await executemany(conn, _UPSERT, (_params(e, now) for e in entries))


async def get_file(conn: aiosqlite.Connection, path: str) -> CatalogEntry | None:
    row = await fetchone(conn, "SELECT * FROM files WHERE path = ?", (path,))
    return catalog_from_row(row) if row is not None else None


async def needs_probe(
    conn: aiosqlite.Connection, path: str, size: int, mtime_ns: int, inode: int | None = None
) -> bool:
    """True if the file is unknown, was never probed, or its fingerprint changed.

    ``inode`` is optional: when given, a file replaced by another with the same size and mtime
    (e.g. ``mv`` of a copy that preserved timestamps) is re-probed too.
    """
    row = await fetchone(
        conn,
        "SELECT size, mtime_ns, inode, probe IS NOT NULL FROM files WHERE path = ?",
        (path,),
    )
    if row is None or not row[3]:
        return True
    if row[0] != size or row[1] != mtime_ns:
        return True
    return inode is not None and row[2] is not None and row[2] != inode


async def fingerprints(
    conn: aiosqlite.Connection, library: str | None = None
) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) for probed files, so a scan can diff a whole tree in memory."""
    sql = "SELECT path, size, mtime_ns FROM files WHERE probe IS NOT NULL"
    params: tuple[Any, ...] = ()
    if library is not None:
        sql += " AND library = ?"
        params = (library,)
    return {_text(r[0]): (r[1], r[2]) for r in await fetchall(conn, sql, params)}


#: ``library`` of the rows ``castui scan`` writes: ``castui scan: <library>``. A scan queues
#: nothing, so its rows must not look like the engine's (a row in the engine's own library
#: with a matching fingerprint means "recorded and queued if needed": the engine would skip
#: the file for ever). The engine's diff reads its library's rows only, so it probes such a
#: file and its upsert makes the row its own.
SCAN_PREFIX = "castui scan: "


def scan_label(library: str) -> str:
    """The ``library`` value of a row written by ``castui scan`` for ``library``."""
    return library if library.startswith(SCAN_PREFIX) else SCAN_PREFIX + library


class KnownFile(NamedTuple):
    """A catalog row as a scan needs it: the fingerprint and the probe, still JSON text
    (parsed only for files that turn out unchanged, so a big rescan parses nothing twice)."""

    library: str
    size: int
    mtime_ns: int
    inode: int | None
    probe: str | None


def _text(value: Any) -> str:
    return os.fsdecode(value) if type(value) is bytes else str(value)


async def known_files(
    conn: aiosqlite.Connection, *, library: str | None = None, under: str | None = None
) -> dict[str, KnownFile]:
    """Every probed row of ``library`` (the engine's and ``castui scan``'s, see
    :data:`SCAN_PREFIX`; or every row below the folder/file ``under``) in one SELECT.

    A rescan diffs the whole tree against this in memory: one query per library instead of
    one per file. ``under`` is a range on the primary key (``path`` and ``path/…``).
    """
    sql = "SELECT path, library, size, mtime_ns, inode, probe FROM files"
    where = ["probe IS NOT NULL"]
    params: list[Any] = []
    if library is not None:
        where.append("library IN (?, ?)")
        params += [library, scan_label(library)]
    if under is not None:
        prefix = under.rstrip("/")
        # ``path = X`` or ``X/`` <= path < ``X0`` ('0' sorts right after '/').
        where.append("(path = ? OR (path >= ? AND path < ?))")
        params += [prefix, prefix + "/", prefix + "0"]
    sql += " WHERE " + " AND ".join(where)
    # Plain tuples, not the Store's row objects: a 100,000-file library's rows built through
    # the row factory and indexed by position took 1.5 s of a 8 s rescan.
    cursor = await conn.execute(sql, [bind_value(p) for p in params])
    try:
        cursor.row_factory = None
        rows = await cursor.fetchall()
    finally:
        await cursor.close()
    known: dict[str, KnownFile] = {}
    labels: dict[Any, str] = {}  # one str per library label, not one per row
    for path, label, size, mtime_ns, inode, probe in rows:
        if type(path) is bytes:  # a name that is not UTF-8 (see store.db.bind_value)
            path = os.fsdecode(path)
        text = labels.get(label)
        if text is None:
            text = labels[label] = _text(label)
        known[path] = KnownFile(text, size, mtime_ns, inode, _text(probe) if probe else probe)
    return known


async def list_files(conn: aiosqlite.Connection, library: str | None = None) -> list[CatalogEntry]:
    if library is None:
        rows = await fetchall(conn, "SELECT * FROM files ORDER BY path")
    else:
        rows = await fetchall(
            conn, "SELECT * FROM files WHERE library = ? ORDER BY path", (library,)
        )
    return [catalog_from_row(r) for r in rows]


async def remove_files(
    conn: aiosqlite.Connection, paths: Iterable[str], *, scan_only: bool = False
) -> int:
    """Delete rows by path; ``scan_only`` deletes only rows ``castui scan`` wrote: the engine
    cancels the queued jobs of its own rows' files when it sees them gone, and needs the row
    to do so."""
    sql = "DELETE FROM files WHERE path = ?"
    params: tuple[Any, ...] = ()
    if scan_only:
        sql += " AND substr(library, 1, ?) = ?"
        params = (len(SCAN_PREFIX), SCAN_PREFIX)
    removed = 0
    for path in paths:
        removed += await execute_count(conn, sql, (path, *params))
    return removed
