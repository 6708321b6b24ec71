"""Benchmark: ingest latency, unchanged-rescan cost and idle CPU while watching.

* latency: last write of a real media file -> its JobQueued event, minus settle_seconds
  (goal <= 1 s), with real inotify;
* rescan: a library of N files whose catalog is up to date: no probes, goal <= 2 s at 20,000;
* idle CPU while watching 2,000 folders (goal below Unmanic's 0.7 % of a core).

    python bench/bench_ingest.py [--sizes 20000 100000] [--folders 2000] [--out .bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from castui_core.bus import EventBus
from castui_core.events import JobQueued, ScanFinished
from castui_core.ingest import Ingest
from castui_core.probe import ProbePool
from castui_core.settings import LibrarySettings, ScanSettings, Settings
from castui_core.store import CatalogEntry, Store

SETTLE = 1.0


def make_sample(path: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=320x240:rate=25:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


def settings_for(root: Path, lib: Path, watch: str = "events") -> Settings:
    return Settings(
        database=root / "castui.db",
        libraries=(LibrarySettings(name="L", path=lib, watch=watch),),
        scan=ScanSettings(settle_seconds=SETTLE, poll_interval_s=60),
    )


async def bench_latency(root: Path, pool: ProbePool, sample: Path, n: int = 5) -> list[float]:
    lib = root / "lib"
    lib.mkdir()
    bus = EventBus()
    sub = bus.subscribe()
    out: list[float] = []
    async with (
        Store.open(root / "castui.db") as store,
        Ingest(settings_for(root, lib), store, pool, bus),
    ):
        async for e in sub:
            if isinstance(e, ScanFinished):
                break
        data = sample.read_bytes()
        for i in range(n):
            dest = lib / f"f{i}.mkv"

            def write(dest: Path = dest) -> float:
                with open(dest, "wb") as f:
                    for j in range(0, len(data), 4096):
                        f.write(data[j : j + 4096])
                return time.monotonic()

            last = await asyncio.to_thread(write)
            async for e in sub:
                if isinstance(e, JobQueued) and e.path == str(dest):
                    out.append(time.monotonic() - last - SETTLE)
                    break
    return out


async def bench_rescan(root: Path, pool: ProbePool, files: int, folders: int) -> dict[str, float]:
    lib = root / "lib"
    entries = []
    per = max(1, files // folders)
    t0 = time.monotonic()
    for i in range(files):
        d = lib / f"d{i // per:05d}"
        if i % per == 0:
            d.mkdir(parents=True, exist_ok=True)
        p = d / f"f{i:06d}.mkv"
        p.write_bytes(b"x")
        st = p.stat()
        entries.append(
            CatalogEntry(
                str(p),
                "L",
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                probe={"format_name": "matroska"},
                decision="skip",
            )
        )
    build_s = time.monotonic() - t0
    async with Store.open(root / "castui.db") as store:
        await store.upsert_files(entries)
        ingest = Ingest(
            settings_for(root, lib, "off"), store, pool, EventBus(), scan_at_start=False
        )
        await ingest.start()
        try:
            t0 = time.monotonic()
            result = await ingest.scan_library("L")
            seconds = time.monotonic() - t0
        finally:
            await ingest.stop()
    return {
        "files": files,
        "seconds": seconds,
        "probes": ingest.scanner.probes,
        "unchanged": result.unchanged,
        "build_s": build_s,
    }


async def bench_idle(root: Path, pool: ProbePool, folders: int, seconds: float) -> dict[str, float]:
    lib = root / "lib"
    for i in range(folders):
        (lib / f"show{i // 50:03d}" / f"season{i:05d}").mkdir(parents=True)
    bus = EventBus()
    sub = bus.subscribe()
    async with (
        Store.open(root / "castui.db") as store,
        Ingest(settings_for(root, lib), store, pool, bus),
    ):
        async for e in sub:
            if isinstance(e, ScanFinished):
                break
        await asyncio.sleep(1.0)
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - c0
        wall = time.monotonic() - t0
    return {"folders": folders, "cpu_percent": 100 * cpu / wall, "seconds": wall}


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--folders", type=int, default=2000)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path(".bench"))
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is needed", file=sys.stderr)
        return 2
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, ProbePool(2, timeout=30) as pool:
        base = Path(tmp)
        sample = base / "sample.mkv"
        make_sample(sample)
        (base / "lat").mkdir()
        latency = await bench_latency(base / "lat", pool, sample)
        results["latency_minus_settle_s"] = latency
        rescans = []
        for n in args.sizes:
            (base / f"r{n}").mkdir()
            rescans.append(await bench_rescan(base / f"r{n}", pool, n, args.folders))
            shutil.rmtree(base / f"r{n}")
        results["rescan"] = rescans
        (base / "idle").mkdir()
        results["idle"] = await bench_idle(base / "idle", pool, args.folders, args.idle_seconds)

    print(f"{'measure':<44} {'value':>12}  goal")
    print(
        f"{'latency - settle, max of ' + str(len(latency)) + ' (s)':<44} {max(latency):>12.3f}  <= 1 s"
    )
    print(f"{'latency - settle, median (s)':<44} {sorted(latency)[len(latency) // 2]:>12.3f}")
    for r in rescans:
        label = f"unchanged rescan, {r['files']:,} files (s)"
        goal = "<= 2 s" if r["files"] <= 20000 else ""
        print(f"{label:<44} {r['seconds']:>12.3f}  {goal} (probes: {r['probes']})")
    idle = results["idle"]
    assert isinstance(idle, dict)
    print(
        f"{'idle CPU, ' + str(idle['folders']) + ' folders watched (% core)':<44} {idle['cpu_percent']:>12.3f}  < 0.7 %"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_ingest.json").write_text(json.dumps(results, indent=2))
    print(f"saved {args.out / 'bench_ingest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
