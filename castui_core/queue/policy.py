"""The queue's rules as pure functions: what enqueue, a failure, an expired lease, a release, a
re-run request and an operator's retry/cancel *do* to a job, decided apart from storage.

Why apart: SQLite (:mod:`castui_core.store.jobs`) and Redis (:mod:`castui_core.queue.redis`)
must behave the same, and a rule written twice drifts. Each backend reads the job inside its
own atomic step (a ``BEGIN IMMEDIATE`` transaction, a Lua script), asks this module what
follows, and writes the answer plus the audit event in that same step. Nothing here does I/O
or reads a clock: ``now`` is a parameter, and the only randomness (retry jitter) comes from the
``rng`` in :class:`QueuePolicy`, so every rule is a table test (``tests/queue/test_policy.py``).

Import order: this module imports only the records of :mod:`castui_core.store.models` and the
errors, never the store's SQL, so the SQLite backend can import it without a cycle.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from castui_core.errors import JobNotFoundError, LeaseLostError
from castui_core.store.models import (
    EnqueueOutcome,
    Job,
    JobAction,
    JobResult,
    JobState,
    backoff_delay,
)

__all__ = [
    "RERUN_DONE_REASON",
    "RERUN_REQUESTED_REASON",
    "ActiveJob",
    "MergedFields",
    "NewJob",
    "Outcome",
    "QueuePolicy",
    "RerunKind",
    "RerunPlan",
    "RerunRequest",
    "after_failure",
    "after_lease_expiry",
    "after_release",
    "backoff_delay",
    "can_cancel",
    "can_retry",
    "cancel_refusal",
    "claimed_reason",
    "completed_reason",
    "created_reason",
    "decide_enqueue",
    "lease_lost_error",
    "merge_fields",
    "merge_onto",
    "merge_queued",
    "new_fields",
    "priority_refusal",
    "request_rerun",
    "rerun_plan",
    "retried_reason",
    "retry_conflict",
    "retry_refusal",
    "unchanged_since_start",
]

#: Audit reason when a running job's file changes under it (the run is left alone).
RERUN_REQUESTED_REASON = "file changed while it was being converted; it will run again"
#: Audit reason when that pending re-run is carried out after the run ended.
RERUN_DONE_REASON = "file changed during the previous run; running again"


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """Timing knobs for leases and retries (one per queue handle)."""

    lease_seconds: float
    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    rng: random.Random


@dataclass(frozen=True, slots=True)
class NewJob:
    """One item for ``enqueue_many`` (and what ``enqueue`` builds from its arguments)."""

    path: str
    library: str
    action: JobAction | str
    reasons: Sequence[str] = ()
    priority: int = 0
    debounce_s: float = 0.0
    #: The file's mtime (epoch seconds) as the enqueuer saw it. With it, a running job that
    #: started after that moment is known to be converting this version: no re-run.
    modified_at: float | None = None


# --- enqueue ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MergedFields:
    """What a queued job (or a batch's worth of items for one path) will run with."""

    library: str
    action: JobAction
    reasons: tuple[str, ...]
    priority: int
    run_after: float


def unchanged_since_start(item: NewJob, started_at: float | None) -> bool:
    """The running job started after the file's last change: it converts this very version.

    Unknown on either side counts as changed, because a needless re-run costs an encode while
    a missed one leaves an unplayable file.
    """
    return item.modified_at is not None and started_at is not None and item.modified_at < started_at


class ActiveJob(Protocol):
    """What :func:`decide_enqueue` and :func:`request_rerun` read of the path's active job. A
    :class:`Job` is one; a backend's batch path may pass a lighter record (building 100k full
    jobs to look at four fields made a rescan of a queued library much slower)."""

    @property
    def id(self) -> int: ...
    @property
    def state(self) -> JobState: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def priority(self) -> int: ...


def decide_enqueue(active: ActiveJob | None, item: NewJob, now: float) -> EnqueueOutcome:
    """What enqueuing ``item`` does, given the path's active (queued/running) job if any.

    ``now`` is unused today (the choice depends on states, not times) but is part of the
    shape so a rule that needs it does not change every backend's call.
    """
    del now
    if active is None:
        return EnqueueOutcome.CREATED
    if active.state is JobState.QUEUED:
        return EnqueueOutcome.DEBOUNCED
    if active.state is not JobState.RUNNING:
        raise ValueError(f"job #{active.id} is {active.state}, not active; pass None instead")
    if unchanged_since_start(item, active.started_at):
        return EnqueueOutcome.ALREADY_RUNNING
    return EnqueueOutcome.RERUN_SCHEDULED


def new_fields(item: NewJob, now: float) -> MergedFields:
    """The fields of a fresh queued job for ``item``: ready once its debounce has passed."""
    return MergedFields(
        library=item.library,
        action=JobAction(item.action),
        reasons=tuple(item.reasons),
        priority=item.priority,
        run_after=now + max(0.0, item.debounce_s),
    )


def merge_onto(priority: int, run_after: float, newer: MergedFields) -> MergedFields:
    """Debounce merge onto a queued job (or an earlier item) with this ``priority`` and
    ``run_after``: the newest decision (library, action, reasons) wins; the wait and the
    priority only ever grow, so a still-changing file keeps waiting and an operator's bump is
    not undone by a rescan. The older side's decision is not read, so a backend's batch path
    need not load it."""
    return MergedFields(
        library=newer.library,
        action=newer.action,
        reasons=newer.reasons,
        priority=max(priority, newer.priority),
        run_after=max(run_after, newer.run_after),
    )


def merge_fields(older: MergedFields, newer: MergedFields) -> MergedFields:
    """:func:`merge_onto` between two items. Associative, so a batch's items for one path
    fold to the same result as enqueuing them one by one."""
    return merge_onto(older.priority, older.run_after, newer)


def _fields(item: NewJob | MergedFields, now: float) -> MergedFields:
    return item if isinstance(item, MergedFields) else new_fields(item, now)


def merge_queued(job: Job, item: NewJob | MergedFields, now: float) -> MergedFields:
    """A queued job for the same path absorbs ``item`` (:func:`merge_fields`). ``item`` may be
    a batch's items for the path already folded with :func:`merge_fields`."""
    return merge_onto(job.priority, job.run_after, _fields(item, now))


def created_reason(action: JobAction | str, reasons: Sequence[str]) -> str:
    """Audit reason of a job's creation: the action and why the decision step chose it."""
    return f"{action}: " + "; ".join(reasons) if reasons else str(action)


# --- re-run of a path whose file changed while it was running -------------------------------


@dataclass(frozen=True, slots=True)
class RerunRequest:
    """A pending "run this path again when the current run ends", kept on the running job."""

    action: JobAction
    reasons: tuple[str, ...]
    priority: int
    run_after: float


def request_rerun(
    running: ActiveJob, pending: RerunRequest | None, item: NewJob | MergedFields, now: float
) -> RerunRequest:
    """Record (or update) a re-run on ``running``: the newest action and reasons win; the
    priority and the wait only grow (from the running job's priority when none was pending).
    ``item`` may be a batch's items for the path already folded with :func:`merge_fields`."""
    fresh = _fields(item, now)
    return RerunRequest(
        action=fresh.action,
        reasons=fresh.reasons,
        priority=max(pending.priority if pending else running.priority, fresh.priority),
        run_after=max(pending.run_after if pending else 0.0, fresh.run_after),
    )


class RerunKind(StrEnum):
    """How a pending re-run is carried out once the run left ``running``."""

    REQUEUE = "requeue"
    """The job went back to ``queued`` anyway (retry, release, reclaim): it takes the newer
    parameters and a fresh attempt budget, since it is effectively a different file now."""
    NEW_JOB = "new_job"
    """The job finished (done, failed, dead): a new queued job for the same path."""


@dataclass(frozen=True, slots=True)
class RerunPlan:
    kind: RerunKind
    action: JobAction
    reasons: tuple[str, ...]
    priority: int
    run_after: float
    attempts: int  # the requeued job's attempts (0); unused for NEW_JOB (a new job starts at 0)
    audit_reason: str


def rerun_plan(job_after: Job, rerun: RerunRequest, now: float) -> RerunPlan:
    """What a pending re-run does to ``job_after`` (the job as the transition left it)."""
    if job_after.state is JobState.QUEUED:
        kind = RerunKind.REQUEUE
    elif job_after.state in (JobState.DONE, JobState.FAILED, JobState.DEAD):
        kind = RerunKind.NEW_JOB
    else:
        # running: the re-run waits for the run to end; cancelled: the cancel dropped it.
        raise ValueError(f"job #{job_after.id} is {job_after.state}: no re-run applies")
    return RerunPlan(
        kind=kind,
        action=rerun.action,
        reasons=rerun.reasons,
        priority=rerun.priority,
        run_after=max(now, rerun.run_after),
        attempts=0,
        audit_reason=RERUN_DONE_REASON,
    )


# --- transitions out of "running" ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transition out of ``running`` does; the backend writes it and one audit event."""

    state: JobState
    run_after: float
    finished_at: float | None
    reason: str | None
    """Stored on the job (plain words). ``None`` only where the job had none: a release keeps
    the job's last failure reason, since handing a job back is not a failure."""
    audit_reason: str
    """Written to the audit event (the stored reason plus what happens next)."""
    attempts: int
    """The job's attempt count afterwards (a release gives the claim's attempt back)."""
    revoke_lease: bool = False
    """Bump the fencing token: the worker did not end the run itself (lease expiry)."""
    clear_progress: bool = False
    """Forget the run's progress snapshot (a released job starts over from nothing)."""


def after_failure(
    job: Job, reason: str, *, retryable: bool, now: float, policy: QueuePolicy
) -> Outcome:
    """A worker reported a failure: permanent → ``failed``; retryable with attempts left →
    ``queued`` after an exponential, jittered backoff; retryable but out of attempts →
    ``dead`` (a poison file stops costing encodes until an operator retries it)."""
    if not retryable:
        return Outcome(JobState.FAILED, now, now, reason, f"{reason} (not retryable)", job.attempts)
    if job.attempts >= job.max_attempts:
        why = f"{reason} (gave up after {job.attempts} attempts)"
        return Outcome(JobState.DEAD, now, now, reason, why, job.attempts)
    delay = backoff_delay(job.attempts, policy.backoff_base_s, policy.backoff_cap_s, policy.rng)
    why = f"{reason} (attempt {job.attempts} of {job.max_attempts}; retry in {delay:.0f}s)"
    return Outcome(JobState.QUEUED, now + delay, None, reason, why, job.attempts)


def after_lease_expiry(job: Job, *, now: float) -> Outcome:
    """Nobody heartbeat the job in time (worker killed, hung or cut off): take it back.

    The attempt already counted at claim time, so a file that kills its worker every time
    ends ``dead`` after ``max_attempts`` instead of crashing workers forever.
    """
    owner = job.lease_owner or "unknown worker"
    if job.attempts >= job.max_attempts:
        why = (
            f"worker {owner} stopped responding (lease expired) on attempt "
            f"{job.attempts} of {job.max_attempts}; giving up"
        )
        return Outcome(JobState.DEAD, now, now, why, why, job.attempts, revoke_lease=True)
    why = f"worker {owner} stopped responding (lease expired); queued again"
    return Outcome(JobState.QUEUED, now, None, why, why, job.attempts, revoke_lease=True)


def after_release(job: Job, reason: str, *, now: float) -> Outcome:
    """The worker hands the job back unrun (shutting down, its guard tripped): ready again at
    once, and the attempt it took is returned because nothing was tried."""
    return Outcome(
        JobState.QUEUED,
        now,
        None,
        job.reason,
        reason,
        max(job.attempts - 1, 0),
        clear_progress=True,
    )


def claimed_reason(job: Job) -> str:
    """Audit reason of a claim (``job`` as claimed, its attempt already counted)."""
    return f"attempt {job.attempts} of {job.max_attempts}"


def completed_reason(result: JobResult) -> str:
    """Audit reason of a completed run."""
    saved = result.bytes_saved
    return "converted" + (f", {saved} bytes saved" if saved is not None else "")


def lease_lost_error(job_id: int, token: int, job: Job | None) -> LeaseLostError:
    """Explain to a worker why its fenced call (heartbeat/complete/fail/release) matched nothing;
    ``job`` is the job as it is now, or ``None`` if it no longer exists."""
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


# --- operator rules -----------------------------------------------------------------------

_RETRYABLE_STATES = (JobState.FAILED, JobState.DEAD, JobState.CANCELLED)


def can_cancel(job: Job) -> bool:
    """Only a queued or running job can be cancelled (a finished one has nothing to stop)."""
    return job.is_active


def cancel_refusal(job: Job) -> JobNotFoundError:
    """The error an operator's cancel of ``job`` raises when :func:`can_cancel` says no."""
    return JobNotFoundError(
        f"job #{job.id} is already {job.state}; only queued or running jobs can be cancelled."
    )


def can_retry(job: Job) -> bool:
    """Only a job that ended without success (failed, dead, cancelled) can be retried."""
    return job.state in _RETRYABLE_STATES


def retry_refusal(job: Job) -> JobNotFoundError:
    """The error an operator's retry of ``job`` raises when :func:`can_retry` says no."""
    return JobNotFoundError(
        f"job #{job.id} is {job.state}; only failed, dead or cancelled jobs can be retried."
    )


def retry_conflict(job: Job, active_id: int) -> JobNotFoundError:
    """The error a retry raises when the path already has another active job (one per path)."""
    return JobNotFoundError(
        f"job #{job.id}: {job.path} already has an active job #{active_id}; nothing to retry."
    )


def retried_reason(job: Job) -> str:
    """Audit reason of an operator's retry of ``job`` (as it was before the retry)."""
    return f"retried by operator (was {job.state}: {job.reason or 'no reason recorded'})"


def priority_refusal(job: Job) -> JobNotFoundError | None:
    """The error a priority change raises for a finished job, or ``None`` when allowed."""
    if job.is_active:
        return None
    return JobNotFoundError(
        f"job #{job.id} is already {job.state}; priority only matters for active jobs."
    )
