"""Benchmark: idle CPU and RSS of the headless engine watching a 10,000-file library.

Builds 10,000 small real MP4 files that already play directly (so nothing gets encoded) in
1,000 folders, starts ``castui --no-ui`` on them, waits for the start-up scan to finish (it
probes every file once) and for the engine to be idle, then measures CPU time of castui and
its children over a quiet window. Target: < 1 % of one core.

Idle memory: the probe workers stop after ``scan.probe_idle_s`` without a probe (5 s here,
60 s by default: the same mechanism, a shorter wait). The bench waits until the process tree
has no probe worker left (a condition polled with a deadline, not a fixed sleep), then
measures the RSS of the whole tree (psutil, children included). Target: <= 100 MB.

    python bench/bench_engine.py [--files 10000] [--folders 1000] [--window 30] [--out .bench]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def tree(proc: psutil.Process) -> list[psutil.Process]:
    return [proc, *proc.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def probe_workers(parent: psutil.Process) -> list[psutil.Process]:
    """The probe pool's processes (spawned by multiprocessing) in ``parent``'s tree."""
    found = []
    for p in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in p.cmdline()):
                found.append(p)
    return found


def wait_until(condition: Callable[[], bool], deadline_s: float) -> float:
    """Poll ``condition`` until true; seconds waited. SystemExit after ``deadline_s``."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > deadline_s:
            raise SystemExit(f"condition not reached within {deadline_s:g} s")
        time.sleep(0.1)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--folders", type=int, default=1_000)
    parser.add_argument("--window", type=float, default=30.0, help="idle measurement, seconds")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="castui-bench-engine-") as tmp:
        root = Path(tmp)
        template = root / "template.mp4"
        subprocess.run(
            [
                "ffmpeg", "-nostdin", "-v", "error", "-y",
                "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=0.2",
                "-f", "lavfi", "-i", "sine=duration=0.2",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-movflags", "+faststart", str(template),
            ],
            check=True,
        )  # fmt: skip
        lib = root / "lib"
        per = max(1, args.files // args.folders)
        count = 0
        for f in range(args.folders):
            folder = lib / f"show {f:04d}"
            folder.mkdir(parents=True)
            for i in range(per):
                target = folder / f"e{i:02d}.mp4"
                shutil.copyfile(template, target)
                # An old library: files older than settle_seconds are probed by the scan
                # itself (fresh ones would be settled and probed after it, in the window).
                os.utime(target, (time.time() - 3600, time.time() - 3600))
                count += 1
        settings = root / "settings.yaml"
        settings.write_text(
            f"database: {root}/state/castui.db\n"
            f"libraries:\n  - name: Bench\n    path: {lib}\n    watch: events\n"
            "operational: {encoder: cpu}\nscan: {settle_seconds: 5, probe_idle_s: 5}\n"
        )
        env = {**os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(root / ".config")}
        env.pop("CASTUI_CONFIG", None)
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "castui", "--no-ui", "--config", str(settings)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stderr is not None
        scan_s = None
        for line in proc.stderr:
            if "scan Bench finished" in line:
                scan_s = time.perf_counter() - started
                break
        if scan_s is None:
            raise SystemExit("castui exited before its start-up scan finished")
        # Keep reading stderr so the pipe never fills while we measure.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        time.sleep(3)  # let the watcher settle its initial state (not measured)
        parent = psutil.Process(proc.pid)
        busy_memory = rss(tree(parent))
        workers_seen = len(probe_workers(parent))
        # Idle: the probe workers have stopped for want of work (measuring CPU across their
        # exit would lose their CPU time from the sum).
        idle_wait = wait_until(lambda: not probe_workers(parent), deadline_s=120)
        procs = tree(parent)
        cpu0, t0 = cpu_seconds(procs), time.perf_counter()
        time.sleep(args.window)
        procs = tree(parent)
        cpu1, t1 = cpu_seconds(procs), time.perf_counter()
        idle_tree = procs
        idle_memory = rss(idle_tree)
        memory = busy_memory
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    idle_pct = 100.0 * (cpu1 - cpu0) / (t1 - t0)
    rows = [
        ("library", f"{count}", f"files in {args.folders} folders (inotify watch)"),
        ("start-up scan (probes every file once)", f"{scan_s:.1f}", "s"),
        ("idle CPU, castui + probe workers", f"{idle_pct:.2f}", f"% of a core over {args.window:g} s (target < 1)"),
        ("RSS, castui + probe workers", f"{memory / 2**20:.0f}", f"MiB, 3 s after the scan ({workers_seen} probe workers)"),
        ("idle tree RSS, probe workers stopped", f"{idle_memory / 1e6:.0f}", f"MB, {len(idle_tree)} processes (goal <= 100; waited {idle_wait:.1f} s)"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\nbench_engine ({os.cpu_count()} CPUs)")
    for name, value, unit in rows:
        print(f"  {name:<{width}}  {value:>8}  {unit}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_engine.json").write_text(
        json.dumps(
            {
                "files": count,
                "scan_s": scan_s,
                "idle_cpu_percent": idle_pct,
                "rss_bytes": memory,
                "idle_tree_rss_bytes": idle_memory,
                "idle_tree_processes": len(idle_tree),
                "window_s": args.window,
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"  saved {out / 'bench_engine.json'}")
    print(f"  goal idle tree <= 100 MB: {'met' if idle_memory <= 100e6 else 'MISSED'}")
    return 0 if idle_pct < 1.0 and idle_memory <= 100e6 else 1


if __name__ == "__main__":
    sys.exit(main())
