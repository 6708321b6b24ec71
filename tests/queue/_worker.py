"""Worker process for the conformance suite's real-process tests (a script, not a test).

Usage: ``_worker.py MODE SPEC [ARGS...]`` where SPEC is ``sqlite:PATH`` or
``redis:URL:PREFIX``; it speaks one line per event on stdout.

* ``race SPEC OWNER N``: print ``ready``; on ``go`` enqueue ``/m/0000.mkv`` … (N paths, in an
  order of its own) and print ``enqueued CREATED_COUNT``; on ``go`` again claim + heartbeat +
  complete until the queue is empty, printing ``claimed ID TOKEN`` each and ``drained N``.
* ``hold SPEC OWNER LEASE_S``: claim one job, print ``claimed ID TOKEN`` (or ``empty``), then
  on ``complete`` try to complete it and print ``completed`` or ``lease-lost``.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from castui_core.errors import LeaseLostError
from castui_core.queue.protocol import JobQueue
from castui_core.store import EnqueueOutcome, JobResult, Progress, Store


def say(line: str) -> None:
    print(line, flush=True)


async def open_spec(spec: str, **kw: Any) -> JobQueue:
    kind, _, rest = spec.partition(":")
    if kind == "sqlite":
        return await Store.connect(rest, busy_timeout_s=30, reclaim_on_open=False, **kw)
    if kind == "redis":
        from castui_core.queue.redis import RedisQueue

        url, _, prefix = rest.rpartition(":")
        return await RedisQueue.connect(url, prefix=prefix, **kw)
    raise SystemExit(f"unknown backend spec {spec!r}")


async def stdin_line() -> str:
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


async def race(spec: str, owner: str, n: int) -> None:
    q = await open_spec(spec, lease_seconds=60)
    try:
        say("ready")
        await stdin_line()
        paths = [f"/m/{i:04}.mkv" for i in range(n)]
        random.Random(owner).shuffle(paths)
        created = 0
        for path in paths:
            r = await q.enqueue(path, "movies", "remux")
            created += r.outcome is EnqueueOutcome.CREATED
        say(f"enqueued {created}")
        await stdin_line()
        count = 0
        while (job := await q.claim(owner)) is not None:
            say(f"claimed {job.id} {job.token}")
            # Stand-in for the encode: without it the first process to start can take every
            # job before the others are scheduled, and nothing would contend.
            await asyncio.sleep(0.005)
            await q.heartbeat(job.id, job.token, Progress(percent=50.0))
            await q.complete(job.id, job.token, JobResult(output_path=f"{job.path}.out"))
            count += 1
        say(f"drained {count}")
    finally:
        await q.close()


async def hold(spec: str, owner: str, lease_s: float) -> None:
    q = await open_spec(spec, lease_seconds=lease_s)
    try:
        job = await q.claim(owner)
        if job is None:
            say("empty")
            return
        say(f"claimed {job.id} {job.token}")
        if await stdin_line() == "complete":
            try:
                await q.complete(job.id, job.token, JobResult(output_path="late.mp4"))
            except LeaseLostError:
                say("lease-lost")
            else:
                say("completed")
    finally:
        await q.close()


def main(argv: list[str]) -> None:
    mode, spec, *rest = argv
    if mode == "race":
        asyncio.run(race(spec, rest[0], int(rest[1])))
    elif mode == "hold":
        asyncio.run(hold(spec, rest[0], float(rest[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
