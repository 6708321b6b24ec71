"""The Jellyfin outbox: changes Jellyfin must hear about, kept until it has heard.

Why a table and not a queue in memory: a notification lost to a restart, a crash or a Jellyfin
that is down means the swapped file waits for Jellyfin's next full scan (hours), and Sonarr/
Radarr lose them exactly that way. Each committed swap inserts its rows *in the same
transaction* as the job's completion (:func:`add_entries`, called from ``jobs.complete``), so
a row exists exactly when the swap is committed: never for a state a crash could undo, never
missing for one that happened. The sender deletes rows once Jellyfin answered 204.

Rows hold castui's own path; ``path_map`` is applied when sending, so fixing the map fixes
what is still queued. ``state`` is ``pending`` (due at ``next_at``) or ``stopped`` (Jellyfin
refused the request: a settings problem; resumed on reload or restart). The API key is never
stored here. Runs on a connection the Store has put in a transaction.

Each row has a ``target``: ``jellyfin`` or ``arr:<name>`` (a Sonarr/Radarr entry,
:mod:`castui_core.integrations.arr`). One table keeps the guarantee above for every service a
swap must reach; each sender reads only its own target, so a Sonarr that is down never holds
Jellyfin's notifications back (or the other way round).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from castui_core.store.db import execute, executemany, fetchall, fetchone

UpdateType = Literal["Created", "Modified", "Deleted"]

#: The target of Jellyfin's rows (every row before schema version 7).
JELLYFIN = "jellyfin"


def arr_target(name: str) -> str:
    """The target of a Sonarr/Radarr entry's rows."""
    return f"arr:{name}"


@dataclass(frozen=True)
class OutboxEntry:
    """One change to tell Jellyfin about (castui's path, before ``path_map``)."""

    path: str
    update_type: UpdateType
    library: str
    target: str = JELLYFIN
    message: str | None = None
    """For ``notify`` rows only: the notification's text, kept in the ``folder`` column (which
    only Jellyfin's batching reads), so notifications needed no schema change."""


#: The target of notification rows (castui_core/notify.py sends them through Apprise).
NOTIFY = "notify"


@dataclass(frozen=True)
class OutboxRow:
    """A stored entry: what the sender reads."""

    id: int
    path: str
    folder: str
    update_type: UpdateType
    library: str
    job_id: int | None
    attempts: int
    next_at: float
    last_error: str | None
    created_at: float
    target: str = JELLYFIN


async def add_entries(
    conn: aiosqlite.Connection, now: float, job_id: int | None, entries: Sequence[OutboxEntry]
) -> None:
    await executemany(
        conn,
        """
        INSERT INTO jellyfin_outbox
            (path, folder, update_type, library, job_id, state, attempts, next_at, created_at,
             target)
        VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)
        """,
        [
            (
                e.path,
                e.message if e.message is not None else os.path.dirname(e.path),
                e.update_type,
                e.library,
                job_id,
                now,
                now,
                e.target,
            )
            for e in entries
        ],
    )


_COLUMNS = (
    "id, path, folder, update_type, library, job_id, attempts, next_at, last_error, created_at,"
    " target"
)


def _row(r: aiosqlite.Row) -> OutboxRow:
    return OutboxRow(
        id=int(r[0]),
        path=str(r[1]),
        folder=str(r[2]),
        update_type=r[3],
        library=str(r[4]),
        job_id=r[5],
        attempts=int(r[6]),
        next_at=float(r[7]),
        last_error=r[8],
        created_at=float(r[9]),
        target=str(r[10]),
    )


async def due(
    conn: aiosqlite.Connection, now: float, limit: int, target: str = JELLYFIN
) -> list[OutboxRow]:
    """Pending entries due now, oldest first, grouped by folder (one batch's worth)."""
    rows = await fetchall(
        conn,
        f"""
        SELECT {_COLUMNS} FROM jellyfin_outbox
        WHERE target = ? AND state = 'pending' AND next_at <= ?
        ORDER BY folder, id LIMIT ?
        """,
        (target, now, limit),
    )
    return [_row(r) for r in rows]


async def next_due(conn: aiosqlite.Connection, target: str = JELLYFIN) -> float | None:
    row = await fetchone(
        conn,
        "SELECT MIN(next_at) FROM jellyfin_outbox WHERE target = ? AND state = 'pending'",
        (target,),
    )
    return None if row is None or row[0] is None else float(row[0])


async def delivered(conn: aiosqlite.Connection, ids: Sequence[int]) -> None:
    await executemany(conn, "DELETE FROM jellyfin_outbox WHERE id = ?", [(i,) for i in ids])


async def retry_later(
    conn: aiosqlite.Connection, ids: Sequence[int], next_at: float, error: str
) -> None:
    await executemany(
        conn,
        """
        UPDATE jellyfin_outbox SET attempts = attempts + 1, next_at = ?, last_error = ?
        WHERE id = ?
        """,
        [(next_at, error, i) for i in ids],
    )


async def stop(conn: aiosqlite.Connection, ids: Sequence[int], error: str) -> None:
    await executemany(
        conn,
        """
        UPDATE jellyfin_outbox SET state = 'stopped', attempts = attempts + 1, last_error = ?
        WHERE id = ?
        """,
        [(error, i) for i in ids],
    )


async def resume(conn: aiosqlite.Connection, now: float, target: str = JELLYFIN) -> int:
    """Everything becomes due now (a settings change or a restart is the moment to try
    again: stopped entries resume, backed-off ones skip the rest of their wait). Returns
    how many were stopped."""
    row = await fetchone(
        conn,
        "SELECT COUNT(*) FROM jellyfin_outbox WHERE target = ? AND state = 'stopped'",
        (target,),
    )
    await execute(
        conn,
        "UPDATE jellyfin_outbox SET state = 'pending', next_at = MIN(next_at, ?) WHERE target = ?",
        (now, target),
    )
    return int(row[0]) if row else 0


async def counts(conn: aiosqlite.Connection, target: str = JELLYFIN) -> dict[str, int]:
    """``{"pending": n, "stopped": m}``."""
    rows = await fetchall(
        conn,
        "SELECT state, COUNT(*) FROM jellyfin_outbox WHERE target = ? GROUP BY state",
        (target,),
    )
    found = {"pending": 0, "stopped": 0}
    found.update({str(r[0]): int(r[1]) for r in rows})
    return found


async def rows(
    conn: aiosqlite.Connection, limit: int = 1000, target: str = JELLYFIN
) -> list[OutboxRow]:
    """Everything queued for ``target`` (for the check commands and tests), oldest first."""
    found = await fetchall(
        conn,
        f"SELECT {_COLUMNS} FROM jellyfin_outbox WHERE target = ? ORDER BY id LIMIT ?",
        (target, limit),
    )
    return [_row(r) for r in found]


async def all_rows(conn: aiosqlite.Connection, limit: int = 1000) -> list[OutboxRow]:
    """Every row of every target, oldest first: what a node on a shared queue moves there
    (:mod:`castui_core.queue.forward`), whatever sender it is meant for."""
    found = await fetchall(
        conn, f"SELECT {_COLUMNS} FROM jellyfin_outbox ORDER BY id LIMIT ?", (limit,)
    )
    return [_row(r) for r in found]
