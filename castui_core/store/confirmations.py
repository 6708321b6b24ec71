"""Jellyfin's confirmation per job: direct play, would transcode (with reasons), unconfirmed.

Stored beside the job (table ``jellyfin_confirmations``, schema version 5, one row per job,
last answer wins) so
``castui history`` and the job detail show it long after the event scrolled away, and metrics
can count the outcomes. These functions run on a connection the Store has put in a
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from castui_core.store.db import execute, fetchall


@dataclass(frozen=True)
class StoredConfirmation:
    job_id: int
    path: str
    status: str  # direct_play | transcode | unconfirmed | pending
    generation: str
    reasons: tuple[str, ...]
    message: str
    item_id: str | None
    at: float


async def record_confirmation(
    conn: aiosqlite.Connection,
    at: float,
    *,
    job_id: int,
    path: str,
    status: str,
    generation: str,
    reasons: Sequence[str],
    message: str,
    item_id: str | None,
) -> None:
    await execute(
        conn,
        """
        INSERT INTO jellyfin_confirmations
            (job_id, path, status, generation, reasons, message, item_id, at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(job_id) DO UPDATE SET
            path = excluded.path, status = excluded.status, generation = excluded.generation,
            reasons = excluded.reasons, message = excluded.message, item_id = excluded.item_id,
            at = excluded.at
        """,
        (job_id, path, status, generation, json.dumps(list(reasons)), message, item_id, at),
    )


async def confirmations_for(
    conn: aiosqlite.Connection, job_ids: Sequence[int]
) -> dict[int, StoredConfirmation]:
    if not job_ids:
        return {}
    marks = ",".join("?" * len(job_ids))
    rows = await fetchall(
        conn,
        "SELECT job_id, path, status, generation, reasons, message, item_id, at"
        f" FROM jellyfin_confirmations WHERE job_id IN ({marks})",
        list(job_ids),
    )
    return {
        int(r[0]): StoredConfirmation(
            int(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            tuple(json.loads(r[4] or "[]")),
            str(r[5]),
            r[6],
            float(r[7]),
        )
        for r in rows
    }


async def confirmation_counts(conn: aiosqlite.Connection) -> dict[str, int]:
    rows = await fetchall(
        conn, "SELECT status, COUNT(*) FROM jellyfin_confirmations GROUP BY status", ()
    )
    return {str(r[0]): int(r[1]) for r in rows}


async def pending(conn: aiosqlite.Connection) -> list[tuple[int, str, str, float]]:
    rows = await fetchall(
        conn,
        "SELECT c.job_id, j.library, c.path, c.at FROM jellyfin_confirmations c"
        " JOIN jobs j ON j.id = c.job_id WHERE c.status = 'pending' ORDER BY c.at",
        (),
    )
    return [(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]
