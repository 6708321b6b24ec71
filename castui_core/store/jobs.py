"""Job-queue transitions as SQL. Every function runs inside a ``BEGIN IMMEDIATE`` transaction
the :class:`~castui_core.store.Store` opened, and writes its audit event in that transaction.

What a transition *does* (enqueue of a known path, the debounce merge, a failure's backoff,
attempts and ``dead``, lease expiry, release, a re-run of a file that changed mid-run, which
operator actions are allowed, the reasons written) is decided by the pure rules in
:mod:`castui_core.queue.policy`, shared with the Redis backend; this module reads the job,
asks the policy, and writes the answer. ``QueuePolicy`` and ``NewJob`` live there too and are
re-exported here for older imports.

Fencing: a claim bumps the job's ``lease_token``; heartbeat/complete/fail/release only match
``id = ? AND lease_token = ? AND state = 'running'``. Reclaiming an expired lease or cancelling
also bumps the token, so a worker that was paused, partitioned or presumed dead learns on its
next call that it lost the job (``LeaseLostError``) and leaves the files alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from castui_core.errors import JobNotFoundError, LeaseLostError, StoreError
from castui_core.queue import policy as policy_rules
from castui_core.queue.policy import MergedFields, Outcome, RerunKind, RerunRequest
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
    dump_json,
    job_from_row,
)
from castui_core.store.outbox import OutboxEntry
from castui_core.store.outbox import add_entries as add_outbox_entries

_ACTIVE_SQL = "('queued', 'running')"
_FINISHED_SQL = "('done', 'failed', 'dead', 'cancelled')"
PAUSED_KEY = "queue_paused"


def _transition_event_kwargs(job: Job, from_state: str | None) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "path": job.path,
        "from_state": from_state,
        "to_state": str(job.state),
    }


def _reasons_json(reasons: Sequence[str]) -> str:
    dumped = dump_json(list(reasons))
    assert dumped is not None
    return dumped


@dataclass(frozen=True, slots=True)
class _ActiveRow:
    """The columns of a path's active job that the enqueue policy reads (see ActiveJob)."""

    id: int
    state: JobState
    started_at: float | None
    priority: int


def _json_reasons(raw: str | None) -> tuple[str, ...]:
    return tuple(str(r) for r in json.loads(raw)) if raw else ()


def _pending_rerun(row: sqlite3.Row, job_priority: int) -> RerunRequest | None:
    """The re-run request kept in a job row's ``rerun_*`` columns, or ``None``."""
    if row["rerun_action"] is None:
        return None
    return RerunRequest(
        action=JobAction(row["rerun_action"]),
        reasons=_json_reasons(row["rerun_reasons"]),
        priority=row["rerun_priority"] if row["rerun_priority"] is not None else job_priority,
        run_after=row["rerun_after"] if row["rerun_after"] is not None else 0.0,
    )


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
    return policy_rules.lease_lost_error(job_id, token, await _job(conn, job_id))


_INSERT_QUEUED = """
    INSERT INTO jobs (path, library, action, state, reasons, priority, max_attempts,
                      run_after, created_at, updated_at)
    VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING id
"""

_UPDATE_MERGED = """
    UPDATE jobs SET run_after = ?, action = ?, reasons = ?, library = ?, priority = ?,
                    updated_at = ?
    WHERE id = ?
"""

_UPDATE_RERUN_REQUEST = """
    UPDATE jobs SET rerun_action = ?, rerun_reasons = ?, rerun_priority = ?, rerun_after = ?,
                    updated_at = ?
    WHERE id = ?
"""


def _merged_params(fields: MergedFields, now: float, job_id: int) -> tuple[Any, ...]:
    return (
        fields.run_after,
        str(fields.action),
        _reasons_json(fields.reasons),
        fields.library,
        fields.priority,
        now,
        job_id,
    )


def _rerun_params(rerun: RerunRequest, now: float, job_id: int) -> tuple[Any, ...]:
    return (
        str(rerun.action),
        _reasons_json(rerun.reasons),
        rerun.priority,
        rerun.run_after,
        now,
        job_id,
    )


async def enqueue(
    conn: aiosqlite.Connection, now: float, item: NewJob, policy: QueuePolicy
) -> EnqueueResult:
    row = await fetchone(
        conn, f"SELECT * FROM jobs WHERE path = ? AND state IN {_ACTIVE_SQL}", (item.path,)
    )
    active = job_from_row(row) if row is not None else None
    outcome = policy_rules.decide_enqueue(active, item, now)
    if active is None or row is None:
        fields = policy_rules.new_fields(item, now)
        created = await fetchone(
            conn,
            _INSERT_QUEUED,
            (
                item.path,
                fields.library,
                str(fields.action),
                _reasons_json(fields.reasons),
                fields.priority,
                policy.max_attempts,
                fields.run_after,
                now,
                now,
            ),
        )
        assert created is not None
        job_id = int(created[0])
        await record_event(
            conn,
            now,
            EventKind.JOB_STATE,
            job_id=job_id,
            path=item.path,
            to_state=JobState.QUEUED,
            reason=policy_rules.created_reason(fields.action, fields.reasons),
        )
        return EnqueueResult(job_id, outcome)
    if outcome is EnqueueOutcome.DEBOUNCED:
        merged = policy_rules.merge_queued(active, item, now)
        await execute(conn, _UPDATE_MERGED, _merged_params(merged, now, active.id))
    elif outcome is EnqueueOutcome.RERUN_SCHEDULED:
        # Running: the output being produced is from an older version of the file. Remember
        # to run again once this run ends; the running worker is not disturbed.
        pending = _pending_rerun(row, active.priority)
        rerun = policy_rules.request_rerun(active, pending, item, now)
        await execute(conn, _UPDATE_RERUN_REQUEST, _rerun_params(rerun, now, active.id))
        await record_event(
            conn,
            now,
            EventKind.RERUN_REQUESTED,
            job_id=active.id,
            path=item.path,
            reason=policy_rules.RERUN_REQUESTED_REASON,
        )
    return EnqueueResult(active.id, outcome)


async def enqueue_many(
    conn: aiosqlite.Connection, now: float, items: Sequence[NewJob], policy: QueuePolicy
) -> list[EnqueueResult]:
    """Set-based :func:`enqueue` for a scan's worth of paths: a handful of statements per
    batch instead of three round trips per path, with the same outcome as enqueuing the items
    one by one (duplicates in the batch merge exactly like repeated enqueues, because
    :func:`~castui_core.queue.policy.merge_fields` folds the same either way)."""
    merged: dict[str, MergedFields] = {}
    last: dict[
        str, NewJob
    ] = {}  # the newest item per path (its modified_at is the one that counts)
    for item in items:
        fields = policy_rules.new_fields(item, now)
        before = merged.get(item.path)
        merged[item.path] = fields if before is None else policy_rules.merge_fields(before, fields)
        last[item.path] = item
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
            (path, m.library, str(m.action), _reasons_json(m.reasons), m.priority, m.run_after)
            for path, m in merged.items()
        ),
    )
    existing = await fetchall(
        conn,
        f"""
        SELECT j.id, j.path, j.state, j.started_at, j.priority, j.run_after,
               j.rerun_action, j.rerun_reasons, j.rerun_priority, j.rerun_after
        FROM enqueue_batch b JOIN jobs j ON j.path = b.path AND j.state IN {_ACTIVE_SQL}
        """,
    )
    outcome: dict[str, tuple[int, EnqueueOutcome]] = {}
    debounce: list[tuple[Any, ...]] = []
    rerun: list[tuple[Any, ...]] = []
    for row in existing:
        # Only the columns the policy reads (not a full Job: a rescan meets 100k of these).
        active = _ActiveRow(
            int(row["id"]), JobState(row["state"]), row["started_at"], row["priority"]
        )
        path, m = row["path"], merged[row["path"]]
        decided = policy_rules.decide_enqueue(active, last[path], now)
        outcome[path] = (active.id, decided)
        if decided is EnqueueOutcome.DEBOUNCED:
            fields = policy_rules.merge_onto(row["priority"], row["run_after"], m)
            debounce.append(_merged_params(fields, now, active.id))
        elif decided is EnqueueOutcome.RERUN_SCHEDULED:
            pending = _pending_rerun(row, active.priority)
            request = policy_rules.request_rerun(active, pending, m, now)
            rerun.append(_rerun_params(request, now, active.id))
    if debounce:
        await executemany(conn, _UPDATE_MERGED, debounce)
    if rerun:
        await executemany(conn, _UPDATE_RERUN_REQUEST, rerun)
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
        outcome[path] = (job_id, policy_rules.decide_enqueue(None, last[path], now))
        reason = policy_rules.created_reason(m.action, m.reasons)
        events.append((now, EventKind.JOB_STATE, job_id, path, None, JobState.QUEUED, reason))
    events.extend(
        (
            now,
            EventKind.RERUN_REQUESTED,
            job_id,
            path,
            None,
            None,
            policy_rules.RERUN_REQUESTED_REASON,
        )
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
            # The batch's later items for a path it created merge into that new queued job.
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
    pending = _pending_rerun(row, job.priority) if row is not None else None
    if pending is None:
        return
    plan = policy_rules.rerun_plan(job, pending, now)
    if plan.kind is RerunKind.REQUEUE:
        await execute(
            conn,
            """
            UPDATE jobs SET action = ?, reasons = ?, priority = ?, run_after = ?, attempts = ?,
                            rerun_action = NULL, rerun_reasons = NULL, rerun_priority = NULL,
                            rerun_after = NULL, updated_at = ?
            WHERE id = ?
            """,
            (
                str(plan.action),
                _reasons_json(plan.reasons),
                plan.priority,
                plan.run_after,
                plan.attempts,
                now,
                job.id,
            ),
        )
        await record_event(
            conn,
            now,
            EventKind.RERUN_REQUESTED,
            job_id=job.id,
            path=job.path,
            reason=plan.audit_reason,
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
        _INSERT_QUEUED,
        (
            job.path,
            job.library,
            str(plan.action),
            _reasons_json(plan.reasons),
            plan.priority,
            job.max_attempts,
            plan.run_after,
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
        reason=plan.audit_reason,
        details={"previous_job_id": job.id},
    )


_CLEAR_PROGRESS = """
    progress_percent = NULL, progress_fps = NULL, progress_speed = NULL,
    progress_eta_s = NULL, progress_at = NULL
"""


async def _store_outcome(
    conn: aiosqlite.Connection,
    now: float,
    old: Job,
    outcome: Outcome,
    result: JobResult | None = None,
    *,
    write_result: bool = False,
) -> Job | None:
    """Write a transition out of ``running`` that the policy decided; ``None`` when the job's
    lease changed meanwhile (only possible for the reaper, which reads before it locks)."""
    sets = """
        state = ?, attempts = ?, run_after = ?, finished_at = ?, reason = ?,
        lease_expires = NULL, lease_token = lease_token + ?, updated_at = ?
    """
    params: list[Any] = [
        str(outcome.state),
        outcome.attempts,
        outcome.run_after,
        outcome.finished_at,
        outcome.reason,
        int(outcome.revoke_lease),
        now,
    ]
    if outcome.clear_progress:
        sets += ", " + _CLEAR_PROGRESS
    if write_result:
        sets += ", " + _SET_RESULT
        params.extend(_result_params(result))
    row = await fetchone(
        conn,
        f"UPDATE jobs SET {sets} WHERE id = ? AND lease_token = ? RETURNING *",
        (*params, old.id, old.lease_token),
    )
    return job_from_row(row) if row is not None else None


async def reclaim_expired(conn: aiosqlite.Connection, now: float, policy: QueuePolicy) -> list[Job]:
    """Take back running jobs whose lease ran out (worker killed, hung or cut off); what
    becomes of each is :func:`~castui_core.queue.policy.after_lease_expiry`."""
    rows = await fetchall(
        conn,
        "SELECT * FROM jobs INDEXED BY jobs_leases WHERE state = 'running' AND lease_expires < ?",
        (now,),
    )
    reclaimed: list[Job] = []
    for row in rows:
        old = job_from_row(row)
        outcome = policy_rules.after_lease_expiry(old, now=now)
        job = await _store_outcome(conn, now, old, outcome)
        if job is None:
            continue
        await record_event(
            conn,
            now,
            EventKind.JOB_STATE,
            actor="reaper",
            reason=outcome.audit_reason,
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
        reason=policy_rules.claimed_reason(job),
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
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=job.lease_owner,
        reason=policy_rules.completed_reason(result),
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
    outcome = policy_rules.after_failure(old, reason, retryable=retryable, now=now, policy=policy)
    job = await _store_outcome(conn, now, old, outcome, result, write_result=True)
    assert job is not None  # read under this transaction's write lock: it cannot have moved
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=old.lease_owner,
        reason=outcome.audit_reason,
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
        "SELECT * FROM jobs WHERE id = ? AND lease_token = ? AND state = 'running'",
        (job_id, token),
    )
    if row is None:
        raise await _lease_lost(conn, job_id, token)
    old = job_from_row(row)
    outcome = policy_rules.after_release(old, reason, now=now)
    job = await _store_outcome(conn, now, old, outcome)
    assert job is not None  # read under this transaction's write lock: it cannot have moved
    await record_event(
        conn,
        now,
        EventKind.JOB_STATE,
        actor=job.lease_owner,
        reason=outcome.audit_reason,
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
    if not policy_rules.can_cancel(old):
        raise policy_rules.cancel_refusal(old)
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
    if not policy_rules.can_retry(old):
        raise policy_rules.retry_refusal(old)
    other = await fetchone(
        conn,
        f"SELECT id FROM jobs WHERE path = ? AND state IN {_ACTIVE_SQL}",
        (old.path,),
    )
    if other is not None:
        raise policy_rules.retry_conflict(old, int(other[0]))
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
        reason=policy_rules.retried_reason(old),
        details={"action": "retry"},
        **_transition_event_kwargs(job, old.state),
    )
    return job


async def set_priority(
    conn: aiosqlite.Connection, now: float, job_id: int, priority: int, actor: str
) -> Job:
    old = await get_job(conn, job_id)
    refusal = policy_rules.priority_refusal(old)
    if refusal is not None:
        raise refusal
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


async def recent(conn: aiosqlite.Connection, library: str, limit: int) -> list[Job]:
    """``library``'s newest jobs, any state, highest id first (the rowid index, walked back)."""
    rows = await fetchall(
        conn,
        "SELECT * FROM jobs WHERE library = ? ORDER BY id DESC LIMIT ?",
        (library, max(0, limit)),
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
