"""The ``outputs`` table: every file castui itself placed, and from which source.

castui never overwrites a file it did not write, so it must know which files it *did* write:
``castui convert`` and the engine both record each placed output here (same database,
``settings.database``). Ingest skips these paths (castui's own work is not new media), and a
rerun that finds its output name taken checks here before calling the file a stranger's.
Runs on a connection the Store has put in a transaction.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from castui_core.store.db import execute, fetchall, fetchone
from castui_core.store.models import OutputRecord, output_from_row

_UPSERT = """
    INSERT INTO outputs (path, source, size, mtime_ns, inode, source_size, source_mtime_ns,
                         profile, written_by, written_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(path) DO UPDATE SET
        source = excluded.source, size = excluded.size, mtime_ns = excluded.mtime_ns,
        inode = excluded.inode, source_size = excluded.source_size,
        source_mtime_ns = excluded.source_mtime_ns, profile = excluded.profile,
        written_by = excluded.written_by, written_at = excluded.written_at
"""


async def record_output(conn: aiosqlite.Connection, record: OutputRecord) -> None:
    await execute(
        conn,
        _UPSERT,
        (
            record.path,
            record.source,
            record.size,
            record.mtime_ns,
            record.inode,
            record.source_size,
            record.source_mtime_ns,
            record.profile,
            record.written_by,
            record.written_at,
        ),
    )


async def get_output(conn: aiosqlite.Connection, path: str) -> OutputRecord | None:
    row = await fetchone(conn, "SELECT * FROM outputs WHERE path = ?", (path,))
    return output_from_row(row) if row is not None else None


async def output_paths(conn: aiosqlite.Connection) -> set[str]:
    return {r[0] for r in await fetchall(conn, "SELECT path FROM outputs")}


async def all_outputs(conn: aiosqlite.Connection) -> list[OutputRecord]:
    rows = await fetchall(conn, "SELECT * FROM outputs ORDER BY path")
    return [output_from_row(r) for r in rows]


async def forget_output(conn: aiosqlite.Connection, path: str) -> None:
    await execute(conn, "DELETE FROM outputs WHERE path = ?", (path,))


def read_outputs(database: Path) -> dict[str, OutputRecord]:
    """Every recorded output, read from ``database`` without writing anything (blocking).

    For ``castui scan``, which only reads: the file is opened read-only (no migration, no
    WAL switch, not created when missing). Empty when there is no database yet or it
    predates the ``outputs`` table.
    """
    if not database.exists():
        return {}
    try:
        conn = sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        conn.row_factory = _row
        rows = conn.execute("SELECT * FROM outputs").fetchall()
    except sqlite3.Error:
        return {}  # no such table yet (an older castui's file), or unreadable: nothing known
    finally:
        conn.close()
    return {row["path"]: output_from_row(row) for row in rows}


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> sqlite3.Row:
    """``sqlite3.Row`` with a BLOB (a name that is not UTF-8, stored as bytes) as a str."""
    return sqlite3.Row(cursor, tuple(os.fsdecode(v) if type(v) is bytes else v for v in values))
