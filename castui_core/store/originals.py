"""The ``originals`` table: originals the replace layout archived, and what became of them.

One row per archived original (``castui_core.originals`` writes and reads them). ``path`` is
where the original lived and goes back to; ``archive`` where it is now; ``output`` the file
castui placed in its stead. ``state`` moves ``archived`` -> ``restored`` (put back: the row
then also marks the source as "the person wants this one as it is", so it is not converted
again unless asked) or ``purged`` (its bytes freed). Runs on a connection the Store has put in
a transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from castui_core.store.db import execute, execute_count, fetchall, fetchone

OriginalState = Literal["archived", "restored", "purged"]


@dataclass(frozen=True)
class OriginalRecord:
    """One archived original as recorded (sizes and times of the original at archive time)."""

    library: str
    path: str
    archive: str
    output: str | None
    size: int
    mtime_ns: int
    archived_at: float
    state: OriginalState = "archived"
    ended_at: float | None = None
    id: int | None = None


_COLUMNS = "id, library, path, archive, output, size, mtime_ns, archived_at, state, ended_at"


def _record(row: sqlite3.Row) -> OriginalRecord:
    return OriginalRecord(
        id=int(row["id"]),
        library=str(row["library"]),
        path=str(row["path"]),
        archive=str(row["archive"]),
        output=None if row["output"] is None else str(row["output"]),
        size=int(row["size"]),
        mtime_ns=int(row["mtime_ns"]),
        archived_at=float(row["archived_at"]),
        state=row["state"],
        ended_at=None if row["ended_at"] is None else float(row["ended_at"]),
    )


async def record_archived(conn: aiosqlite.Connection, record: OriginalRecord) -> None:
    """Add an archived original; an older 'archived' row for the same archive name ends."""
    await execute(
        conn,
        "UPDATE originals SET state = 'purged', ended_at = ? WHERE archive = ? AND"
        " state = 'archived'",
        (record.archived_at, record.archive),
    )
    await execute(
        conn,
        "INSERT INTO originals (library, path, archive, output, size, mtime_ns, archived_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            record.library,
            record.path,
            record.archive,
            record.output,
            record.size,
            record.mtime_ns,
            record.archived_at,
        ),
    )


async def list_originals(
    conn: aiosqlite.Connection, *, state: OriginalState = "archived", library: str | None = None
) -> list[OriginalRecord]:
    sql = f"SELECT {_COLUMNS} FROM originals WHERE state = ?"
    params: list[object] = [state]
    if library is not None:
        sql += " AND library = ?"
        params.append(library)
    rows = await fetchall(conn, sql + " ORDER BY library, path", params)
    return [_record(r) for r in rows]


async def archived_at_path(conn: aiosqlite.Connection, path: str) -> OriginalRecord | None:
    """The archived original whose home is ``path`` (or whose archive name is ``path``)."""
    row = await fetchone(
        conn,
        f"SELECT {_COLUMNS} FROM originals WHERE state = 'archived' AND (path = ? OR"
        " archive = ? OR output = ?) ORDER BY id DESC LIMIT 1",
        (path, path, path),
    )
    return None if row is None else _record(row)


async def latest_for_jobs(
    conn: aiosqlite.Connection, job_ids: Sequence[int]
) -> dict[int, OriginalRecord]:
    """Per job, the newest row (any state) whose home is the job's path or whose output is
    the job's output: where that job's original is now (archived, restored or purged).

    One query for a whole history page, so the dashboard's refresh stays one read."""
    found: dict[int, OriginalRecord] = {}
    ids = list(dict.fromkeys(job_ids))
    for start in range(0, len(ids), 500):  # well under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = await fetchall(
            conn,
            f"SELECT j.id AS job_id, {', '.join('o.' + c for c in _COLUMNS.split(', '))}"
            " FROM jobs j JOIN originals o ON o.path = j.path OR o.output = j.output_path"
            f" WHERE j.id IN ({marks}) ORDER BY o.id",
            chunk,
        )
        for row in rows:  # ascending ids: the newest row of each job wins
            found[int(row["job_id"])] = _record(row)
    return found


async def restored_marker(conn: aiosqlite.Connection, path: str) -> OriginalRecord | None:
    """The latest row saying ``path`` was restored on purpose (None: no such mark)."""
    row = await fetchone(
        conn,
        f"SELECT {_COLUMNS} FROM originals WHERE path = ? ORDER BY id DESC LIMIT 1",
        (path,),
    )
    record = None if row is None else _record(row)
    return record if record is not None and record.state == "restored" else None


async def end(conn: aiosqlite.Connection, record_id: int, state: OriginalState, now: float) -> None:
    await execute(
        conn,
        "UPDATE originals SET state = ?, ended_at = ? WHERE id = ?",
        (state, now, record_id),
    )


async def clear_marker(conn: aiosqlite.Connection, path: str, now: float) -> int:
    """Forget that ``path`` was restored on purpose (``castui retry``/asked): returns rows."""
    return await execute_count(
        conn,
        "UPDATE originals SET state = 'purged', ended_at = ? WHERE path = ? AND state = 'restored'",
        (now, path),
    )
