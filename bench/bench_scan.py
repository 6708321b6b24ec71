"""Benchmark: first scan and rescans of a generated library (walk + probe + decide), end to end.

Builds 4,000 small real media files in 400 folders (copies of a few tiny ffmpeg-made templates
of different shapes), then times ``castui scan --json LIBRARY`` as a user runs it, sampling
the peak RSS of the whole process tree (castui plus its probe workers): the first scan (every
file probed), a rescan of the unchanged library (the catalog remembers every probe: nothing
may be probed, the output must be identical) and ``--fresh``. For scale it also times one
ffprobe process per file on a sample of the same files, in the same run.

Then a 100,000-file library: empty files (probing 100,000 real files would take minutes on a
small machine, and the rescan never probes anyway), their catalog rows seeded with the real
probe result of an empty file, so the rescan is the walk, the stat of every file, the catalog
diff, the decisions and the output, through the CLI, as for a real library.

Each run is repeated (``--repeat``, best wall time kept: the machine is shared) and also
reports the CPU seconds of the whole process tree, the steadier figure when other work
competes for the cores. castui's bytecode is compiled first: with PYTHONDONTWRITEBYTECODE
set, every run would otherwise recompile each module edited since the last ``.pyc``, which
no installed castui does.

    python bench/bench_scan.py [--files 4000] [--folders 400] [--big 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
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


PROBED = re.compile(r"catalog: (\d+) files probed, (\d+) unchanged")


@dataclass
class Run:
    seconds: float
    cpu_s: float  # user + system of castui and the probe workers it waited for
    peak_rss: int
    out: bytes
    probed: int
    reused: int


def run_tree_measured(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``cmd``; its time, CPU time and the peak RSS of its process tree, stdout and probe
    counts."""
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=castui_root()
    )
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
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} exited {proc.returncode}: {err.decode(errors='replace')}")
    match = PROBED.search(err.decode(errors="replace"))
    if match is None:
        raise SystemExit(f"{cmd} did not report its probes: {err.decode(errors='replace')}")
    return Run(seconds, cpu, peak, out, int(match[1]), int(match[2]))


def best_of(runs: list[Run]) -> Run:
    """The fastest run (wall time), with the least CPU time of all of them."""
    best = min(runs, key=lambda r: r.seconds)
    return Run(
        best.seconds,
        min(r.cpu_s for r in runs),
        max(r.peak_rss for r in runs),
        best.out,
        best.probed,
        best.reused,
    )


def castui_root() -> Path:
    """The folder holding the castui package this script imports. ``python -m castui`` runs
    there, so it imports the same castui: run from another checkout, the current folder
    comes first on ``sys.path`` and would win over PYTHONPATH (a baseline measured with
    ``PYTHONPATH=/tmp/base`` from this checkout measures this checkout)."""
    spec = importlib.util.find_spec("castui")
    if spec is None or spec.origin is None:
        raise SystemExit("castui is not importable")
    return Path(spec.origin).parent.parent


def compile_castui() -> None:
    """Write castui's bytecode now, as an installed castui has it (see the docstring)."""
    for name in ("castui", "castui_core"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=1)


def make_empty_library(root: Path, files: int, folders: int) -> list[str]:
    """``files`` empty .mkv files in ``folders`` folders (cheap: no data blocks)."""
    paths: list[str] = []
    per_folder = max(1, files // folders)
    for f in range(folders):
        folder = root / f"show {f:05d}"
        folder.mkdir(parents=True)
        for i in range(per_folder):
            path = folder / f"e{i:03d}.mkv"
            path.touch()
            paths.append(str(path))
    return paths


async def seed_catalog(database: Path, library: str, paths: list[str]) -> None:
    """Catalog rows for empty files, as a scan writes them: the real probe of one of them."""
    from castui_core.errors import ProbeError
    from castui_core.probe import probe_pyav
    from castui_core.store import CatalogEntry, Store
    from castui_core.store.catalog import scan_label

    label = scan_label(library)  # rows as `castui scan` writes them

    try:
        probe_pyav(paths[0])
    except ProbeError as exc:
        reason = exc.reason
    else:
        raise SystemExit("an empty file probed as media?")
    entries = []
    for path in paths:
        st = os.stat(path)
        entries.append(
            CatalogEntry(
                path, label, st.st_size, st.st_mtime_ns, st.st_ino, probe={"failure": reason}
            )
        )
    async with Store.open(database) as store:
        await store.upsert_files(entries)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=4_000)
    parser.add_argument("--folders", type=int, default=400)
    parser.add_argument("--big", type=int, default=100_000, help="empty-file library (0: none)")
    parser.add_argument("--ffprobe-sample", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scan (best kept)")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    repeat = max(1, args.repeat)
    compile_castui()

    with tempfile.TemporaryDirectory(prefix="castui-bench-scan-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        count = make_library(root, args.files, args.folders)
        gen_s = time.perf_counter() - t0
        library = root / "library"
        env_home = root / "home"
        env_home.mkdir()
        os.environ.update(
            HOME=str(env_home),
            XDG_CONFIG_HOME=str(env_home / ".config"),
            XDG_DATA_HOME=str(env_home / ".local" / "share"),
        )
        os.environ.pop("CASTUI_CONFIG", None)
        scan = [sys.executable, "-m", "castui", "scan", "--json", str(library)]
        firsts: list[Run] = []
        for n in range(repeat):  # each first scan with a catalog of its own; the last is kept
            data_home = env_home / f"first-{n}"
            firsts.append(run_tree_measured(scan, {**os.environ, "XDG_DATA_HOME": str(data_home)}))
        os.environ["XDG_DATA_HOME"] = str(data_home)
        first = best_of(firsts)
        scanned = len(json.loads(first.out))
        if scanned != count or first.probed < count:
            raise SystemExit(f"scan reported {scanned} files, probed {first.probed}, of {count}")
        again = best_of([run_tree_measured(scan) for _ in range(repeat)])
        if again.out != first.out or again.probed != 0:
            raise SystemExit(f"rescan differs or probed {again.probed} files")
        fresh = best_of([run_tree_measured([*scan, "--fresh"]) for _ in range(repeat)])
        if fresh.out != first.out or fresh.probed < count:
            raise SystemExit("--fresh scan differs or did not probe everything")

        sample = sorted(library.rglob("*.*"))[: args.ffprobe_sample]
        t0 = time.perf_counter()
        for path in sample:
            subprocess.run(
                ["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                 "-show_streams", str(path)],
                check=True, capture_output=True,
            )  # fmt: skip
        ffprobe_rate = len(sample) / (time.perf_counter() - t0)

        big: Run | None = None
        if args.big:
            big_root = root / "big"
            config = root / "big.yaml"
            database = root / "big.db"
            config.write_text(
                f"database: {database}\nlibraries:\n  - name: big\n    path: {big_root}\n"
            )
            paths = make_empty_library(big_root, args.big, max(1, args.big // 10))
            asyncio.run(seed_catalog(database, "big", paths))
            big_scan = [sys.executable, "-m", "castui", "scan", "--json", "--config", str(config)]
            big = best_of([run_tree_measured(big_scan) for _ in range(repeat)])
            if big.probed != 0 or len(json.loads(big.out)) != len(paths):
                raise SystemExit(f"100k rescan probed {big.probed} files or lost some")

    rate = count / first.seconds
    goals = {
        "first scan >= 1200 files/s": rate >= 1200,
        f"rescan of {count} <= 0.5 s": again.seconds <= 0.5,
    }
    rows = [
        ("files in library", f"{count}", f"{args.folders} folders (generated in {gen_s:.1f} s)"),
        ("first scan, end to end", f"{first.seconds:.2f}", f"s ({first.probed} probed)"),
        ("first scan throughput", f"{rate:.0f}", "files/s (goal >= 1200)"),
        ("first scan CPU, castui + workers", f"{first.cpu_s:.2f}", "s"),
        ("rescan, unchanged", f"{again.seconds:.2f}", f"s, {again.probed} probed (goal <= 0.5)"),
        ("rescan CPU", f"{again.cpu_s:.2f}", "s"),
        ("rescan --fresh", f"{fresh.seconds:.2f}", f"s ({fresh.probed} probed)"),
        ("peak RSS, castui + probe workers", f"{first.peak_rss / 2**20:.0f}", "MiB (first scan)"),
        ("ffprobe process per file (same run)", f"{ffprobe_rate:.0f}", "files/s"),
        ("castui / ffprobe-per-file", f"{rate / ffprobe_rate:.1f}", "x"),
    ]
    if big is not None:
        goals[f"rescan of {args.big} <= 3 s"] = big.seconds <= 3.0
        rows.append(
            (
                f"rescan, {args.big} empty files",
                f"{big.seconds:.2f}",
                "s (goal <= 3; catalog seeded, see the docstring)",
            )
        )
        rows.append((f"rescan CPU, {args.big} empty files", f"{big.cpu_s:.2f}", "s"))
    width = max(len(r[0]) for r in rows)
    print(f"\nbench_scan ({os.cpu_count()} CPUs, best of {repeat}, castui from {castui_root()})")
    for name, value, unit in rows:
        print(f"  {name:<{width}}  {value:>10}  {unit}")
    for goal, met in goals.items():
        print(f"  goal {goal}: {'met' if met else 'MISSED'}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "files": count,
        "folders": args.folders,
        "seconds": first.seconds,
        "cpu_seconds": first.cpu_s,
        "files_per_s": rate,
        "rescan_seconds": again.seconds,
        "rescan_cpu_seconds": again.cpu_s,
        "fresh_seconds": fresh.seconds,
        "big_files": args.big,
        "big_rescan_seconds": big.seconds if big is not None else None,
        "big_rescan_cpu_seconds": big.cpu_s if big is not None else None,
        "repeat": repeat,
        "peak_rss_bytes": first.peak_rss,
        "ffprobe_per_file_files_per_s": ffprobe_rate,
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out_dir / "bench_scan.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"  saved {out_dir / 'bench_scan.json'}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
