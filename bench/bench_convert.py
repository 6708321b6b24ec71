"""Benchmark: ``castui convert`` against the identical ffmpeg command run bare, same run.

Transcode: a 720p MPEG-4/MP3 AVI (a common legacy shape) is converted by ``castui convert
--encoder cpu`` (probe, decide, encode, validate, swap, all of it), and the exact argv castui
builds for it is run bare with no castui around it; runs alternate to spread machine noise.
Remux: a 1080p H.264/AAC MKV, throughput in x realtime.

    python bench/bench_convert.py [--seconds 60] [--repeat 2] [--out .bench]

castui's cost is a fixed ~1 s (interpreter start-up, a probe worker, validation passes, the
swap's fsyncs) on top of the encode, so the ratio depends on the clip length: it is reported
with the overhead in seconds, on a 60 s clip by default.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from castui_core.decide import decide
from castui_core.ffmpeg.command import build_command
from castui_core.probe import probe_pyav
from castui_core.profiles import builtin_profiles


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"{cmd[:4]}... exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0, help="transcode source length")
    parser.add_argument("--remux-seconds", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    profile = builtin_profiles()["chromecast-1080p"]

    with tempfile.TemporaryDirectory(prefix="castui-bench-convert-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
               "XDG_DATA_HOME": str(home / ".local/share")}  # fmt: skip
        env.pop("CASTUI_CONFIG", None)

        master = root / "master.avi"
        ffmpeg(
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={args.seconds}",
            "-f", "lavfi", "-i", f"sine=duration={args.seconds}",
            "-c:v", "mpeg4", "-q:v", "4", "-c:a", "libmp3lame", str(master),
        )  # fmt: skip
        castui_times: list[float] = []
        bare_times: list[float] = []
        for i in range(args.repeat):
            # castui: the whole pipeline, as a user runs it.
            work = root / f"castui{i}"
            work.mkdir()
            source = work / "movie.avi"
            shutil.copy(master, source)
            castui_times.append(
                timed([sys.executable, "-m", "castui", "convert", "--encoder", "cpu",
                       str(source)], env)
            )  # fmt: skip
            # bare: the identical argv castui builds for this file, nothing around it.
            bare = root / f"bare{i}"
            bare.mkdir()
            source = bare / "movie.avi"
            shutil.copy(master, source)
            info = probe_pyav(str(source))
            plan = build_command(
                info, profile, decide(info, profile), output=str(bare / "out.mp4"),
                backend="cpu", ffmpeg=shutil.which("ffmpeg") or "ffmpeg",
            )  # fmt: skip
            bare_times.append(timed(list(plan.args), env))

        remux_src = root / "remux.mkv"
        ffmpeg(
            "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=25:duration={args.remux_seconds}",
            "-f", "lavfi", "-i", f"sine=duration={args.remux_seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p",
            "-c:a", "aac", str(remux_src),
        )  # fmt: skip
        remux_s = timed(
            [sys.executable, "-m", "castui", "convert", "--encoder", "cpu", str(remux_src)], env
        )
        remux_mb = remux_src.stat().st_size / 1e6

    c_med = statistics.median(castui_times)
    b_med = statistics.median(bare_times)
    ratio = c_med / b_med
    rows = [
        ("transcode source", f"{args.seconds:g}", "s of 1280x720 MPEG-4/MP3 AVI"),
        ("castui convert (median)", f"{c_med:.2f}", f"s over {args.repeat} runs"),
        ("bare ffmpeg, same argv (median)", f"{b_med:.2f}", "s"),
        ("ratio castui / bare", f"{ratio:.3f}", "(target <= 1.03)"),
        ("castui fixed overhead", f"{c_med - b_med:.2f}",
         "s (start-up, probe worker, validation, swap; independent of length)"),
        ("remux 1080p H.264 MKV -> MP4", f"{args.remux_seconds / remux_s:.0f}",
         f"x realtime ({remux_mb:.0f} MB in {remux_s:.2f} s, incl. validation)"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\nbench_convert ({os.cpu_count()} CPUs)")
    for name, value, unit in rows:
        print(f"  {name:<{width}}  {value:>8}  {unit}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_convert.json").write_text(
        json.dumps(
            {
                "castui_s": castui_times,
                "bare_s": bare_times,
                "ratio": ratio,
                "remux_realtime_x": args.remux_seconds / remux_s,
                "remux_mb": remux_mb,
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"  saved {out / 'bench_convert.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
