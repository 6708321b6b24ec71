"""Tiny real media files made with the real ffmpeg, one per source shape the rules care about.

The shapes live in :mod:`castui_core.demo` (``castui demo`` makes its library from the same
catalogue). Each test clip is 1 s or less and small, so the whole set takes a few seconds to
make once per session.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from castui_core.demo import SAMPLES, SRT, Sample, make_files

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

__all__ = ["FFMPEG", "SAMPLES", "SRT", "Sample", "make_samples"]


def make_samples(directory: Path) -> dict[str, Path]:
    """Create every sample (plus empty, garbage and truncated files) in ``directory``."""
    made = asyncio.run(make_files(FFMPEG, directory, ((s.name, s) for s in SAMPLES), seconds=1.0))
    empty = directory / "empty.mkv"
    empty.write_bytes(b"")
    made["empty.mkv"] = empty
    garbage = directory / "garbage.mkv"
    garbage.write_bytes(b"this is not a video file\n" * 100)
    made["garbage.mkv"] = garbage
    return made


def make_rotated(directory: Path, *, rotation: int = 270, size: str = "1280x720") -> Path:
    """A phone-style clip: H.264 ``size`` as coded, shown turned by ``rotation`` degrees
    counter-clockwise (270: the usual portrait phone video, reported by ffprobe as -90).

    The rotation is written as the MP4 track's display matrix with PyAV (a stream copy of a
    real ffmpeg encode): this ffmpeg 5.1 no longer writes ``-metadata rotate=``, and its
    ``-display_rotation`` input option only exists from ffmpeg 6.
    """
    import subprocess

    import av

    plain = directory / f"plain-{size}.mp4"
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=30",
         "-f", "lavfi", "-i", "sine=f=440", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(plain)],
        check=True,
    )  # fmt: skip
    out_path = directory / f"phone-{size}-rot{rotation}.mp4"
    with av.open(str(plain)) as src, av.open(str(out_path), "w") as out:
        mapping = {}
        for stream in src.streams:
            copy = out.add_stream_from_template(stream)
            if stream.type == "video":
                copy.set_display_rotation(rotation)
            mapping[stream.index] = copy
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    plain.unlink()
    return out_path
