"""Conformance with real processes: several OS processes on one backend (SQLite file or Redis
server), enqueueing and claiming at once, and one killed with SIGKILL while it holds a lease.
Workers are tests/queue/_worker.py, so locks, connections and crashes are real."""

from __future__ import annotations

from collections import Counter

from queue_backends import Backend, Worker, wait_for

from castui_core.store import EventKind, JobResult, JobState

N_JOBS = 60
N_WORKERS = 3


async def test_concurrent_enqueue_and_claim_from_several_processes(
    backend: Backend, spawn: type[Worker]
) -> None:
    # Opened (so created) before the workers start: this test is about enqueue and claim.
    # Several processes creating one new SQLite file at once is another matter (today one of
    # them can fail in Store.connect's schema upgrade: "disk I/O error"/"readonly database").
    q = await backend.open()
    try:
        workers = [spawn("race", backend.spec(), f"w{i}", str(N_JOBS)) for i in range(N_WORKERS)]
        for w in workers:
            assert await w.readline() == "ready"
        for w in workers:  # every process enqueues the same paths at once, each in its order
            w.send("go")
        created = 0
        for w in workers:
            line = await w.readline()
            assert line.startswith("enqueued"), line
            created += int(line.split()[1])
        assert created == N_JOBS  # each path was created by exactly one process

        active = await q.active_jobs()
        assert sorted(j.path for j in active) == [f"/m/{i:04}.mkv" for i in range(N_JOBS)]
        for w in workers:  # now they all drain the queue at once
            w.send("go")
        claims: Counter[int] = Counter()
        per_worker: dict[str, int] = {}
        for i, w in enumerate(workers):
            while (line := await w.readline(timeout=60)).startswith("claimed"):
                claims[int(line.split()[1])] += 1
            assert line.startswith("drained"), line
            per_worker[f"w{i}"] = int(line.split()[1])
            assert await w.wait() == 0, w.stderr()
        print("claims per worker:", per_worker)
        assert len(claims) == N_JOBS and set(claims.values()) == {1}  # once each, none lost
        assert sum(per_worker.values()) == N_JOBS
        assert sum(1 for n in per_worker.values() if n) >= 2, per_worker  # they overlapped
        done = await q.history(states=["done"], limit=N_JOBS + 1)
        assert len(done) == N_JOBS and {j.attempts for j in done} == {1}
        assert {j.lease_owner for j in done} <= set(per_worker)
        assert await q.active_jobs() == []
        assert (await q.totals()).files_done == N_JOBS
        created_events = [
            e
            for e in await q.list_events(kind=EventKind.JOB_STATE, limit=10 * N_JOBS)
            if e.from_state is None
        ]
        assert len(created_events) == N_JOBS
    finally:
        await q.close()


async def test_killed_worker_job_is_reclaimed_after_its_lease(
    backend: Backend, spawn: type[Worker]
) -> None:
    q = await backend.open()
    try:
        job_id = (await q.enqueue("/m/a.mkv", "movies", "transcode")).job_id
        holder = spawn("hold", backend.spec(), "doomed", "0.5")
        _, claimed_id, old_token = (await holder.readline()).split()
        assert int(claimed_id) == job_id
        holder.kill()  # SIGKILL while holding the lease
        assert (await q.get_job(job_id)).lease_owner == "doomed"
        rescued = await wait_for(lambda: q.claim("rescuer"), what="the killed worker's job")
        assert rescued.id == job_id and rescued.token > int(old_token)
        assert rescued.job.attempts == 2
        await q.complete(rescued.id, rescued.token, JobResult(output_path="/m/a.mp4"))
        final = await q.get_job(job_id)
        assert final.state is JobState.DONE and final.lease_owner == "rescuer"
    finally:
        await q.close()


async def test_paused_worker_resuming_after_takeover_is_fenced(
    backend: Backend, spawn: type[Worker]
) -> None:
    q = await backend.open()
    try:
        await q.enqueue("/m/a.mkv", "movies", "remux")
        zombie = spawn("hold", backend.spec(), "zombie", "0.5")
        assert (await zombie.readline()).startswith("claimed")
        # the zombie is alive but silent (a stopped VM, a GC pause): its lease runs out
        job = await wait_for(lambda: q.claim("other"), what="the zombie's lease to expire")
        await q.complete(job.id, job.token, JobResult(output_path="/m/a.mp4"))
        zombie.send("complete")  # it wakes up still believing it owns the job
        assert await zombie.readline() == "lease-lost"
        assert await zombie.wait() == 0
        [done] = await q.history()
        assert done.lease_owner == "other" and done.result.output_path == "/m/a.mp4"
    finally:
        await q.close()
