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
