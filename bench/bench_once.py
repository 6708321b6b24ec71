"""Benchmark: ``castui --no-ui --once`` over a mixed library against the same ffmpeg runs bare.

Makes a dozen short clips of the shapes castui converts (remux and transcode: the demo's
samples), in two identical copies. castui runs ``--once`` on the first copy (start-up, scan,
probe, decide, convert, validate, swap, all of it); then the exact ffmpeg commands castui ran,
read back from its job results in the database, are run bare one after another on the second
copy (the paths moved over). Goal (issue 14): castui <= 1.15x the bare runs.

    python bench/bench_once.py [--files 12] [--seconds 3] [--out .bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from castui_core.demo import SAMPLES, make_files

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def moved(argv: list[str], old: str, new: str) -> list[str]:
    """``argv`` with every path under ``old`` moved under ``new``."""
    return [a.replace(old, new) if old in a else a for a in argv]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each clip")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    shapes = [s for s in SAMPLES if s.action in ("remux", "transcode")]

    with tempfile.TemporaryDirectory(prefix="castui-bench-once-") as tmp:
        root = Path(tmp)
        made = root / "made"
        made.mkdir()
        wanted = [(f"{i:02d} {s.name}", s) for i, s in enumerate(shapes * args.files)]
        wanted = wanted[: args.files]
        asyncio.run(make_files(FFMPEG, made, wanted, seconds=args.seconds))
        lib_castui, lib_bare = root / "castui" / "lib", root / "bare" / "lib"
        for lib in (lib_castui, lib_bare):
            shutil.copytree(made, lib, ignore=shutil.ignore_patterns("*.srt"))
            old = time.time() - 3600  # settled files: the start-up scan probes them at once
            for path in lib.iterdir():
                os.utime(path, (old, old))
        database = root / "state" / "castui.db"
        settings = root / "settings.yaml"
        settings.write_text(
            f"database: {database}\n"
            f"libraries:\n  - name: Bench\n    path: {lib_castui}\n"
            "operational: {encoder: cpu}\n"
        )
        env = {**os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(root / ".config")}
        env.pop("CASTUI_CONFIG", None)

        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "castui", "--no-ui", "--once", "--config", str(settings)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        castui_s = time.perf_counter() - t0
        if done.returncode not in (0, 1):
            raise SystemExit(f"castui --once exited {done.returncode}: {done.stderr[-2000:]}")

        conn = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT path, state, command FROM jobs ORDER BY finished_at"
            ).fetchall()
        finally:
            conn.close()
        commands = [json.loads(r[2]) for r in rows if r[1] == "done" and r[2]]
        if len(commands) != len(rows) or not commands:
            states = [r[1] for r in rows]
            raise SystemExit(f"expected every job done with its command, got {states}")

        bare_s = 0.0
        for argv in commands:
            bare = moved(list(argv), str(lib_castui), str(lib_bare))
            t0 = time.perf_counter()
            subprocess.run(bare, check=True, capture_output=True, env=env)
            bare_s += time.perf_counter() - t0

    ratio = castui_s / bare_s
    rows_out = [
        ("clips", f"{len(commands)}", f"converted of {args.files} ({args.seconds:g} s each)"),
        ("castui --no-ui --once, end to end", f"{castui_s:.2f}", "s"),
        ("the same ffmpeg commands, bare", f"{bare_s:.2f}", "s, one after another"),
        ("ratio castui / bare", f"{ratio:.3f}", "(goal <= 1.15)"),
        ("castui overhead", f"{castui_s - bare_s:.2f}", "s (start-up, scan, probes, checks, swaps)"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows_out)
    print(f"\nbench_once ({os.cpu_count()} CPUs)")
    for name, value, unit in rows_out:
        print(f"  {name:<{width}}  {value:>8}  {unit}")
    print(f"  goal ratio <= 1.15: {'met' if ratio <= 1.15 else 'MISSED'}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "clips": len(commands),
        "clip_seconds": args.seconds,
        "castui_s": castui_s,
        "bare_s": bare_s,
        "ratio": ratio,
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / "bench_once.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"  saved {out / 'bench_once.json'}")
    return 0 if ratio <= 1.15 else 1


if __name__ == "__main__":
    sys.exit(main())
