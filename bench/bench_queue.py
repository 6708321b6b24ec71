"""Benchmark the job queue on both backends (SQLite and Redis) in the same run. Not a test:
it measures, it does not judge.

    python bench/bench_queue.py [--out DIR] [--dir TMPDIR] [--jobs N] [--seconds S]
                                [--backends sqlite,redis]

For each backend, through the :class:`~castui_core.queue.protocol.JobQueue` calls castui makes:

* enqueueing 100,000 jobs (``enqueue_many``, 1,000 per call);
* claim+heartbeat+complete throughput with 1 and with 4 worker *processes* on a queue that
  holds ~100k jobs (each worker: claim, one heartbeat, complete);
* history query latency (and totals) with 100k finished jobs (written directly, as
  bench_store.py does: finishing 100k jobs one by one would measure the workers again).

The Redis server is a real ``redis-server`` started in the temp dir on a Unix socket with
castui's required persistence (AOF, ``appendfsync everysec``, ``noeviction``). Prints a
(backend, metric, value, unit) table and writes ``DIR/bench_queue.json`` (default ``.bench/``).
Goal from issue 13: Redis >= 2,000 claims/s with 4 processes; neither backend slower than
SQLite's figures of the day (enqueue 100k in 2.4 s; 533 claims/s with one process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import redis as redis_sync  # noqa: E402

from castui_core.queue.protocol import JobQueue  # noqa: E402
from castui_core.queue.redis import RedisQueue  # noqa: E402
from castui_core.store import JobResult, NewJob, Progress, Store  # noqa: E402

Row = tuple[str, str, float, str]


async def open_backend(backend: str, target: str) -> JobQueue:
    if backend == "sqlite":
        return await Store.connect(target, reclaim_on_open=False, busy_timeout_s=60)
    return await RedisQueue.connect(f"unix://{target}", prefix="bench")


# --- worker process ---------------------------------------------------------------------


async def _worker(backend: str, target: str, owner: str, seconds: float) -> None:
    queue = await open_backend(backend, target)
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            job = await queue.claim(owner)
            if job is None:
                break
            await queue.heartbeat(job.id, job.token, Progress(percent=100.0))
            await queue.complete(
                job.id, job.token, JobResult(output_path=job.path + ".mp4", exit_code=0)
            )
            done += 1
        print(f"{done} {time.perf_counter() - start:.6f}", flush=True)
    finally:
        await queue.close()


def run_workers(backend: str, target: str, n: int, seconds: float) -> tuple[int, float]:
    """Start n worker processes together; returns (jobs completed, wall seconds)."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", backend, target, f"bench-w{i}", str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("a bench worker failed to start")
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    total = 0
    for p in procs:
        assert p.stdout is not None
        total += int(p.stdout.readline().split()[0])
        p.wait(timeout=seconds + 120)
    return total, time.perf_counter() - start


# --- a real redis-server ----------------------------------------------------------------


@contextmanager
def redis_server(folder: Path) -> Iterator[Path]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt install redis-server)")
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--dir",
            str(folder),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ready to accept connections" in line.lower():
            break
    else:
        raise SystemExit("redis-server did not start")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    try:
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- measurements -----------------------------------------------------------------------


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


async def bench_enqueue(backend: str, target: str, n_jobs: int, rows: list[Row]) -> None:
    queue = await open_backend(backend, target)
    try:
        batch = 1000
        start = time.perf_counter()
        for first in range(0, n_jobs, batch):
            await queue.enqueue_many(
                NewJob(f"/media/lib{i % 4}/file{i:07}.mkv", f"lib{i % 4}", "transcode", ["x"])
                for i in range(first, min(n_jobs, first + batch))
            )
        elapsed = time.perf_counter() - start
        rows.append((backend, f"enqueue {n_jobs:,} jobs (enqueue_many, 1k/call)", elapsed, "s"))
        rows.append((backend, "enqueue_many rate", n_jobs / elapsed, "jobs/s"))
        singles = 1000
        start = time.perf_counter()
        for i in range(singles):
            await queue.enqueue(f"/media/single/file{i:05}.mkv", "single", "remux")
        elapsed = time.perf_counter() - start
        rows.append((backend, "enqueue rate, one job per call", singles / elapsed, "jobs/s"))
    finally:
        await queue.close()


def bench_workers(backend: str, target: str, seconds: float, rows: list[Row]) -> None:
    for n in (1, 4):
        done, wall = run_workers(backend, target, n, seconds)
        rows.append(
            (backend, f"claim+heartbeat+complete, {n} worker process(es)", done / wall, "jobs/s")
        )


def history_rows(n_jobs: int) -> Iterator[dict[str, Any]]:
    """The same 100k finished jobs for both backends (seeded)."""
    rng = random.Random(42)
    now = time.time()
    states = ["done"] * 90 + ["failed"] * 7 + ["dead"] * 2 + ["cancelled"]
    reasons = ["ffmpeg exited 1", "output failed validation", "source unreadable"]
    for i in range(n_jobs):
        state = rng.choice(states)
        t = now - rng.uniform(0, 90 * 86400)
        size = rng.randint(100_000_000, 20_000_000_000)
        yield {
            "id": i + 1,
            "path": f"/media/lib{i % 4}/file{i:07}.mkv",
            "library": f"lib{i % 4}",
            "state": state,
            "t": t,
            "source_size": size,
            "output_size": int(size * rng.uniform(0.3, 0.9)) if state == "done" else None,
            "reason": rng.choice(reasons) if state in ("failed", "dead") else None,
        }


def make_history_sqlite(db: str, n_jobs: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM jobs")
        conn.executemany(
            """
            INSERT INTO jobs (path, library, action, state, reasons, attempts, run_after,
                              created_at, updated_at, started_at, finished_at, source_size,
                              output_size, reason)
            VALUES (?, ?, 'transcode', ?, '[]', 1, 0, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                (
                    r["path"],
                    r["library"],
                    r["state"],
                    r["t"] - 600,
                    r["t"],
                    r["t"] - 500,
                    r["t"],
                    r["source_size"],
                    r["output_size"],
                    r["reason"],
                )
                for r in history_rows(n_jobs)
            ),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def make_history_redis(sock: str, n_jobs: int) -> None:
    """The ``job:<id>`` hashes, the ``finished`` index and the running totals as
    RedisQueue's scripts write them (lua/common.lua: index and tally)."""
    r = redis_sync.Redis(unix_socket_path=sock)
    totals: dict[str, dict[str, int]] = {}
    reasons: dict[str, dict[str, int]] = {}
    try:
        r.flushdb()
        pipe = r.pipeline(transaction=False)
        for i, row in enumerate(history_rows(n_jobs)):
            for key in ("bench:totals", f"bench:totals:lib:{row['library']}"):
                t = totals.setdefault(key, {})
                t[row["state"]] = t.get(row["state"], 0) + 1
                if row["state"] == "done":
                    t["bytes_before"] = t.get("bytes_before", 0) + row["source_size"]
                    t["bytes_after"] = t.get("bytes_after", 0) + row["output_size"]
            if row["state"] in ("failed", "dead"):
                for key in ("bench:reasons", f"bench:reasons:lib:{row['library']}"):
                    c = reasons.setdefault(key, {})
                    c[row["reason"]] = c.get(row["reason"], 0) + 1
            fields: dict[Any, Any] = {
                "id": row["id"],
                "path": row["path"],
                "library": row["library"],
                "action": "transcode",
                "state": row["state"],
                "reasons": "[]",
                "priority": 0,
                "attempts": 1,
                "max_attempts": 3,
                "run_after": 0,
                "lease_token": 1,
                "created_at": repr(row["t"] - 600),
                "updated_at": repr(row["t"]),
                "started_at": repr(row["t"] - 500),
                "finished_at": repr(row["t"]),
                "source_size": row["source_size"],
            }
            if row["output_size"] is not None:
                fields["output_size"] = row["output_size"]
            if row["reason"] is not None:
                fields["reason"] = row["reason"]
            pipe.hset(f"bench:job:{row['id']}", mapping=fields)
            pipe.zadd("bench:finished", {f"{row['id']:015d}": row["t"]})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.set("bench:job_ids", n_jobs)
        for key, counts in [*totals.items(), *reasons.items()]:
            mapping: dict[Any, Any] = dict(counts)
            pipe.hset(key, mapping=mapping)
        pipe.execute()
    finally:
        r.close()


async def bench_history(backend: str, target: str, n_jobs: int, rows: list[Row]) -> None:
    if backend == "sqlite":
        make_history_sqlite(target, n_jobs)
    else:
        make_history_redis(target, n_jobs)
    week_ago = time.time() - 7 * 86400
    queue = await open_backend(backend, target)
    try:
        queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("history(limit=50)", lambda: queue.history(limit=50)),
            ("history(state=failed, limit=50)", lambda: queue.history(states=["failed"], limit=50)),
            ("history(library=lib2, limit=50)", lambda: queue.history(library="lib2", limit=50)),
            (
                "history(since=7 days ago, limit=500)",
                lambda: queue.history(since=week_ago, limit=500),
            ),
            ("totals() over all history", lambda: queue.totals()),
            ("active_jobs() (empty queue)", lambda: queue.active_jobs()),
        ]
        for name, fn in queries:
            await fn()  # warm caches
            samples = await timed(fn, 30)
            label = f"{name} median, {n_jobs // 1000}k finished"
            rows.append((backend, label, statistics.median(samples), "ms"))
            rows.append((backend, f"{name} p95", p95(samples), "ms"))
    finally:
        await queue.close()


def print_table(rows: list[Row]) -> None:
    width = max(len(r[1]) for r in rows)
    print(f"{'backend':<7}  {'metric':<{width}}  {'value':>12}  unit")
    print("-" * (width + 31))
    for backend, metric, value, unit in rows:
        print(f"{backend:<7}  {metric:<{width}}  {value:>12.2f}  {unit}")


def run_backend(backend: str, tmp: Path, args: argparse.Namespace, rows: list[Row]) -> None:
    if backend == "sqlite":
        target = str(tmp / "bench.sqlite3")
        asyncio.run(bench_enqueue(backend, target, args.jobs, rows))
        bench_workers(backend, target, args.seconds, rows)
        asyncio.run(bench_history(backend, target, args.jobs, rows))
        return
    folder = tmp / "redis"
    folder.mkdir()
    with redis_server(folder) as sock:
        asyncio.run(bench_enqueue(backend, str(sock), args.jobs, rows))
        bench_workers(backend, str(sock), args.seconds, rows)
        asyncio.run(bench_history(backend, str(sock), args.jobs, rows))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(_worker(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".bench", help="directory for bench_queue.json")
    parser.add_argument("--dir", default=None, help="where to put the database and the AOF")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs to enqueue / finish")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each worker run lasts")
    parser.add_argument("--backends", default="sqlite,redis", help="comma-separated")
    args = parser.parse_args()
    rows: list[Row] = []
    backends = [b for b in args.backends.split(",") if b]
    with tempfile.TemporaryDirectory(prefix="castui-bq-", dir=args.dir) as tmp:
        for backend in backends:
            run_backend(backend, Path(tmp), args, rows)
        tmp_dir = str(Path(tmp).parent)
    print_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {
        "benchmark": "queue",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "redis": redis_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "db_dir": tmp_dir,
        "jobs": args.jobs,
        "worker_seconds": args.seconds,
        "rows": [
            {"backend": b, "metric": m, "value": round(v, 4), "unit": u} for b, m, v, u in rows
        ],
    }
    (out / "bench_queue.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out / 'bench_queue.json'}")


if __name__ == "__main__":
    main()
