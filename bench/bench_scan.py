"""Benchmark: first scan of a generated library (walk + probe + decide), end to end.

Builds 20,000 small real media files in 2,000 folders (copies of a few tiny ffmpeg-made
templates of different shapes), then times ``castui scan --json LIBRARY`` as a user runs it,
sampling the peak RSS of the whole process tree (castui plus its probe workers). For scale it
also times one ffprobe process per file on a sample of the same files, in the same run.

    python bench/bench_scan.py [--files 20000] [--folders 2000] [--out .bench]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

TEMPLATES = {
    "h264_aac.mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
    "h264_ac3.mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "ac3"],
    "hi10.mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-c:a", "aac"],
    "mpeg4.avi": ["-c:v", "mpeg4", "-c:a", "libmp3lame"],
    "mpeg2.ts": ["-c:v", "mpeg2video", "-c:a", "mp2"],
}  # fmt: skip


def make_library(root: Path, files: int, folders: int) -> int:
    templates = root / "_templates"
    templates.mkdir(parents=True)
    for name, codec_args in TEMPLATES.items():
        subprocess.run(
            [
                "ffmpeg", "-nostdin", "-v", "error", "-y",
                "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=0.2",
                "-f", "lavfi", "-i", "sine=duration=0.2",
                *codec_args, str(templates / name),
            ],
            check=True,
        )  # fmt: skip
    names = list(TEMPLATES)
    library = root / "library"
    total = 0
    per_folder = max(1, files // folders)
    for f in range(folders):
        folder = library / f"show {f:04d}" / "Season 01"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            name = names[(f + i) % len(names)]
            stem, ext = name.rsplit(".", 1)
            shutil.copyfile(templates / name, folder / f"{stem} e{i:02d}.{ext}")
            total += 1
    shutil.rmtree(templates)
    return total


def run_tree_measured(cmd: list[str]) -> tuple[float, int, bytes]:
    """Run ``cmd``; return (seconds, peak RSS of the process tree in bytes, stdout)."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                rss = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        rss += p.memory_info().rss
                peak = max(peak, rss)
            except psutil.Error:
                pass
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} exited {proc.returncode}")
    return seconds, peak, out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--folders", type=int, default=2_000)
    parser.add_argument("--ffprobe-sample", type=int, default=300)
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="castui-bench-scan-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        count = make_library(root, args.files, args.folders)
        gen_s = time.perf_counter() - t0
        library = root / "library"
        env_home = root / "home"
        env_home.mkdir()
        os.environ.update(HOME=str(env_home), XDG_CONFIG_HOME=str(env_home / ".config"))
        os.environ.pop("CASTUI_CONFIG", None)
        seconds, peak, out = run_tree_measured(
            [sys.executable, "-m", "castui", "scan", "--json", str(library)]
        )
        scanned = len(json.loads(out))
        if scanned != count:
            raise SystemExit(f"scan reported {scanned} files, library has {count}")

        sample = sorted(library.rglob("*.*"))[: args.ffprobe_sample]
        t0 = time.perf_counter()
        for path in sample:
            subprocess.run(
                ["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                 "-show_streams", str(path)],
                check=True, capture_output=True,
            )  # fmt: skip
        ffprobe_rate = len(sample) / (time.perf_counter() - t0)

    rate = count / seconds
    rows = [
        ("files in library", f"{count}", f"{args.folders} folders (generated in {gen_s:.1f} s)"),
        ("castui scan, end to end", f"{seconds:.2f}", "s"),
        ("castui scan throughput", f"{rate:.0f}", "files/s (goal >= 250)"),
        ("peak RSS, castui + probe workers", f"{peak / 2**20:.0f}", "MiB"),
        ("ffprobe process per file (same run)", f"{ffprobe_rate:.0f}", "files/s"),
        ("castui / ffprobe-per-file", f"{rate / ffprobe_rate:.1f}", "x"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nbench_scan ({os.cpu_count()} CPUs)")
    for name, value, unit in rows:
        print(f"  {name:<{width}}  {value:>10}  {unit}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "files": count,
        "folders": args.folders,
        "seconds": seconds,
        "files_per_s": rate,
        "peak_rss_bytes": peak,
        "ffprobe_per_file_files_per_s": ffprobe_rate,
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out_dir / "bench_scan.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"  saved {out_dir / 'bench_scan.json'}")
    return 0 if rate >= 250 else 1


if __name__ == "__main__":
    sys.exit(main())
