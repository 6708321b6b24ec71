"""Probing real files: PyAV in worker processes, cross-checked against real ffprobe."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from probe_faults import faulty_probe

from castui_core.errors import ProbeError
from castui_core.media import MediaInfo, ProbeFailure
from castui_core.probe import ProbePool, probe_ffprobe, probe_pyav

FFPROBE = Path(shutil.which("ffprobe") or "/usr/bin/ffprobe")
MEDIA = [
    "compliant.mp4", "compliant.mkv", "high10.mkv", "hevc10_hdr.mkv", "mpeg4.avi",
    "p1440p60.mp4", "interlaced.ts", "anamorphic_mpeg2.mpg", "vp9_noaudio.webm",
    "flac71.mkv", "two_audio_srt.mkv", "audio_only.m4a",
]  # fmt: skip


def _essentials(info: MediaInfo) -> dict[str, object]:
    """The fields the decision reads, in a form both probers must agree on."""
    return {
        "format": info.format_name,
        "video": [
            (
                v.codec, v.profile, v.level, v.pix_fmt, v.width, v.height,
                (v.sar_num, v.sar_den), v.field_order, v.color_transfer,
                round(v.fps or 0, 2),
            )
            for v in info.video
        ],
        "audio": [(a.codec, a.channels, a.language, a.default) for a in info.audio],
        "subs": [(s.codec, s.language) for s in info.subtitles],
        "duration": round(info.duration_s or 0, 1),
    }  # fmt: skip


@pytest.mark.parametrize("name", MEDIA)
async def test_pyav_agrees_with_ffprobe(samples: dict[str, Path], name: str) -> None:
    path = str(samples[name])
    via_pyav = probe_pyav(path)
    via_ffprobe = await probe_ffprobe(FFPROBE, path)
    assert _essentials(via_pyav) == _essentials(via_ffprobe)
    assert via_pyav.size == via_ffprobe.size == Path(path).stat().st_size


def test_probe_reads_the_details_the_rules_need(samples: dict[str, Path]) -> None:
    hdr = probe_pyav(str(samples["hevc10_hdr.mkv"]))
    assert hdr.video[0].codec == "hevc"
    assert hdr.video[0].hdr == "PQ"
    assert hdr.video[0].bit_depth == 10
    assert hdr.video[0].bit_rate is None or hdr.video[0].bit_rate > 0
    interlaced = probe_pyav(str(samples["interlaced.ts"]))
    assert interlaced.video[0].interlaced
    assert interlaced.audio[0].codec == "ac3"
    anamorphic = probe_pyav(str(samples["anamorphic_mpeg2.mpg"]))
    assert (anamorphic.video[0].sar_num, anamorphic.video[0].sar_den) == (32, 27)
    two = probe_pyav(str(samples["two_audio_srt.mkv"]))
    assert [a.language for a in two.audio] == ["eng", "fre"]
    assert [s.codec for s in two.subtitles] == ["subrip"]
    assert two.subtitles[0].is_text
    avi = probe_pyav(str(samples["mpeg4.avi"]))
    assert avi.audio[0].codec == "mp3"  # the codec, not PyAV's decoder name (mp3float)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("empty.mkv", "empty file (0 bytes)"), ("garbage.mkv", "not a media file")],
)
def test_unprobeable_files_raise_probe_error(
    samples: dict[str, Path], name: str, reason: str
) -> None:
    with pytest.raises(ProbeError) as caught:
        probe_pyav(str(samples[name]))
    assert reason in caught.value.reason


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="file not found"):
        probe_pyav(str(tmp_path / "nope.mkv"))
    with pytest.raises(ProbeError, match="is a directory"):
        probe_pyav(str(tmp_path))


async def test_ffprobe_fallback_reports_unreadable(samples: dict[str, Path]) -> None:
    with pytest.raises(ProbeError, match="ffprobe cannot read it"):
        await probe_ffprobe(FFPROBE, str(samples["garbage.mkv"]))


async def _collect(pool: ProbePool, paths: list[str]) -> dict[str, MediaInfo | ProbeFailure]:
    return {r.path: r async for r in pool.probe_many(paths)}


async def test_pool_probes_every_file_once(samples: dict[str, Path]) -> None:
    paths = [str(p) for p in samples.values()] * 3  # more than one batch per worker
    with ProbePool(2, timeout=20) as pool:
        results = [r async for r in pool.probe_many(paths)]
    assert sorted(r.path for r in results) == sorted(paths)
    by_path = {r.path: r for r in results}
    assert isinstance(by_path[str(samples["compliant.mp4"])], MediaInfo)
    failure = by_path[str(samples["empty.mkv"])]
    assert isinstance(failure, ProbeFailure)
    assert failure.reason == "empty file (0 bytes)"
    assert pool.replaced == 0


async def test_pool_kills_a_hung_probe_and_goes_on(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    hang = tmp_path / "hang.mkv"
    shutil.copy(samples["compliant.mkv"], hang)
    good = [str(samples["compliant.mp4"]), str(samples["high10.mkv"])]
    with ProbePool(1, timeout=1.0, probe_fn=faulty_probe) as pool:
        results = await asyncio.wait_for(_collect(pool, [good[0], str(hang), good[1]]), 30)
    assert pool.replaced == 1
    failure = results[str(hang)]
    assert isinstance(failure, ProbeFailure)
    assert "did not finish within 1 s" in failure.reason
    assert all(isinstance(results[p], MediaInfo) for p in good)


async def test_pool_survives_a_crashing_demuxer(samples: dict[str, Path], tmp_path: Path) -> None:
    crash = tmp_path / "crash.mkv"
    shutil.copy(samples["compliant.mkv"], crash)
    good = [str(samples["compliant.mp4"]), str(samples["flac71.mkv"])]
    with ProbePool(1, timeout=20, probe_fn=faulty_probe) as pool:
        results = await asyncio.wait_for(_collect(pool, [good[0], str(crash), good[1]]), 30)
        again = await asyncio.wait_for(_collect(pool, [good[1]]), 30)
    failure = results[str(crash)]
    assert isinstance(failure, ProbeFailure)
    assert "crashed" in failure.reason and "SIGSEGV" in failure.reason
    assert failure.extra.get("crashed") is True
    assert all(isinstance(results[p], MediaInfo) for p in good)
    assert isinstance(again[good[1]], MediaInfo)
    assert pool.replaced == 1


def test_media_info_json_round_trip(samples: dict[str, Path]) -> None:
    info = probe_pyav(str(samples["two_audio_srt.mkv"]))
    assert MediaInfo.from_json(info.to_json()) == info
