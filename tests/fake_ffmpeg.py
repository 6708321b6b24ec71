#!/usr/bin/env python3
"""A stand-in for ffmpeg that misbehaves on request, for the runner and NVENC-probe tests.

Run as ``python tests/fake_ffmpeg.py MODE [ffmpeg args...]``; arguments after MODE are
ignored (so a wrapper can pass the real probe's argv through). It writes ``-progress``-style
blocks to stdout and ffmpeg-like error lines to stderr, so the runner is exercised exactly as
by the real ffmpeg, including the failures a CI machine without a GPU cannot produce.
"""

from __future__ import annotations

import os
import signal
import sys
import time

_EPILOGUE = (
    "Error initializing output stream 0:0 -- Error while opening encoder for output stream "
    "#0:0 - maybe incorrect parameters such as bit_rate, rate, width or height\n"
)

#: Modes that print an NVENC error the way ffmpeg 5.x does and exit 1.
NVENC_ERRORS: dict[str, str] = {
    "nvenc-missing": "[h264_nvenc @ 0x55c670b2a800] Cannot load libcuda.so.1\n",
    "session-limit": (
        "[h264_nvenc @ 0x5581d1f4c840] OpenEncodeSessionEx failed: out of memory (10): "
        "(no details)\n"
    ),
    "driver-old": (
        "[h264_nvenc @ 0x562b6ad2a8c0] Driver does not support the required nvenc API version. "
        "Required: 12.0 Found: 11.1\n"
        "[h264_nvenc @ 0x562b6ad2a8c0] The minimum required Nvidia driver for nvenc is "
        "520.56.06 or newer\n"
    ),
    "unsupported-device": (
        "[h264_nvenc @ 0x55f0b0b3e980] OpenEncodeSessionEx failed: unsupported device (2): "
        "(no details)\n"
    ),
}


def block(n: int, *, end: bool = False) -> str:
    """One ``-progress`` block at frame ``n`` (25 fps)."""
    us = n * 40_000
    return (
        f"frame={n}\nfps=25.00\nstream_0_0_q=28.0\nbitrate= 500.0kbits/s\n"
        f"total_size={n * 2500}\nout_time_us={us}\nout_time_ms={us}\n"
        f"out_time=00:00:{us / 1e6:09.6f}\ndup_frames=0\ndrop_frames=0\nspeed=1.00x\n"
        f"progress={'end' if end else 'continue'}\n"
    )


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def hang() -> None:
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "ok"
    if mode == "ok":
        return 0
    if mode in NVENC_ERRORS:
        sys.stderr.write(NVENC_ERRORS[mode] + _EPILOGUE)
        return 1
    if mode == "progress-ok":
        for n in range(1, 6):
            out(block(n * 10))
        out(block(50, end=True))
        return 0
    if mode == "progress-then-hang":
        for n in range(1, 4):
            out(block(n * 10))
        hang()
    if mode == "progress-forever":
        n = 0
        while True:
            n += 1
            out(block(n))
            time.sleep(0.05)
    if mode == "flood-stderr":
        line = "[h264 @ 0x5566] concealing 1620 DC, 1620 AC, 1620 MV errors in P frame\n"
        written = 0
        n = 0
        while written < 5 * 1024 * 1024:
            chunk = line * 200
            sys.stderr.write(chunk)
            written += len(chunk)
            n += 1
            out(block(n))  # blocks if the runner only read stdout after stderr (or vice versa)
        sys.stderr.write("FLOOD-END marker\n")
        sys.stderr.flush()
        out(block(n + 1, end=True))
        return 0
    if mode == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out(block(1))  # the trap is installed once this arrives
        hang()
    sys.stderr.write(f"fake_ffmpeg: unknown mode {mode!r} (pid {os.getpid()})\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
