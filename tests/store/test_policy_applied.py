"""The SQLite store applies the queue policy's answers in full (castui_core.queue.policy).

tests/queue/test_policy.py checks the rules; these check that store/jobs.py writes every part
of them, on a real SQLite file: the parts a store could drop without its other tests noticing
(the older side of a debounce merge, a second re-run request, a release's progress reset, the
reaper's token bump).
"""

from __future__ import annotations

import pytest
from store_helpers import T0, FakeClock

from castui_core.store import (
    EnqueueOutcome,
    JobAction,
    JobResult,
    JobState,
    NewJob,
    Progress,
    Store,
)

PATH = "/m/film.mkv"


async def _enqueue(store: Store, batch: bool, item: NewJob) -> EnqueueOutcome:
    """One enqueue through the single-path call or the set-based batch call."""
    if batch:
        (result,) = await store.enqueue_many([item])
    else:
        result = await store.enqueue(
            item.path,
            item.library,
            item.action,
            item.reasons,
            priority=item.priority,
            debounce_s=item.debounce_s,
        )
    return result.outcome


@pytest.mark.parametrize("batch", [False, True], ids=["enqueue", "enqueue_many"])
async def test_a_rescan_keeps_a_queued_jobs_priority_and_wait(
    store: Store, clock: FakeClock, batch: bool
) -> None:
    await store.enqueue(PATH, "movies", "remux", ("old",), priority=5, debounce_s=100)
    clock.advance(10)
    item = NewJob(PATH, "tv", "transcode", ("new",), priority=1, debounce_s=5)
    assert await _enqueue(store, batch, item) is EnqueueOutcome.DEBOUNCED
    (job,) = await store.active_jobs()
    assert (job.priority, job.run_after) == (5, T0 + 100)  # neither shrinks
    assert (job.library, job.action, job.reasons) == ("tv", JobAction.TRANSCODE, ("new",))

    item = NewJob(PATH, "tv", "transcode", ("newer",), priority=9, debounce_s=200)
    assert await _enqueue(store, batch, item) is EnqueueOutcome.DEBOUNCED
    (job,) = await store.active_jobs()
    assert (job.priority, job.run_after, job.reasons) == (9, T0 + 10 + 200, ("newer",))


@pytest.mark.parametrize("batch", [False, True], ids=["enqueue", "enqueue_many"])
async def test_a_second_change_while_running_keeps_the_larger_wait_and_priority(
    store: Store, batch: bool
) -> None:
    await store.enqueue(PATH, "movies", "transcode")
    claimed = await store.claim("w1")
    assert claimed is not None
    first = NewJob(PATH, "movies", "transcode", ("grew",), priority=7, debounce_s=300)
    second = NewJob(PATH, "movies", "remux", ("last",), priority=2, debounce_s=10)
    assert await _enqueue(store, batch, first) is EnqueueOutcome.RERUN_SCHEDULED
    assert await _enqueue(store, batch, second) is EnqueueOutcome.RERUN_SCHEDULED

    await store.complete(claimed.id, claimed.token, JobResult())
    (again,) = await store.active_jobs()
    assert again.id != claimed.id and again.state is JobState.QUEUED
    assert (again.priority, again.run_after) == (7, T0 + 300)
    assert (again.action, again.reasons) == (JobAction.REMUX, ("last",))


async def test_a_released_job_forgets_its_progress_and_gets_its_attempt_back(
    store: Store,
) -> None:
    await store.enqueue(PATH, "movies", "remux")
    claimed = await store.claim("w1")
    assert claimed is not None
    await store.heartbeat(claimed.id, claimed.token, Progress(percent=40.0, fps=90.0))
    assert (await store.get_job(claimed.id)).progress is not None

    job = await store.release(claimed.id, claimed.token, "guard tripped")
    assert (job.state, job.attempts, job.progress) == (JobState.QUEUED, 0, None)


async def test_the_reaper_revokes_the_expired_lease(store: Store, clock: FakeClock) -> None:
    await store.enqueue(PATH, "movies", "remux")
    claimed = await store.claim("nas:1/w1")
    assert claimed is not None
    clock.advance(61)  # the lease is 60 s

    (job,) = await store.reclaim_expired()
    assert job.lease_token == claimed.token + 1
    assert (job.state, job.reason) == (
        JobState.QUEUED,
        "worker nas:1/w1 stopped responding (lease expired); queued again",
    )
