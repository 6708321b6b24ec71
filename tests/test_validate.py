"""Validation of converted files, on tiny real files made with the real ffmpeg.

Each bad output is made the way it happens in practice (a cut-off copy, a missing
``+faststart``, an encode that stopped early, a dropped stream, the wrong pixel format) and
must be caught by the check that exists for it; the good output must pass every check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from castui_core.decide import Action, decide
from castui_core.ffmpeg.command import EncodePlan, Sidecar, build_command
from castui_core.media import MediaInfo
from castui_core.probe import probe_pyav
from castui_core.profiles import Profile
from castui_core.validate import (
    ValidationReport,
    format_duration,
    moov_problems,
    top_level_boxes,
    validate_output,
)

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
PROFILE = Profile.model_validate({"video": {"cpu_preset": "ultrafast"}})
SRT = "1\n00:00:00,000 --> 00:00:01,500\nHello\n"


@dataclasses.dataclass(frozen=True)
class Job:
    source: MediaInfo
    plan: EncodePlan
    good: Path
    directory: Path

    def args_to(self, output: Path, *extra: str, drop: tuple[str, ...] = ()) -> list[str]:
        """The plan's own argv writing ``output``, with ``extra`` output options added."""
        args = list(self.plan.args)
        for option in drop:
            at = args.index(option)
            del args[at : at + 2]
        assert args[-1].startswith("file:") and args[-3] == "-f"
        return [*args[:-3], *extra, *args[-3:-1], f"file:{output}"]


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [FFMPEG, "-nostdin", "-y", "-v", "error", *args], check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """A 2 s 10-bit H.264 MKV with AAC and SRT, transcoded with its own plan to a good MP4."""
    directory = tmp_path_factory.mktemp("validate")
    srt = directory / "subs.srt"
    srt.write_text(SRT)
    source = directory / "source.mkv"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-f", "srt", "-i", str(srt),
        "-map", "0", "-map", "1", "-map", "2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
        "-c:a", "aac", "-c:s", "srt", str(source),
    )  # fmt: skip
    info = probe_pyav(str(source))
    decision = decide(info, PROFILE)
    assert decision.action is Action.TRANSCODE
    good = directory / "good.mp4"
    plan = build_command(info, PROFILE, decision, output=str(good), backend="cpu", ffmpeg=FFMPEG)
    assert len(plan.audio_plan) == 1 and len(plan.subtitle_plan) == 1
    subprocess.run(plan.args, check=True, capture_output=True)
    return Job(info, plan, good, directory)


def _validate(job: Job, output: Path, **kwargs: object) -> ValidationReport:
    params: dict[str, object] = {
        "source": job.source,
        "profile": PROFILE,
        "plan": job.plan,
        "ffmpeg": FFMPEG,
        "timeout_s": 30,
    }
    params.update(kwargs)
    return asyncio.run(validate_output(output, **params))  # type: ignore[arg-type]


def _has(report: ValidationReport, text: str) -> bool:
    return any(text in p for p in report.problems)


def test_good_output_passes_every_check(job: Job) -> None:
    report = _validate(job, job.good)
    assert report.problems == ()
    assert report.ok
    assert report.info is not None and report.info.video[0].pix_fmt == "yuv420p"


def test_truncated_output_is_caught_by_reading_every_packet(job: Job, tmp_path: Path) -> None:
    data = job.good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    report = _validate(job, cut)
    assert not report.ok
    # The moov index is complete, so the probe still sees the full duration (no duration
    # problem): only reading every packet with -xerror finds the missing data.
    assert report.info is not None
    assert not _has(report, "long, source")
    assert _has(report, "output is damaged or truncated (reading every packet failed)")


def test_integrity_check_alone_catches_truncation(job: Job, tmp_path: Path) -> None:
    """Same file with faststart off: the box-size check is skipped, -xerror still fails."""
    data = job.good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    no_faststart = PROFILE.model_copy(update={"faststart": False})
    report = _validate(job, cut, profile=no_faststart)
    assert any(p.startswith("output is damaged or truncated") for p in report.problems)


def test_output_without_faststart_is_caught(job: Job, tmp_path: Path) -> None:
    out = tmp_path / "slow.mp4"
    subprocess.run(job.args_to(out, drop=("-movflags",)), check=True, capture_output=True)
    types = [t for t, _, _ in top_level_boxes(out)]
    assert types.index("mdat") < types.index("moov")
    report = _validate(job, out)
    assert report.problems == ("moov atom is after mdat (not faststart)",)
    relaxed = PROFILE.model_copy(update={"faststart": False})
    assert _validate(job, out, profile=relaxed).ok


def test_short_output_is_caught_by_duration(job: Job, tmp_path: Path) -> None:
    # 0.5 s of the 2 s source: 1.5 s short, beyond the 1 s minimum tolerance.
    out = tmp_path / "short.mp4"
    subprocess.run(job.args_to(out, "-t", "0.5"), check=True, capture_output=True)
    report = _validate(job, out)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("output is 0.5 s long, source 2.0 s (truncated?)")


def test_missing_audio_stream_is_caught_by_accounting(job: Job, tmp_path: Path) -> None:
    out = tmp_path / "silent.mp4"
    subprocess.run(job.args_to(out, "-an"), check=True, capture_output=True)
    report = _validate(job, out)
    # decide() accepts a file without audio: only the accounting notices the loss.
    assert report.problems == ("1 audio stream(s) planned, the output has 0",)


def test_missing_subtitle_stream_is_caught_by_accounting(job: Job, tmp_path: Path) -> None:
    out = tmp_path / "nosubs.mp4"
    subprocess.run(job.args_to(out, "-sn"), check=True, capture_output=True)
    report = _validate(job, out)
    assert report.problems == ("1 subtitle stream(s) planned, the output has 0",)


def test_ten_bit_output_is_caught_by_decide(job: Job, tmp_path: Path) -> None:
    out = tmp_path / "tenbit.mp4"
    _ffmpeg(
        "-i", str(job.directory / "source.mkv"), "-map", "0",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
        "-c:a", "copy", "-c:s", "mov_text", "-movflags", "+faststart", str(out),
    )  # fmt: skip
    report = _validate(job, out)
    assert "output does not play directly: 10-bit (yuv420p10le)" in report.problems
    assert all(p.startswith("output does not play directly") for p in report.problems)


def test_wrong_frame_size_is_caught(job: Job) -> None:
    plan = dataclasses.replace(job.plan, width=640, height=480)
    report = _validate(job, job.good, plan=plan)
    assert report.problems == ("output frame is 320x240, planned 640x480",)


def test_first_audio_track_must_play(job: Job, tmp_path: Path) -> None:
    """AC-3 first and AAC second passes decide() (some track plays) but not this check."""
    out = tmp_path / "ac3first.mp4"
    _ffmpeg(
        "-i", str(job.good), "-map", "0:v", "-map", "0:a", "-map", "0:a", "-map", "0:s",
        "-c:v", "copy", "-c:s", "copy", "-c:a:0", "ac3", "-ac:a:0", "6", "-c:a:1", "copy",
        "-movflags", "+faststart", str(out),
    )  # fmt: skip
    plan = dataclasses.replace(job.plan, audio_plan=job.plan.audio_plan * 2)
    report = _validate(job, out, plan=plan)
    assert decide(probe_pyav(str(out)), PROFILE).action is Action.SKIP
    assert len(report.problems) == 1
    assert report.problems[0].startswith("first audio track is ac3")


def test_sidecars_must_exist_and_not_be_empty(job: Job, tmp_path: Path) -> None:
    sidecar = Sidecar(5, "hdmv_pgs_subtitle", "eng", False, ".eng.sup", "sup")
    plan = dataclasses.replace(job.plan, sidecars=(sidecar,))
    path = tmp_path / "good.eng.sup"
    missing = _validate(job, job.good, plan=plan, sidecar_paths=(path,))
    assert missing.problems == (f"subtitle sidecar {path} was not written",)
    path.write_bytes(b"")
    assert _validate(job, job.good, plan=plan, sidecar_paths=(path,)).problems == (
        f"subtitle sidecar {path} is empty",
    )
    not_passed = _validate(job, job.good, plan=plan)
    assert not_passed.problems == ("1 subtitle sidecar file(s) planned, 0 written",)
    path.write_bytes(b"PG" + bytes(30))
    assert _validate(job, job.good, plan=plan, sidecar_paths=(path,)).ok


def test_not_media_output_reports_every_failure(job: Job, tmp_path: Path) -> None:
    out = tmp_path / "-$ 'odd' name ü.mp4"
    out.write_bytes(b"not an mp4 at all\n" * 50)
    report = _validate(job, out)
    assert report.info is None
    assert any(p.startswith("output cannot be probed") for p in report.problems)
    assert "no moov atom (not a complete MP4)" in report.problems
    assert any(p.startswith("output is damaged or truncated") for p in report.problems)


def test_odd_name_good_output_passes(job: Job, tmp_path: Path) -> None:
    out = tmp_path / "-$(x) 'q' \"d\" ü.mp4"
    shutil.copyfile(job.good, out)
    assert _validate(job, out).ok


def test_hung_integrity_check_is_killed(job: Job, tmp_path: Path) -> None:
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    report = _validate(job, job.good, ffmpeg=fake, timeout_s=0.5)
    assert report.problems == ("reading the whole output did not finish within 0.5 s",)


def test_cancelled_validation_leaves_no_integrity_read_behind(job: Job, tmp_path: Path) -> None:
    """The integrity read runs beside the probe (a task of its own): a validation cancelled
    while it runs (castui stopping) ends it too, instead of leaving an ffmpeg behind."""
    pid_file = tmp_path / "pid"
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text(f"#!/bin/sh\necho $$ > '{pid_file}'\nexec sleep 30\n")
    fake.chmod(0o755)

    async def scenario() -> int:
        params = {"source": job.source, "profile": PROFILE, "plan": job.plan, "ffmpeg": fake}
        task = asyncio.ensure_future(validate_output(job.good, **params))  # type: ignore[arg-type]
        async with asyncio.timeout(20):
            while not (pid_file.exists() and pid_file.read_text().strip()):
                await asyncio.sleep(0.02)  # waiting on the condition: the read has started
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(pid_file.read_text())  # checked while the loop runs: nothing cleaned up yet

    async def checked() -> None:
        pid = await scenario()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    asyncio.run(checked())


def test_integrity_check_reports_a_missing_ffmpeg(job: Job, tmp_path: Path) -> None:
    report = _validate(job, job.good, ffmpeg=tmp_path / "no-such-ffmpeg")
    assert len(report.problems) == 1
    assert report.problems[0].startswith("cannot run")


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_top_level_boxes_parses_large_and_to_end_sizes(tmp_path: Path) -> None:
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 5) + b"12345"
    data = _box(b"ftyp", b"isom" + bytes(4)) + _box(b"moov", bytes(20)) + large
    data += struct.pack(">I4s", 0, b"free") + bytes(7)
    path = tmp_path / "boxes.mp4"
    path.write_bytes(data)
    assert top_level_boxes(path) == [
        ("ftyp", 0, 16),
        ("moov", 16, 28),
        ("mdat", 44, 21),
        ("free", 65, 15),
    ]
    assert moov_problems(path) == []


def test_top_level_boxes_stops_at_garbage_and_sees_truncation(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(_box(b"ftyp", bytes(8)) + struct.pack(">I4s", 3, b"moov") + bytes(50))
    assert top_level_boxes(path) == [("ftyp", 0, 16)]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(_box(b"ftyp", bytes(8)) + _box(b"moov", bytes(8)) + b"\0\0\1\0mdat" + bytes(9))
    assert top_level_boxes(cut)[-1] == ("mdat", 32, 256)
    assert moov_problems(cut) == [
        "the file ends inside its 'mdat' box (17 of 256 bytes present: truncated)"
    ]


def test_moov_after_mdat_in_synthetic_file(tmp_path: Path) -> None:
    path = tmp_path / "late.mp4"
    path.write_bytes(_box(b"ftyp", bytes(8)) + _box(b"mdat", bytes(30)) + _box(b"moov", bytes(8)))
    assert moov_problems(path) == ["moov atom is after mdat (not faststart)"]
    assert moov_problems(path, faststart=False) == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3.04, "3.0 s"), (59.94, "59.9 s"), (60, "1:00"), (2592, "43:12"), (3723, "1:02:03")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
