"""Calibration encodes for the readiness report when castui has no history yet.

Why: the report's encode-time estimate should be this machine's, with the encoder this node
will really use, not a guess. With no finished transcode of a resolution class, a 2-second
``testsrc2`` clip at that class's size goes through the *real job builder*
(:func:`castui_core.ffmpeg.command.build_command`: same encoder, preset, rate control, scaling
and filters as a job for the profile, libx264/libx265 or h264_nvenc/hevc_nvenc as the
engine's encoder choice says) with only the input swapped for the clip and the output for
``-f null``; media seconds over wall seconds is the speed. Results are cached per encoder in
``calibration.json`` beside the database, so the report pays for it once per machine,
encoder and class, and the dashboard reads what ``castui report`` or the service measured.

A failed calibration (NVENC that will not open a session, an ffmpeg without the encoder) is
recorded with its classified reason: the report falls back to the default model *and says
why*, rather than a silent guess that hides a broken encoder.

Limits: the clip is decoded on the CPU (a lavfi source has no NVDEC path), so an NVENC
calibration measures "NVENC with CPU filters"; a real job with NVDEC may run faster.
``testsrc2`` is easier to encode than film grain; the estimate is a floor of the work, not
a promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from castui_core.decide import Action, Decision
from castui_core.errors import CastuiError
from castui_core.ffmpeg.command import Backend, build_command
from castui_core.ffmpeg.failures import classify_failure
from castui_core.ffmpeg.nvenc import NvencStatus, choose_backend, detect_nvenc
from castui_core.media import MediaInfo, VideoStream
from castui_core.profiles import DEFAULT_PROFILE, Profile
from castui_core.report import Calibration, ReadinessReport
from castui_core.subproc import run_bounded

if TYPE_CHECKING:
    from castui_core.settings import Settings

CALIBRATION_SECONDS = 2.0
#: One class's encode may take this long before it counts as failed (a hung driver).
CALIBRATION_TIMEOUT_S = 180.0
FRAME_SIZES: dict[str, tuple[int, int]] = {
    "sd": (640, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "2160p": (3840, 2160),
}
CACHE_NAME = "calibration.json"


class CalibrationFailed(CastuiError):
    """A calibration encode failed; ``reason`` is the classified sentence (as a failed job's)."""

    def __init__(self, encoder: str, resolution: str, reason: str) -> None:
        super().__init__(
            f"calibration encode ({encoder}, {resolution}) failed: {reason};"
            " run `castui doctor` to check ffmpeg and its encoders"
        )
        self.reason = reason


def cache_path(database: Path) -> Path:
    """Where the calibration cache lives: beside the database (one per machine's setup)."""
    return database.with_name(CACHE_NAME)


def calibration_argv(
    resolution: str, profile: Profile, backend: Backend, ffmpeg: Path | str = "ffmpeg"
) -> tuple[str, list[str]]:
    """The encoder and argv that calibrate ``resolution`` for ``profile`` on ``backend``.

    Built by the job builder from a made-up source of the class's size (8-bit 4:2:0, 30 fps,
    no audio), so every video option is the real job's; only the input (a 2 s ``testsrc2``
    clip) and the output (``-f null -``) are swapped. Pure: tested without an encoder.
    """
    width, height = FRAME_SIZES[resolution]
    clip = VideoStream(
        index=0, codec="rawvideo", pix_fmt="yuv420p", width=width, height=height,
        avg_fps=30.0, r_fps=30.0, field_order="progressive",
    )  # fmt: skip
    info = MediaInfo("calibration.nut", 0, "nut", CALIBRATION_SECONDS, video=(clip,))
    plan = build_command(
        info,
        profile,
        Decision(Action.TRANSCODE, ("calibration",)),
        output="calibration.mp4",
        backend=backend,
        ffmpeg=str(ffmpeg),
        nvdec_codecs=frozenset(),  # a lavfi clip has no NVDEC path
    )
    args = list(plan.args)
    at = args.index("-i")
    source = f"testsrc2=size={width}x{height}:rate=30:duration={CALIBRATION_SECONDS:g}"
    args[at : at + 2] = ["-f", "lavfi", "-i", source]
    if args[-3] != "-f":
        raise CastuiError(f"the job builder's command no longer ends in '-f FORMAT FILE': {args}")
    args[-3:] = ["-f", "null", "-"]
    return plan.encoder, args


async def calibrate(
    ffmpeg: Path | str, resolution: str, profile: Profile, backend: Backend
) -> float:
    """Encode the calibration clip once; the speed in media seconds per wall second."""
    encoder, argv = calibration_argv(resolution, profile, backend, ffmpeg)
    start = time.monotonic()
    try:
        done = await run_bounded(argv, timeout_s=CALIBRATION_TIMEOUT_S)
    except TimeoutError as exc:
        why = f"did not finish within {CALIBRATION_TIMEOUT_S:g} s (hung driver?)"
        raise CalibrationFailed(encoder, resolution, why) from exc
    except OSError as exc:
        why = f"ffmpeg could not be started ({ffmpeg}): {exc.strerror or exc}"
        raise CalibrationFailed(encoder, resolution, why) from exc
    wall = time.monotonic() - start
    if done.returncode != 0:
        failure = classify_failure(done.stderr.decode("utf-8", errors="replace"), done.returncode)
        raise CalibrationFailed(encoder, resolution, failure.reason)
    return CALIBRATION_SECONDS / max(wall, 1e-3)


@dataclass
class CacheFile:
    """``calibration.json``: speeds by ``ENCODER:CLASS``, the last failure per encoder and
    the encoder calibrated last (what a reader that cannot probe NVENC itself shows)."""

    speeds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    last_encoder: str | None = None

    @classmethod
    def read(cls, path: Path) -> CacheFile:
        """The cache, or an empty one when it is missing or unreadable (it is only a cache)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        if "speeds" not in data:  # the first format: a flat {"libx264:1080p": speed}
            data = {"speeds": data, "last_encoder": "libx264"}
        out = cls()
        speeds, failures = data.get("speeds"), data.get("failures")
        if isinstance(speeds, dict):
            for key, value in speeds.items():
                if isinstance(value, int | float) and ":" in str(key):
                    out.speeds[str(key)] = float(value)
        if isinstance(failures, dict):
            out.failures = {str(k): str(v) for k, v in failures.items()}
        last = data.get("last_encoder")
        out.last_encoder = last if isinstance(last, str) else None
        return out

    def write(self, path: Path) -> None:
        """Atomically (a reader never sees half a file); a temp name of this process and
        thread, so two dashboards calibrating at once through one service cannot collide."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = {"speeds": self.speeds, "failures": self.failures, "last_encoder": self.last_encoder}
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CastuiError(
                f"cannot write the calibration cache {path}: {exc.strerror or exc}; the"
                " database's folder must be writable by the user castui runs as"
            ) from exc

    def calibration(self, encoder: str | None = None) -> Calibration | None:
        """What is known for ``encoder`` (default: the one calibrated last), or None."""
        encoder = encoder or self.last_encoder
        if encoder is None:
            return None
        prefix = f"{encoder}:"
        speeds = {k[len(prefix) :]: v for k, v in self.speeds.items() if k.startswith(prefix)}
        failure = self.failures.get(encoder)
        if not speeds and failure is None:
            return None
        return Calibration(encoder, speeds, failure)


async def cached_calibration(cache: Path, encoder: str | None = None) -> Calibration | None:
    """The cached calibration (off the event loop: it is a file read)."""
    found = await asyncio.to_thread(CacheFile.read, cache)
    return found.calibration(encoder)


async def calibrated_speeds(
    ffmpeg: Path | str,
    classes: Iterable[str],
    cache: Path,
    *,
    profile: Profile,
    backend: Backend,
    force: bool = False,
) -> Calibration:
    """Speeds for ``classes`` with the encoder ``profile`` uses on ``backend``: from ``cache``
    when there (unless ``force``), else measured and written back. A failed encode stops the
    run and is recorded: the result carries the reason and the speeds measured before it."""
    encoder, _ = calibration_argv("1080p", profile, backend, ffmpeg)
    known = await asyncio.to_thread(CacheFile.read, cache)
    speeds: dict[str, float] = {}
    failure: str | None = None
    changed = False
    for cls in classes:
        key = f"{encoder}:{cls}"
        if force or key not in known.speeds:
            try:
                known.speeds[key] = await calibrate(ffmpeg, cls, profile, backend)
            except CalibrationFailed as exc:
                failure = exc.reason
                break
            changed = True
        speeds[cls] = known.speeds[key]
    if failure is not None:
        known.failures[encoder] = failure
        changed = True
    elif changed:
        known.failures.pop(encoder, None)
    if changed or known.last_encoder != encoder:
        known.last_encoder = encoder
        await asyncio.to_thread(known.write, cache)
    return Calibration(encoder, speeds, failure)


def calibration_profile(settings: Settings, library: str | None = None) -> Profile:
    """The profile whose encoder settings calibrate: the library's, else the first library's,
    else the default profile (the one most libraries use)."""
    libraries = [lib for lib in settings.libraries if library in (None, lib.name)]
    name = libraries[0].profile if libraries else DEFAULT_PROFILE
    return settings.profiles.get(name) or settings.profiles[DEFAULT_PROFILE]


async def calibration_backend(
    settings: Settings, ffmpeg: Path | str, nvenc: NvencStatus | None = None
) -> Backend:
    """The backend a job on this node would use: ``operational.encoder`` and, unless it is
    ``cpu``, the NVENC probe (``nvenc`` when the engine already ran it, else run here)."""
    preference = settings.operational.encoder
    if preference == "cpu":
        return "cpu"
    if nvenc is None:
        nvenc = await detect_nvenc(ffmpeg)
    return choose_backend(preference, nvenc)[0]


async def calibrate_report(
    settings: Settings,
    report: ReadinessReport,
    *,
    library: str | None = None,
    nvenc: NvencStatus | None = None,
    force: bool = True,
) -> Calibration:
    """Calibrate the classes ``report`` has no history for, with this node's encoder.

    What the dashboard's "calibrate now" runs in the engine's process (the service's, when
    attached: its encoder does the work). ``force`` measures again even when cached.
    """
    from castui_core.tools import find_tool

    ffmpeg = await asyncio.to_thread(find_tool, "ffmpeg", settings.ffmpeg)
    backend = await calibration_backend(settings, ffmpeg, nvenc)
    return await calibrated_speeds(
        ffmpeg,
        report.uncalibrated(),
        cache_path(settings.database),
        profile=calibration_profile(settings, library),
        backend=backend,
        force=force,
    )
