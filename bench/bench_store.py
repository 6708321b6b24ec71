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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import queue_bench_kit as kit

from castui_core.store import Store


async def _worker(db: str, owner: str, seconds: float) -> None:
    async with Store.open(db, reclaim_on_open=False, busy_timeout_s=60) as store:
        await kit.worker_loop(store, owner, seconds)


async def bench_enqueue(db: Path, n_jobs: int, rows: list[kit.Row]) -> None:
    async with Store.open(db) as store:
        rows += await kit.measure_enqueue(store, n_jobs, "transaction")


def bench_workers(db: Path, seconds: float, rows: list[kit.Row]) -> None:
    for n in (1, 4):
        run = kit.run_workers(
            lambda i: [__file__, "--worker", str(db), f"bench-w{i}", str(seconds)], n, seconds
        )
        rows.append((f"claim+heartbeat+complete, {n} worker process(es)", run.rate, "jobs/s"))


async def bench_history(db: Path, n_jobs: int, rows: list[kit.Row]) -> None:
    kit.make_history_sqlite(db, n_jobs)
    async with Store.open(db, reclaim_on_open=False) as store:
        rows += await kit.measure_history(store, n_jobs)


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
    rows: list[kit.Row] = []
    with tempfile.TemporaryDirectory(prefix="castui-bench-", dir=args.dir) as tmp:
        db = Path(tmp) / "bench.sqlite3"
        asyncio.run(bench_enqueue(db, args.jobs, rows))
        bench_workers(db, args.seconds, rows)
        asyncio.run(bench_history(db, args.jobs, rows))
        db_dir = tmp
    labels = ("metric",)
    kit.print_table(rows, labels)
    extra = {"db_dir": str(Path(db_dir).parent), "jobs": args.jobs, "worker_seconds": args.seconds}
    path = kit.write_result(args.out, "store", rows, labels, extra)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
