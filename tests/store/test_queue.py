"""Queue semantics with an injected clock: claims, fencing, leases, backoff, debounce, ops."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from store_helpers import FakeClock

from castui_core.errors import JobNotFoundError, LeaseLostError, StoreError
from castui_core.store import (
    EnqueueOutcome,
    EventKind,
    JobAction,
    JobResult,
    JobState,
    NewJob,
    Progress,
    Store,
    backoff_delay,
)


async def test_claim_order_priority_then_run_after_then_id(store: Store, clock: FakeClock) -> None:
    a = await store.enqueue("/m/a.mkv", "movies", "remux")
    clock.advance(1)
    b = await store.enqueue("/m/b.mkv", "movies", "transcode", priority=5)
    c = await store.enqueue("/m/c.mkv", "movies", "remux", debounce_s=30)  # not ready yet
    d = await store.enqueue("/m/d.mkv", "movies", "remux")
    order = []
    while (job := await store.claim("w1")) is not None:
        order.append(job.id)
    assert order == [b.job_id, a.job_id, d.job_id]
    clock.advance(30)
    job = await store.claim("w1")
    assert job is not None and job.id == c.job_id


async def test_claim_sets_lease_and_new_token(store: Store, clock: FakeClock) -> None:
    r = await store.enqueue("/m/a.mkv", "movies", JobAction.TRANSCODE, ["hevc 10-bit"])
    job = await store.claim("w1")
    assert job is not None and job.id == r.job_id
    assert job.job.state is JobState.RUNNING
    assert job.job.lease_owner == "w1"
    assert job.lease_expires == clock.now + 60
    assert job.job.attempts == 1
    assert job.job.reasons == ("hevc 10-bit",)
    assert await store.claim("w2") is None


async def test_heartbeat_extends_lease_and_records_progress(store: Store, clock: FakeClock) -> None:
    await store.enqueue("/m/a.mkv", "movies", "transcode")
    job = await store.claim("w1")
    assert job is not None
    clock.advance(50)
    expires = await store.heartbeat(job.id, job.token, Progress(42.5, 120.0, 4.1, 33.0))
    assert expires == clock.now + 60
    clock.advance(50)  # past the original expiry, but the heartbeat moved it
    assert await store.reclaim_expired() == []
    got = await store.get_job(job.id)
    assert got.progress is not None
    assert (got.progress.percent, got.progress.fps, got.progress.speed, got.progress.eta_s) == (
        42.5,
        120.0,
        4.1,
        33.0,
    )


async def test_expired_lease_is_reclaimed_and_old_token_is_fenced(
    store: Store, clock: FakeClock
) -> None:
    await store.enqueue("/m/a.mkv", "movies", "remux")
    first = await store.claim("w1")
    assert first is not None
    clock.advance(61)
    second = await store.claim("w2")  # claim reclaims expired leases itself
    assert second is not None and second.id == first.id and second.token != first.token
    with pytest.raises(LeaseLostError, match="w2 took it over"):
        await store.heartbeat(first.id, first.token)
    with pytest.raises(LeaseLostError):
        await store.complete(first.id, first.token, JobResult(output_path="/x"))
    with pytest.raises(LeaseLostError):
        await store.fail(first.id, first.token, "boom")
    with pytest.raises(LeaseLostError):
        await store.release(first.id, first.token)
    done = await store.complete(second.id, second.token, JobResult(output_path="/m/a.mp4"))
    assert done.state is JobState.DONE and done.attempts == 2
    events = await store.list_events(job_id=first.id, kind=EventKind.JOB_STATE)
    assert any(e.actor == "reaper" and "lease expired" in (e.reason or "") for e in events)


async def test_reclaim_expired_on_its_own(store: Store, clock: FakeClock) -> None:
    await store.enqueue("/m/a.mkv", "movies", "remux")
    job = await store.claim("w1")
    assert job is not None
    clock.advance(59)
    assert await store.reclaim_expired() == []
    clock.advance(2)
    [reclaimed] = await store.reclaim_expired()
    assert reclaimed.state is JobState.QUEUED
    assert "stopped responding" in (reclaimed.reason or "")


async def test_reclaim_at_open(db_path: Path, clock: FakeClock) -> None:
    async with Store.open(db_path, clock=clock, lease_seconds=10) as s:
        await s.enqueue("/m/a.mkv", "movies", "remux")
        assert await s.claim("w1") is not None
    clock.advance(11)
    async with Store.open(db_path, clock=clock) as s:
        [job] = await s.active_jobs()
        assert job.state is JobState.QUEUED


async def test_complete_records_result(store: Store, clock: FakeClock) -> None:
    await store.enqueue("/m/a.mkv", "movies", "transcode")
    job = await store.claim("w1")
    assert job is not None
    clock.advance(100)
    result = JobResult(
        output_path="/m/a.mp4",
        source_size=1000,
        output_size=600,
        duration_s=100.0,
        encoder="h264_nvenc",
        command=("ffmpeg", "-i", "/m/a b.mkv", "/m/a.mp4"),
        exit_code=0,
        stderr_tail="",
    )
    done = await store.complete(job.id, job.token, result)
    assert done.state is JobState.DONE
    assert done.result == result
    assert done.result.bytes_saved == 400
    assert done.result.command_line == "ffmpeg -i '/m/a b.mkv' /m/a.mp4"
    assert done.finished_at == clock.now
    assert done.started_at == clock.now - 100


async def test_retry_backoff_grows_and_poison_ends_dead(db_path: Path, clock: FakeClock) -> None:
    async with Store.open(
        db_path, clock=clock, max_attempts=4, backoff_base_s=10, rng=random.Random(1)
    ) as store:
        await store.enqueue("/m/poison.mkv", "movies", "transcode")
        delays = []
        for attempt in range(1, 5):
            job = await store.claim("w1")
            assert job is not None, f"attempt {attempt} not claimable"
            assert job.job.attempts == attempt
            failed = await store.fail(
                job.id, job.token, "ffmpeg exited 1: Invalid data", result=JobResult(exit_code=1)
            )
            if attempt < 4:
                assert failed.state is JobState.QUEUED
                delay = failed.run_after - clock.now
                delays.append(delay)
                assert await store.claim("w1") is None  # backing off
                clock.advance(delay)
            else:
                assert failed.state is JobState.DEAD
                assert failed.reason == "ffmpeg exited 1: Invalid data"
                assert failed.result.exit_code == 1
        assert delays == sorted(delays) and delays[0] < delays[1] < delays[2]
        assert 10 <= delays[0] < 12.5 and 20 <= delays[1] < 25 and 40 <= delays[2] < 50
        clock.advance(10**6)
        assert await store.claim("w1") is None  # a poison file never loops
        totals = await store.totals()
        assert totals.dead == 1
        assert totals.failures_by_reason == (("ffmpeg exited 1: Invalid data", 1),)


async def test_worker_crashing_every_time_ends_dead(db_path: Path, clock: FakeClock) -> None:
    async with Store.open(db_path, clock=clock, lease_seconds=5, max_attempts=2) as store:
        await store.enqueue("/m/crashy.mkv", "movies", "transcode")
        for _ in range(2):
            assert await store.claim("w") is not None
            clock.advance(6)  # the worker died without a word
        [dead] = await store.reclaim_expired()
        assert dead.state is JobState.DEAD
        assert "giving up" in (dead.reason or "")
        assert await store.claim("w") is None


async def test_debounce_pushes_run_after(store: Store, clock: FakeClock) -> None:
    first = await store.enqueue("/m/a.mkv", "movies", "remux", debounce_s=30)
    clock.advance(20)
    second = await store.enqueue("/m/a.mkv", "movies", "transcode", ["grew"], debounce_s=30)
    assert second == type(second)(first.job_id, EnqueueOutcome.DEBOUNCED)
    clock.advance(20)  # 40s after the first event, 20s after the second
    assert await store.claim("w1") is None
    clock.advance(10)
    job = await store.claim("w1")
    assert job is not None and job.id == first.job_id
    assert job.action is JobAction.TRANSCODE and job.job.reasons == ("grew",)
    assert len(await store.active_jobs()) == 1


async def test_enqueue_while_running_reruns_after_completion(
    store: Store, clock: FakeClock
) -> None:
    first = await store.enqueue("/m/a.mkv", "movies", "remux")
    job = await store.claim("w1")
    assert job is not None
    r = await store.enqueue("/m/a.mkv", "movies", "transcode", ["changed"], debounce_s=5)
    assert r == type(r)(first.job_id, EnqueueOutcome.RERUN_SCHEDULED)
    assert (await store.get_job(job.id)).rerun_requested
    assert await store.claim("w2") is None  # never two runs of one path at once
    await store.complete(job.id, job.token, JobResult(output_path="/m/a.mp4"))
    [queued] = await store.active_jobs()
    assert queued.id != job.id and queued.state is JobState.QUEUED
    assert queued.action is JobAction.TRANSCODE and queued.reasons == ("changed",)
    assert await store.claim("w2") is None  # honours the debounce
    clock.advance(5)
    again = await store.claim("w2")
    assert again is not None and again.id == queued.id
    assert (await store.get_job(job.id)).state is JobState.DONE


async def test_rerun_after_retryable_failure_reuses_job_with_fresh_budget(
    store: Store, clock: FakeClock
) -> None:
    await store.enqueue("/m/a.mkv", "movies", "remux")
    job = await store.claim("w1")
    assert job is not None
    await store.enqueue("/m/a.mkv", "movies", "transcode")
    failed = await store.fail(job.id, job.token, "file changed under ffmpeg")
    assert failed.state is JobState.QUEUED
    again = await store.get_job(job.id)
    assert again.attempts == 0 and again.action is JobAction.TRANSCODE
    assert again.run_after == clock.now and not again.rerun_requested


async def test_one_active_job_per_path_enforced_by_index(store: Store, db_path: Path) -> None:
    import sqlite3

    await store.enqueue("/m/a.mkv", "movies", "remux")
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO jobs (path, library, action, state, run_after, created_at,"
                " updated_at) VALUES ('/m/a.mkv', 'movies', 'remux', 'queued', 0, 0, 0)"
            )
    finally:
        conn.close()


async def test_enqueue_many_one_transaction(store: Store) -> None:
    results = await store.enqueue_many(
        [NewJob(f"/m/{i}.mkv", "movies", "remux") for i in range(50)]
        + [NewJob("/m/1.mkv", "movies", "transcode")]
    )
    assert [r.outcome for r in results].count(EnqueueOutcome.CREATED) == 50
    assert results[-1].outcome is EnqueueOutcome.DEBOUNCED
    assert len(await store.active_jobs()) == 50


async def test_bad_action_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.enqueue("/m/a.mkv", "movies", "explode")


async def test_pause_is_persisted(db_path: Path, clock: FakeClock) -> None:
    async with Store.open(db_path, clock=clock) as s:
        await s.enqueue("/m/a.mkv", "movies", "remux")
        await s.pause(reason="maintenance")
    async with Store.open(db_path, clock=clock) as s:
        assert await s.is_paused()
        assert await s.claim("w1") is None
        await s.resume()
        assert await s.claim("w1") is not None
        kinds = [e.details.get("action") for e in await s.list_events(kind=EventKind.OPERATOR)]
        assert kinds == ["resume", "pause"]


async def test_retry_dead_job(db_path: Path, clock: FakeClock) -> None:
    async with Store.open(db_path, clock=clock, max_attempts=1) as store:
        await store.enqueue("/m/a.mkv", "movies", "remux")
        job = await store.claim("w1")
        assert job is not None
        dead = await store.fail(job.id, job.token, "corrupt stream")
        assert dead.state is JobState.DEAD
        with pytest.raises(JobNotFoundError):
            await store.retry(99999)
        retried = await store.retry(job.id)
        assert retried.state is JobState.QUEUED and retried.attempts == 0
        assert retried.reason is None
        with pytest.raises(JobNotFoundError, match="only failed"):
            await store.retry(job.id)
        events = await store.list_events(job_id=job.id)
        assert "corrupt stream" in (events[0].reason or "")
        assert events[0].actor == "operator"


async def _finish(store: Store, path: str, library: str, outcome: str) -> int:
    await store.enqueue(path, library, "transcode")
    job = await store.claim("w")
    assert job is not None
    if outcome == "done":
        await store.complete(
            job.id, job.token, JobResult(output_path=path + ".mp4", source_size=100, output_size=40)
        )
    elif outcome == "failed":
        await store.fail(job.id, job.token, "no space left", retryable=False)
    else:
        await store.cancel(job.id)
    return job.id


async def test_history_filters_and_totals(store: Store, clock: FakeClock) -> None:
    ids = []
    for i, (lib, outcome) in enumerate(
        [("movies", "done"), ("tv", "done"), ("tv", "failed"), ("movies", "cancelled")]
    ):
        clock.advance(10)
        ids.append(await _finish(store, f"/m/{i}.mkv", lib, outcome))
    everything = await store.history()
    assert [j.id for j in everything] == ids[::-1]
    assert [j.id for j in await store.history(states=["done"])] == [ids[1], ids[0]]
    assert [j.id for j in await store.history(library="tv")] == [ids[2], ids[1]]
    assert [j.id for j in await store.history(since=clock.now - 15)] == [ids[3], ids[2]]
    assert [j.id for j in await store.history(until=clock.now - 15)] == [ids[1], ids[0]]
    assert [j.id for j in await store.history(limit=1, offset=1)] == [ids[2]]
    totals = await store.totals()
    assert (totals.files_done, totals.bytes_before, totals.bytes_after) == (2, 200, 80)
    assert totals.bytes_saved == 120
    assert (totals.failed, totals.dead, totals.cancelled) == (1, 0, 1)
    assert totals.failures_by_reason == (("no space left", 1),)
    assert (await store.totals(library="movies")).files_done == 1


async def test_clear_history(store: Store, clock: FakeClock) -> None:
    old = await _finish(store, "/m/old.mkv", "movies", "done")
    clock.advance(100)
    new = await _finish(store, "/m/new.mkv", "movies", "failed")
    await store.enqueue("/m/active.mkv", "movies", "remux")
    assert await store.clear_history(older_than=clock.now - 50) == 1
    assert [j.id for j in await store.history()] == [new]
    with pytest.raises(JobNotFoundError):
        await store.get_job(old)
    with pytest.raises(StoreError, match="only removes finished"):
        await store.clear_history(states=[JobState.QUEUED])
    assert await store.clear_history() == 1
    assert len(await store.active_jobs()) == 1


def test_backoff_delay_pure() -> None:
    rng = random.Random(0)
    floors = [backoff_delay(a, 30, 3600, rng, jitter=0) for a in range(1, 10)]
    assert floors[:4] == [30, 60, 120, 240]
    assert floors[-1] == 3600
    for attempt in range(1, 30):
        d = backoff_delay(attempt, 30, 3600, rng)
        floor = min(3600, 30 * 2 ** (attempt - 1))
        assert floor <= d <= floor * 1.25
    assert backoff_delay(10_000, 1, 60, rng) <= 75  # no overflow
    spread = {round(backoff_delay(3, 30, 3600, random.Random(s)), 6) for s in range(20)}
    assert len(spread) > 10  # jitter actually de-synchronises workers
    with pytest.raises(ValueError):
        backoff_delay(0, 30, 3600, rng)
    with pytest.raises(ValueError):
        backoff_delay(1, 30, 10, rng)


async def test_enqueue_many_matches_one_by_one(store: Store, clock: FakeClock) -> None:
    queued = await store.enqueue("/m/queued.mkv", "movies", "remux", debounce_s=5)
    await store.enqueue("/m/running.mkv", "movies", "remux")
    running = await store.claim("w")
    assert running is not None
    results = await store.enqueue_many(
        [
            NewJob("/m/new.mkv", "movies", "remux", debounce_s=10),
            NewJob("/m/queued.mkv", "movies", "transcode", ["changed"], priority=2, debounce_s=30),
            NewJob("/m/running.mkv", "movies", "transcode", ["grew"]),
            NewJob("/m/new.mkv", "movies", "transcode", ["again"], debounce_s=20, priority=1),
        ]
    )
    new_id = results[0].job_id
    assert [(r.job_id, r.outcome) for r in results] == [
        (new_id, EnqueueOutcome.CREATED),
        (queued.job_id, EnqueueOutcome.DEBOUNCED),
        (running.id, EnqueueOutcome.RERUN_SCHEDULED),
        (new_id, EnqueueOutcome.DEBOUNCED),
    ]
    new = await store.get_job(new_id)
    assert (new.action, new.reasons, new.priority, new.run_after) == (
        JobAction.TRANSCODE,
        ("again",),
        1,
        clock.now + 20,
    )
    q = await store.get_job(queued.job_id)
    assert (q.action, q.priority, q.run_after) == (JobAction.TRANSCODE, 2, clock.now + 30)
    assert (await store.get_job(running.id)).rerun_requested
    [created_event] = await store.list_events(job_id=new_id)
    # One event per path and batch, describing the merged result.
    assert created_event.to_state == "queued" and created_event.reason == "transcode: again"
    latest = (await store.list_events(job_id=running.id))[0]
    assert latest.kind == "rerun_requested"
    assert await store.enqueue_many([]) == []


async def test_enqueue_of_a_file_unchanged_since_its_run_started_schedules_nothing(
    store: Store, clock: FakeClock
) -> None:
    """A second scan that read a stale catalog must not re-run a file nobody changed."""
    await store.enqueue("/m/a.mkv", "movies", "remux")
    await store.enqueue("/m/b.mkv", "movies", "remux")
    started = clock()
    a = await store.claim("w1")
    b = await store.claim("w1")
    assert a is not None and b is not None
    older = NewJob("/m/a.mkv", "movies", "remux", modified_at=started - 60)
    newer = NewJob("/m/b.mkv", "movies", "remux", modified_at=started + 1)
    results = await store.enqueue_many([older, newer])
    assert [r.outcome for r in results] == [
        EnqueueOutcome.ALREADY_RUNNING,
        EnqueueOutcome.RERUN_SCHEDULED,
    ]
    single = await store.enqueue("/m/a.mkv", "movies", "remux")
    assert single.outcome is EnqueueOutcome.RERUN_SCHEDULED  # no mtime given: assume changed
    await store.complete(b.id, b.token, JobResult())
    assert [j.path for j in await store.active_jobs()] == ["/m/a.mkv", "/m/b.mkv"]


async def test_cancelled_reads_never_leave_a_transaction_open(store: Store) -> None:
    """A read cancelled at any point (even while its BEGIN is queued) must not block writes."""
    import asyncio

    await store.enqueue("/m/a.mkv", "movies", "remux")
    for _ in range(50):
        task = asyncio.ensure_future(store.active_jobs())
        await asyncio.sleep(0)  # let it reach the BEGIN, then cancel it mid-flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.enqueue("/m/b.mkv", "movies", "remux")  # raised "within a transaction"
    assert len(await store.active_jobs()) == 2
