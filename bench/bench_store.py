"""Benchmark the durable store (castui_core.store). Not a test: it measures, it does not judge.

    python bench/bench_store.py [--out DIR] [--dir TMPDIR] [--jobs N] [--seconds S]

Measures, on a real SQLite file with castui's pragmas (WAL, synchronous=FULL):

* enqueueing 100,000 jobs (batched ``enqueue_many``, 1,000 per transaction) and the rate of
  one-job-per-transaction ``enqueue`` (what a file watcher does);
* claim+heartbeat+complete throughput with 1 and with 4 worker *processes* on a queue that
  holds ~100k jobs (each worker: claim, one heartbeat, complete = 3 fsync'd transactions);
* history query latency (and totals) with 100k finished jobs.

Prints a (metric, value, unit) table and writes ``DIR/bench_store.json`` (default ``.bench/``).
Numbers depend heavily on the disk's fsync cost: ``--dir`` picks where the database lives
(default: the system temp dir, which may be tmpfs and make fsync nearly free).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from castui_core.store import JobResult, NewJob, Progress, Store  # noqa: E402

Row = tuple[str, float, str]


# --- worker process ---------------------------------------------------------------------


async def _worker(db: str, owner: str, seconds: float) -> None:
    async with Store.open(db, reclaim_on_open=False, busy_timeout_s=60) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            job = await store.claim(owner)
            if job is None:
                break
            await store.heartbeat(job.id, job.token, Progress(percent=100.0))
            await store.complete(
                job.id, job.token, JobResult(output_path=job.path + ".mp4", exit_code=0)
            )
            done += 1
        print(f"{done} {time.perf_counter() - start:.6f}", flush=True)


def run_workers(db: Path, n: int, seconds: float) -> tuple[int, float]:
    """Start n worker processes together; returns (jobs completed, wall seconds)."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(db), f"bench-w{i}", str(seconds)],
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


async def bench_enqueue(db: Path, n_jobs: int, rows: list[Row]) -> None:
    async with Store.open(db) as store:
        batch = 1000
        start = time.perf_counter()
        for first in range(0, n_jobs, batch):
            await store.enqueue_many(
                NewJob(f"/media/lib{i % 4}/file{i:07}.mkv", f"lib{i % 4}", "transcode", ["x"])
                for i in range(first, min(n_jobs, first + batch))
            )
        elapsed = time.perf_counter() - start
        rows.append((f"enqueue {n_jobs:,} jobs (enqueue_many, 1k/tx)", elapsed, "s"))
        rows.append(("enqueue_many rate", n_jobs / elapsed, "jobs/s"))
        singles = 1000
        start = time.perf_counter()
        for i in range(singles):
            await store.enqueue(f"/media/single/file{i:05}.mkv", "single", "remux")
        elapsed = time.perf_counter() - start
        rows.append(("enqueue rate, one job per transaction", singles / elapsed, "jobs/s"))


def bench_workers(db: Path, seconds: float, rows: list[Row]) -> None:
    for n in (1, 4):
        done, wall = run_workers(db, n, seconds)
        rows.append((f"claim+heartbeat+complete, {n} worker process(es)", done / wall, "jobs/s"))


def make_history(db: Path, n_jobs: int) -> None:
    """Turn the queue into n_jobs finished jobs directly in SQL (claiming 100k one by one
    would take minutes and measure the workers, not history queries)."""
    rng = random.Random(42)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM jobs")
        now = time.time()
        states = ["done"] * 90 + ["failed"] * 7 + ["dead"] * 2 + ["cancelled"]
        reasons = ["ffmpeg exited 1", "output failed validation", "source unreadable"]
        conn.executemany(
            """
            INSERT INTO jobs (path, library, action, state, reasons, attempts, run_after,
                              created_at, updated_at, started_at, finished_at, source_size,
                              output_size, reason)
            VALUES (?, ?, 'transcode', ?, '[]', 1, 0, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                (
                    f"/media/lib{i % 4}/file{i:07}.mkv",
                    f"lib{i % 4}",
                    state,
                    t - 600,
                    t,
                    t - 500,
                    t,
                    size,
                    int(size * rng.uniform(0.3, 0.9)) if state == "done" else None,
                    rng.choice(reasons) if state in ("failed", "dead") else None,
                )
                for i in range(n_jobs)
                for state in [rng.choice(states)]
                for t in [now - rng.uniform(0, 90 * 86400)]
                for size in [rng.randint(100_000_000, 20_000_000_000)]
            ),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def bench_history(db: Path, n_jobs: int, rows: list[Row]) -> None:
    make_history(db, n_jobs)
    week_ago = time.time() - 7 * 86400
    async with Store.open(db, reclaim_on_open=False) as store:
        queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("history(limit=50)", lambda: store.history(limit=50)),
            ("history(state=failed, limit=50)", lambda: store.history(states=["failed"], limit=50)),
            ("history(library=lib2, limit=50)", lambda: store.history(library="lib2", limit=50)),
            (
                "history(since=7 days ago, limit=500)",
                lambda: store.history(since=week_ago, limit=500),
            ),
            ("totals() over all history", lambda: store.totals()),
            ("active_jobs() (empty queue)", lambda: store.active_jobs()),
        ]
        for name, fn in queries:
            await fn()  # warm the page cache
            samples = await timed(fn, 30)
            rows.append(
                (f"{name} median, {n_jobs // 1000}k finished", statistics.median(samples), "ms")
            )
            rows.append((f"{name} p95", p95(samples), "ms"))


def print_table(rows: list[Row]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>12}  unit")
    print("-" * (width + 22))
    for metric, value, unit in rows:
        print(f"{metric:<{width}}  {value:>12.2f}  {unit}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(_worker(sys.argv[2], sys.argv[3], float(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".bench", help="directory for bench_store.json")
    parser.add_argument("--dir", default=None, help="where to put the temporary database")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs to enqueue / finish")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each worker run lasts")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="castui-bench-", dir=args.dir) as tmp:
        db = Path(tmp) / "bench.sqlite3"
        asyncio.run(bench_enqueue(db, args.jobs, rows))
        bench_workers(db, args.seconds, rows)
        asyncio.run(bench_history(db, args.jobs, rows))
        db_dir = tmp
    print_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "store",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "db_dir": str(Path(db_dir).parent),
        "jobs": args.jobs,
        "worker_seconds": args.seconds,
        "rows": [{"metric": m, "value": round(v, 4), "unit": u} for m, v, u in rows],
    }
    (out / "bench_store.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out / 'bench_store.json'}")


if __name__ == "__main__":
    main()
