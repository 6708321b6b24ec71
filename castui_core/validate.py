"""Validate a converted file before anything replaces the source.

castui promises never to lose or damage a person's original, so an output is only put in
place after *every* check below passed; a report lists all failures at once (a truncated
file typically fails several) in words a person can act on.

Why each check exists:

- **probe + ``decide``**: the output must pass castui's own acceptance rule, or the next scan
  would queue it again (a re-encode loop) and the device would not play it directly. The
  rule lives in ``decide``; it is called, never re-implemented here.
- **frame size == plan**: ``decide`` only checks "not larger than the profile"; a wrong
  scale filter would still pass it.
- **first audio track plays directly**: ``decide`` accepts a file when *any* track plays,
  but a receiver starts the first one; the plan puts the playable track first.
- **duration**: a source that is truncated or damaged in the middle makes ffmpeg stop early
  with exit 0; the output then falls short of the source's duration.
- **stream accounting**: a stream ffmpeg silently dropped (an audio track, a subtitle) is a
  loss the person would only notice when the source is gone; sidecars too.
- **integrity** (``ffmpeg -xerror ... -c copy -f null``): a truncated +faststart MP4 still
  probes with its full duration (the moov index is complete, the data is not); only reading
  every packet finds it.
- **moov before mdat**: without faststart a Cast receiver must fetch the end of the file
  before playing, which over HTTP range requests often fails or stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from castui_core.decide import Action, decide
from castui_core.errors import ProbeError, ToolNotFoundError
from castui_core.ffmpeg.command import EncodePlan
from castui_core.ffmpeg.failures import FailureKind
from castui_core.ffmpeg.runner import FfmpegRun
from castui_core.media import AudioStream, MediaInfo
from castui_core.probe import probe_pyav
from castui_core.profiles import Profile

#: Duration tolerance: at least one second, or this fraction of the source's duration
#: (AAC priming and the last GOP make exact equality impossible).
DURATION_TOLERANCE_S = 1.0
DURATION_TOLERANCE_RATIO = 0.005

#: Stop walking top-level boxes after this many: a real MP4 has a handful, so more means a
#: garbage file made of tiny "boxes", and the walk must not take forever.
_MAX_BOXES = 10_000


@dataclass(frozen=True)
class ValidationReport:
    """Every failed check in plain words (empty: the output may replace the source)."""

    problems: tuple[str, ...]
    info: MediaInfo | None  # the output as probed (None when it could not be probed)

    @property
    def ok(self) -> bool:
        return not self.problems


def format_duration(seconds: float) -> str:
    """``3.0 s`` below a minute, else ``43:12`` or ``1:43:12`` (how people read lengths)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def top_level_boxes(path: Path) -> list[tuple[str, int, int]]:
    """The top-level MP4 boxes as ``(type, offset, size)``, reading only the box headers.

    Seeks from header to header (a 40 GB file costs a few reads, not 40 GB). ``size`` is the
    size the header declares: ``size == 1`` means a 64-bit size follows the type, ``size == 0``
    means "to the end of the file" (reported as the actual remaining length). A box that
    declares more bytes than the file has is still listed (the caller sees the truncation);
    the walk stops at the first header that cannot be a box.
    """
    boxes: list[tuple[str, int, int]] = []
    with path.open("rb") as fh:
        end = os.fstat(fh.fileno()).st_size
        offset = 0
        while offset + 8 <= end and len(boxes) < _MAX_BOXES:
            fh.seek(offset)
            header = fh.read(8)
            if len(header) < 8:
                break
            size, raw_type = struct.unpack(">I4s", header)
            box_type = raw_type.decode("latin-1")
            if size == 1:
                large = fh.read(8)
                if len(large) < 8:
                    break
                (size,) = struct.unpack(">Q", large)
                if size < 16:
                    break
            elif size == 0:
                size = end - offset
            elif size < 8:
                break
            boxes.append((box_type, offset, size))
            offset += size
    return boxes


def moov_problems(path: Path, *, faststart: bool = True) -> list[str]:
    """Problems with the MP4 box layout: moov missing, after mdat, or the file cut short.

    moov after mdat is a problem only when ``faststart`` is asked for (the profile's choice).
    """
    try:
        boxes = top_level_boxes(path)
        end = path.stat().st_size
    except OSError as exc:
        return [f"cannot read the output's MP4 boxes: {exc.strerror or exc}"]
    problems: list[str] = []
    types = [t for t, _, _ in boxes]
    if "moov" not in types:
        problems.append("no moov atom (not a complete MP4)")
    elif faststart and "mdat" in types and types.index("mdat") < types.index("moov"):
        problems.append("moov atom is after mdat (not faststart)")
    if boxes:
        box_type, offset, size = boxes[-1]
        if offset + size > end:
            problems.append(
                f"the file ends inside its {box_type!r} box"
                f" ({end - offset} of {size} bytes present: truncated)"
            )
    return problems


def _audio_plays(stream: AudioStream, profile: Profile) -> bool:
    target = profile.audio
    return (
        stream.codec in target.accept_codecs
        and 0 < stream.channels <= target.channels
        and (stream.codec != "aac" or stream.profile in (None, "LC"))
    )


def _info_problems(
    info: MediaInfo, source: MediaInfo, profile: Profile, plan: EncodePlan
) -> list[str]:
    """Checks on the probed output: the decision, frame size, first audio, duration, streams."""
    problems: list[str] = []
    decision = decide(info, profile)
    if decision.action is not Action.SKIP:
        problems += [f"output does not play directly: {r}" for r in decision.reasons]
    if info.video:
        video = info.video[0]
        if (video.width, video.height) != (plan.width, plan.height):
            problems.append(
                f"output frame is {video.width}x{video.height}, planned {plan.width}x{plan.height}"
            )
    if info.audio and plan.audio_plan and not _audio_plays(info.audio[0], profile):
        first = info.audio[0]
        accepted = "/".join(c.upper() for c in profile.audio.accept_codecs)
        problems.append(
            f"first audio track is {first.codec} ({first.profile or '-'}) {first.channels}ch,"
            f" not {accepted} with at most {profile.audio.channels} channels"
        )
    if source.duration_s is not None and source.duration_s > 0:
        tolerance = max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_RATIO * source.duration_s)
        if info.duration_s is None:
            problems.append("output has no duration (incomplete file?)")
        elif abs(info.duration_s - source.duration_s) > tolerance:
            hint = (
                "truncated?" if info.duration_s < source.duration_s else "longer than the source?"
            )
            problems.append(
                f"output is {format_duration(info.duration_s)} long,"
                f" source {format_duration(source.duration_s)} ({hint})"
            )
    counts = (
        ("video", 1, len(info.video)),
        ("audio", len(plan.audio_plan), len(info.audio)),
        ("subtitle", len(plan.subtitle_plan), len(info.subtitles)),
    )
    for kind, planned, found in counts:
        if planned != found:
            problems.append(f"{planned} {kind} stream(s) planned, the output has {found}")
    return problems


def sidecar_problems(plan: EncodePlan, sidecar_paths: Sequence[Path]) -> list[str]:
    """Every planned bitmap-subtitle sidecar was written and is not empty."""
    problems: list[str] = []
    if len(sidecar_paths) != len(plan.sidecars):
        problems.append(
            f"{len(plan.sidecars)} subtitle sidecar file(s) planned, {len(sidecar_paths)} written"
        )
    for path in sidecar_paths:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"subtitle sidecar {path} was not written")
            continue
        except OSError as exc:
            problems.append(f"subtitle sidecar {path} cannot be read: {exc.strerror or exc}")
            continue
        if size == 0:
            problems.append(f"subtitle sidecar {path} is empty")
    return problems


async def integrity_problems(
    output: Path,
    ffmpeg: Path | str,
    timeout_s: float | None,
    *,
    stall_timeout_s: float = 120.0,
    duration_s: float | None = None,
    on_run: Callable[[FfmpegRun], None] | None = None,
) -> list[str]:
    """Read every packet with ``-xerror``; any error or stderr output means a damaged file.

    The argv is a list (never a shell) and the path gets a ``file:`` prefix, so names with
    quotes, ``$`` or a leading ``-`` are read as plain paths. The read runs under the encode's
    own policy (:class:`FfmpegRun`): stopped after ``stall_timeout_s`` without a
    ``-progress`` block or ``timeout_s`` in all, in its own process group that is killed as a
    whole, so a hung demuxer - or a wrapper script's child - never outlives the job.
    ``on_run`` receives the run before it starts, so a caller can cancel it (shutdown).
    """
    url = str(output) if str(output).startswith("file:") else f"file:{output}"
    argv = [
        str(ffmpeg), "-nostdin", "-hide_banner", "-nostats", "-v", "error", "-xerror",
        "-progress", "pipe:1", "-i", url, "-map", "0", "-c", "copy", "-f", "null", "-",
    ]  # fmt: skip
    run = FfmpegRun(
        argv, duration_s=duration_s, stall_timeout_s=stall_timeout_s, timeout_s=timeout_s
    )
    if on_run is not None:
        on_run(run)
    try:
        result = await run.run()
    except ToolNotFoundError as exc:
        return [f"cannot run {ffmpeg} to check the output: {exc}"]
    failure = result.failure
    if failure is not None and failure.kind is FailureKind.timed_out:
        return [f"reading the whole output did not finish within {timeout_s:g} s"]
    if failure is not None and failure.kind is FailureKind.stalled:
        return [f"reading the whole output made no progress for {stall_timeout_s:g} s: stopped"]
    if failure is not None and failure.kind is FailureKind.cancelled:
        return [f"validation stopped: {failure.reason}"]
    lines = [ln.strip() for ln in result.stderr_tail.splitlines() if ln.strip()]
    detail = lines[-1] if lines else ""
    if result.exit_code != 0 or detail:
        detail = detail or f"ffmpeg exit code {result.exit_code}"
        return [f"output is damaged or truncated (reading every packet failed): {detail}"]
    return []


async def validate_output(
    output: Path,
    *,
    source: MediaInfo,
    profile: Profile,
    plan: EncodePlan,
    ffmpeg: Path | str,
    timeout_s: float | None = 600,
    stall_timeout_s: float = 120.0,
    sidecar_paths: Sequence[Path] = (),
    on_run: Callable[[FfmpegRun], None] | None = None,
) -> ValidationReport:
    """Run every check on ``output`` (all of them, always) and report what failed.

    ``source`` is the probed source (its duration is the reference), ``plan`` what was run
    (stream counts, frame size, sidecars), ``sidecar_paths`` the sidecar files written for
    ``plan.sidecars``. ``timeout_s``/``stall_timeout_s`` bound the integrity read like the
    encode (the converter passes the job's settings); ``on_run`` see
    :func:`integrity_problems`. Never raises for a bad output: the problems are the result.

    The integrity read (a separate ffmpeg process: its start alone is ~0.1 s) runs while this
    process probes the output and walks its boxes, instead of after them: every check still
    runs to the end and the report lists the problems in the same order.
    """
    integrity = asyncio.ensure_future(
        integrity_problems(
            output,
            ffmpeg,
            timeout_s,
            stall_timeout_s=stall_timeout_s,
            duration_s=source.duration_s,
            on_run=on_run,
        )
    )
    try:
        problems: list[str] = []
        info: MediaInfo | None = None
        try:
            info = await asyncio.to_thread(probe_pyav, str(output))
        except ProbeError as exc:
            problems.append(f"output cannot be probed: {exc.reason}")
        except Exception as exc:  # a PyAV failure we did not translate is still a failed check
            problems.append(f"output cannot be probed: {type(exc).__name__}: {exc}")
        if info is not None:
            problems += _info_problems(info, source, profile, plan)
        problems += sidecar_problems(plan, sidecar_paths)
        problems += await asyncio.to_thread(moov_problems, output, faststart=profile.faststart)
        problems += await integrity
    except BaseException:
        # Cancelled (castui stopping) or a bug: the read must not outlive the validation.
        integrity.cancel()
        with contextlib.suppress(BaseException):
            await integrity
        raise
    return ValidationReport(problems=tuple(problems), info=info)
