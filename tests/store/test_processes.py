"""Real processes against one real SQLite file: concurrency, kill -9, zombie workers.

Workers are separate Python processes (tests/store/_worker.py) so locks, fsyncs and crashes
are the operating system's, not simulated. Time-dependent steps use a clock shifted into the
future in the *checking* process instead of sleeping until a lease expires; one test runs on
real time to prove the same thing without that shortcut.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

from store_helpers import Worker

from castui_core.store import JobResult, JobState, NewJob, Store

N_JOBS = 200
N_WORKERS = 4


async def test_concurrent_workers_run_each_job_exactly_once(
    db_path: Path, spawn: type[Worker]
) -> None:
    async with Store.open(db_path) as store:
        await store.enqueue_many(NewJob(f"/m/{i:04}.mkv", "movies", "remux") for i in range(N_JOBS))
    workers = [spawn("drain", str(db_path), f"w{i}") for i in range(N_WORKERS)]
    for w in workers:
        assert w.readline() == "ready"
    for w in workers:  # start them together so they really contend for the queue
        w.send("go")
    claims: Counter[int] = Counter()
    per_worker: dict[str, int] = {}
    for i, w in enumerate(workers):
        while (line := w.readline(timeout=60)).startswith("claimed"):
            claims[int(line.split()[1])] += 1
        assert line.startswith("drained")
        per_worker[f"w{i}"] = int(line.split()[1])
        assert w.wait() == 0, w.stderr()
    print("claims per worker:", per_worker)
    assert sum(per_worker.values()) == N_JOBS
    assert sum(1 for n in per_worker.values() if n) >= 2, per_worker  # they really overlapped
    assert len(claims) == N_JOBS and set(claims.values()) == {1}
    async with Store.open(db_path) as store:
        done = await store.history(states=["done"], limit=N_JOBS + 1)
        assert len(done) == N_JOBS
        assert {j.attempts for j in done} == {1}
        assert {j.lease_owner for j in done} <= set(per_worker)
        assert await store.active_jobs() == []
        assert await store.integrity_check() == ["ok"]


async def test_kill9_lease_holder_is_reclaimed_and_late_complete_refused(
    db_path: Path, spawn: type[Worker]
) -> None:
    async with Store.open(db_path) as store:
        job_id = (await store.enqueue("/m/a.mkv", "movies", "transcode")).job_id
    holder = spawn("hold", str(db_path), "doomed", "30")
    _, claimed_id, old_token = holder.readline().split()
    assert int(claimed_id) == job_id
    holder.kill()  # SIGKILL while holding the lease

    # Another process comes along after the lease would have expired.
    async with Store.open(db_path, clock=lambda: time.time() + 31) as rescuer:
        job = await rescuer.claim("rescuer")
        assert job is not None and job.id == job_id and job.token > int(old_token)
        await rescuer.complete(job.id, job.token, JobResult(output_path="/m/a.mp4"))

    late = spawn("complete", str(db_path), claimed_id, old_token)
    assert late.readline() == "lease-lost"
    assert late.wait() == 0
    async with Store.open(db_path) as store:
        final = await store.get_job(job_id)
        assert final.state is JobState.DONE
        assert final.result.output_path == "/m/a.mp4" and final.attempts == 2


async def test_paused_worker_resuming_after_takeover_is_fenced(
    db_path: Path, spawn: type[Worker]
) -> None:
    async with Store.open(db_path) as store:
        await store.enqueue("/m/a.mkv", "movies", "remux")
    zombie = spawn("hold", str(db_path), "zombie", "30")
    assert zombie.readline().startswith("claimed")
    async with Store.open(db_path, clock=lambda: time.time() + 31) as other:
        job = await other.claim("other")
        assert job is not None
        await other.complete(job.id, job.token, JobResult(output_path="/m/a.mp4"))
    zombie.send("complete")  # wakes up, still believes it owns the job
    assert zombie.readline() == "lease-lost"
    assert zombie.wait() == 0
    async with Store.open(db_path) as store:
        [done] = await store.history()
        assert done.lease_owner == "other" and done.result.output_path == "/m/a.mp4"


async def test_kill9_reclaimed_on_real_time(db_path: Path, spawn: type[Worker]) -> None:
    async with Store.open(db_path) as store:
        await store.enqueue("/m/a.mkv", "movies", "remux")
        holder = spawn("hold", str(db_path), "doomed", "0.5")
        assert holder.readline().startswith("claimed")
        holder.kill()
        assert await store.claim("rescuer") is None  # lease still valid right after the kill
        deadline = time.monotonic() + 10
        while (job := await store.claim("rescuer")) is None:
            assert time.monotonic() < deadline, "expired lease was never reclaimed"
            await asyncio.sleep(0.05)
        await store.complete(job.id, job.token, JobResult())
        assert (await store.get_job(job.id)).state is JobState.DONE


async def test_worker_killed_inside_write_transaction(db_path: Path, spawn: type[Worker]) -> None:
    async with Store.open(db_path, busy_timeout_s=20) as store:
        for i in range(3):
            await store.enqueue(f"/m/{i}.mkv", "movies", "remux")
        writer = spawn("in-tx", str(db_path))
        assert writer.readline() == "in-tx"  # it holds the write lock with dirty pages in WAL
        blocked = asyncio.create_task(store.enqueue("/m/new.mkv", "movies", "remux"))
        await asyncio.sleep(0)  # let the enqueue start queuing on the lock
        writer.kill()
        await asyncio.wait_for(blocked, timeout=20)  # proceeds once the lock holder is gone
        job = await store.claim("w")
        assert job is not None
        await store.complete(job.id, job.token, JobResult())
        assert await store.integrity_check() == ["ok"]
        assert await store.list_events(kind="uncommitted") == []
        states = Counter(j.state for j in await store.active_jobs())
        assert states == {JobState.QUEUED: 3}

    conn = sqlite3.connect(db_path)  # and a fresh connection agrees
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert (
            conn.execute("SELECT count(*) FROM jobs WHERE reason = 'uncommitted'").fetchone()[0]
            == 0
        )
    finally:
        conn.close()
