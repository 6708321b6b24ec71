"""Worker process for the real-process store tests (run as a script, not collected by pytest).

Usage: _worker.py MODE DB [ARGS...]; it speaks one line per event on stdout.

* ``drain DB OWNER``: print ``ready``, wait for ``go`` on stdin, then claim+complete until the
  queue is empty, printing ``claimed ID TOKEN`` for each job and finally ``drained N``.
* ``hold DB OWNER LEASE_S``: claim one job, print ``claimed ID TOKEN``, then wait for a stdin
  command: ``complete`` tries to complete it and prints ``completed`` or ``lease-lost``.
* ``complete DB ID TOKEN``: try to complete job ID with TOKEN; print ``completed``/``lease-lost``.
* ``in-tx DB``: open a write transaction, write a few MB (so uncommitted pages spill into the
  WAL), print ``in-tx`` and block forever, to be killed inside the transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys

from castui_core.errors import LeaseLostError
from castui_core.store import JobResult, Progress, Store


def say(line: str) -> None:
    print(line, flush=True)


async def drain(db: str, owner: str) -> None:
    async with Store.open(db, lease_seconds=60, busy_timeout_s=30) as store:
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)
        count = 0
        while (job := await store.claim(owner)) is not None:
            say(f"claimed {job.id} {job.token}")
            # Stand-in for the encode: without it the first worker to start keeps winning the
            # write lock (SQLite's busy handler is not fair) and there is little contention.
            await asyncio.sleep(0.002)
            await store.heartbeat(job.id, job.token, Progress(percent=50.0))
            await store.complete(job.id, job.token, JobResult(output_path=f"{job.path}.out"))
            count += 1
        say(f"drained {count}")


async def try_complete(store: Store, job_id: int, token: int) -> None:
    try:
        await store.complete(job_id, token, JobResult(output_path="late.mp4"))
    except LeaseLostError:
        say("lease-lost")
    else:
        say("completed")


async def hold(db: str, owner: str, lease_s: float) -> None:
    async with Store.open(db, lease_seconds=lease_s, reclaim_on_open=False) as store:
        job = await store.claim(owner)
        if job is None:
            say("empty")
            return
        say(f"claimed {job.id} {job.token}")
        command = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if command == "complete":
            await try_complete(store, job.id, job.token)


async def complete(db: str, job_id: int, token: int) -> None:
    async with Store.open(db, reclaim_on_open=False) as store:
        await try_complete(store, job_id, token)


def in_tx(db: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA cache_size = 100")  # tiny cache: force uncommitted pages to the WAL
    conn.execute("BEGIN IMMEDIATE")
    blob = "x" * 4000
    for i in range(1500):
        conn.execute(
            "INSERT INTO events (at, kind, reason) VALUES (?, 'uncommitted', ?)", (i, blob)
        )
    conn.execute("UPDATE jobs SET state = 'done', reason = 'uncommitted'")
    say("in-tx")
    sys.stdin.readline()  # block until killed


def main(argv: list[str]) -> None:
    mode, db, *rest = argv
    if mode == "drain":
        asyncio.run(drain(db, rest[0]))
    elif mode == "hold":
        asyncio.run(hold(db, rest[0], float(rest[1])))
    elif mode == "complete":
        asyncio.run(complete(db, int(rest[0]), int(rest[1])))
    elif mode == "in-tx":
        in_tx(db)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
