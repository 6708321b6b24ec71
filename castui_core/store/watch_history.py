"""Watch history per job: the users' Jellyfin data before the swap, and what became of it.

Stored beside the job (table ``watch_history``, schema version 7, one row per job) so the
snapshot taken right before the swap survives a restart until the new item is listed, and
``castui history`` / the job detail show the outcome ("kept by Jellyfin", "restored for 3
users", "lost: …", "unknown: …") long after the event scrolled away. The snapshot holds user
ids, names and play state, never the API key. These functions run on a connection the Store
has put in a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from castui_core.store.db import execute, fetchall


@dataclass(frozen=True)
class StoredWatchHistory:
    job_id: int
    path: str
    status: str  # pending | kept | restored | lost | unknown | nothing
    snapshot: str  # JSON (castui_core.integrations.jellyfin.userdata.Snapshot)
    message: str
    at: float


async def record(
    conn: aiosqlite.Connection,
    at: float,
    *,
    job_id: int,
    path: str,
    status: str,
    snapshot: str,
    message: str,
) -> None:
    await execute(
        conn,
        """
        INSERT INTO watch_history (job_id, path, status, snapshot, message, at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT(job_id) DO UPDATE SET
            path = excluded.path, status = excluded.status, snapshot = excluded.snapshot,
            message = excluded.message, at = excluded.at
        """,
        (job_id, path, status, snapshot, message, at),
    )


def _row(r: aiosqlite.Row) -> StoredWatchHistory:
    return StoredWatchHistory(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(r[5]))


async def for_jobs(
    conn: aiosqlite.Connection, job_ids: Sequence[int]
) -> dict[int, StoredWatchHistory]:
    if not job_ids:
        return {}
    marks = ",".join("?" * len(job_ids))
    rows = await fetchall(
        conn,
        "SELECT job_id, path, status, snapshot, message, at FROM watch_history"
        f" WHERE job_id IN ({marks})",
        list(job_ids),
    )
    return {int(r[0]): _row(r) for r in rows}


async def pending(conn: aiosqlite.Connection) -> list[StoredWatchHistory]:
    rows = await fetchall(
        conn,
        "SELECT job_id, path, status, snapshot, message, at FROM watch_history"
        " WHERE status = 'pending' ORDER BY at",
        (),
    )
    return [_row(r) for r in rows]
