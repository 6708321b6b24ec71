"""A short calibration encode for the readiness report when castui has no history yet.

Why: the report's encode-time estimate should be this machine's, not a guess. With no
finished transcode of a resolution class, a 2-second ``testsrc2`` clip at that class's size
is encoded with the real ffmpeg (libx264, the profiles' default CPU preset) to ``-f null``;
media seconds over wall seconds is the speed. Results are cached in a small JSON file so the
report pays for it once per machine and class.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from castui_core.errors import CastuiError

CALIBRATION_SECONDS = 2.0
FRAME_SIZES = {"sd": "640x480", "720p": "1280x720", "1080p": "1920x1080", "2160p": "3840x2160"}


async def calibrate(
    ffmpeg: Path | str, resolution: str, *, encoder: str = "libx264", preset: str = "medium"
) -> float:
    """Encode the calibration clip once; the speed in media seconds per wall second."""
    argv = [
        str(ffmpeg), "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
        f"testsrc2=size={FRAME_SIZES[resolution]}:rate=30:duration={CALIBRATION_SECONDS}",
        "-c:v", encoder, "-preset", preset, "-pix_fmt", "yuv420p", "-f", "null", "-",
    ]  # fmt: skip
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-300:]
        raise CastuiError(
            f"calibration encode ({encoder}, {resolution}) failed: {tail or proc.returncode};"
            " run `castui doctor` to check ffmpeg and its encoders"
        )
    return CALIBRATION_SECONDS / max(wall, 1e-3)


async def calibrated_speeds(
    ffmpeg: Path | str, classes: Iterable[str], cache: Path, *, encoder: str = "libx264"
) -> dict[str, float]:
    """Speeds for ``classes``: from ``cache`` when there, else measured and written back."""
    try:
        stored = json.loads(await asyncio.to_thread(cache.read_text))
        known = {str(k): float(v) for k, v in stored.items()}
    except (OSError, ValueError, AttributeError):
        known = {}
    speeds: dict[str, float] = {}
    changed = False
    for cls in classes:
        key = f"{encoder}:{cls}"
        if key not in known:
            known[key] = await calibrate(ffmpeg, cls, encoder=encoder)
            changed = True
        speeds[cls] = known[key]
    if changed:
        tmp = cache.with_name(cache.name + ".tmp")
        await asyncio.to_thread(tmp.write_text, json.dumps(known, indent=1, sort_keys=True))
        await asyncio.to_thread(os.replace, tmp, cache)
    return speeds
