"""H.264 and HEVC level limits, and the ffprobe level encodings.

These tables let settings validation refuse a profile whose size, frame rate or bitrate the
chosen level cannot carry (an encoder given such a profile either fails or silently writes a
higher level, which a Chromecast then refuses to play). Values are from ITU-T H.264 Table A-1
and H.265 Table A.8 (Main tier).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VideoCodec = Literal["h264", "hevc"]


@dataclass(frozen=True)
class H264Level:
    """Limits of one H.264 level (macroblock based)."""

    max_mbps: int  # macroblocks per second
    max_fs: int  # macroblocks per frame
    max_br_kbps: int  # for Baseline/Main; High allows 1.25x


@dataclass(frozen=True)
class HevcLevel:
    """Limits of one HEVC level (luma-sample based, Main tier)."""

    max_luma_ps: int  # luma samples per picture
    max_luma_sr: int  # luma samples per second
    max_br_kbps: int  # Main tier, Main/Main10 profile


H264_LEVELS: dict[str, H264Level] = {
    "1": H264Level(1485, 99, 64),
    "1b": H264Level(1485, 99, 128),
    "1.1": H264Level(3000, 396, 192),
    "1.2": H264Level(6000, 396, 384),
    "1.3": H264Level(11880, 396, 768),
    "2": H264Level(11880, 396, 2000),
    "2.1": H264Level(19800, 792, 4000),
    "2.2": H264Level(20250, 1620, 4000),
    "3": H264Level(40500, 1620, 10000),
    "3.1": H264Level(108000, 3600, 14000),
    "3.2": H264Level(216000, 5120, 20000),
    "4": H264Level(245760, 8192, 20000),
    "4.1": H264Level(245760, 8192, 50000),
    "4.2": H264Level(522240, 8704, 50000),
    "5": H264Level(589824, 22080, 135000),
    "5.1": H264Level(983040, 36864, 240000),
    "5.2": H264Level(2073600, 36864, 240000),
    "6": H264Level(4177920, 139264, 240000),
    "6.1": H264Level(8355840, 139264, 480000),
    "6.2": H264Level(16711680, 139264, 800000),
}

HEVC_LEVELS: dict[str, HevcLevel] = {
    "1": HevcLevel(36864, 552960, 128),
    "2": HevcLevel(122880, 3686400, 1500),
    "2.1": HevcLevel(245760, 7372800, 3000),
    "3": HevcLevel(552960, 16588800, 6000),
    "3.1": HevcLevel(983040, 33177600, 10000),
    "4": HevcLevel(2228224, 66846720, 12000),
    "4.1": HevcLevel(2228224, 133693440, 20000),
    "5": HevcLevel(8912896, 267386880, 25000),
    "5.1": HevcLevel(8912896, 534773760, 40000),
    "5.2": HevcLevel(8912896, 1069547520, 60000),
    "6": HevcLevel(35651584, 1069547520, 60000),
    "6.1": HevcLevel(35651584, 2139095040, 120000),
    "6.2": HevcLevel(35651584, 4278190080, 240000),
}

#: Highest level any Cast device decodes, per codec (Google TV Streamer: H.264 5.2, HEVC 5.1).
CAST_MAX_LEVEL: dict[VideoCodec, str] = {"h264": "5.2", "hevc": "5.1"}

#: Encode profiles a Cast device can decode, per codec (8-bit 4:2:0 for H.264).
ENCODE_PROFILES: dict[VideoCodec, tuple[str, ...]] = {
    "h264": ("baseline", "main", "high"),
    "hevc": ("main", "main10"),
}


def level_names(codec: VideoCodec) -> tuple[str, ...]:
    """All level names for ``codec``, lowest first."""
    return tuple(H264_LEVELS if codec == "h264" else HEVC_LEVELS)


def level_rank(codec: VideoCodec, level: str) -> int:
    """Position of ``level`` in the codec's level order (for comparisons)."""
    return level_names(codec).index(level)


def level_from_ffprobe(codec: VideoCodec, raw: int) -> str | None:
    """Turn ffprobe's integer level into a level name.

    H.264 reports level x10 (41 = 4.1, 9 = 1b by convention); HEVC reports x30
    (153 = 5.1). Unknown values (``-99``, 0, garbage) give ``None``.
    """
    if raw <= 0:
        return None
    if codec == "h264":
        if raw == 9:
            return "1b"
        major, minor = divmod(raw, 10)
    else:
        if raw % 3:
            return None
        major, minor = divmod(raw // 3, 10)
    name = f"{major}" if minor == 0 else f"{major}.{minor}"
    table = H264_LEVELS if codec == "h264" else HEVC_LEVELS
    return name if name in table else None


def normalize_level(value: str | float | int) -> str:
    """Accept ``4.1``, ``"4.1"``, ``41`` or ``"4.0"`` and return the canonical name (``"4.1"``)."""
    text = str(value).strip().lower()
    if text == "1b":
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if number >= 10:  # ffprobe style: 41 -> 4.1
        number = number / 10
    rounded = round(number, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


def level_display(level: str) -> str:
    """How a level reads in a message: ``4`` -> ``4.0``, ``4.1`` -> ``4.1``."""
    return f"{level}.0" if level.isdigit() else level


def _macroblocks(width: int, height: int) -> int:
    return ((width + 15) // 16) * ((height + 15) // 16)


def level_limit_problems(
    codec: VideoCodec,
    level: str,
    *,
    width: int,
    height: int,
    fps: float,
    maxrate_kbps: int | None,
    profile: str,
) -> list[str]:
    """Why a (size, fps, bitrate) does not fit ``level``; empty when it fits.

    Each message names the limit, so a settings error can say what is allowed.
    """
    problems: list[str] = []
    shown = level_display(level)
    if codec == "h264":
        h264 = H264_LEVELS[level]
        mbs = _macroblocks(width, height)
        if mbs > h264.max_fs:
            problems.append(
                f"{width}x{height} needs {mbs} macroblocks per frame; level {shown} allows"
                f" {h264.max_fs}"
            )
        elif mbs * fps > h264.max_mbps:
            max_fps = h264.max_mbps / mbs
            problems.append(
                f"{width}x{height} at {fps:g} fps exceeds level {shown}"
                f" (at most {max_fps:.1f} fps at that size)"
            )
        factor = 1.25 if profile == "high" else 1.0
        max_br = int(h264.max_br_kbps * factor)
    else:
        hevc = HEVC_LEVELS[level]
        samples = width * height
        if samples > hevc.max_luma_ps:
            problems.append(
                f"{width}x{height} has {samples} luma samples; level {shown} allows"
                f" {hevc.max_luma_ps}"
            )
        elif samples * fps > hevc.max_luma_sr:
            max_fps = hevc.max_luma_sr / samples
            problems.append(
                f"{width}x{height} at {fps:g} fps exceeds level {shown}"
                f" (at most {max_fps:.1f} fps at that size)"
            )
        max_br = hevc.max_br_kbps
    if maxrate_kbps is not None and maxrate_kbps > max_br:
        problems.append(f"maxrate {maxrate_kbps} kb/s exceeds level {shown} ({max_br} kb/s)")
    return problems
