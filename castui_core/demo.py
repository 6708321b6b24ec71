"""Small real media files in the shapes Chromecasts choke on, made with ffmpeg's test sources.

Why in the package and not only in the tests: ``castui demo`` shows a newcomer what castui does
without touching their own library, and the tests need exactly the same shapes (one generator,
so the demo and the tests cannot drift apart). Every file comes from ffmpeg's ``lavfi`` sources
(``testsrc2`` for video, ``sine`` for audio), so nothing is downloaded and every run makes the
same files.

``SAMPLES`` is the catalogue: each entry says what the built-in ``chromecast-1080p`` decision
must be and a reason text it must contain (the tests check both). ``DEMO`` picks the ones a
demo library shows, under names a person recognises.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from castui_core.errors import CastuiError, ConfigError
from castui_core.subproc import run_bounded

#: Placeholders in a sample's arguments: ``{d}`` its duration in seconds, ``{srt}`` a
#: subtitle file written beside the outputs while they are made.
_V = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration={d}"]
_A = ["-f", "lavfi", "-i", "sine=frequency=440:duration={d}"]
_X264 = ["-c:v", "libx264", "-preset", "ultrafast"]


@dataclass(frozen=True)
class Sample:
    """One source shape: ffmpeg arguments (inputs and codecs, no output) and the decision."""

    name: str
    args: tuple[str, ...]
    action: str  # what the chromecast-1080p decision must be
    reason: str | None = None  # a reason text it must contain
    #: This shape's length relative to the others: a 1440p60 second costs ~20 320x240 ones.
    scale: float = 1.0
    #: Output format when the name's extension does not say it (``.part``).
    format: str | None = None


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
            "-f", "lavfi", "-i", "testsrc2=size=2560x1440:rate=60:duration={d}",
            *_A, *_X264, "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
        ),
        "transcode",
        "2560x1440 is larger than 1920x1080",
        scale=0.25,
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
            "-f", "lavfi", "-i", "testsrc2=size=720x480:rate=30000/1001:duration={d}",
            *_A, "-vf", "setsar=32/27", "-c:v", "mpeg2video", "-c:a", "mp2", "-shortest",
        ),
        "transcode",
        "video codec mpeg2video is not H.264",
        scale=0.5,
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
            *_V, "-f", "lavfi", "-i", "sine=duration={d}", *_X264, "-pix_fmt", "yuv420p",
            "-af", "pan=7.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0|c6=c0|c7=c0", "-c:a", "flac",
        ),
        "remux",
        "no AAC/MP3 audio track with at most 2 channels (has: FLAC 8ch)",
    ),
    Sample(
        "two_audio_srt.mkv",
        (
            *_V, *_A, "-f", "lavfi", "-i", "sine=frequency=880:duration={d}",
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

BY_NAME: dict[str, Sample] = {s.name: s for s in SAMPLES}

#: A still-downloading file: a valid start of an MKV under a downloader's ``.part`` name.
#: castui's default ``scan.ignore`` never picks it up (the demo shows that it stays untouched).
PART = Sample(
    "part",
    (*_V, *_A, *_X264, "-pix_fmt", "yuv420p", "-c:a", "aac"),
    "ignored",
    "still downloading: *.part is in scan.ignore",
    format="matroska",
)

#: The demo library: file name -> sample. Names a person recognises, spaces included.
DEMO: dict[str, Sample] = {
    "HDR Movie (HEVC 10-bit).mkv": BY_NAME["hevc10_hdr.mkv"],
    "Old Rip (MPEG-4 Part 2).avi": BY_NAME["mpeg4.avi"],
    "Game Capture (1440p60).mp4": BY_NAME["p1440p60.mp4"],
    "TV Recording (interlaced MPEG-2, AC-3).ts": BY_NAME["interlaced.ts"],
    "Two Languages (H.264, subtitles).mkv": BY_NAME["two_audio_srt.mkv"],
    "DVD Rip (anamorphic 16x9).mpg": BY_NAME["anamorphic_mpeg2.mpg"],
    "Already Fine (H.264 AAC).mp4": BY_NAME["compliant.mp4"],
    "Still Downloading.mkv.part": PART,
}

#: Subtitle text for the samples that carry one (SubRip).
SRT = "1\n00:00:00,000 --> 00:00:00,900\nHello\n"

#: The file whose presence says "castui demo made this folder" (so a rerun may recreate it).
MARKER = ".castui-demo"

#: Seconds each demo clip lasts (``scale`` shortens the expensive shapes).
DEMO_SECONDS = 3.0


def sample_argv(
    ffmpeg: Path | str, sample: Sample, out: Path, *, seconds: float, srt: Path
) -> list[str]:
    """The full ffmpeg command that writes ``sample`` to ``out`` (an argument list, no shell)."""
    duration = f"{seconds * sample.scale:g}"
    args = [a.replace("{d}", duration).replace("{srt}", str(srt)) for a in sample.args]
    fmt = ["-f", sample.format] if sample.format else []
    return [str(ffmpeg), "-nostdin", "-v", "error", "-y", *args, *fmt, str(out)]


async def make_files(
    ffmpeg: Path | str,
    directory: Path,
    files: Iterable[tuple[str, Sample]],
    *,
    seconds: float = 1.0,
    timeout_s: float = 120.0,
) -> dict[str, Path]:
    """Write each ``(file name, sample)`` into ``directory``, one ffmpeg after another.

    One at a time on purpose: the demo must run on a 2-core machine beside other work. Raises
    ``CastuiError`` naming the file and ffmpeg's own message when one cannot be made (an ffmpeg
    built without libx265, say), so the user knows which encoder is missing.
    """
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    srt = directory / ".castui-demo-subs.srt"
    await asyncio.to_thread(srt.write_text, SRT)
    made: dict[str, Path] = {}
    try:
        for name, sample in files:
            out = directory / name
            argv = sample_argv(ffmpeg, sample, out, seconds=seconds, srt=srt)
            try:
                done = await run_bounded(argv, timeout_s=timeout_s)
            except TimeoutError as exc:
                raise CastuiError(
                    f"making sample {name} took longer than {timeout_s:g} s; is the machine busy?"
                ) from exc
            except OSError as exc:
                raise CastuiError(f"cannot run {ffmpeg}: {exc.strerror or exc}") from exc
            if done.returncode != 0:
                why = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
                raise CastuiError(
                    f"ffmpeg could not make sample {name}: {why[-1] if why else 'no message'};"
                    " check `castui doctor` (an ffmpeg without libx265 or libmp3lame cannot"
                    " make every sample)"
                )
            made[name] = out
    finally:
        await asyncio.to_thread(srt.unlink, missing_ok=True)
    return made


@dataclass(frozen=True)
class DemoSite:
    """Where a demo lives: ``root/library`` (the media), ``root/.castui`` (database, logs)."""

    root: Path

    @property
    def library(self) -> Path:
        return self.root / "library"

    @property
    def state(self) -> Path:
        return self.root / ".castui"

    @property
    def settings(self) -> Path:
        return self.root / "settings.yaml"

    @property
    def marker(self) -> Path:
        return self.root / MARKER


def settings_text(site: DemoSite) -> str:
    """The demo's settings file: one library, its own database, no waiting for settle.

    ``min_free_gb`` is small because the demo's outputs are a few megabytes and a CI runner's
    disk is often nearly full; ``watch: auto`` so files dropped in while the dashboard is open
    are picked up like in a real library.
    """
    return (
        "# Written by `castui demo`: a sample library made with ffmpeg's test sources.\n"
        "# Rerunning `castui demo` in this folder recreates library/ and .castui/.\n"
        f"database: {_yaml_str(site.state / 'castui.db')}\n"
        "libraries:\n"
        "  - name: Demo\n"
        f"    path: {_yaml_str(site.library)}\n"
        "    profile: chromecast-1080p\n"
        "    watch: auto\n"
        "operational:\n"
        "  encoder: auto\n"
        "  min_free_gb: 0.2\n"
        "scan:\n"
        "  settle_seconds: 1\n"
    )


def _yaml_str(path: Path) -> str:
    """A path as a YAML double-quoted scalar (JSON strings are valid YAML)."""
    import json

    return json.dumps(str(path), ensure_ascii=False)


def prepare_site(root: Path) -> tuple[DemoSite, bool]:
    """Check ``root`` may hold a demo and clear a previous one; ``True`` when one was cleared.

    A rerun recreates: the library and database are deleted and made again, so the demo shows
    the same conversions every time. Only a folder that is new, empty or marked by an earlier
    ``castui demo`` is used: anything else might be someone's real media, and is refused.
    Blocking file-system calls: run it in a thread.
    """
    site = DemoSite(root.expanduser().absolute())
    reused = False
    if site.root.exists():
        if not site.root.is_dir():
            raise ConfigError(f"{site.root} is a file; give `castui demo` a folder to create")
        if site.marker.is_file():
            for folder in (site.library, site.state):
                if folder.is_symlink() or folder.is_file():
                    folder.unlink()
                elif folder.exists():
                    shutil.rmtree(folder)
            reused = True
        elif any(site.root.iterdir()):
            raise ConfigError(
                f"{site.root} is not empty and was not made by `castui demo`; give it a new or"
                " empty folder (default: ./castui-demo)"
            )
    try:
        site.root.mkdir(parents=True, exist_ok=True)
        site.marker.write_text("made by `castui demo`; rerunning it here recreates the demo\n")
        site.settings.write_text(settings_text(site))
    except OSError as exc:
        raise ConfigError(
            f"cannot write the demo folder {site.root}: {exc.strerror or exc}; give"
            " `castui demo` a folder you can write"
        ) from exc
    return site, reused


async def make_demo(
    root: Path, ffmpeg: Path | str, *, seconds: float = DEMO_SECONDS
) -> tuple[DemoSite, bool]:
    """Prepare ``root`` and fill its library with the demo files; returns the site and
    whether an earlier demo there was recreated."""
    site, reused = await asyncio.to_thread(prepare_site, root)
    await make_files(ffmpeg, site.library, DEMO.items(), seconds=seconds)
    return site, reused


def demo_names() -> Sequence[str]:
    """The demo's file names, in the order they are made."""
    return tuple(DEMO)


__all__ = [
    "BY_NAME",
    "DEMO",
    "DEMO_SECONDS",
    "MARKER",
    "PART",
    "SAMPLES",
    "SRT",
    "DemoSite",
    "Sample",
    "demo_names",
    "make_demo",
    "make_files",
    "prepare_site",
    "sample_argv",
    "settings_text",
]
