"""The queue conformance suite: what every ``JobQueue`` backend must do, run on each of them.

Every test here runs once on SQLite (``Store``) and once on Redis (``RedisQueue`` on a real
redis-server) and speaks only the protocol (no SQL, no Redis commands), so a backend that
passes behaves, to its callers, like the other. Leases and backoff run on the backend's clock
(Redis: the server's), so nothing can fake time: leases and waits are short and real, and the
tests wait on the state they need with a timeout.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import pytest
from queue_backends import Backend, wait_for

from castui_core.errors import JobNotFoundError, LeaseLostError, StoreError
from castui_core.queue.protocol import JobQueue, NodeStatus
from castui_core.store import (
    EnqueueOutcome,
    EventKind,
    JobAction,
    JobResult,
    JobState,
    NewJob,
    Progress,
)
from castui_core.store.models import ClaimedJob, Job
from castui_core.store.outbox import OutboxEntry


async def claim(q: JobQueue, owner: str = "w1") -> ClaimedJob:
    job = await q.claim(owner)
    assert job is not None
    return job


async def finish(q: JobQueue, path: str, library: str, outcome: str) -> Job:
    await q.enqueue(path, library, "transcode")
    job = await claim(q, "w")
    if outcome == "done":
        result = JobResult(output_path=path + ".mp4", source_size=100, output_size=40)
        return await q.complete(job.id, job.token, result)
    if outcome == "failed":
        return await q.fail(job.id, job.token, "no space left", retryable=False)
    return await q.cancel(job.id)


def transitions(events: list[Any]) -> list[tuple[str | None, str | None]]:
    """The job_state events oldest first (list_events is newest first)."""
    return [(e.from_state, e.to_state) for e in reversed(events) if e.kind == EventKind.JOB_STATE]


# --- enqueue, order ---------------------------------------------------------------------


async def test_one_active_job_per_path(queue: JobQueue) -> None:
    first = await queue.enqueue("/m/a.mkv", "movies", "remux")
    again = await queue.enqueue("/m/a.mkv", "movies", "remux")
    assert first.outcome is EnqueueOutcome.CREATED and again.job_id == first.job_id
    many = await queue.enqueue_many(
        [NewJob("/m/a.mkv", "movies", "remux"), NewJob("/m/b.mkv", "movies", "remux")]
    )
    assert many[0].job_id == first.job_id and many[1].outcome is EnqueueOutcome.CREATED
    assert sorted(j.path for j in await queue.active_jobs()) == ["/m/a.mkv", "/m/b.mkv"]


async def test_bad_action_is_refused(queue: JobQueue) -> None:
    with pytest.raises((ValueError, StoreError)):
        await queue.enqueue("/m/a.mkv", "movies", "shred")
    assert await queue.active_jobs() == []


async def test_priority_order_then_fifo_then_run_after(queue: JobQueue) -> None:
    a = await queue.enqueue("/m/a.mkv", "movies", "remux")
    b = await queue.enqueue("/m/b.mkv", "movies", "remux", priority=5)
    c = await queue.enqueue("/m/c.mkv", "movies", "remux")
    late = await queue.enqueue("/m/late.mkv", "movies", "remux", priority=9, debounce_s=0.4)
    d = await queue.enqueue("/m/d.mkv", "movies", "remux", priority=5)
    order = []
    while (job := await queue.claim("w1")) is not None:
        order.append(job.id)
    assert order == [b.job_id, d.job_id, a.job_id, c.job_id]  # late is not ready yet
    job = await wait_for(lambda: queue.claim("w1"), what="the debounced job")
    assert job.id == late.job_id


async def test_claim_sets_lease_token_and_attempt(queue: JobQueue) -> None:
    r = await queue.enqueue("/m/a.mkv", "movies", JobAction.TRANSCODE, ["hevc 10-bit"])
    job = await claim(queue)
    assert job.id == r.job_id and job.job.state is JobState.RUNNING
    assert job.job.lease_owner == "w1" and job.job.attempts == 1
    assert job.job.reasons == ("hevc 10-bit",) and job.action is JobAction.TRANSCODE
    assert job.job.started_at is not None
    assert job.lease_expires == pytest.approx(job.job.started_at + queue.lease_seconds, abs=1)
    assert await queue.claim("w2") is None


async def test_debounce_pushes_run_after_and_merges(queue: JobQueue) -> None:
    first = await queue.enqueue("/m/a.mkv", "movies", "remux", debounce_s=0.4)
    before = await queue.get_job(first.job_id)
    second = await queue.enqueue("/m/a.mkv", "movies", "transcode", ["grew"], debounce_s=0.4)
    assert (second.job_id, second.outcome) == (first.job_id, EnqueueOutcome.DEBOUNCED)
    after = await queue.get_job(first.job_id)
    assert after.run_after > before.run_after
    assert await queue.claim("w1") is None
    job = await wait_for(lambda: queue.claim("w1"), what="the debounced job")
    assert job.id == first.job_id and job.job.run_after >= after.run_after
    assert job.action is JobAction.TRANSCODE and job.job.reasons == ("grew",)
    assert len(await queue.active_jobs()) == 1


async def test_enqueue_while_running_reruns_after_completion(queue: JobQueue) -> None:
    first = await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    r = await queue.enqueue("/m/a.mkv", "movies", "transcode", ["changed"], debounce_s=0.3)
    assert (r.job_id, r.outcome) == (first.job_id, EnqueueOutcome.RERUN_SCHEDULED)
    assert (await queue.get_job(job.id)).rerun_requested
    assert await queue.claim("w2") is None  # never two runs of one path at once
    await queue.complete(job.id, job.token, JobResult(output_path="/m/a.mp4"))
    [queued] = await queue.active_jobs()
    assert queued.id != job.id and queued.state is JobState.QUEUED
    assert queued.action is JobAction.TRANSCODE and queued.reasons == ("changed",)
    again = await wait_for(lambda: queue.claim("w2"), what="the re-run")
    assert again.id == queued.id
    assert (await queue.get_job(job.id)).state is JobState.DONE


# --- pause ------------------------------------------------------------------------------


async def test_pause_and_resume(queue: JobQueue) -> None:
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    await queue.pause(reason="maintenance")
    assert await queue.is_paused()
    assert await queue.claim("w1") is None
    await queue.resume()
    assert not await queue.is_paused()
    await claim(queue)


# --- leases and fencing -----------------------------------------------------------------


async def test_expired_lease_is_reclaimed_and_the_stale_token_changes_nothing(
    backend: Backend,
) -> None:
    q = await backend.open(lease_seconds=0.3)
    try:
        await q.enqueue("/m/a.mkv", "movies", "remux")
        first = await claim(q, "w1")
        assert await q.claim("w2") is None  # the lease still holds
        second = await wait_for(lambda: q.claim("w2"), what="the expired lease's reclaim")
        assert second.id == first.id and second.token > first.token
        assert second.job.lease_owner == "w2" and second.job.attempts == 2
        snapshot = await q.get_job(first.id)
        events = await q.list_events(job_id=first.id)
        stale = (
            q.heartbeat(first.id, first.token, Progress(percent=99.0)),
            q.complete(first.id, first.token, JobResult(output_path="/m/late.mp4")),
            q.fail(first.id, first.token, "late failure"),
            q.fail(first.id, first.token, "late failure", retryable=False),
            q.release(first.id, first.token),
        )
        for call in stale:
            with pytest.raises(LeaseLostError):
                await call
        assert await q.get_job(first.id) == snapshot  # nothing changed
        assert await q.list_events(job_id=first.id) == events  # and nothing was recorded
        done = await q.complete(second.id, second.token, JobResult(output_path="/m/a.mp4"))
        assert done.state is JobState.DONE and done.lease_owner == "w2"
    finally:
        await q.close()


async def test_reclaim_expired_on_its_own_and_heartbeat_extends(backend: Backend) -> None:
    q = await backend.open(lease_seconds=0.3)
    try:
        await q.enqueue("/m/a.mkv", "movies", "remux")
        await q.enqueue("/m/b.mkv", "movies", "remux")
        kept = await claim(q, "alive")
        lost = await claim(q, "dead")
        # "alive" heartbeats while waiting; "dead" does not and loses its lease.
        expiries = [kept.lease_expires]

        async def beat_then_reclaim() -> list[Job]:
            expiries.append(await q.heartbeat(kept.id, kept.token, Progress(percent=10.0)))
            return await q.reclaim_expired()

        reclaimed = await wait_for(beat_then_reclaim, what="the dead worker's lease to expire")
        assert expiries == sorted(expiries) and expiries[-1] > kept.lease_expires
        assert [j.id for j in reclaimed] == [lost.id]
        assert reclaimed[0].state is JobState.QUEUED
        got = await q.get_job(kept.id)
        assert got.state is JobState.RUNNING and got.lease_owner == "alive"
        assert got.progress is not None and got.progress.percent == 10.0
        assert await q.reclaim_expired() == []
    finally:
        await q.close()


async def test_release_does_not_use_an_attempt(queue: JobQueue) -> None:
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    released = await queue.release(job.id, job.token)
    assert released.state is JobState.QUEUED and released.attempts == 0
    again = await claim(queue, "w2")
    assert again.job.attempts == 1 and again.token > job.token


# --- failures, backoff, dead, retry -----------------------------------------------------


async def test_backoff_attempts_dead_and_retry(backend: Backend) -> None:
    q = await backend.open(backoff_base_s=0.4, backoff_cap_s=0.4)
    try:
        await q.enqueue("/m/a.mkv", "movies", "remux")
        for attempt in (1, 2):
            job = await wait_for(lambda: q.claim("w1"), what=f"attempt {attempt}")
            assert job.job.attempts == attempt
            failed = await q.fail(job.id, job.token, f"crash {attempt}")
            assert failed.state is JobState.QUEUED and failed.attempts == attempt
            assert failed.run_after - failed.updated_at >= 0.4 * 0.7  # backed off
            assert await q.claim("w1") is None
        job = await wait_for(lambda: q.claim("w1"), what="attempt 3")
        dead = await q.fail(job.id, job.token, "corrupt stream")
        assert dead.state is JobState.DEAD and dead.attempts == 3
        assert await q.claim("w1") is None
        with pytest.raises(JobNotFoundError):
            await q.retry(99999)
        retried = await q.retry(job.id)
        assert retried.state is JobState.QUEUED and retried.attempts == 0
        assert retried.reason is None
        with pytest.raises(JobNotFoundError):
            await q.retry(job.id)  # only finished failures can be retried
        events = await q.list_events(job_id=job.id)
        assert "corrupt stream" in (events[0].reason or "") and events[0].actor == "operator"
        assert (await claim(q)).id == job.id
    finally:
        await q.close()


async def test_non_retryable_failure_goes_to_failed(queue: JobQueue) -> None:
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    failed = await queue.fail(job.id, job.token, "source file vanished", retryable=False)
    assert failed.state is JobState.FAILED and failed.attempts == 1
    assert failed.reason == "source file vanished"
    assert await queue.claim("w1") is None


async def test_retry_refused_when_path_already_active(queue: JobQueue) -> None:
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    await queue.fail(job.id, job.token, "nope", retryable=False)
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    with pytest.raises(JobNotFoundError, match="already has an active job"):
        await queue.retry(job.id)


# --- operator ---------------------------------------------------------------------------


async def test_cancel_queued_and_running(queue: JobQueue) -> None:
    queued = await queue.enqueue("/m/q.mkv", "movies", "remux", priority=-1)
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    await queue.enqueue("/m/a.mkv", "movies", "remux")  # rerun request, dropped by the cancel
    cancelled = await queue.cancel(job.id, reason="wrong file")
    assert cancelled.state is JobState.CANCELLED and cancelled.reason == "wrong file"
    with pytest.raises(LeaseLostError, match="operator cancelled"):
        await queue.heartbeat(job.id, job.token)
    with pytest.raises(LeaseLostError):
        await queue.complete(job.id, job.token, JobResult())
    assert (await queue.get_job(job.id)).state is JobState.CANCELLED
    assert (await queue.cancel(queued.job_id)).state is JobState.CANCELLED
    assert await queue.active_jobs() == [] and await queue.claim("w1") is None
    with pytest.raises(JobNotFoundError):
        await queue.cancel(job.id)


async def test_set_priority(queue: JobQueue) -> None:
    a = await queue.enqueue("/m/a.mkv", "movies", "remux")
    b = await queue.enqueue("/m/b.mkv", "movies", "remux")
    await queue.set_priority(b.job_id, 10)
    job = await claim(queue)
    assert job.id == b.job_id
    [event] = await queue.list_events(kind=EventKind.OPERATOR)
    assert event.details == {"action": "priority", "before": 0, "after": 10}
    await queue.complete(job.id, job.token, JobResult())
    with pytest.raises(JobNotFoundError):
        await queue.set_priority(b.job_id, 1)
    assert (await queue.get_job(a.job_id)).priority == 0


async def test_lease_lost_after_history_cleared(queue: JobQueue) -> None:
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    await queue.cancel(job.id)
    assert await queue.clear_history() == 1
    with pytest.raises(LeaseLostError, match="no longer exists"):
        await queue.complete(job.id, job.token, JobResult())
    with pytest.raises(JobNotFoundError):
        await queue.get_job(job.id)


# --- the audit trail --------------------------------------------------------------------


async def test_one_audit_event_per_transition_in_order(queue: JobQueue) -> None:
    a = await queue.enqueue("/m/a.mkv", "movies", "remux")
    await queue.enqueue("/m/a.mkv", "movies", "remux", debounce_s=0.05)  # debounce
    job = await wait_for(lambda: queue.claim("w1"), what="the job")
    await queue.heartbeat(job.id, job.token, Progress(percent=50.0))  # not a transition
    await queue.fail(job.id, job.token, "crash")
    job = await wait_for(lambda: queue.claim("w1"), what="the retry")
    await queue.release(job.id, job.token)
    job = await claim(queue)
    await queue.complete(job.id, job.token, JobResult(output_path="/m/a.mp4"))
    events = await queue.list_events(job_id=a.job_id)
    assert transitions(events) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
        ("running", "done"),
    ]
    assert all(e.job_id == a.job_id and e.path == "/m/a.mkv" for e in events)
    ats = [e.at for e in reversed(events)]
    ids = [e.id for e in reversed(events)]
    assert ats == sorted(ats) and ids == sorted(ids) and len(set(ids)) == len(ids)
    # the operator's transitions too, each once, with who did it
    b = await queue.enqueue("/m/b.mkv", "movies", "remux")
    job = await claim(queue)
    await queue.fail(job.id, job.token, "unsupported codec", retryable=False)
    await queue.retry(job.id)
    await claim(queue)
    await queue.cancel(job.id, reason="not wanted")
    events = await queue.list_events(job_id=b.job_id)
    assert transitions(events) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
        ("failed", "queued"),
        ("queued", "running"),
        ("running", "cancelled"),
    ]
    assert events[0].actor == "operator" and events[0].reason == "not wanted"
    own = await queue.record_event("custom", job_id=a.job_id, details={"k": [1, "x"]})
    [latest] = await queue.list_events(job_id=a.job_id, limit=1)
    assert latest.id == own and latest.kind == "custom" and latest.details == {"k": [1, "x"]}


# --- listings and totals ----------------------------------------------------------------


async def test_active_jobs_order(queue: JobQueue) -> None:
    a = await queue.enqueue("/m/a.mkv", "movies", "remux")
    b = await queue.enqueue("/m/b.mkv", "movies", "remux", priority=5)
    c = await queue.enqueue("/m/c.mkv", "movies", "remux", priority=5)
    running = await claim(queue)
    assert running.id == b.job_id
    d = await queue.enqueue("/m/d.mkv", "movies", "remux", priority=1)
    jobs = await queue.active_jobs()
    assert [j.id for j in jobs] == [b.job_id, c.job_id, d.job_id, a.job_id]
    assert [j.state for j in jobs][:2] == [JobState.RUNNING, JobState.QUEUED]


async def test_history_filters_paging_and_totals(queue: JobQueue) -> None:
    plan = [("movies", "done"), ("tv", "done"), ("tv", "failed"), ("movies", "cancelled")]
    jobs = [await finish(queue, f"/m/{i}.mkv", lib, out) for i, (lib, out) in enumerate(plan)]
    ids = [j.id for j in jobs]
    ends = [j.finished_at for j in jobs]
    assert all(e is not None for e in ends) and ends == sorted(ends)  # type: ignore[type-var]
    mid = (ends[1] + ends[2]) / 2  # type: ignore[operator]
    assert [j.id for j in await queue.history()] == ids[::-1]
    assert [j.id for j in await queue.history(states=["done"])] == [ids[1], ids[0]]
    assert [j.id for j in await queue.history(states=[JobState.FAILED, JobState.CANCELLED])] == [
        ids[3],
        ids[2],
    ]
    assert [j.id for j in await queue.history(library="tv")] == [ids[2], ids[1]]
    assert [j.id for j in await queue.history(since=mid)] == [ids[3], ids[2]]
    assert [j.id for j in await queue.history(until=mid)] == [ids[1], ids[0]]
    assert [j.id for j in await queue.history(limit=1, offset=1)] == [ids[2]]
    assert [j.id for j in await queue.history(limit=2, offset=3)] == [ids[0]]
    assert await queue.history(offset=4) == []
    totals = await queue.totals()
    assert (totals.files_done, totals.bytes_before, totals.bytes_after) == (2, 200, 80)
    assert (totals.failed, totals.dead, totals.cancelled) == (1, 0, 1)
    assert totals.failures_by_reason == (("no space left", 1),)
    movies = await queue.totals(library="movies")
    assert (movies.files_done, movies.cancelled, movies.failed) == (1, 1, 0)
    late = await queue.totals(since=mid)
    assert (late.files_done, late.failed, late.cancelled) == (0, 1, 1)
    early = await queue.totals(until=mid)
    assert (early.files_done, early.failed, early.cancelled) == (2, 0, 0)
    # the listings and the totals agree
    done = await queue.history(states=["done"], limit=100)
    assert len(done) == totals.files_done
    assert sum(j.result.source_size or 0 for j in done) == totals.bytes_before


async def test_recent_jobs_of_a_library_any_state_newest_first(queue: JobQueue) -> None:
    assert await queue.recent_jobs("movies") == []  # an empty library: nothing expected
    done = await finish(queue, "/m/done.mkv", "movies", "done")
    await queue.enqueue("/tv/e1.mkv", "tv", "remux")
    queued = await queue.enqueue("/m/queued.mkv", "movies", "remux")
    await queue.enqueue("/tv/e2.mkv", "tv", "remux")
    recent = await queue.recent_jobs("movies")
    assert [j.id for j in recent] == [queued.job_id, done.id]
    assert [j.state for j in recent] == [JobState.QUEUED, JobState.DONE]
    assert recent[1].result.output_path == "/m/done.mkv.mp4"
    assert [j.path for j in await queue.recent_jobs("tv", limit=1)] == ["/tv/e2.mkv"]
    assert await queue.recent_jobs("tv", limit=0) == []
    assert await queue.recent_jobs("music") == []


async def test_recent_jobs_reach_past_thousands_of_another_librarys(queue: JobQueue) -> None:
    old = await queue.enqueue("/m/old.mkv", "movies", "remux")
    await queue.enqueue_many([NewJob(f"/tv/{n}.mkv", "tv", "remux") for n in range(6000)])
    assert [j.id for j in await queue.recent_jobs("movies")] == [old.job_id]
    assert len(await queue.recent_jobs("tv", limit=20)) == 20


async def test_clear_history(queue: JobQueue) -> None:
    old = await finish(queue, "/m/old.mkv", "movies", "done")
    new = await finish(queue, "/m/new.mkv", "movies", "failed")
    await queue.enqueue("/m/active.mkv", "movies", "remux")
    assert old.finished_at is not None and new.finished_at is not None
    cut = (old.finished_at + new.finished_at) / 2
    assert await queue.clear_history(older_than=cut) == 1
    assert [j.id for j in await queue.history()] == [new.id]
    with pytest.raises(JobNotFoundError):
        await queue.get_job(old.id)
    with pytest.raises(StoreError, match="only removes finished"):
        await queue.clear_history(states=[JobState.QUEUED])
    assert await queue.clear_history() == 1
    assert len(await queue.active_jobs()) == 1
    assert (await queue.totals()).files_done == 0


# --- the outbox -------------------------------------------------------------------------


async def test_outbox_due_delivered_retried_stopped_resumed(queue: JobQueue) -> None:
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    entries = [
        OutboxEntry("/m/a.mp4", "Created", "movies"),
        OutboxEntry("/m/a.mkv", "Deleted", "movies"),
    ]
    await queue.complete(job.id, job.token, JobResult(output_path="/m/a.mp4"), outbox=entries)
    due = await queue.outbox_due(10)
    assert [(r.path, r.update_type, r.job_id, r.attempts) for r in due] == [
        ("/m/a.mp4", "Created", job.id, 0),
        ("/m/a.mkv", "Deleted", job.id, 0),
    ]
    assert await queue.outbox_due(10, target="notify") == []
    created, deleted = (r.id for r in due)
    assert await queue.outbox_next_due() is not None

    # one is retried later, one stopped
    next_at = due[0].created_at + 0.4
    await queue.outbox_retry_later([created], next_at, "jellyfin down")
    await queue.outbox_stop([deleted], "jellyfin refused the token")
    assert await queue.outbox_due(10) == []
    assert await queue.outbox_next_due() == pytest.approx(next_at)
    rows = {r.id: r for r in await queue.outbox_rows()}
    assert rows[created].attempts == 1 and rows[created].last_error == "jellyfin down"
    assert rows[deleted].last_error == "jellyfin refused the token"
    retried = await wait_for(lambda: queue.outbox_due(10), what="the retried row")
    assert [r.id for r in retried] == [created]

    # resume brings the stopped one back; delivered rows are gone
    assert await queue.outbox_resume() >= 1
    assert {r.id for r in await queue.outbox_due(10)} == {created, deleted}
    await queue.outbox_delivered([created, deleted])
    assert await queue.outbox_due(10) == [] and await queue.outbox_rows() == []
    assert await queue.outbox_next_due() is None
    assert sum((await queue.outbox_counts()).values()) == 0

    await queue.outbox_add([OutboxEntry("/m/x.mkv", "Modified", "tv", target="notify")])
    [row] = await queue.outbox_due(10, target="notify")
    assert row.job_id is None and row.library == "tv"


async def test_outbox_counts_agree_with_rows(queue: JobQueue) -> None:
    await queue.outbox_add([OutboxEntry(f"/m/{i}.mkv", "Modified", "movies") for i in range(3)])
    ids = [r.id for r in await queue.outbox_due(10)]
    await queue.outbox_stop(ids[:1], "bad")
    counts = await queue.outbox_counts()
    assert sum(counts.values()) == len(await queue.outbox_rows()) == 3


# --- file names -------------------------------------------------------------------------

ODD_PATHS = [
    os.fsdecode(b"/m/caf\xe9 \xff.mkv"),  # Latin-1 bytes: not UTF-8, kept by surrogateescape
    "/m/two\nlines.mkv",
    "/m/tab\tand 'quotes\" \\ and ünïcødé ☃.mkv",
]


async def test_non_utf8_and_newline_paths_round_trip(queue: JobQueue) -> None:
    results = await queue.enqueue_many(NewJob(p, "movies", "remux") for p in ODD_PATHS)
    assert {r.outcome for r in results} == {EnqueueOutcome.CREATED}
    assert sorted(j.path for j in await queue.active_jobs()) == sorted(ODD_PATHS)
    seen = []
    while (job := await queue.claim("w")) is not None:
        seen.append(job.path)
        assert (await queue.get_job(job.id)).path == job.path
        out = [OutboxEntry(job.path, "Modified", "movies")]
        await queue.complete(job.id, job.token, JobResult(output_path=job.path), outbox=out)
    assert sorted(seen) == sorted(ODD_PATHS)
    assert sorted(j.path for j in await queue.history()) == sorted(ODD_PATHS)
    assert sorted(j.result.output_path or "" for j in await queue.history()) == sorted(ODD_PATHS)
    assert sorted(r.path for r in await queue.outbox_due(10)) == sorted(ODD_PATHS)
    for p in ODD_PATHS:
        events = await queue.list_events(path=p)
        assert events and {e.path for e in events} == {p}
        again = await queue.enqueue(p, "movies", "remux")
        assert again.outcome is EnqueueOutcome.CREATED


# --- restart ----------------------------------------------------------------------------


async def test_restart_keeps_every_acknowledged_change(backend: Backend) -> None:
    q = await backend.open()
    try:
        await finish(q, "/m/done.mkv", "movies", "done")
        await finish(q, "/m/failed.mkv", "tv", "failed")
        await q.enqueue("/m/running.mkv", "tv", "transcode", ["hevc"], priority=3)
        await q.enqueue("/m/queued.mkv", "movies", "remux")
        running = await claim(q, "survivor")
        assert running.path == "/m/running.mkv"  # priority 3 first
        await q.heartbeat(running.id, running.token, Progress(percent=33.0))
        await q.outbox_add([OutboxEntry("/m/done.mkv.mp4", "Created", "movies")])
        await q.record_event("custom", path="/m/x.mkv", details={"n": 1})
        await q.pause(reason="before the crash")
        before = (
            await q.active_jobs(),
            await q.history(),
            await q.list_events(limit=1000),
            await q.outbox_rows(),
            await q.totals(),
        )
    finally:
        await q.close()

    await backend.restart()

    q = await backend.open()
    try:
        after = (
            await q.active_jobs(),
            await q.history(),
            await q.list_events(limit=1000),
            await q.outbox_rows(),
            await q.totals(),
        )
        assert after == before
        [kept, _] = after[0]
        assert kept.lease_token == running.token and kept.progress is not None
        assert kept.progress.percent == 33.0
        assert await q.is_paused()
        # the running job's lease survived: its worker carries on and finishes it
        await q.heartbeat(running.id, running.token)
        done = await q.complete(running.id, running.token, JobResult(output_path="/m/r.mp4"))
        assert done.state is JobState.DONE
        await q.resume()
        assert (await claim(q)).path == "/m/queued.mkv"
    finally:
        await q.close()


async def test_enqueue_of_a_version_already_running_schedules_nothing(queue: JobQueue) -> None:
    await queue.enqueue("/m/a.mkv", "movies", "remux")
    job = await claim(queue)
    assert job.job.started_at is not None
    older = NewJob("/m/a.mkv", "movies", "remux", modified_at=job.job.started_at - 60)
    [same] = await queue.enqueue_many([older])
    assert (same.job_id, same.outcome) == (job.id, EnqueueOutcome.ALREADY_RUNNING)
    assert not (await queue.get_job(job.id)).rerun_requested
    newer = NewJob("/m/a.mkv", "movies", "remux", modified_at=job.job.started_at + 60)
    [rerun] = await queue.enqueue_many([newer])
    assert rerun.outcome is EnqueueOutcome.RERUN_SCHEDULED


# --- nodes ------------------------------------------------------------------------------


async def test_node_heartbeats_are_stamped_by_the_backend(queue: JobQueue) -> None:
    b = NodeStatus("b-host", "worker", 42, 1.0, "1.2.3", current_jobs=(7, 9), last_seen=5.0)
    a = NodeStatus("a-host", "all", 1, 2.0, "1.2.3", encoder="h264_nvenc", guard="GPU hot")
    await queue.node_heartbeat(b)
    await queue.node_heartbeat(a)
    nodes = await queue.nodes()
    assert [n.name for n in nodes] == ["a-host", "b-host"]
    now = time.time()
    for sent, got in zip((a, b), nodes, strict=True):
        assert abs(got.last_seen - now) < 30  # the backend's clock, not the value sent
        assert dataclasses.replace(got, last_seen=sent.last_seen) == sent
    await queue.node_heartbeat(dataclasses.replace(b, current_jobs=()))
    assert (await queue.nodes())[1].current_jobs == ()
