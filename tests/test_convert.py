"""End to end with the real ffmpeg: every source shape becomes a file a Chromecast plays.

Each output is checked by the test itself against the Cast baseline (not only by castui's own
validation), and every failure case must leave the original byte-identical.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import av
import pytest
from cli_helpers import run_castui

from castui_core.bus import EventBus
from castui_core.convert import Converter, ConvertOptions
from castui_core.decide import Action, decide
from castui_core.events import JobFinished, JobOutput, JobProgress, JobStarted
from castui_core.probe import ProbePool, probe_pyav
from castui_core.profiles import builtin_profiles
from castui_core.swap import Journal
from castui_core.tools import find_tools

PROFILES = builtin_profiles()
P1080 = PROFILES["chromecast-1080p"]
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def extra_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Shapes only the converter tests need (odd size; 1 s 1080p50 for the fps cap)."""
    d = tmp_path_factory.mktemp("extra")
    odd = d / "odd_853x481.mkv"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=853x481:rate=25:duration=1",
        "-f", "lavfi", "-i", "sine=duration=1",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", "-c:a", "aac",
        str(odd),
    )  # fmt: skip
    long = d / "long_4s.mkv"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
        "-f", "lavfi", "-i", "sine=duration=4",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-c:a", "aac",
        str(long),
    )  # fmt: skip
    return {"odd_853x481.mkv": odd, "long_4s.mkv": long}


@pytest.fixture
def converter(tmp_path: Path):  # type: ignore[no-untyped-def]
    bus = EventBus()
    with ProbePool(1, timeout=30) as pool:
        yield Converter(
            tools=find_tools(),
            pool=pool,
            journal=Journal(tmp_path.parent / f"{tmp_path.name}-journal"),
            bus=bus,
            nvenc=None,
        )


def assert_plays_on_every_chromecast(path: Path, *, source_audio: int) -> None:
    """The Cast baseline, checked directly: MP4, H.264 High <=4.1 8-bit 4:2:0 <=1080p..."""
    info = probe_pyav(str(path))
    assert info.format_name.startswith("mov,mp4") and path.suffix == ".mp4"
    (video,) = info.video
    assert video.codec == "h264"
    assert video.profile in ("High", "Main", "Constrained Baseline")
    assert video.level is not None and video.level <= 41
    assert video.pix_fmt == "yuv420p"
    assert video.width <= 1920 and video.height <= 1080
    assert video.width % 2 == 0 and video.height % 2 == 0
    assert not video.interlaced
    assert video.hdr is None
    fps = video.fps or 0
    assert fps <= (30.01 if video.height > 720 or video.width > 1280 else 60.01)
    assert len(info.audio) == source_audio
    if info.audio:
        first = info.audio[0]
        assert first.codec in ("aac", "mp3") and first.channels <= 2
        assert first.default
    with path.open("rb") as fh:  # faststart: moov before mdat
        head = fh.read(1 << 16)
    assert 0 <= head.find(b"moov") < max(head.find(b"mdat"), 1 << 16)
    assert decide(info, P1080).action is Action.SKIP


CASES = [
    # (sample, expected action, number of audio tracks in the output)
    ("hevc10_hdr.mkv", "transcode", 1),
    ("mpeg4.avi", "transcode", 1),
    ("high10.mkv", "transcode", 1),
    ("p1440p60.mp4", "transcode", 1),
    ("anamorphic_mpeg2.mpg", "transcode", 1),
    ("interlaced.ts", "transcode", 1),
    ("two_audio_srt.mkv", "remux", 2),
    ("vp9_noaudio.webm", "transcode", 0),
    ("flac71.mkv", "remux", 1),
]


@pytest.mark.parametrize(("name", "action", "audio"), CASES, ids=[c[0] for c in CASES])
async def test_each_source_shape_becomes_cast_playable(
    converter: Converter,
    samples: dict[str, Path],
    tmp_path: Path,
    name: str,
    action: str,
    audio: int,
) -> None:
    source = tmp_path / name
    shutil.copy(samples[name], source)
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    assert outcome.status == "done", outcome.reason
    assert outcome.action.value == action
    output = Path(outcome.output_path or "")
    assert output == source.with_suffix(".mp4")
    assert_plays_on_every_chromecast(output, source_audio=audio)
    assert source.exists()  # delete_source is off by default
    assert outcome.bytes_after == output.stat().st_size
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


async def test_odd_dimensions_and_444_become_even_420(
    converter: Converter, extra_samples: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "odd.mkv"
    shutil.copy(extra_samples["odd_853x481.mkv"], source)
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    assert outcome.status == "done", outcome.reason
    info = probe_pyav(outcome.output_path or "")
    assert (info.video[0].width, info.video[0].height) == (852, 480)
    assert_plays_on_every_chromecast(Path(outcome.output_path or ""), source_audio=1)


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


async def test_compliant_mkv_is_remuxed_with_identical_video_packets(
    converter: Converter, samples: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "compliant.mkv"
    shutil.copy(samples["compliant.mkv"], source)
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    assert outcome.status == "done", outcome.reason
    assert outcome.action is Action.REMUX and outcome.encoder == "copy"
    output = Path(outcome.output_path or "")
    assert _video_packets(output) == _video_packets(source)
    assert_plays_on_every_chromecast(output, source_audio=1)


async def test_same_name_mp4_keeps_the_original_as_backup(
    converter: Converter, samples: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "big.mp4"
    shutil.copy(samples["p1440p60.mp4"], source)
    before = _digest(source)
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    assert outcome.status == "done", outcome.reason
    backup = tmp_path / "big.original.mp4"
    assert _digest(backup) == before
    assert_plays_on_every_chromecast(source, source_audio=1)


async def test_delete_source_removes_it_only_after_the_swap(
    converter: Converter, samples: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "movie.avi"
    shutil.copy(samples["mpeg4.avi"], source)
    options = ConvertOptions(profile=P1080, encoder="cpu", delete_source=True)
    outcome = await converter.convert(source, options)
    assert outcome.status == "done", outcome.reason
    assert not source.exists()
    assert_plays_on_every_chromecast(tmp_path / "movie.mp4", source_audio=1)


async def test_odd_names_work(
    converter: Converter, samples: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / '-it\'s "$HOME" `x` 東京 ✓.mkv'
    shutil.copy(samples["compliant.mkv"], source)
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    assert outcome.status == "done", outcome.reason
    assert Path(outcome.output_path or "").name == '-it\'s "$HOME" `x` 東京 ✓.mp4'


async def test_truncated_source_fails_validation_and_keeps_the_original(
    converter: Converter, extra_samples: dict[str, Path], tmp_path: Path
) -> None:
    # 4 s long so that losing half is well past the max(1 s, 0.5 %) duration tolerance.
    data = extra_samples["long_4s.mkv"].read_bytes()
    source = tmp_path / "truncated.mkv"
    source.write_bytes(data[: len(data) // 2])
    before = _digest(source)
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    assert outcome.status == "failed"
    reason = outcome.reason or ""
    assert "truncated?" in reason, reason
    assert _digest(source) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated.mkv"]


async def test_empty_file_is_rejected_without_touching_anything(
    converter: Converter, tmp_path: Path
) -> None:
    source = tmp_path / "empty.mkv"
    source.write_bytes(b"")
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    assert outcome.status == "rejected"
    assert outcome.reason == "empty file (0 bytes)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mkv"]


async def test_progress_events_and_the_exact_command_are_published(
    converter: Converter, samples: dict[str, Path], tmp_path: Path
) -> None:
    sub = converter.bus.subscribe()
    source = tmp_path / "a.avi"
    shutil.copy(samples["mpeg4.avi"], source)
    outcome = await converter.convert(source, ConvertOptions(profile=P1080, encoder="cpu"))
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    started = [e for e in events if isinstance(e, JobStarted)]
    assert len(started) == 1 and started[0].command == outcome.command
    assert started[0].command[0] == FFMPEG or started[0].command[0].endswith("ffmpeg")
    progress = [e for e in events if isinstance(e, JobProgress)]
    assert progress and progress[-1].percent is not None and progress[-1].percent > 90
    finished = [e for e in events if isinstance(e, JobFinished)]
    assert [f.status for f in finished] == ["done"]


def test_cli_convert_reports_each_file_and_exit_code(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    good = tmp_path / "good.mkv"
    shutil.copy(samples["compliant.mkv"], good)
    bad = tmp_path / "garbage.mkv"
    shutil.copy(samples["garbage.mkv"], bad)
    result = run_castui("convert", "--encoder", "cpu", str(good), home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done remux" in result.stdout and "good.mp4" in result.stdout
    assert "1 of 1 succeeded" in result.stdout
    result = run_castui("convert", "--encoder", "cpu", str(bad), str(good), home=tmp_path)
    assert result.returncode == 1
    assert "rejected" in result.stdout and "Traceback" not in result.stderr


def test_cli_convert_auto_without_gpu_uses_the_cpu(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "a.avi"
    shutil.copy(samples["mpeg4.avi"], source)
    result = run_castui("convert", str(source), home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "libx264" in result.stdout
    assert "NVENC unavailable" in result.stdout or "using CPU" in result.stdout


@pytest.fixture
def gpu_believer(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A converter told at start-up that NVENC works; the real ffmpeg here has no GPU."""
    from castui_core.ffmpeg.nvenc import NvencStatus

    with ProbePool(1, timeout=30) as pool:
        yield Converter(
            tools=find_tools(),
            pool=pool,
            journal=Journal(tmp_path.parent / f"{tmp_path.name}-journal"),
            nvenc=NvencStatus(available=True, reason="pretend: detected at start-up"),
        )


async def test_nvenc_failure_with_auto_falls_back_to_cpu_and_says_so(
    gpu_believer: Converter, samples: dict[str, Path], tmp_path: Path
) -> None:
    sub = gpu_believer.bus.subscribe()
    source = tmp_path / "a.avi"
    shutil.copy(samples["mpeg4.avi"], source)
    outcome = await gpu_believer.convert(source, ConvertOptions(profile=P1080, encoder="auto"))
    assert outcome.status == "done", outcome.reason
    assert outcome.encoder == "libx264"
    assert any("NVENC failed" in n and "fell back to CPU" in n for n in outcome.notes)
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    assert [e.encoder for e in events if isinstance(e, JobStarted)] == ["h264_nvenc", "libx264"]
    assert_plays_on_every_chromecast(source.with_suffix(".mp4"), source_audio=1)


async def test_nvenc_forced_fails_with_the_reason_and_keeps_the_original(
    gpu_believer: Converter, samples: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "a.avi"
    shutil.copy(samples["mpeg4.avi"], source)
    before = _digest(source)
    sub = gpu_believer.bus.subscribe()
    outcome = await gpu_believer.convert(source, ConvertOptions(profile=P1080, encoder="nvenc"))
    live = []
    while (event := sub.get_nowait()) is not None:
        if isinstance(event, JobOutput):
            live.append(event.tail)
    assert live and "libcuda" in live[-1]  # ffmpeg's stderr was shown while it ran
    assert outcome.status == "failed"
    assert outcome.encoder == "h264_nvenc"
    assert "NVENC unavailable" in (outcome.reason or ""), outcome.reason
    assert "libcuda" in outcome.stderr_tail
    assert _digest(source) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi"]
