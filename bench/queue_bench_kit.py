"""What bench_queue.py and bench_store.py share: the worker processes and their loop, the
enqueue and history measurements, the seeded 100k finished jobs, the table and the JSON.

Why one module: the two benchmarks must measure the same thing the same way (bench_queue
compares SQLite with Redis, bench_store tracks SQLite alone over time), and a copy drifts.
Not a benchmark itself (``nox -s bench`` runs only ``bench_*.py``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from castui_core.queue.protocol import JobQueue  # noqa: E402
from castui_core.store import JobResult, NewJob, Progress  # noqa: E402

#: (label columns..., value, unit): bench_queue's labels are (backend, metric),
#: bench_store's just (metric,).
Row = tuple[Any, ...]


# --- worker processes -------------------------------------------------------------------


async def worker_loop(queue: JobQueue, owner: str, seconds: float) -> None:
    """The body of one bench worker process: wait for ``go`` on stdin, then claim, send one
    heartbeat and complete until ``seconds`` pass or the queue is empty. Prints
    ``DONE WALL_S CPU_S`` (CPU: this process's, so a run can say what a job costs the client).
    """
    print("ready", flush=True)
    sys.stdin.readline()
    done = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
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
    print(f"{done} {time.perf_counter() - start:.6f} {time.process_time() - cpu0:.6f}", flush=True)


@dataclass(frozen=True)
class WorkersRun:
    jobs: int
    wall_s: float
    #: CPU seconds the worker processes used between ``go`` and their last job, together.
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return self.jobs / self.wall_s


def run_workers(argv: Callable[[int], Sequence[str]], n: int, seconds: float) -> WorkersRun:
    """Start n worker processes (``argv(i)`` runs :func:`worker_loop`), let them go together
    once all are connected, and add up what they report."""
    procs = [
        subprocess.Popen(
            [sys.executable, *argv(i)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
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
    jobs, cpu = 0, 0.0
    for p in procs:
        assert p.stdout is not None
        done, _wall, used = p.stdout.readline().split()
        jobs += int(done)
        cpu += float(used)
        p.wait(timeout=seconds + 120)
    return WorkersRun(jobs, time.perf_counter() - start, cpu)


# --- measurements -----------------------------------------------------------------------


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    """Milliseconds per call, ``repeat`` calls one after the other."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


async def measure_enqueue(queue: JobQueue, n_jobs: int, per: str) -> list[Row]:
    """``n_jobs`` through ``enqueue_many`` 1,000 at a time, then 1,000 single enqueues (what
    a file watcher does). ``per`` names the unit of one call (``tx`` for SQLite)."""
    rows: list[Row] = []
    batch = 1000
    start = time.perf_counter()
    for first in range(0, n_jobs, batch):
        await queue.enqueue_many(
            NewJob(f"/media/lib{i % 4}/file{i:07}.mkv", f"lib{i % 4}", "transcode", ["x"])
            for i in range(first, min(n_jobs, first + batch))
        )
    elapsed = time.perf_counter() - start
    rows.append((f"enqueue {n_jobs:,} jobs (enqueue_many, 1k/{per})", elapsed, "s"))
    rows.append(("enqueue_many rate", n_jobs / elapsed, "jobs/s"))
    singles = 1000
    start = time.perf_counter()
    for i in range(singles):
        await queue.enqueue(f"/media/single/file{i:05}.mkv", "single", "remux")
    elapsed = time.perf_counter() - start
    rows.append((f"enqueue rate, one job per {per}", singles / elapsed, "jobs/s"))
    return rows


async def measure_history(queue: JobQueue, n_jobs: int) -> list[Row]:
    """Median and p95 of the history/totals reads the dashboard and CLI make."""
    week_ago = time.time() - 7 * 86400
    queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("history(limit=50)", lambda: queue.history(limit=50)),
        ("history(state=failed, limit=50)", lambda: queue.history(states=["failed"], limit=50)),
        ("history(library=lib2, limit=50)", lambda: queue.history(library="lib2", limit=50)),
        ("history(since=7 days ago, limit=500)", lambda: queue.history(since=week_ago, limit=500)),
        ("totals() over all history", lambda: queue.totals()),
        ("active_jobs() (empty queue)", lambda: queue.active_jobs()),
    ]
    rows: list[Row] = []
    for name, fn in queries:
        await fn()  # warm caches
        samples = await timed(fn, 30)
        rows.append(
            (f"{name} median, {n_jobs // 1000}k finished", statistics.median(samples), "ms")
        )
        rows.append((f"{name} p95", p95(samples), "ms"))
    return rows


# --- 100k finished jobs -----------------------------------------------------------------


def history_rows(n_jobs: int) -> Iterator[dict[str, Any]]:
    """The same finished jobs for every backend and run (seeded)."""
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


def make_history_sqlite(db: str | Path, n_jobs: int) -> None:
    """Replace the jobs with ``n_jobs`` finished ones directly in SQL (finishing 100k through
    the queue would take minutes and measure the workers again, not history queries)."""
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


# --- output ---------------------------------------------------------------------------


def print_table(rows: Sequence[Row], labels: Sequence[str]) -> None:
    """One line per row: the label columns (named by ``labels``), the value, the unit."""
    n = len(labels)
    widths = [max(len(labels[c]), *(len(str(r[c])) for r in rows)) for c in range(n)]
    head = "  ".join(f"{name:<{w}}" for name, w in zip(labels, widths, strict=True))
    print(f"{head}  {'value':>12}  unit")
    print("-" * (sum(widths) + 2 * n + 18))
    for row in rows:
        cells = "  ".join(f"{row[c]!s:<{w}}" for c, w in enumerate(widths))
        print(f"{cells}  {row[n]:>12.2f}  {row[n + 1]}")


def write_result(
    out: str | Path,
    name: str,
    rows: Sequence[Row],
    labels: Sequence[str],
    extra: dict[str, Any],
) -> Path:
    """``OUT/bench_NAME.json``: the machine, the settings in ``extra`` and every row."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **extra,
        "rows": [
            {
                **dict(zip(labels, row[: len(labels)], strict=True)),
                "value": round(row[len(labels)], 4),
                "unit": row[len(labels) + 1],
            }
            for row in rows
        ],
    }
    path = folder / f"bench_{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
