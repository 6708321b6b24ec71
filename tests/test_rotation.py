"""Rotated (phone) sources come out upright: the rotation is probed the same way by both
probes, planned in the displayed orientation, and a real encode passes validation."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import av
import pytest
from media import make_rotated

from castui_core.bus import EventBus
from castui_core.convert import Converter, ConvertOptions
from castui_core.decide import Action, decide
from castui_core.ffmpeg.command import build_command, output_geometry
from castui_core.media import VideoStream
from castui_core.probe import ProbePool, normalise_rotation, probe_ffprobe, probe_pyav
from castui_core.profiles import builtin_profiles
from castui_core.swap import Journal
from castui_core.tools import find_tools

PROFILES = builtin_profiles()
P1080 = PROFILES["chromecast-1080p"]
FFPROBE = shutil.which("ffprobe")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(-90, 270), (90, 90), (180, 180), (-180, 180), (0, 0), ("-90.00", 270), (45, 0), (None, 0)],
)
def test_normalise_rotation(raw: object, expected: int) -> None:
    assert normalise_rotation(raw) == expected


@pytest.mark.parametrize("rotation", [90, 180, 270])
async def test_both_probes_read_the_display_rotation(tmp_path: Path, rotation: int) -> None:
    clip = make_rotated(tmp_path, rotation=rotation)
    assert FFPROBE is not None
    by_pyav = probe_pyav(str(clip)).video[0]
    by_ffprobe = (await probe_ffprobe(Path(FFPROBE), str(clip))).video[0]
    assert by_pyav.rotation == by_ffprobe.rotation == rotation
    assert (by_pyav.width, by_pyav.height) == (1280, 720)  # coded size is unchanged
    assert by_pyav.quarter_turn is (rotation != 180)


_PHONE = VideoStream(index=0, codec="h264", width=1280, height=720, avg_fps=30.0)


@pytest.mark.parametrize(
    ("stream", "profile", "size", "scaled"),
    [
        (replace(_PHONE, rotation=270), "chromecast-1080p", (720, 1280), False),
        (replace(_PHONE, rotation=90), "nest-hub-720p", (720, 1280), False),  # long side 1280
        (replace(_PHONE, rotation=180), "chromecast-1080p", (1280, 720), False),
        (
            replace(_PHONE, width=3840, height=2160, rotation=90),
            "chromecast-1080p",
            (1080, 1920),
            True,
        ),
        # Coded portrait, no rotation: within the box's long/short sides, not shrunk.
        (replace(_PHONE, width=1080, height=1920), "chromecast-1080p", (1080, 1920), False),
        (replace(_PHONE, width=1080, height=1920), "nest-hub-720p", (720, 1280), True),
    ],
)
def test_geometry_is_planned_in_the_displayed_orientation(
    stream: VideoStream, profile: str, size: tuple[int, int], scaled: bool
) -> None:
    geo = output_geometry(stream, PROFILES[profile].video)
    assert (geo.width, geo.height) == size
    assert geo.scaled is scaled


@pytest.mark.parametrize(
    ("size", "fits"), [((1080, 1920), True), ((1920, 1080), True), ((1200, 1920), False)]
)
def test_profile_limits_bound_the_long_and_the_short_side(
    size: tuple[int, int], fits: bool
) -> None:
    assert P1080.video.fits(*size) is fits


def test_rotated_source_never_takes_the_gpu_frame_path() -> None:
    """autorotate's transpose is a CPU filter: GPU frames would fail like a missed NVDEC."""
    from castui_core.media import MediaInfo

    info = MediaInfo(
        path="/m/p.mp4",
        size=1,
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        duration_s=1.0,
        video=(replace(_PHONE, width=3840, height=2160, avg_fps=60.0, rotation=270),),
    )
    decision = decide(info, P1080)
    assert decision.action is Action.TRANSCODE
    plan = build_command(info, P1080, decision, output="/o.mp4", backend="nvenc")
    assert not plan.hwaccel
    assert "-noautorotate" not in plan.args
    assert (plan.width, plan.height) == (1080, 1920)
    assert any("rotated 270" in n for n in plan.notes)


async def test_rotated_phone_clip_converts_to_upright_720x1280(tmp_path: Path) -> None:
    """The real pipeline: a 1280x720 clip shown portrait, forced through a transcode, comes
    out as 720x1280 with no rotation left, and validation accepts it."""
    clip = make_rotated(tmp_path, rotation=270)
    source = tmp_path / "phone.mov"
    clip.rename(source)
    profile = P1080.model_copy(
        update={"video": P1080.video.model_copy(update={"max_fps": 24.0})}
    )  # 30 fps > 24: a transcode, not a remux, so the geometry plan is exercised
    with ProbePool(1, timeout=30) as pool:
        converter = Converter(
            tools=find_tools(),
            pool=pool,
            journal=Journal(tmp_path / "journal"),
            bus=EventBus(),
            nvenc=None,
        )
        outcome = await converter.convert(source, ConvertOptions(profile=profile, encoder="cpu"))
    assert outcome.status == "done", outcome.reason
    assert outcome.action is Action.TRANSCODE
    output = Path(outcome.output_path or "")
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (720, 1280)
        frame = next(container.decode(stream))
        assert frame.rotation == 0  # upright pixels, no display matrix left to apply
    assert probe_pyav(str(output)).video[0].rotation == 0
