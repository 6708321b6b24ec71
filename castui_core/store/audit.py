"""Audit log: every job state change, operator action and guardrail trip, with its reason.

Events are written in the *same* transaction as the change they describe, so the log can
never disagree with the queue (no "job is dead but nobody knows why"). These functions run on
a connection the :class:`~castui_core.store.Store` has already put in a transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiosqlite

from castui_core.store.db import execute_count, fetchall, fetchone
from castui_core.store.models import Event, dump_json, event_from_row


async def record_event(
    conn: aiosqlite.Connection,
    at: float,
    kind: str,
    *,
    job_id: int | None = None,
    path: str | None = None,
    actor: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    row = await fetchone(
        conn,
        """
        INSERT INTO events (at, kind, job_id, path, actor, from_state, to_state, reason, details)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
        """,
        (at, kind, job_id, path, actor, from_state, to_state, reason, dump_json(details)),
    )
    assert row is not None
    return int(row[0])


async def list_events(
    conn: aiosqlite.Connection,
    *,
    kind: str | None = None,
    job_id: int | None = None,
    path: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 100,
) -> list[Event]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("kind", kind), ("job_id", job_id), ("path", path)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at < ?")
        params.append(until)
    sql = "SELECT * FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY at DESC, id DESC LIMIT ?"
    params.append(limit)
    return [event_from_row(r) for r in await fetchall(conn, sql, params)]


async def prune_events(
    conn: aiosqlite.Connection, *, older_than: float, keep_last: int | None = None
) -> int:
    """Delete events before ``older_than`` (epoch s); ``keep_last`` also caps the row count."""
    deleted = await execute_count(conn, "DELETE FROM events WHERE at < ?", (older_than,))
    if keep_last is not None:
        deleted += await execute_count(
            conn,
            """
            DELETE FROM events WHERE id <= (
                SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?
            )
            """,
            (max(0, keep_last),),
        )
    return deleted
