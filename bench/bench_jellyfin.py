"""Benchmark: Jellyfin notification latency and batching, over real HTTP to the stand-in.

Two measures, with castui's real Store (SQLite, synchronous=FULL) and real sender:

1. **Latency from swap commit to POST**: a job is completed with its outbox rows (what the
   engine's ``_record`` does right after the swap), the sender is poked, and the time until the
   stand-in Jellyfin receives the ``/Library/Media/Updated`` POST is measured. Goal: at most
   2 s plus the batching window. Run with the default window (2 s) and with none (0 s).
2. **1,000 swaps coalesced**: 1,000 jobs complete (a burst, and then spread at 100 swaps/s)
   and the POST requests Jellyfin received are counted.

    python bench/bench_jellyfin.py [--out .bench] [--samples 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from jellyfin_standin import StandinJellyfin

from castui_core.bus import EventBus
from castui_core.integrations.jellyfin.sender import JellyfinSender
from castui_core.settings import Settings, parse_settings
from castui_core.store import JobResult, Store
from castui_core.store.outbox import OutboxEntry


def settings_for(root: Path, server: StandinJellyfin, window: float) -> Settings:
    text = json.dumps(
        {
            "database": str(root / "castui.db"),
            "libraries": [{"name": "Movies", "path": str(root / "lib"), "watch": "off"}],
            "jellyfin": {"url": server.url, "api_key": server.api_key, "batch_window_s": window},
        }
    )
    return parse_settings(text)


async def commit_swap(store: Store, path: str) -> float:
    """Queue, claim and complete one job with its outbox row; returns the commit time."""
    await store.enqueue(path.replace(".mp4", ".mkv"), "Movies", "remux")
    claimed = await store.claim("bench")
    assert claimed is not None
    await store.complete(
        claimed.id,
        claimed.token,
        JobResult(output_path=path),
        [OutboxEntry(path, "Created", "Movies")],
    )
    return time.time()


async def wait_posts(server: StandinJellyfin, n_paths: int, timeout: float = 120) -> None:
    ok = await asyncio.to_thread(server.wait_for, lambda: len(server.updates) >= n_paths, timeout)
    if not ok:
        raise SystemExit(f"the stand-in got {len(server.updates)} of {n_paths} paths")


async def latency(root: Path, window: float, samples: int) -> list[float]:
    server = StandinJellyfin(monitor_delay_s=60).start()
    server.add_library("Movies", [str(root / "lib")])
    try:
        settings = settings_for(root, server, window)
        bus = EventBus()
        async with (
            Store.open(settings.database) as store,
            JellyfinSender(store, settings, bus) as sender,
        ):
            found: list[float] = []
            for n in range(samples):
                path = f"{root}/lib/Film {n}/Film {n}.mp4"
                committed = await commit_swap(store, path)
                sender.poke()
                await wait_posts(server, n + 1)
                posted = server.requests_to("/Library/Media/Updated")[-1].at
                found.append(posted - committed)
            return found
    finally:
        server.stop()


async def coalesced(root: Path, swaps: int, per_second: float | None) -> tuple[int, float]:
    """``(POST requests, seconds until all delivered)`` for ``swaps`` swaps."""
    server = StandinJellyfin(monitor_delay_s=60).start()
    server.add_library("Movies", [str(root / "lib")])
    try:
        settings = settings_for(root, server, 2.0)
        bus = EventBus()
        async with (
            Store.open(settings.database) as store,
            JellyfinSender(store, settings, bus) as sender,
        ):
            start = time.perf_counter()
            for n in range(swaps):
                await commit_swap(store, f"{root}/lib/Show {n % 40}/Episode {n}.mp4")
                sender.poke()
                if per_second is not None:
                    delay = start + (n + 1) / per_second - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
            await wait_posts(server, swaps)
            return len(server.requests_to("/Library/Media/Updated")), time.perf_counter() - start
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=".bench", help="directory for bench_jellyfin.json")
    parser.add_argument("--samples", type=int, default=15)
    args, _ = parser.parse_known_args()  # nox passes every bench the same arguments
    rows: list[tuple[str, float, str]] = []
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="castui-bench-jf-") as tmp:
        root = Path(tmp)
        for window in (2.0, 0.0):
            (root / f"w{window}").mkdir()
            found = asyncio.run(latency(root / f"w{window}", window, args.samples))
            p50, worst = statistics.median(found), max(found)
            rows.append((f"commit -> POST, window {window:g} s, median", p50, "s"))
            rows.append((f"commit -> POST, window {window:g} s, max", worst, "s"))
            result[f"latency_window_{window:g}s"] = {"median_s": p50, "max_s": worst, "all": found}
        for label, rate in (("burst", None), ("100/s", 100.0)):
            (root / label.replace("/", "")).mkdir()
            requests, seconds = asyncio.run(coalesced(root / label.replace("/", ""), 1000, rate))
            rows.append((f"1,000 swaps ({label}): POST requests", requests, "requests"))
            rows.append((f"1,000 swaps ({label}): all delivered after", seconds, "s"))
            result[f"coalesce_{label}"] = {"requests": requests, "seconds": seconds}
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>10}  unit")
    print("-" * (width + 20))
    for metric, value, unit in rows:
        print(f"{metric:<{width}}  {value:>10.2f}  {unit}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_jellyfin.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out / 'bench_jellyfin.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
