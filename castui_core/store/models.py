"""Records the store hands to callers, plus the pure pieces of queue policy (backoff).

Everything returned from the store is a frozen dataclass so a worker, the dashboard and the
CLI can pass records around without worrying that someone mutates a job under them; the only
way to change a job is through the store, where every change is fenced and audited.
"""

from __future__ import annotations

import json
import random
import shlex
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a job is in its life.

    ``failed`` is a failure the worker declared permanent (retrying cannot help, e.g. the
    source vanished); ``dead`` is a retryable failure that kept happening until
    ``max_attempts`` was used up (a poison file). Both stay out of the queue until an operator
    retries them.
    """

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


ACTIVE_STATES: tuple[JobState, ...] = (JobState.QUEUED, JobState.RUNNING)
FINISHED_STATES: tuple[JobState, ...] = (
    JobState.DONE,
    JobState.FAILED,
    JobState.DEAD,
    JobState.CANCELLED,
)


class JobAction(StrEnum):
    """What a worker does to the file; the decision step picks it."""

    REMUX = "remux"
    TRANSCODE = "transcode"


class EnqueueOutcome(StrEnum):
    """What ``enqueue`` did, so a scanner/watcher can log it without a second query."""

    CREATED = "created"
    """No active job existed for the path; a new queued job was created."""
    DEBOUNCED = "debounced"
    """A queued job existed; its ``run_after`` was pushed (the file is still changing)."""
    RERUN_SCHEDULED = "rerun_scheduled"
    """A running job existed; the path runs again once that run ends (file changed under it)."""
    ALREADY_RUNNING = "already_running"
    """A running job started after the file's last change (``NewJob.modified_at``): it is
    already converting this very version, so nothing is scheduled (e.g. a second engine's
    start-up scan that read the catalog before the first engine wrote it)."""


class EventKind(StrEnum):
    """Audit-log categories; free-form kinds are allowed too, these are the ones castui writes."""

    JOB_STATE = "job_state"
    RERUN_REQUESTED = "rerun_requested"
    OPERATOR = "operator"
    PROFILE_EDIT = "profile_edit"
    GUARDRAIL = "guardrail"


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a running encode, written with each heartbeat so any process can show it."""

    percent: float | None = None
    fps: float | None = None
    speed: float | None = None
    eta_s: float | None = None
    at: float | None = None
    """When the store recorded it (store clock); set by the store, ignored on input."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a run produced (or how it failed); kept with the job for history and diagnosis."""

    output_path: str | None = None
    source_size: int | None = None
    output_size: int | None = None
    duration_s: float | None = None
    encoder: str | None = None
    command: tuple[str, ...] = ()
    exit_code: int | None = None
    stderr_tail: str | None = None

    @property
    def bytes_saved(self) -> int | None:
        """Source minus output size; negative when the conversion grew the file."""
        if self.source_size is None or self.output_size is None:
            return None
        return self.source_size - self.output_size

    @property
    def command_line(self) -> str:
        """The ffmpeg command as a shell-pasteable string, for "run it yourself" diagnostics."""
        return shlex.join(self.command)


@dataclass(frozen=True, slots=True)
class Job:
    """One conversion job as stored; ``reason`` is the last failure/cancel reason in plain words."""

    id: int
    path: str
    library: str
    action: JobAction
    state: JobState
    reasons: tuple[str, ...]
    priority: int
    attempts: int
    max_attempts: int
    run_after: float
    lease_owner: str | None
    lease_token: int
    lease_expires: float | None
    rerun_requested: bool
    progress: Progress | None
    result: JobResult
    reason: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker now holds; ``token`` must accompany every heartbeat/complete/fail."""

    job: Job
    token: int

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def path(self) -> str:
        return self.job.path

    @property
    def action(self) -> JobAction:
        return self.job.action

    @property
    def lease_expires(self) -> float:
        assert self.job.lease_expires is not None
        return self.job.lease_expires


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    job_id: int
    outcome: EnqueueOutcome


@dataclass(frozen=True, slots=True)
class HistoryTotals:
    """Aggregates over finished jobs for the dashboard's summary line and reports."""

    files_done: int
    bytes_before: int
    bytes_after: int
    failed: int
    dead: int
    cancelled: int
    failures_by_reason: tuple[tuple[str, int], ...] = ()
    """(reason, count) pairs over failed+dead jobs, most frequent first."""

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What castui last knew about a media file; ``probe`` is the prober's JSON-able dict."""

    path: str
    library: str
    size: int
    mtime_ns: int
    inode: int | None = None
    probe: Mapping[str, Any] | None = None
    probed_at: float | None = None
    decision: str | None = None
    reasons: tuple[str, ...] = ()
    updated_at: float | None = None


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A file castui placed: where, what it looked like then, and from which source.

    ``size``/``mtime_ns``/``inode`` are the placed file's, so "is this still castui's file?"
    is a stat away; ``written_by`` names the command (``convert`` or ``engine``).
    """

    path: str
    source: str
    size: int
    mtime_ns: int
    profile: str
    written_by: str
    written_at: float
    inode: int | None = None
    source_size: int | None = None
    source_mtime_ns: int | None = None

    @property
    def source_state(self) -> tuple[int | None, int | None]:
        """The source's (size, mtime_ns) when castui read it for this output."""
        return self.source_size, self.source_mtime_ns

    def matches(self, size: int, mtime_ns: int, inode: int | None) -> bool:
        """The file now at ``path`` is still the one castui wrote (not replaced since)."""
        if (size, mtime_ns) != (self.size, self.mtime_ns):
            return False
        return inode is None or self.inode is None or inode == self.inode


@dataclass(frozen=True, slots=True)
class Event:
    """One audit-log line: a state transition, an operator action or a guardrail trip."""

    id: int
    at: float
    kind: str
    job_id: int | None = None
    path: str | None = None
    actor: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    rng: random.Random,
    *,
    jitter: float = 0.25,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = after the first failure).

    Exponential (``base * 2**(attempt-1)``, capped at ``cap``) so a flaky NAS gets time to come
    back, plus up to ``jitter`` × that delay of random extra so several workers that failed
    together (e.g. the GPU went away) do not retry in lock-step. The jitter only ever *adds*, so
    successive delays never shrink: with ``jitter < 1`` each uncapped step at least doubles the
    floor of the previous one.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if base <= 0 or cap < base:
        raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    # Cap the exponent first: 2**attempt overflows a float long before it matters.
    exponential = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return exponential + rng.random() * jitter * exponential


def _json_tuple(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    value = json.loads(raw)
    return tuple(str(v) for v in value)


def dump_json(value: Sequence[str] | Mapping[str, Any] | None) -> str | None:
    """JSON for a TEXT column; ``None`` stays NULL. Sorted keys keep audit rows diffable."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, default=str)
    return json.dumps(list(value))


def job_from_row(row: sqlite3.Row) -> Job:
    """Map a ``jobs`` row to a :class:`Job`. Column names, not positions, so migrations may add."""
    progress: Progress | None = None
    if row["progress_at"] is not None:
        progress = Progress(
            percent=row["progress_percent"],
            fps=row["progress_fps"],
            speed=row["progress_speed"],
            eta_s=row["progress_eta_s"],
            at=row["progress_at"],
        )
    result = JobResult(
        output_path=row["output_path"],
        source_size=row["source_size"],
        output_size=row["output_size"],
        duration_s=row["duration_s"],
        encoder=row["encoder"],
        command=_json_tuple(row["command"]),
        exit_code=row["exit_code"],
        stderr_tail=row["stderr_tail"],
    )
    return Job(
        id=row["id"],
        path=row["path"],
        library=row["library"],
        action=JobAction(row["action"]),
        state=JobState(row["state"]),
        reasons=_json_tuple(row["reasons"]),
        priority=row["priority"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_after=row["run_after"],
        lease_owner=row["lease_owner"],
        lease_token=row["lease_token"],
        lease_expires=row["lease_expires"],
        rerun_requested=row["rerun_action"] is not None,
        progress=progress,
        result=result,
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def catalog_from_row(row: sqlite3.Row) -> CatalogEntry:
    probe_raw = row["probe"]
    return CatalogEntry(
        path=row["path"],
        library=row["library"],
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        inode=row["inode"],
        probe=json.loads(probe_raw) if probe_raw is not None else None,
        probed_at=row["probed_at"],
        decision=row["decision"],
        reasons=_json_tuple(row["reasons"]),
        updated_at=row["updated_at"],
    )


def event_from_row(row: sqlite3.Row) -> Event:
    details_raw = row["details"]
    return Event(
        id=row["id"],
        at=row["at"],
        kind=row["kind"],
        job_id=row["job_id"],
        path=row["path"],
        actor=row["actor"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        reason=row["reason"],
        details=json.loads(details_raw) if details_raw else {},
    )


def output_from_row(row: sqlite3.Row) -> OutputRecord:
    return OutputRecord(
        path=row["path"],
        source=row["source"],
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        inode=row["inode"],
        source_size=row["source_size"],
        source_mtime_ns=row["source_mtime_ns"],
        profile=row["profile"],
        written_by=row["written_by"],
        written_at=row["written_at"],
    )
