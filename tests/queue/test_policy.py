"""The queue's pure rules (castui_core.queue.policy), one table per decision.

Both backends (SQLite's store/jobs.py, the Redis backend) call these functions, so a wrong row
here is a wrong queue everywhere. Every expected value is written out (texts included): the
reasons end up in the audit log and the dashboard, where people read them.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from castui_core.errors import JobNotFoundError
from castui_core.queue.policy import (
    MergedFields,
    NewJob,
    QueuePolicy,
    RerunKind,
    RerunRequest,
    after_failure,
    after_lease_expiry,
    after_release,
    can_cancel,
    can_retry,
    cancel_refusal,
    claimed_reason,
    completed_reason,
    created_reason,
    decide_enqueue,
    lease_lost_error,
    merge_fields,
    merge_queued,
    new_fields,
    priority_refusal,
    request_rerun,
    rerun_plan,
    retried_reason,
    retry_conflict,
    retry_refusal,
)
from castui_core.store.models import (
    EnqueueOutcome,
    Job,
    JobAction,
    JobResult,
    JobState,
    backoff_delay,
)

NOW = 2000.0
STARTED = 1500.0  # when the running job in these tables was claimed


def job(**changes: Any) -> Job:
    """A job as a backend would hand it to the policy: running, attempt 1 of 3 by default."""
    base = Job(
        id=7,
        path="/m/film.mkv",
        library="movies",
        action=JobAction.REMUX,
        state=JobState.RUNNING,
        reasons=("audio: dts",),
        priority=0,
        attempts=1,
        max_attempts=3,
        run_after=1000.0,
        lease_owner="nas:42/w1",
        lease_token=5,
        lease_expires=NOW + 60,
        rerun_requested=False,
        progress=None,
        result=JobResult(),
        reason=None,
        created_at=900.0,
        updated_at=1000.0,
        started_at=STARTED,
        finished_at=None,
    )
    return dataclasses.replace(base, **changes)


def queue_policy(seed: int = 7) -> QueuePolicy:
    return QueuePolicy(
        lease_seconds=60.0,
        max_attempts=3,
        backoff_base_s=30.0,
        backoff_cap_s=3600.0,
        rng=random.Random(seed),
    )


def item(**changes: Any) -> NewJob:
    return dataclasses.replace(NewJob("/m/film.mkv", "movies", "transcode", ("grew",)), **changes)


# --- enqueue --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "new", "expected"),
    [
        pytest.param(None, item(), EnqueueOutcome.CREATED, id="new-path-creates"),
        pytest.param(
            job(state=JobState.QUEUED, started_at=None),
            item(),
            EnqueueOutcome.DEBOUNCED,
            id="queued-path-merges",
        ),
        pytest.param(
            job(state=JobState.QUEUED, started_at=None),
            item(modified_at=STARTED - 60),
            EnqueueOutcome.DEBOUNCED,
            id="queued-path-merges-whatever-the-mtime",
        ),
        pytest.param(
            job(),
            item(modified_at=STARTED - 60),
            EnqueueOutcome.ALREADY_RUNNING,
            id="running-unchanged-since-start",
        ),
        pytest.param(
            job(),
            item(modified_at=STARTED + 1),
            EnqueueOutcome.RERUN_SCHEDULED,
            id="running-changed-after-start",
        ),
        pytest.param(
            job(),
            item(modified_at=STARTED),
            EnqueueOutcome.RERUN_SCHEDULED,
            id="running-changed-at-the-start-instant",
        ),
        pytest.param(
            job(),
            item(modified_at=None),
            EnqueueOutcome.RERUN_SCHEDULED,
            id="running-mtime-unknown-counts-as-changed",
        ),
        pytest.param(
            job(started_at=None),
            item(modified_at=1.0),
            EnqueueOutcome.RERUN_SCHEDULED,
            id="running-start-unknown-counts-as-changed",
        ),
    ],
)
def test_decide_enqueue(active: Job | None, new: NewJob, expected: EnqueueOutcome) -> None:
    assert decide_enqueue(active, new, NOW) is expected


@pytest.mark.parametrize(
    "state",
    [JobState.DONE, JobState.FAILED, JobState.DEAD, JobState.CANCELLED],
    ids=lambda s: f"{s}-is-not-active",
)
def test_decide_enqueue_refuses_a_finished_job_as_active(state: JobState) -> None:
    with pytest.raises(ValueError, match=f"is {state}, not active"):
        decide_enqueue(job(state=state), item(), NOW)


QUEUED = job(
    state=JobState.QUEUED,
    started_at=None,
    priority=2,
    run_after=NOW + 20,
    library="old-lib",
    action=JobAction.REMUX,
    reasons=("old",),
)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        pytest.param(
            item(debounce_s=60),
            MergedFields("movies", JobAction.TRANSCODE, ("grew",), 2, NOW + 60),
            id="longer-debounce-pushes-run-after-newest-decision-wins",
        ),
        pytest.param(
            item(debounce_s=5),
            MergedFields("movies", JobAction.TRANSCODE, ("grew",), 2, NOW + 20),
            id="shorter-debounce-never-brings-it-forward",
        ),
        pytest.param(
            item(debounce_s=-30),
            MergedFields("movies", JobAction.TRANSCODE, ("grew",), 2, NOW + 20),
            id="negative-debounce-counts-as-zero",
        ),
        pytest.param(
            item(priority=5),
            MergedFields("movies", JobAction.TRANSCODE, ("grew",), 5, NOW + 20),
            id="higher-priority-raises",
        ),
        pytest.param(
            item(priority=-1),
            MergedFields("movies", JobAction.TRANSCODE, ("grew",), 2, NOW + 20),
            id="lower-priority-never-undoes-a-bump",
        ),
        pytest.param(
            item(library="tv", action="remux", reasons=()),
            MergedFields("tv", JobAction.REMUX, (), 2, NOW + 20),
            id="empty-reasons-replace-old-ones",
        ),
    ],
)
def test_merge_queued(new: NewJob, expected: MergedFields) -> None:
    assert merge_queued(QUEUED, new, NOW) == expected


def test_a_folded_batch_merges_like_one_by_one_enqueues() -> None:
    """enqueue_many folds a batch's items per path before merging: same result either way."""
    batch = [
        item(debounce_s=40, priority=1, reasons=("a",)),
        item(debounce_s=10, priority=4, action="remux", reasons=("b",)),
        item(debounce_s=25, priority=0, library="tv", reasons=("c",)),
    ]
    one_by_one = QUEUED
    for new in batch:
        m = merge_queued(one_by_one, new, NOW)
        one_by_one = dataclasses.replace(
            one_by_one,
            library=m.library,
            action=m.action,
            reasons=m.reasons,
            priority=m.priority,
            run_after=m.run_after,
        )
    folded = new_fields(batch[0], NOW)
    for new in batch[1:]:
        folded = merge_fields(folded, new_fields(new, NOW))
    expected = MergedFields("tv", JobAction.TRANSCODE, ("c",), 4, NOW + 40)
    assert merge_queued(QUEUED, folded, NOW) == expected
    assert (
        one_by_one.library,
        one_by_one.action,
        one_by_one.reasons,
        one_by_one.priority,
        one_by_one.run_after,
    ) == dataclasses.astuple(expected)


@pytest.mark.parametrize(
    ("action", "reasons", "expected"),
    [
        pytest.param(JobAction.REMUX, (), "remux", id="no-reasons"),
        pytest.param(JobAction.TRANSCODE, ("hevc 10-bit",), "transcode: hevc 10-bit", id="one"),
        pytest.param("remux", ("dts", "mkv"), "remux: dts; mkv", id="several-joined"),
    ],
)
def test_created_reason(action: JobAction | str, reasons: tuple[str, ...], expected: str) -> None:
    assert created_reason(action, reasons) == expected


# --- re-run of a file that changed while it was converted -----------------------------------


@pytest.mark.parametrize(
    ("running", "pending", "new", "expected"),
    [
        pytest.param(
            job(priority=3),
            None,
            item(debounce_s=10),
            RerunRequest(JobAction.TRANSCODE, ("grew",), 3, NOW + 10),
            id="first-request-keeps-the-running-jobs-priority",
        ),
        pytest.param(
            job(priority=3),
            None,
            item(priority=8),
            RerunRequest(JobAction.TRANSCODE, ("grew",), 8, NOW),
            id="first-request-with-higher-priority",
        ),
        pytest.param(
            job(priority=3),
            RerunRequest(JobAction.REMUX, ("old",), 6, NOW + 90),
            item(debounce_s=10, priority=1),
            RerunRequest(JobAction.TRANSCODE, ("grew",), 6, NOW + 90),
            id="second-request-newest-decision-wait-and-priority-only-grow",
        ),
    ],
)
def test_request_rerun(
    running: Job, pending: RerunRequest | None, new: NewJob, expected: RerunRequest
) -> None:
    assert request_rerun(running, pending, new, NOW) == expected


RERUN = RerunRequest(JobAction.TRANSCODE, ("grew",), 4, NOW + 30)


@pytest.mark.parametrize(
    ("state", "requested_after", "kind", "run_after"),
    [
        pytest.param(JobState.QUEUED, NOW + 30, RerunKind.REQUEUE, NOW + 30, id="requeued"),
        pytest.param(JobState.DONE, NOW + 30, RerunKind.NEW_JOB, NOW + 30, id="done"),
        pytest.param(JobState.FAILED, NOW + 30, RerunKind.NEW_JOB, NOW + 30, id="failed"),
        pytest.param(JobState.DEAD, NOW + 30, RerunKind.NEW_JOB, NOW + 30, id="dead"),
        pytest.param(JobState.DONE, NOW - 500, RerunKind.NEW_JOB, NOW, id="past-wait-runs-now"),
    ],
)
def test_rerun_plan(
    state: JobState, requested_after: float, kind: RerunKind, run_after: float
) -> None:
    rerun = dataclasses.replace(RERUN, run_after=requested_after)
    plan = rerun_plan(job(state=state, attempts=3), rerun, NOW)
    assert plan.kind is kind
    assert (plan.action, plan.reasons, plan.priority, plan.run_after, plan.attempts) == (
        JobAction.TRANSCODE,
        ("grew",),
        4,
        run_after,
        0,
    )
    assert plan.audit_reason == "file changed during the previous run; running again"


@pytest.mark.parametrize(
    "state", [JobState.RUNNING, JobState.CANCELLED], ids=["still-running", "cancelled"]
)
def test_rerun_plan_refuses(state: JobState) -> None:
    with pytest.raises(ValueError, match="no re-run applies"):
        rerun_plan(job(state=state), RERUN, NOW)


# --- failure, lease expiry, release ---------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "retryable", "state", "finished_at", "audit"),
    [
        pytest.param(
            1,
            False,
            JobState.FAILED,
            NOW,
            "source vanished (not retryable)",
            id="not-retryable-with-attempts-left",
        ),
        pytest.param(
            3,
            False,
            JobState.FAILED,
            NOW,
            "source vanished (not retryable)",
            id="not-retryable-out-of-attempts-is-failed-not-dead",
        ),
        pytest.param(
            3,
            True,
            JobState.DEAD,
            NOW,
            "source vanished (gave up after 3 attempts)",
            id="retryable-out-of-attempts",
        ),
        pytest.param(
            4,
            True,
            JobState.DEAD,
            NOW,
            "source vanished (gave up after 4 attempts)",
            id="retryable-past-attempts",
        ),
    ],
)
def test_after_failure_that_ends_the_job(
    attempts: int, retryable: bool, state: JobState, finished_at: float, audit: str
) -> None:
    policy = queue_policy()
    rng_before = policy.rng.getstate()
    out = after_failure(
        job(attempts=attempts), "source vanished", retryable=retryable, now=NOW, policy=policy
    )
    assert (out.state, out.run_after, out.finished_at) == (state, NOW, finished_at)
    assert (out.reason, out.audit_reason, out.attempts) == ("source vanished", audit, attempts)
    assert not out.revoke_lease and not out.clear_progress
    assert policy.rng.getstate() == rng_before  # no jitter drawn for a job that is not retried


@pytest.mark.parametrize(
    ("attempts", "floor"),
    [
        pytest.param(1, 30.0, id="first-failure-waits-base"),
        pytest.param(2, 60.0, id="second-doubles"),
    ],
)
@pytest.mark.parametrize("seed", [0, 7, 12345], ids=lambda s: f"seed{s}")
def test_after_failure_retryable_with_attempts_left(attempts: int, floor: float, seed: int) -> None:
    out = after_failure(
        job(attempts=attempts),
        "ffmpeg exited 1",
        retryable=True,
        now=NOW,
        policy=queue_policy(seed),
    )
    delay = backoff_delay(attempts, 30.0, 3600.0, random.Random(seed))
    assert floor <= delay <= floor * 1.25
    assert out.state is JobState.QUEUED
    assert (out.run_after, out.finished_at, out.attempts) == (NOW + delay, None, attempts)
    assert out.reason == "ffmpeg exited 1"
    assert out.audit_reason == (f"ffmpeg exited 1 (attempt {attempts} of 3; retry in {delay:.0f}s)")


def test_after_failure_backoff_is_capped() -> None:
    policy = dataclasses.replace(queue_policy(), backoff_cap_s=100.0)
    out = after_failure(
        job(attempts=9, max_attempts=10), "x", retryable=True, now=NOW, policy=policy
    )
    assert NOW + 100 <= out.run_after <= NOW + 125


@pytest.mark.parametrize(
    ("attempts", "owner", "state", "finished_at", "reason"),
    [
        pytest.param(
            1,
            "nas:42/w1",
            JobState.QUEUED,
            None,
            "worker nas:42/w1 stopped responding (lease expired); queued again",
            id="attempts-left",
        ),
        pytest.param(
            3,
            "nas:42/w1",
            JobState.DEAD,
            NOW,
            "worker nas:42/w1 stopped responding (lease expired) on attempt 3 of 3; giving up",
            id="exhausted",
        ),
        pytest.param(
            2,
            None,
            JobState.QUEUED,
            None,
            "worker unknown worker stopped responding (lease expired); queued again",
            id="owner-unknown",
        ),
    ],
)
def test_after_lease_expiry(
    attempts: int, owner: str | None, state: JobState, finished_at: float | None, reason: str
) -> None:
    out = after_lease_expiry(job(attempts=attempts, lease_owner=owner), now=NOW)
    assert (out.state, out.run_after, out.finished_at, out.attempts) == (
        state,
        NOW,
        finished_at,
        attempts,
    )
    assert out.reason == out.audit_reason == reason
    assert out.revoke_lease  # the old worker's token must stop working
    assert not out.clear_progress


@pytest.mark.parametrize(
    ("attempts", "kept_reason", "attempts_after"),
    [
        pytest.param(1, None, 0, id="first-attempt-given-back"),
        pytest.param(3, "ffmpeg exited 1", 2, id="last-failure-reason-kept"),
        pytest.param(0, None, 0, id="never-below-zero"),
    ],
)
def test_after_release(attempts: int, kept_reason: str | None, attempts_after: int) -> None:
    out = after_release(job(attempts=attempts, reason=kept_reason), "worker shutting down", now=NOW)
    assert (out.state, out.run_after, out.finished_at) == (JobState.QUEUED, NOW, None)
    assert (out.reason, out.audit_reason, out.attempts) == (
        kept_reason,
        "worker shutting down",
        attempts_after,
    )
    assert out.clear_progress and not out.revoke_lease


@pytest.mark.parametrize(
    ("current", "why"),
    [
        pytest.param(None, "the job no longer exists (history was cleared)", id="gone"),
        pytest.param(job(state=JobState.CANCELLED), "an operator cancelled it", id="cancelled"),
        pytest.param(
            job(lease_token=6, lease_owner="pc:9/w2"),
            "its lease expired and pc:9/w2 took it over",
            id="taken-over",
        ),
        pytest.param(
            job(lease_token=6, lease_owner=None),
            "its lease expired and another worker took it over",
            id="taken-over-by-unknown",
        ),
        pytest.param(job(), "the lease is held under another token", id="same-token-running"),
        pytest.param(
            job(state=JobState.QUEUED),
            "its lease expired or it was handed back; it is now queued",
            id="requeued",
        ),
    ],
)
def test_lease_lost_error(current: Job | None, why: str) -> None:
    err = lease_lost_error(7, 5, current)
    assert str(err) == (
        f"job #7: lease lost (token 5): {why}. Stop working on it and do not touch its files."
    )


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param(
            JobResult(source_size=1000, output_size=400), "converted, 600 bytes saved", id="smaller"
        ),
        pytest.param(
            JobResult(source_size=400, output_size=1000), "converted, -600 bytes saved", id="grew"
        ),
        pytest.param(JobResult(output_size=400), "converted", id="source-size-unknown"),
    ],
)
def test_completed_reason(result: JobResult, expected: str) -> None:
    assert completed_reason(result) == expected


def test_claimed_reason() -> None:
    assert claimed_reason(job(attempts=2, max_attempts=5)) == "attempt 2 of 5"


# --- operator rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "cancel_ok", "retry_ok"),
    [
        pytest.param(JobState.QUEUED, True, False, id="queued"),
        pytest.param(JobState.RUNNING, True, False, id="running"),
        pytest.param(JobState.DONE, False, False, id="done"),
        pytest.param(JobState.FAILED, False, True, id="failed"),
        pytest.param(JobState.DEAD, False, True, id="dead"),
        pytest.param(JobState.CANCELLED, False, True, id="cancelled"),
    ],
)
def test_operator_rules_per_state(state: JobState, cancel_ok: bool, retry_ok: bool) -> None:
    j = job(state=state)
    assert can_cancel(j) is cancel_ok
    assert can_retry(j) is retry_ok
    assert (priority_refusal(j) is None) is cancel_ok  # priority matters for active jobs only


@pytest.mark.parametrize(
    ("refusal", "message"),
    [
        pytest.param(
            cancel_refusal(job(state=JobState.DONE)),
            "job #7 is already done; only queued or running jobs can be cancelled.",
            id="cancel-done",
        ),
        pytest.param(
            retry_refusal(job(state=JobState.RUNNING)),
            "job #7 is running; only failed, dead or cancelled jobs can be retried.",
            id="retry-running",
        ),
        pytest.param(
            retry_conflict(job(state=JobState.DEAD), 12),
            "job #7: /m/film.mkv already has an active job #12; nothing to retry.",
            id="retry-path-busy",
        ),
        pytest.param(
            priority_refusal(job(state=JobState.FAILED)),
            "job #7 is already failed; priority only matters for active jobs.",
            id="priority-failed",
        ),
    ],
)
def test_refusal_messages(refusal: JobNotFoundError | None, message: str) -> None:
    assert isinstance(refusal, JobNotFoundError)
    assert str(refusal) == message


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param("gave up", "retried by operator (was dead: gave up)", id="with-reason"),
        pytest.param(None, "retried by operator (was dead: no reason recorded)", id="none"),
    ],
)
def test_retried_reason(reason: str | None, expected: str) -> None:
    assert retried_reason(job(state=JobState.DEAD, reason=reason)) == expected


# --- the policy and the SQLite backend import each other without a cycle ---------------------


@pytest.mark.parametrize(
    "module",
    [
        "castui_core.queue.policy",
        "castui_core.queue",
        "castui_core.queue.protocol",
        "castui_core.store",
        "castui_core.store.models",
        "castui_core.store.jobs",
    ],
)
def test_imports_in_any_order(module: str, tmp_path: Path) -> None:
    """store.jobs imports the policy, the policy imports store.models (so the store package),
    and the queue package imports the protocol: whichever a process imports first must load
    (a fresh interpreter each, since this process has them all loaded already; run from an
    empty folder so it imports the castui_core this process imported, not the one in cwd)."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
