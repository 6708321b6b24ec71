"""Benchmark the dashboard with a big queue. Not a test: it measures, it does not judge.

    python bench/bench_tui.py [--out DIR] [--jobs N] [--seconds S]

Runs the real app (``make_app``) headless at 120×40 on a real ``Engine`` (queue paused, so
nothing converts) whose database holds N queued jobs (default 100,000), and measures:

* start-up: from ``run_test`` entering to the queue (N rows) loaded and drawn;
* RSS of this process after start-up;
* CPU (user+sys, % of one core) over S seconds while idle;
* CPU seconds spent re-reading the queue when a job starts (once per job start/finish);
* CPU over S seconds while one encode reports progress: ``JobStarted`` then a
  ``JobProgress`` every 0.5 s (ffmpeg's ``-progress`` rate) published on the engine's bus, the
  exact events a real encode produces (no ffmpeg runs, so only the TUI's cost is measured).

Target from the issue: idle < 2 % of a core. Prints a (metric, value, unit) table and writes
``DIR/bench_tui.json`` (default ``.bench/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from castui.tui.app import make_app  # noqa: E402
from castui_core.engine import Engine  # noqa: E402
from castui_core.events import JobProgress, JobStarted  # noqa: E402
from castui_core.guardrails.gpu import NoGpu  # noqa: E402
from castui_core.settings import parse_settings  # noqa: E402
from castui_core.store import NewJob, Store  # noqa: E402


async def fill(db: Path, jobs: int) -> None:
    async with Store.open(db) as store:
        await store.pause(actor="bench")
        for start in range(0, jobs, 5000):
            await store.enqueue_many(
                NewJob(
                    f"/media/shows/Show {i:06d}.avi",
                    "shows",
                    "transcode",
                    ("video codec mpeg4 is not H.264",),
                )
                for i in range(start, min(jobs, start + 5000))
            )


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def run(jobs: int, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="castui-bench-tui-"))
    (tmp / "lib").mkdir()
    settings = parse_settings(
        f"database: {tmp / 'castui.db'}\nlibraries:\n  - name: shows\n    path: {tmp / 'lib'}\n"
        "    watch: off\noperational:\n  encoder: cpu\n"
    )
    t0 = time.perf_counter()
    await fill(settings.database, jobs)
    fill_s = time.perf_counter() - t0
    engine = Engine(settings, watch=False, scan_at_start=False, gpu=NoGpu("no GPU: bench"))
    app = make_app(engine)
    proc = psutil.Process()
    results: dict[str, Any] = {"jobs": jobs, "fill_s": fill_s}
    start = time.perf_counter()
    async with app.run_test(size=(120, 40)) as pilot:
        while len(app.queued_jobs) < jobs:
            await asyncio.sleep(0.01)
        await pilot.pause()
        results["startup_s"] = time.perf_counter() - start
        results["rss_mb"] = proc.memory_info().rss / 1e6
        await asyncio.sleep(1.0)  # let start-up work settle
        c0, w0 = cpu_seconds(proc), time.perf_counter()
        await asyncio.sleep(seconds)
        results["idle_cpu_pct"] = 100 * (cpu_seconds(proc) - c0) / (time.perf_counter() - w0)

        path = "/media/shows/Show 000000.avi"
        # A job starting re-reads the whole active queue once (the store has no smaller
        # query for it): measured on its own, then the steady progress updates.
        c0 = cpu_seconds(proc)
        engine.bus.publish(JobStarted(path, "transcode", "cpu", "libx264", ("ffmpeg",)))
        await asyncio.sleep(4.0)
        results["job_start_requery_cpu_s"] = cpu_seconds(proc) - c0
        c0, w0 = cpu_seconds(proc), time.perf_counter()
        ticks = int(seconds / 0.5)
        for n in range(ticks):
            percent = 100 * n / ticks
            engine.bus.publish(JobProgress(path, percent, 120.0, 4.8, 60.0, 1.0, 1_000_000))
            await asyncio.sleep(0.5)
        results["progress_cpu_pct"] = 100 * (cpu_seconds(proc) - c0) / (time.perf_counter() - w0)
        # Scrolling a 100k queue: jump to the end and back (virtualised: constant cost).
        app.screen.query_one("#queue").focus()
        s0 = time.perf_counter()
        await pilot.press("end")
        await pilot.pause()
        await pilot.press("home")
        await pilot.pause()
        results["scroll_end_home_ms"] = 1000 * (time.perf_counter() - s0)
        await pilot.press("q")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".bench")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results = asyncio.run(run(args.jobs, args.seconds))
    rows = [
        ("queued jobs", f"{results['jobs']:,}", ""),
        ("fill database", f"{results['fill_s']:.1f}", "s"),
        ("start-up to queue drawn", f"{results['startup_s']:.2f}", "s"),
        ("RSS after start-up", f"{results['rss_mb']:.0f}", "MB"),
        ("CPU idle", f"{results['idle_cpu_pct']:.2f}", "% of a core (target < 2)"),
        (
            "CPU for the queue re-read at job start",
            f"{results['job_start_requery_cpu_s']:.2f}",
            "s",
        ),
        ("CPU, one encode's progress", f"{results['progress_cpu_pct']:.2f}", "% of a core"),
        ("scroll end+home", f"{results['scroll_end_home_ms']:.0f}", "ms"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10}  {unit}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "bench_tui.json"
    out.write_text(json.dumps({**results, "python": platform.python_version()}, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
