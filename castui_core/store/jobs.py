"""Job-queue transitions as SQL. Every function runs inside a ``BEGIN IMMEDIATE`` transaction
the :class:`~castui_core.store.Store` opened, and writes its audit event in that transaction.

Fencing: a claim bumps the job's ``lease_token``; heartbeat/complete/fail/release only match
``id = ? AND lease_token = ? AND state = 'running'``. Reclaiming an expired lease or cancelling
also bumps the token, so a worker that was paused, partitioned or presumed dead learns on its
next call that it lost the job (``LeaseLostError``) and leaves the files alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from castui_core.errors import JobNotFoundError, LeaseLostError, StoreError
from castui_core.queue.policy import NewJob as NewJob
from castui_core.queue.policy import QueuePolicy as QueuePolicy
from castui_core.store.audit import record_event
from castui_core.store.db import execute, execute_count, executemany, fetchall, fetchone
from castui_core.store.models import (
    FINISHED_STATES,
    ClaimedJob,
    EnqueueOutcome,
    EnqueueResult,
    EventKind,
    HistoryTotals,
    Job,
    JobAction,
    JobResult,
    JobState,
    Progress,
    backoff_delay,
    dump_json,
    job_from_row,
)
from castui_core.store.outbox import OutboxEntry
from castui_core.store.outbox import add_entries as add_outbox_entries

_ACTIVE_SQL = "('queued', 'running')"
_FINISHED_SQL = "('done', 'failed', 'dead', 'cancelled')"
PAUSED_KEY = "queue_paused"


def _unchanged_since_start(item: NewJob, started_at: float | None) -> bool:
    return item.modified_at is not None and started_at is not None and item.modified_at < started_at


def _transition_event_kwargs(job: Job, from_state: str | None) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "path": job.path,
        "from_state": from_state,
        "to_state": str(job.state),
    }


async def _job(conn: aiosqlite.Connection, job_id: int) -> Job | None:
    row = await fetchone(conn, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    return job_from_row(row) if row is not None else None


async def get_job(conn: aiosqlite.Connection, job_id: int) -> Job:
    job = await _job(conn, job_id)
    if job is None:
        raise JobNotFoundError(
            f"there is no job #{job_id}; list jobs with `castui queue` or `castui history`."
        )
    return job


async def _lease_lost(conn: aiosqlite.Connection, job_id: int, token: int) -> LeaseLostError:
    """Explain to a worker why its fenced call matched nothing."""
    job = await _job(conn, job_id)
    if job is None:
        why = "the job no longer exists (history was cleared)"
    elif job.state is JobState.CANCELLED:
        why = "an operator cancelled it"
    elif job.state is JobState.RUNNING and job.lease_token != token:
        why = f"its lease expired and {job.lease_owner or 'another worker'} took it over"
    elif job.state is JobState.RUNNING:
        why = "the lease is held under another token"
    else:
        why = f"its lease expired or it was handed back; it is now {job.state}"
    return LeaseLostError(
        f"job #{job_id}: lease lost (token {token}): {why}. Stop working on it and do not "
        "touch its files."
    )


async def enqueue(
    conn: aiosqlite.Connection, now: float, item: NewJob, policy: QueuePolicy
) -> EnqueueResult:
    action = JobAction(item.action)
    reasons_json = dump_json(list(item.reasons))
    ready_at = now + max(0.0, item.debounce_s)
    active = await fetchone(
        conn,
        f"SELECT id, state, started_at FROM jobs WHERE path = ? AND state IN {_ACTIVE_SQL}",
        (item.path,),
    )
    if active is None:
        row = await fetchone(
            conn,
            """
            INSERT INTO jobs (path, library, action, state, reasons, priority, max_attempts,
                              run_after, created_at, updated_at)
            VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING id
            """,
            (
                item.path,
                item.library,
                str(action),
                reasons_json,
                item.priority,
                policy.max_attempts,
                ready_at,
                now,
                now,
            ),
        )
        assert row is not None
        job_id = int(row[0])
        await record_event(
            conn,
            now,
            EventKind.JOB_STATE,
            job_id=job_id,
            path=item.path,
            to_state=JobState.QUEUED,
            reason=f"{action}: " + "; ".join(item.reasons) if item.reasons else str(action),
        )
        return EnqueueResult(job_id, EnqueueOutcome.CREATED)

    job_id = int(active["id"])
    if active["state"] == JobState.QUEUED:
        # The file is still changing (or was rescanned): wait for it to settle, and let the
        # newest decision win. Priority only ever goes up so an operator bump is not undone.
        await execute(
            conn,
            """
            UPDATE jobs SET run_after = MAX(run_after, ?), action = ?, reasons = ?,
                            library = ?, priority = MAX(priority, ?), updated_at = ?
            WHERE id = ?
            """,
            (ready_at, str(action), reasons_json, item.library, item.priority, now, job_id),
        )
        return EnqueueResult(job_id, EnqueueOutcome.DEBOUNCED)

    if _unchanged_since_start(item, active["started_at"]):
        return EnqueueResult(job_id, EnqueueOutcome.ALREADY_RUNNING)
    # Running: the output being produced is from an older version of the file. Remember to
    # run again once this run ends; the running worker is not disturbed.
    await execute(
        conn,
        """
        UPDATE jobs SET rerun_action = ?, rerun_reasons = ?,
                        rerun_priority = MAX(COALESCE(rerun_priority, priority), ?),
                        rerun_after = MAX(COALESCE(rerun_after, 0), ?), updated_at = ?
        WHERE id = ?
        """,
        (str(action), reasons_json, item.priority, ready_at, now, job_id),
    )
    await record_event(
        conn,
        now,
        EventKind.RERUN_REQUESTED,
        job_id=job_id,
        path=item.path,
        reason="file changed while it was being converted; it will run again",
    )
    return EnqueueResult(job_id, EnqueueOutcome.RERUN_SCHEDULED)


@dataclass(slots=True)
class _Merged:
    library: str
    action: JobAction
    reasons: tuple[str, ...]
    priority: int
    ready_at: float
    last: NewJob  # the newest item for the path (its modified_at is the one that counts)


async def enqueue_many(
    conn: aiosqlite.Connection, now: float, items: Sequence[NewJob], policy: QueuePolicy
) -> list[EnqueueResult]:
    """Set-based :func:`enqueue` for a scan's worth of paths: a handful of statements per
    batch instead of three round trips per path, with the same outcome as enqueuing the items
    one by one (duplicates in the batch merge exactly like repeated enqueues)."""
    merged: dict[str, _Merged] = {}
    for item in items:
        action = JobAction(item.action)
        ready_at = now + max(0.0, item.debounce_s)
        m = merged.get(item.path)
        if m is None:
            merged[item.path] = _Merged(
                item.library, action, tuple(item.reasons), item.priority, ready_at, item
            )
        else:
            m.library, m.action, m.reasons = item.library, action, tuple(item.reasons)
            m.priority = max(m.priority, item.priority)
            m.ready_at = max(m.ready_at, ready_at)
            m.last = item
    if not merged:
        return []
    await execute(
        conn,
        """
        CREATE TEMP TABLE IF NOT EXISTS enqueue_batch (
            path TEXT PRIMARY KEY, library TEXT, action TEXT, reasons TEXT,
            priority INTEGER, ready_at REAL)
        """,
    )
    await execute(conn, "DELETE FROM enqueue_batch")
    await executemany(
        conn,
        "INSERT INTO enqueue_batch VALUES (?, ?, ?, ?, ?, ?)",
        (
            (path, m.library, str(m.action), dump_json(list(m.reasons)), m.priority, m.ready_at)
            for path, m in merged.items()
        ),
    )
    existing = await fetchall(
        conn,
        f"""
        SELECT j.path, j.id, j.state, j.started_at FROM enqueue_batch b
        JOIN jobs j ON j.path = b.path AND j.state IN {_ACTIVE_SQL}
        """,
    )
    outcome: dict[str, tuple[int, EnqueueOutcome]] = {}
    debounce: list[tuple[Any, ...]] = []
    rerun: list[tuple[Any, ...]] = []
    for row in existing:
        path, job_id = row["path"], int(row["id"])
        m = merged[path]
        reasons_json = dump_json(list(m.reasons))
        if row["state"] == JobState.QUEUED:
            outcome[path] = (job_id, EnqueueOutcome.DEBOUNCED)
            debounce.append(
                (m.ready_at, str(m.action), reasons_json, m.library, m.priority, now, job_id)
            )
        elif _unchanged_since_start(m.last, row["started_at"]):
            outcome[path] = (job_id, EnqueueOutcome.ALREADY_RUNNING)
        else:
            outcome[path] = (job_id, EnqueueOutcome.RERUN_SCHEDULED)
            rerun.append((str(m.action), reasons_json, m.priority, m.ready_at, now, job_id))
    if debounce:
        await executemany(
            conn,
            """
            UPDATE jobs SET run_after = MAX(run_after, ?), action = ?, reasons = ?,
                            library = ?, priority = MAX(priority, ?), updated_at = ?
            WHERE id = ?
            """,
            debounce,
        )
    if rerun:
        await executemany(
            conn,
            """
            UPDATE jobs SET rerun_action = ?, rerun_reasons = ?,
                            rerun_priority = MAX(COALESCE(rerun_priority, priority), ?),
                            rerun_after = MAX(COALESCE(rerun_after, 0), ?), updated_at = ?
            WHERE id = ?
            """,
            rerun,
        )
    created = await fetchall(
        conn,
        f"""
        INSERT INTO jobs (path, library, action, state, reasons, priority, max_attempts,
                          run_after, created_at, updated_at)
        SELECT b.path, b.library, b.action, 'queued', b.reasons, b.priority, ?, b.ready_at, ?, ?
        FROM enqueue_batch b
        WHERE NOT EXISTS (
            SELECT 1 FROM jobs j WHERE j.path = b.path AND j.state IN {_ACTIVE_SQL})
        RETURNING id, path
        """,
        (policy.max_attempts, now, now),
    )
    events: list[tuple[Any, ...]] = []
    for row in created:
        path, job_id = row["path"], int(row["id"])
        m = merged[path]
        outcome[path] = (job_id, EnqueueOutcome.CREATED)
        reason = f"{m.action}: " + "; ".join(m.reasons) if m.reasons else str(m.action)
        events.append((now, EventKind.JOB_STATE, job_id, path, None, JobState.QUEUED, reason))
    rerun_reason = "file changed while it was being converted; it will run again"
    events.extend(
        (now, EventKind.RERUN_REQUESTED, job_id, path, None, None, rerun_reason)
        for path, (job_id, o) in outcome.items()
        if o is EnqueueOutcome.RERUN_SCHEDULED
    )
    await executemany(
        conn,
        """
        INSERT INTO events (at, kind, job_id, path, from_state, to_state, reason)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        """,
        events,
    )
    await execute(conn, "DELETE FROM enqueue_batch")
    results: list[EnqueueResult] = []
    seen: set[str] = set()
    for item in items:
        job_id, first = outcome[item.path]
        if item.path in seen and first is EnqueueOutcome.CREATED:
            results.append(EnqueueResult(job_id, EnqueueOutcome.DEBOUNCED))
        else:
            results.append(EnqueueResult(job_id, first))
        seen.add(item.path)
    return results


async def _apply_rerun(conn: aiosqlite.Connection, job: Job, now: float) -> None:
    """After a running job leaves ``running``, honour a pending re-run request."""
    row = await fetchone(
        conn,
        "SELECT rerun_action, rerun_reasons, rerun_priority, rerun_after FROM jobs WHERE id = ?",
        (job.id,),
    )
    if row is None or row["rerun_action"] is None:
        return
    run_after = max(now, row["rerun_after"] or now)
    reason = "file changed during the previous run; running again"
    if job.state is JobState.QUEUED:
        # Already going round again: take the newer parameters, and a fresh attempt budget
        # since it is effectively a different file now.
        await execute(
            conn,
            """
            UPDATE jobs SET action = rerun_action, reasons = rerun_reasons,
                            priority = rerun_priority, run_after = ?, attempts = 0,
                            rerun_action = NULL, rerun_reasons = NULL, rerun_priority = NULL,
                            rerun_after = NULL, updated_at = ?
            WHERE id = ?
            """,
            (run_after, now, job.id),
        )
        await record_event(
            conn, now, EventKind.RERUN_REQUESTED, job_id=job.id, path=job.path, reason=reason
        )
        return
    await execute(
        conn,
        """
        UPDATE jobs SET rerun_action = NULL, rerun_reasons = NULL, rerun_priority = NULL,
                        rerun_after = NULL WHERE id = ?
        """,
        (job.id,),
    )
    new = await fetchone(
        conn,
        """
        INSERT INTO jobs (path, library, action, state, reasons, priority, max_attempts,
                          run_after, created_at, updated_at)
        VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING id
        """,
        (
            job.path,
            job.library,
            row["rerun_action"],
            row["rerun_reasons"] or "[]",
            row["rerun_priority"] if row["rerun_priority"] is not None else job.priority,
            job.max_attempts,
            run_after,
            now,
            now,
        ),
    )
    assert new is not None
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        job_id=int(new[0]),
        path=job.path,
        to_state=JobState.QUEUED,
        reason=reason,
        details={"previous_job_id": job.id},
    )


async def reclaim_expired(conn: aiosqlite.Connection, now: float, policy: QueuePolicy) -> list[Job]:
    """Take back running jobs whose lease ran out (worker killed, hung or cut off).

    The attempt already counted at claim time, so a file that kills its worker every time
    ends ``dead`` after ``max_attempts`` instead of crashing workers forever.
    """
    rows = await fetchall(
        conn,
        "SELECT * FROM jobs INDEXED BY jobs_leases WHERE state = 'running' AND lease_expires < ?",
        (now,),
    )
    reclaimed: list[Job] = []
    for row in rows:
        old = job_from_row(row)
        owner = old.lease_owner or "unknown worker"
        if old.attempts >= old.max_attempts:
            new_state = JobState.DEAD
            reason = (
                f"worker {owner} stopped responding (lease expired) on attempt "
                f"{old.attempts} of {old.max_attempts}; giving up"
            )
            finished: float | None = now
        else:
            new_state = JobState.QUEUED
            reason = f"worker {owner} stopped responding (lease expired); queued again"
            finished = None
        updated = await fetchone(
            conn,
            """
            UPDATE jobs SET state = ?, lease_token = lease_token + 1, lease_expires = NULL,
                            run_after = ?, reason = ?, finished_at = ?, updated_at = ?
            WHERE id = ? AND lease_token = ? RETURNING *
            """,
            (str(new_state), now, reason, finished, now, old.id, old.lease_token),
        )
        if updated is None:
            continue
        job = job_from_row(updated)
        await record_event(
            conn,
            now,
            EventKind.JOB_STATE,
            actor="reaper",
            reason=reason,
            **_transition_event_kwargs(job, JobState.RUNNING),
        )
        await _apply_rerun(conn, job, now)
        reclaimed.append(job)
    return reclaimed


async def is_paused(conn: aiosqlite.Connection) -> bool:
    row = await fetchone(conn, "SELECT value FROM meta WHERE key = ?", (PAUSED_KEY,))
    return row is not None and row[0] == "1"


async def claim(
    conn: aiosqlite.Connection, now: float, owner: str, policy: QueuePolicy
) -> ClaimedJob | None:
    if await is_paused(conn):
        return None
    await reclaim_expired(conn, now, policy)
    # One statement picks and takes the job: there is no window in which two workers could
    # both see it as free (and BEGIN IMMEDIATE already serialises writers across processes).
    row = await fetchone(
        conn,
        """
        UPDATE jobs SET state = 'running', lease_owner = ?, lease_token = lease_token + 1,
                        lease_expires = ?, attempts = attempts + 1, started_at = ?,
                        finished_at = NULL, updated_at = ?,
                        progress_percent = NULL, progress_fps = NULL, progress_speed = NULL,
                        progress_eta_s = NULL, progress_at = NULL
        WHERE id = (
            SELECT id FROM jobs INDEXED BY jobs_ready
            WHERE state = 'queued' AND run_after <= ?
            ORDER BY priority DESC, run_after, id LIMIT 1
        )
        RETURNING *
        """,
        (owner, now + policy.lease_seconds, now, now, now),
    )
    if row is None:
        return None
    job = job_from_row(row)
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=owner,
        reason=f"attempt {job.attempts} of {job.max_attempts}",
        details={"token": job.lease_token},
        **_transition_event_kwargs(job, JobState.QUEUED),
    )
    return ClaimedJob(job=job, token=job.lease_token)


async def heartbeat(
    conn: aiosqlite.Connection,
    now: float,
    job_id: int,
    token: int,
    progress: Progress | None,
    policy: QueuePolicy,
) -> float:
    p = progress or Progress()
    row = await fetchone(
        conn,
        """
        UPDATE jobs SET lease_expires = ?, updated_at = ?, progress_percent = ?,
                        progress_fps = ?, progress_speed = ?, progress_eta_s = ?, progress_at = ?
        WHERE id = ? AND lease_token = ? AND state = 'running'
        RETURNING lease_expires
        """,
        (
            now + policy.lease_seconds,
            now,
            p.percent,
            p.fps,
            p.speed,
            p.eta_s,
            now,
            job_id,
            token,
        ),
    )
    if row is None:
        raise await _lease_lost(conn, job_id, token)
    return float(row[0])


def _result_params(result: JobResult | None) -> tuple[Any, ...]:
    r = result or JobResult()
    return (
        r.output_path,
        r.source_size,
        r.output_size,
        r.duration_s,
        r.encoder,
        dump_json(list(r.command)) if r.command else None,
        r.exit_code,
        r.stderr_tail,
    )


_SET_RESULT = """
    output_path = ?, source_size = ?, output_size = ?, duration_s = ?, encoder = ?,
    command = ?, exit_code = ?, stderr_tail = ?
"""


async def complete(
    conn: aiosqlite.Connection,
    now: float,
    job_id: int,
    token: int,
    result: JobResult,
    outbox_entries: Sequence[OutboxEntry] = (),
) -> Job:
    row = await fetchone(
        conn,
        f"""
        UPDATE jobs SET state = 'done', {_SET_RESULT}, reason = NULL, lease_expires = NULL,
                        finished_at = ?, updated_at = ?
        WHERE id = ? AND lease_token = ? AND state = 'running'
        RETURNING *
        """,
        (*_result_params(result), now, now, job_id, token),
    )
    if row is None:
        raise await _lease_lost(conn, job_id, token)
    job = job_from_row(row)
    saved = result.bytes_saved
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=job.lease_owner,
        reason="converted" + (f", {saved} bytes saved" if saved is not None else ""),
        **_transition_event_kwargs(job, JobState.RUNNING),
    )
    await _apply_rerun(conn, job, now)
    # Same transaction: Jellyfin hears of exactly the swaps that committed (a crash before
    # the COMMIT loses both the "done" and the notification, and the job runs again).
    await add_outbox_entries(conn, now, job.id, outbox_entries)
    return job


async def fail(
    conn: aiosqlite.Connection,
    now: float,
    job_id: int,
    token: int,
    reason: str,
    *,
    retryable: bool,
    result: JobResult | None,
    policy: QueuePolicy,
) -> Job:
    row = await fetchone(
        conn,
        "SELECT * FROM jobs WHERE id = ? AND lease_token = ? AND state = 'running'",
        (job_id, token),
    )
    if row is None:
        raise await _lease_lost(conn, job_id, token)
    old = job_from_row(row)
    run_after = now
    finished: float | None = now
    if not retryable:
        state = JobState.FAILED
        why = f"{reason} (not retryable)"
    elif old.attempts >= old.max_attempts:
        state = JobState.DEAD
        why = f"{reason} (gave up after {old.attempts} attempts)"
    else:
        state = JobState.QUEUED
        delay = backoff_delay(old.attempts, policy.backoff_base_s, policy.backoff_cap_s, policy.rng)
        run_after = now + delay
        finished = None
        why = f"{reason} (attempt {old.attempts} of {old.max_attempts}; retry in {delay:.0f}s)"
    updated = await fetchone(
        conn,
        f"""
        UPDATE jobs SET state = ?, {_SET_RESULT}, reason = ?, lease_expires = NULL,
                        run_after = ?, finished_at = ?, updated_at = ?
        WHERE id = ? RETURNING *
        """,
        (str(state), *_result_params(result), reason, run_after, finished, now, job_id),
    )
    assert updated is not None
    job = job_from_row(updated)
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=old.lease_owner,
        reason=why,
        details={"exit_code": result.exit_code}
        if result and result.exit_code is not None
        else None,
        **_transition_event_kwargs(job, JobState.RUNNING),
    )
    await _apply_rerun(conn, job, now)
    return job


async def release(
    conn: aiosqlite.Connection, now: float, job_id: int, token: int, reason: str
) -> Job:
    row = await fetchone(
        conn,
        """
        UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0),
                        lease_expires = NULL, run_after = ?, updated_at = ?,
                        progress_percent = NULL, progress_fps = NULL, progress_speed = NULL,
                        progress_eta_s = NULL, progress_at = NULL
        WHERE id = ? AND lease_token = ? AND state = 'running'
        RETURNING *
        """,
        (now, now, job_id, token),
    )
    if row is None:
        raise await _lease_lost(conn, job_id, token)
    job = job_from_row(row)
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=job.lease_owner,
        reason=reason,
        **_transition_event_kwargs(job, JobState.RUNNING),
    )
    await _apply_rerun(conn, job, now)
    return job


# --- operator actions -------------------------------------------------------------------


async def set_paused(
    conn: aiosqlite.Connection, now: float, paused: bool, actor: str, reason: str | None
) -> None:
    await execute(
        conn,
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (PAUSED_KEY, "1" if paused else "0"),
    )
    await record_event(
        conn,
        now,
        EventKind.OPERATOR,
        actor=actor,
        reason=reason,
        details={"action": "pause" if paused else "resume"},
    )


async def cancel(
    conn: aiosqlite.Connection, now: float, job_id: int, actor: str, reason: str
) -> Job:
    old = await get_job(conn, job_id)
    if not old.is_active:
        raise JobNotFoundError(
            f"job #{job_id} is already {old.state}; only queued or running jobs can be cancelled."
        )
    # Bumping the token revokes a running worker's lease: its next heartbeat gets LeaseLost,
    # which is how it learns to stop ffmpeg and leave the files alone.
    row = await fetchone(
        conn,
        """
        UPDATE jobs SET state = 'cancelled', lease_token = lease_token + 1,
                        lease_expires = NULL, reason = ?, finished_at = ?, updated_at = ?,
                        rerun_action = NULL, rerun_reasons = NULL, rerun_priority = NULL,
                        rerun_after = NULL
        WHERE id = ? RETURNING *
        """,
        (reason, now, now, job_id),
    )
    assert row is not None
    job = job_from_row(row)
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=actor,
        reason=reason,
        details={"action": "cancel"},
        **_transition_event_kwargs(job, old.state),
    )
    return job


async def retry(conn: aiosqlite.Connection, now: float, job_id: int, actor: str) -> Job:
    old = await get_job(conn, job_id)
    if old.state not in (JobState.FAILED, JobState.DEAD, JobState.CANCELLED):
        raise JobNotFoundError(
            f"job #{job_id} is {old.state}; only failed, dead or cancelled jobs can be retried."
        )
    other = await fetchone(
        conn,
        f"SELECT id FROM jobs WHERE path = ? AND state IN {_ACTIVE_SQL}",
        (old.path,),
    )
    if other is not None:
        raise JobNotFoundError(
            f"job #{job_id}: {old.path} already has an active job #{other[0]}; nothing to retry."
        )
    row = await fetchone(
        conn,
        f"""
        UPDATE jobs SET state = 'queued', attempts = 0, run_after = ?, {_SET_RESULT},
                        reason = NULL, lease_expires = NULL, started_at = NULL,
                        finished_at = NULL, updated_at = ?
        WHERE id = ? RETURNING *
        """,
        (now, *_result_params(None), now, job_id),
    )
    assert row is not None
    job = job_from_row(row)
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=actor,
        reason=f"retried by operator (was {old.state}: {old.reason or 'no reason recorded'})",
        details={"action": "retry"},
        **_transition_event_kwargs(job, old.state),
    )
    return job


async def set_priority(
    conn: aiosqlite.Connection, now: float, job_id: int, priority: int, actor: str
) -> Job:
    old = await get_job(conn, job_id)
    if not old.is_active:
        raise JobNotFoundError(
            f"job #{job_id} is already {old.state}; priority only matters for active jobs."
        )
    row = await fetchone(
        conn,
        "UPDATE jobs SET priority = ?, updated_at = ? WHERE id = ? RETURNING *",
        (priority, now, job_id),
    )
    assert row is not None
    await record_event(
        conn,
        now,
        EventKind.OPERATOR,
        job_id=job_id,
        path=old.path,
        actor=actor,
        details={"action": "priority", "before": old.priority, "after": priority},
    )
    return job_from_row(row)


async def clear_history(
    conn: aiosqlite.Connection,
    now: float,
    *,
    older_than: float | None,
    states: Sequence[JobState] | None,
    actor: str,
) -> int:
    chosen = tuple(states) if states else FINISHED_STATES
    bad = [s for s in chosen if s not in FINISHED_STATES]
    if bad:
        raise StoreError(f"clear_history only removes finished jobs, not {bad}; cancel them first.")
    marks = ", ".join("?" for _ in chosen)
    sql = f"DELETE FROM jobs WHERE state IN ({marks})"
    params: list[Any] = [str(s) for s in chosen]
    if older_than is not None:
        sql += " AND finished_at < ?"
        params.append(older_than)
    count = await execute_count(conn, sql, params)
    await record_event(
        conn,
        now,
        EventKind.OPERATOR,
        actor=actor,
        details={
            "action": "clear_history",
            "removed": count,
            "older_than": older_than,
            "states": [str(s) for s in chosen],
        },
    )
    return count


# --- queries ----------------------------------------------------------------------------


async def active_jobs(conn: aiosqlite.Connection) -> list[Job]:
    rows = await fetchall(
        conn,
        f"""
        SELECT * FROM jobs WHERE state IN {_ACTIVE_SQL}
        ORDER BY state = 'queued', priority DESC, run_after, id
        """,
    )
    return [job_from_row(r) for r in rows]


def _history_filter(
    states: Sequence[JobState | str] | None,
    library: str | None,
    since: float | None,
    until: float | None,
) -> tuple[str, list[Any]]:
    # The literal finished-states clause matches the partial index's WHERE, which SQLite
    # needs to see at prepare time (a bound-parameter IN list would not qualify).
    where = [f"state IN {_FINISHED_SQL}"]
    params: list[Any] = []
    chosen = [JobState(s) for s in states] if states else list(FINISHED_STATES)
    bad = [str(s) for s in chosen if s not in FINISHED_STATES]
    if bad:
        raise ValueError(f"history only holds finished jobs; use active_jobs() for {bad}")
    if set(chosen) != set(FINISHED_STATES):
        where.append(f"state IN ({', '.join('?' for _ in chosen)})")
        params.extend(str(s) for s in chosen)
    if library is not None:
        where.append("library = ?")
        params.append(library)
    if since is not None:
        where.append("finished_at >= ?")
        params.append(since)
    if until is not None:
        where.append("finished_at < ?")
        params.append(until)
    return " AND ".join(where), params


async def history(
    conn: aiosqlite.Connection,
    *,
    states: Sequence[JobState | str] | None,
    library: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    offset: int,
) -> list[Job]:
    where, params = _history_filter(states, library, since, until)
    rows = await fetchall(
        conn,
        f"SELECT * FROM jobs WHERE {where} ORDER BY finished_at DESC, id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return [job_from_row(r) for r in rows]


async def totals(
    conn: aiosqlite.Connection,
    *,
    library: str | None,
    since: float | None,
    until: float | None,
) -> HistoryTotals:
    where, params = _history_filter(None, library, since, until)
    row = await fetchone(
        conn,
        f"""
        SELECT
            COALESCE(SUM(state = 'done'), 0),
            COALESCE(SUM(CASE WHEN state = 'done' AND output_size IS NOT NULL
                              THEN source_size END), 0),
            COALESCE(SUM(CASE WHEN state = 'done' AND source_size IS NOT NULL
                              THEN output_size END), 0),
            COALESCE(SUM(state = 'failed'), 0),
            COALESCE(SUM(state = 'dead'), 0),
            COALESCE(SUM(state = 'cancelled'), 0)
        FROM jobs WHERE {where}
        """,
        params,
    )
    assert row is not None
    fwhere, fparams = _history_filter((JobState.FAILED, JobState.DEAD), library, since, until)
    reasons = await fetchall(
        conn,
        f"""
        SELECT COALESCE(reason, 'no reason recorded'), COUNT(*) AS n FROM jobs
        WHERE {fwhere} GROUP BY 1 ORDER BY n DESC, 1
        """,
        fparams,
    )
    return HistoryTotals(
        files_done=int(row[0]),
        bytes_before=int(row[1]),
        bytes_after=int(row[2]),
        failed=int(row[3]),
        dead=int(row[4]),
        cancelled=int(row[5]),
        failures_by_reason=tuple((str(r[0]), int(r[1])) for r in reasons),
    )
