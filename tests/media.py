"""Tiny real media files made with the real ffmpeg, one per source shape the rules care about.

Each is 1 s or less and small, so the whole set takes a few seconds to make once per session.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

_V = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1"]
_A = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
_X264 = ["-c:v", "libx264", "-preset", "ultrafast"]


@dataclass(frozen=True)
class Sample:
    name: str
    args: tuple[str, ...]
    action: str  # what the chromecast-1080p decision must be
    reason: str | None = None  # a reason text it must contain


# fmt: off
SAMPLES: tuple[Sample, ...] = (
    Sample("compliant.mp4", (*_V, *_A, *_X264, "-pix_fmt", "yuv420p", "-c:a", "aac"), "skip"),
    Sample(
        "compliant.mkv",
        (*_V, *_A, *_X264, "-pix_fmt", "yuv420p", "-c:a", "aac"),
        "remux",
        "container matroska is not MP4",
    ),
    Sample(
        "high10.mkv",
        (*_V, *_A, *_X264, "-pix_fmt", "yuv420p10le", "-c:a", "aac"),
        "transcode",
        "10-bit (yuv420p10le)",
    ),
    Sample(
        "hevc10_hdr.mkv",
        (
            *_V, *_A, "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
            "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc", "smpte2084",
            "-colorspace", "bt2020nc", "-c:a", "aac",
        ),
        "transcode",
        "HDR PQ (smpte2084)",
    ),
    Sample(
        "mpeg4.avi",
        (*_V, *_A, "-c:v", "mpeg4", "-c:a", "libmp3lame"),
        "transcode",
        "video codec mpeg4 is not H.264",
    ),
    Sample(
        "p1440p60.mp4",
        (
            "-f", "lavfi", "-i", "testsrc2=size=2560x1440:rate=60:duration=0.25",
            *_A, *_X264, "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
        ),
        "transcode",
        "2560x1440 is larger than 1920x1080",
    ),
    Sample(
        "interlaced.ts",
        (
            *_V, *_A, "-vf", "setfield=tff", "-flags", "+ilme+ildct", "-c:v", "mpeg2video",
            "-c:a", "ac3",
        ),
        "transcode",
        "interlaced (tt)",
    ),
    Sample(
        "anamorphic_mpeg2.mpg",
        (
            "-f", "lavfi", "-i", "testsrc2=size=720x480:rate=30000/1001:duration=0.5",
            *_A, "-vf", "setsar=32/27", "-c:v", "mpeg2video", "-c:a", "mp2", "-shortest",
        ),
        "transcode",
        "video codec mpeg2video is not H.264",
    ),
    Sample(
        "vp9_noaudio.webm",
        (*_V, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-an"),
        "transcode",
        "video codec vp9 is not H.264",
    ),
    Sample(
        "flac71.mkv",
        (
            *_V, "-f", "lavfi", "-i", "sine=duration=1", *_X264, "-pix_fmt", "yuv420p",
            "-af", "pan=7.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0|c6=c0|c7=c0", "-c:a", "flac",
        ),
        "remux",
        "no AAC/MP3 audio track with at most 2 channels (has: FLAC 8ch)",
    ),
    Sample(
        "two_audio_srt.mkv",
        (
            *_V, *_A, "-f", "lavfi", "-i", "sine=frequency=880:duration=1",
            "-f", "srt", "-i", "{srt}",
            "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
            *_X264, "-pix_fmt", "yuv420p", "-c:a", "aac", "-c:s", "srt",
            "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre",
            "-metadata:s:s:0", "language=eng",
        ),
        "remux",
        "container matroska is not MP4",
    ),
    Sample("audio_only.m4a", (*_A, "-c:a", "aac"), "reject", "no video stream"),
)
# fmt: on

SRT = "1\n00:00:00,000 --> 00:00:00,900\nHello\n"


def make_samples(directory: Path) -> dict[str, Path]:
    """Create every sample (plus empty, garbage and truncated files) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    srt = directory / "subs.srt.txt"
    srt.write_text(SRT)
    made: dict[str, Path] = {}
    for sample in SAMPLES:
        out = directory / sample.name
        args = [a.replace("{srt}", str(srt)) for a in sample.args]
        subprocess.run(
            [FFMPEG, "-nostdin", "-v", "error", "-y", *args, str(out)],
            check=True,
            capture_output=True,
        )
        made[sample.name] = out
    empty = directory / "empty.mkv"
    empty.write_bytes(b"")
    made["empty.mkv"] = empty
    garbage = directory / "garbage.mkv"
    garbage.write_bytes(b"this is not a video file\n" * 100)
    made["garbage.mkv"] = garbage
    srt.unlink()
    return made
