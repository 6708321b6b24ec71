"""The decision engine: ``decide(MediaInfo | ProbeFailure, Profile) -> Decision``.

Every case is built by hand from a compliant 1080p H.264/AAC MP4 and changes one property,
so each rule is tested on its own, against each built-in profile where the rule differs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from castui_core.decide import Action, Decision, decide
from castui_core.media import (
    MP4_FORMAT,
    AudioStream,
    MediaInfo,
    ProbeFailure,
    SubtitleStream,
    VideoStream,
)
from castui_core.profiles import Profile, builtin_profiles

PROFILES: dict[str, Profile] = builtin_profiles()

MKV_FORMAT = "matroska,webm"


def video(**changes: Any) -> VideoStream:
    """A compliant H.264 High 4.0 1080p23.976 SDR progressive stream, with ``changes``."""
    base = VideoStream(
        index=0,
        codec="h264",
        profile="High",
        level=40,
        pix_fmt="yuv420p",
        width=1920,
        height=1080,
        avg_fps=24000 / 1001,
        r_fps=24000 / 1001,
        field_order="progressive",
        color_transfer="bt709",
        color_primaries="bt709",
        color_space="bt709",
        bit_rate=6_000_000,
    )
    return replace(base, **changes)


def aac(**changes: Any) -> AudioStream:
    """An AAC-LC stereo track, with ``changes``."""
    base = AudioStream(
        index=1,
        codec="aac",
        profile="LC",
        channels=2,
        layout="stereo",
        sample_rate=48_000,
        bit_rate=192_000,
        language="eng",
        default=True,
    )
    return replace(base, **changes)


def hevc_4k(**changes: Any) -> VideoStream:
    """A compliant HEVC Main 10 HDR10 2160p60 stream (for chromecast-4k-hevc)."""
    fields: dict[str, Any] = {
        "codec": "hevc",
        "profile": "Main 10",
        "level": 153,
        "pix_fmt": "yuv420p10le",
        "width": 3840,
        "height": 2160,
        "avg_fps": 60.0,
        "r_fps": 60.0,
        "color_transfer": "smpte2084",
        "color_primaries": "bt2020",
        "color_space": "bt2020nc",
        "bit_rate": 30_000_000,
    }
    return video(**{**fields, **changes})


def media(
    *,
    v: VideoStream | None = None,
    videos: tuple[VideoStream, ...] | None = None,
    audio: tuple[AudioStream, ...] | None = None,
    subtitles: tuple[SubtitleStream, ...] = (),
    path: str = "/media/movies/Film (2020)/Film (2020).mp4",
    format_name: str = MP4_FORMAT,
    duration_s: float | None = 5400.0,
    bit_rate: int | None = 6_200_000,
) -> MediaInfo:
    """A compliant MP4 (video ``v`` or the default, AAC-LC stereo), with the given parts.

    ``videos=()`` makes a file without video.
    """
    if videos is None:
        videos = (v or video(),)
    return MediaInfo(
        path=path,
        size=4_000_000_000,
        format_name=format_name,
        duration_s=duration_s,
        bit_rate=bit_rate,
        video=videos,
        audio=(aac(),) if audio is None else audio,
        subtitles=subtitles,
    )


def run(info: MediaInfo | ProbeFailure, profile: str) -> Decision:
    return decide(info, PROFILES[profile])


def assert_reasons(decision: Decision, expected: tuple[str, ...]) -> None:
    """Every expected fragment is in some reason (reasons are specific, not generic)."""
    for fragment in expected:
        assert any(fragment in r for r in decision.reasons), (fragment, decision.reasons)


# ---------------------------------------------------------------------------------------------
# Compliant files are skipped.


@pytest.mark.parametrize(
    ("profile", "info"),
    [
        pytest.param("chromecast-1080p", media(), id="1080p24-h264-on-1080p"),
        pytest.param(
            "chromecast-1080p",
            media(v=video(width=1280, height=720, avg_fps=60.0, r_fps=60.0, level=32)),
            id="720p60-h264-on-1080p",
        ),
        pytest.param(
            "chromecast-1080p60",
            media(v=video(avg_fps=60.0, r_fps=60.0, level=42)),
            id="1080p60-h264-on-1080p60",
        ),
        pytest.param("chromecast-1080p60", media(), id="1080p24-h264-on-1080p60"),
        pytest.param("chromecast-4k-hevc", media(v=hevc_4k()), id="2160p60-hdr10-on-4k-hevc"),
        pytest.param(
            "chromecast-4k-hevc",
            media(
                v=hevc_4k(
                    profile="Main",
                    level=120,
                    pix_fmt="yuv420p",
                    width=1920,
                    height=1080,
                    avg_fps=24000 / 1001,
                    color_transfer="bt709",
                    bit_rate=8_000_000,
                )
            ),
            id="1080p-hevc-main-sdr-on-4k-hevc",
        ),
        pytest.param(
            "nest-hub-720p",
            media(
                v=video(
                    width=1280, height=720, avg_fps=60.0, r_fps=60.0, level=32, bit_rate=4_000_000
                )
            ),
            id="720p60-h264-on-nest-hub-720p",
        ),
    ],
)
def test_compliant_file_is_skipped(profile: str, info: MediaInfo) -> None:
    decision = run(info, profile)
    assert decision == Decision(Action.SKIP, ("plays directly",))


@pytest.mark.parametrize(
    "info",
    [
        pytest.param(media(path="/m/Film.m4v"), id="m4v-extension"),
        pytest.param(media(path="/m/FILM.MP4"), id="upper-case-extension"),
        pytest.param(
            media(v=video(profile="Constrained Baseline", level=31)), id="constr-baseline"
        ),
        pytest.param(media(v=video(profile="Baseline")), id="baseline"),
        pytest.param(media(v=video(profile="Main")), id="main"),
        pytest.param(media(v=video(profile="High")), id="high"),
        pytest.param(media(v=video(profile=None)), id="profile-unknown"),
        pytest.param(media(v=video(level=41)), id="level-4.1"),
        pytest.param(media(v=video(level=-99)), id="level-unknown"),
        pytest.param(media(v=video(level=None)), id="level-missing"),
        pytest.param(media(v=video(pix_fmt="yuvj420p")), id="full-range-yuvj420p"),
        pytest.param(media(v=video(pix_fmt="nv12")), id="nv12"),
        pytest.param(media(v=video(pix_fmt=None)), id="pix-fmt-unknown"),
        pytest.param(media(v=video(field_order="unknown")), id="field-order-unknown"),
        pytest.param(media(v=video(color_transfer="unknown")), id="transfer-unknown"),
        pytest.param(media(v=video(color_transfer="smpte170m")), id="transfer-smpte170m"),
        pytest.param(media(v=video(avg_fps=30.0, r_fps=30.0)), id="1080p30"),
        pytest.param(media(v=video(avg_fps=30000 / 1001)), id="1080p29.97"),
        pytest.param(media(v=video(avg_fps=None, r_fps=25.0)), id="avg-fps-none-r-fps-25"),
        pytest.param(media(v=video(avg_fps=None, r_fps=None)), id="fps-unknown"),
        pytest.param(media(v=video(bit_rate=10_000_000)), id="bitrate-at-max"),
        pytest.param(media(v=video(bit_rate=None), bit_rate=None), id="bitrate-unknown"),
        pytest.param(
            media(v=video(bit_rate=None), bit_rate=10_150_000),
            id="format-bitrate-minus-audio-fits",
        ),
        pytest.param(media(audio=()), id="no-audio"),
        pytest.param(media(audio=(aac(profile=None),)), id="aac-profile-unknown"),
        pytest.param(media(audio=(aac(channels=1, layout="mono"),)), id="aac-mono"),
        pytest.param(media(audio=(aac(codec="mp3", profile=None),)), id="mp3-stereo"),
        pytest.param(
            media(audio=(AudioStream(1, "ac3", channels=6), aac(index=2))),
            id="ac3-5.1-plus-aac-stereo",
        ),
        pytest.param(
            media(audio=(AudioStream(1, "dts", profile="DTS-HD MA", channels=8), aac(index=2))),
            id="dts-hd-plus-aac-stereo",
        ),
        pytest.param(
            media(subtitles=(SubtitleStream(2, "mov_text", language="eng"),)), id="mov-text-sub"
        ),
        pytest.param(media(duration_s=None), id="duration-unknown"),
    ],
)
def test_compliant_variants_are_skipped_on_chromecast_1080p(info: MediaInfo) -> None:
    assert run(info, "chromecast-1080p") == Decision(Action.SKIP, ("plays directly",))


# ---------------------------------------------------------------------------------------------
# Video rules: a violation means transcode, with a reason naming the value and the limit.

VIDEO_CASES = [
    # codec
    pytest.param(
        "chromecast-1080p",
        video(codec="mpeg4", profile="Advanced Simple Profile", level=5),
        ("video codec mpeg4 is not H.264",),
        id="codec-mpeg4-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p",
        video(codec="mpeg2video", profile="Main", level=8),
        ("video codec mpeg2video is not H.264",),
        id="codec-mpeg2-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p",
        video(codec="vp9", profile="Profile 0", level=None),
        ("video codec vp9 is not H.264",),
        id="codec-vp9-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p",
        video(codec="hevc", profile="Main", level=120),
        ("video codec HEVC is not H.264",),
        id="codec-hevc-on-1080p",
    ),
    pytest.param(
        "nest-hub-720p",
        video(codec="hevc", profile="Main", level=93, width=1280, height=720),
        ("video codec HEVC is not H.264",),
        id="codec-hevc-on-nest-hub",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        video(),
        ("video codec H.264 is not HEVC",),
        id="codec-h264-on-4k-hevc",
    ),
    # profile
    pytest.param(
        "chromecast-1080p",
        video(profile="High 10"),
        ("H.264 profile High 10 is not playable (up to High)",),
        id="profile-high10",
    ),
    pytest.param(
        "chromecast-1080p",
        video(profile="High 4:2:2"),
        ("H.264 profile High 4:2:2 is not playable",),
        id="profile-high422",
    ),
    pytest.param(
        "chromecast-1080p60",
        video(profile="High 4:4:4 Predictive"),
        ("H.264 profile High 4:4:4 Predictive is not playable",),
        id="profile-high444-on-1080p60",
    ),
    pytest.param(
        "chromecast-1080p",
        video(profile="High 10", pix_fmt="yuv420p10le"),
        ("H.264 profile High 10 is not playable", "10-bit (yuv420p10le)"),
        id="profile-high10-with-10bit-pixels",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        hevc_4k(profile="Rext"),
        ("HEVC profile Rext is not playable (up to Main 10)",),
        id="profile-hevc-rext-on-4k-hevc",
    ),
    # level
    pytest.param(
        "chromecast-1080p",
        video(level=42),
        ("H.264 level 4.2 > 4.1",),
        id="level-4.2-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p",
        video(level=51),
        ("H.264 level 5.1 > 4.1",),
        id="level-5.1-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p60",
        video(level=51),
        ("H.264 level 5.1 > 4.2",),
        id="level-5.1-on-1080p60",
    ),
    pytest.param(
        "nest-hub-720p",
        video(level=50, width=1280, height=720),
        ("H.264 level 5.0 > 4.1",),
        id="level-5.0-on-nest-hub",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        hevc_4k(level=156),
        ("HEVC level 5.2 > 5.1",),
        id="level-hevc-5.2-on-4k-hevc",
    ),
    # pixel format / bit depth
    pytest.param(
        "chromecast-1080p",
        video(pix_fmt="yuv420p10le"),
        ("10-bit (yuv420p10le)",),
        id="pix-10bit-on-1080p",
    ),
    pytest.param(
        "nest-hub-720p",
        video(pix_fmt="yuv420p10le", width=1280, height=720),
        ("10-bit (yuv420p10le)",),
        id="pix-10bit-on-nest-hub",
    ),
    pytest.param(
        "chromecast-1080p",
        video(pix_fmt="yuv422p"),
        ("chroma 4:2:2 (yuv422p), needs 4:2:0",),
        id="pix-yuv422p-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p",
        video(pix_fmt="yuv444p"),
        ("chroma 4:4:4 (yuv444p), needs 4:2:0",),
        id="pix-yuv444p-on-1080p",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        hevc_4k(pix_fmt="yuv422p10le"),
        ("chroma 4:2:2 (yuv422p10le), needs 4:2:0",),
        id="pix-yuv422p10le-on-4k-hevc",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        hevc_4k(pix_fmt="yuv420p12le"),
        ("12-bit (yuv420p12le)",),
        id="pix-12bit-on-4k-hevc",
    ),
    # size
    pytest.param(
        "chromecast-1080p",
        video(width=3840, height=2160, level=51),
        ("3840x2160 is larger than 1920x1080",),
        id="size-2160p-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p60",
        video(width=2560, height=1440, level=50),
        ("2560x1440 is larger than 1920x1080",),
        id="size-1440p-on-1080p60",
    ),
    pytest.param(
        "nest-hub-720p",
        video(),
        ("1920x1080 is larger than 1280x720",),
        id="size-1080p-on-nest-hub",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        hevc_4k(width=4096, height=2160),
        ("4096x2160 is larger than 3840x2160",),
        id="size-dci-4k-on-4k-hevc",
    ),
    # frame rate
    pytest.param(
        "chromecast-1080p",
        video(avg_fps=60.0, r_fps=60.0, level=42),
        ("60 fps above 720p > 30",),
        id="fps-1080p60-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p",
        video(avg_fps=60000 / 1001, r_fps=60000 / 1001, level=42),
        ("59.9 fps above 720p > 30",),
        id="fps-1080p59.94-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p",
        video(avg_fps=None, r_fps=60.0),
        ("60 fps above 720p > 30",),
        id="fps-avg-none-falls-back-to-r-fps",
    ),
    pytest.param(
        "chromecast-1080p",
        video(avg_fps=120.0, r_fps=120.0, width=1280, height=720, level=42),
        ("120 fps > 60",),
        id="fps-720p120-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p60",
        video(avg_fps=120.0, r_fps=120.0, level=42),
        ("120 fps > 60",),
        id="fps-1080p120-on-1080p60",
    ),
    # interlacing
    pytest.param(
        "chromecast-1080p",
        video(field_order="tt"),
        ("interlaced (tt)",),
        id="interlaced-tt",
    ),
    pytest.param(
        "chromecast-1080p",
        video(field_order="bb"),
        ("interlaced (bb)",),
        id="interlaced-bb",
    ),
    pytest.param(
        "chromecast-1080p60",
        video(field_order="tb"),
        ("interlaced (tb)",),
        id="interlaced-tb-on-1080p60",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        hevc_4k(field_order="bt"),
        ("interlaced (bt)",),
        id="interlaced-bt-on-4k-hevc",
    ),
    # HDR
    pytest.param(
        "chromecast-1080p",
        video(color_transfer="smpte2084"),
        ("HDR PQ (smpte2084) on an SDR profile",),
        id="hdr-pq-on-1080p",
    ),
    pytest.param(
        "chromecast-1080p60",
        video(color_transfer="arib-std-b67"),
        ("HDR HLG (arib-std-b67) on an SDR profile",),
        id="hdr-hlg-on-1080p60",
    ),
    pytest.param(
        "nest-hub-720p",
        video(color_transfer="smpte2084", width=1280, height=720),
        ("HDR PQ (smpte2084) on an SDR profile",),
        id="hdr-pq-on-nest-hub",
    ),
    # bitrate
    pytest.param(
        "chromecast-1080p",
        video(bit_rate=12_000_000),
        ("video bitrate 12.0 Mb/s > 10.0 Mb/s",),
        id="bitrate-stream-above-max",
    ),
    pytest.param(
        "nest-hub-720p",
        video(bit_rate=6_000_000, width=1280, height=720),
        ("video bitrate 6.0 Mb/s > 5.0 Mb/s",),
        id="bitrate-stream-above-nest-hub-max",
    ),
    pytest.param(
        "chromecast-4k-hevc",
        hevc_4k(bit_rate=60_000_000),
        ("video bitrate 60.0 Mb/s > 40.0 Mb/s",),
        id="bitrate-stream-above-4k-max",
    ),
]


@pytest.mark.parametrize(("profile", "stream", "expected"), VIDEO_CASES)
def test_video_rule_violation_transcodes(
    profile: str, stream: VideoStream, expected: tuple[str, ...]
) -> None:
    decision = run(media(v=stream), profile)
    assert decision.action is Action.TRANSCODE, decision.reasons
    assert_reasons(decision, expected)


@pytest.mark.parametrize(
    ("stream", "fragment"),
    [
        pytest.param(video(codec="hevc", profile="Main", level=120), "codec", id="codec"),
        pytest.param(video(profile="High 10"), "profile", id="profile"),
        pytest.param(video(level=51), "level", id="level"),
        pytest.param(video(pix_fmt="yuv420p10le"), "10-bit", id="bit-depth"),
        pytest.param(video(field_order="tt"), "interlaced", id="interlaced"),
        pytest.param(video(color_transfer="smpte2084"), "HDR", id="hdr"),
        pytest.param(video(bit_rate=12_000_000), "bitrate", id="bitrate"),
    ],
)
def test_one_problem_gives_exactly_one_reason(stream: VideoStream, fragment: str) -> None:
    decision = run(media(v=stream), "chromecast-1080p")
    assert decision.action is Action.TRANSCODE
    assert len(decision.reasons) == 1, decision.reasons
    assert fragment in decision.reasons[0]


@pytest.mark.parametrize(
    ("profile", "stream", "action"),
    [
        pytest.param("chromecast-1080p", video(level=41), Action.SKIP, id="4.1-on-1080p"),
        pytest.param("chromecast-1080p", video(level=42), Action.TRANSCODE, id="4.2-on-1080p"),
        pytest.param("chromecast-1080p60", video(level=42), Action.SKIP, id="4.2-on-1080p60"),
        pytest.param("chromecast-1080p60", video(level=50), Action.TRANSCODE, id="5.0-on-1080p60"),
        pytest.param("chromecast-1080p", video(level=51), Action.TRANSCODE, id="5.1-on-1080p"),
        pytest.param("chromecast-4k-hevc", hevc_4k(level=150), Action.SKIP, id="hevc-5.0-on-4k"),
        pytest.param("chromecast-4k-hevc", hevc_4k(level=153), Action.SKIP, id="hevc-5.1-on-4k"),
        pytest.param(
            "chromecast-4k-hevc", hevc_4k(level=156), Action.TRANSCODE, id="hevc-5.2-on-4k"
        ),
    ],
)
def test_level_boundaries(profile: str, stream: VideoStream, action: Action) -> None:
    assert run(media(v=stream), profile).action is action


@pytest.mark.parametrize(
    ("profile", "stream", "action"),
    [
        pytest.param(
            "chromecast-1080p",
            video(avg_fps=60.0, r_fps=60.0, level=42),
            Action.TRANSCODE,
            id="1080p60-on-1080p",
        ),
        pytest.param(
            "chromecast-1080p",
            video(avg_fps=60.0, r_fps=60.0, width=1280, height=720, level=32),
            Action.SKIP,
            id="720p60-on-1080p",
        ),
        pytest.param(
            "chromecast-1080p60",
            video(avg_fps=60.0, r_fps=60.0, level=42),
            Action.SKIP,
            id="1080p60-on-1080p60",
        ),
        pytest.param(
            "chromecast-1080p",
            video(avg_fps=None, r_fps=60.0),
            Action.TRANSCODE,
            id="avg-none-r-60-on-1080p",
        ),
        pytest.param(
            "chromecast-1080p",
            video(avg_fps=24000 / 1001, r_fps=60.0),
            Action.SKIP,
            id="avg-wins-over-r",
        ),
        pytest.param(
            "chromecast-1080p",
            video(avg_fps=30.0, r_fps=30.0),
            Action.SKIP,
            id="1080p30-on-1080p",
        ),
        pytest.param(
            "nest-hub-720p",
            video(avg_fps=60.0, r_fps=60.0, width=1280, height=720, level=32, bit_rate=4_000_000),
            Action.SKIP,
            id="720p60-on-nest-hub",
        ),
        pytest.param(
            "chromecast-4k-hevc",
            hevc_4k(avg_fps=60.0, r_fps=60.0),
            Action.SKIP,
            id="2160p60-on-4k-hevc",
        ),
    ],
)
def test_frame_rate_caps(profile: str, stream: VideoStream, action: Action) -> None:
    assert run(media(v=stream), profile).action is action


@pytest.mark.parametrize(
    ("profile", "stream", "action"),
    [
        pytest.param(
            "chromecast-1080p", video(pix_fmt="yuv420p10le"), Action.TRANSCODE, id="10bit-1080p"
        ),
        pytest.param(
            "chromecast-4k-hevc", hevc_4k(pix_fmt="yuv420p10le"), Action.SKIP, id="10bit-4k-hevc"
        ),
        pytest.param(
            "chromecast-4k-hevc", hevc_4k(pix_fmt="p010le"), Action.SKIP, id="p010le-4k-hevc"
        ),
        pytest.param(
            "chromecast-4k-hevc", hevc_4k(pix_fmt="yuv420p"), Action.SKIP, id="8bit-4k-hevc"
        ),
        pytest.param(
            "chromecast-1080p", video(pix_fmt="yuv422p"), Action.TRANSCODE, id="422-1080p"
        ),
    ],
)
def test_pixel_format(profile: str, stream: VideoStream, action: Action) -> None:
    assert run(media(v=stream), profile).action is action


@pytest.mark.parametrize(
    ("profile", "transfer", "action"),
    [
        pytest.param("chromecast-1080p", "smpte2084", Action.TRANSCODE, id="pq-on-1080p"),
        pytest.param("chromecast-1080p", "arib-std-b67", Action.TRANSCODE, id="hlg-on-1080p"),
        pytest.param("chromecast-1080p", "bt709", Action.SKIP, id="sdr-on-1080p"),
        pytest.param("chromecast-4k-hevc", "smpte2084", Action.SKIP, id="pq-on-4k-hevc-keep"),
        pytest.param("chromecast-4k-hevc", "arib-std-b67", Action.SKIP, id="hlg-on-4k-hevc-keep"),
    ],
)
def test_hdr_transfer(profile: str, transfer: str, action: Action) -> None:
    make = hevc_4k if PROFILES[profile].video.codec == "hevc" else video
    stream = make(color_transfer=transfer)
    assert run(media(v=stream), profile).action is action


def test_hdr_on_4k_hevc_profile_with_tonemap_transcodes() -> None:
    """The same HDR10 file is fine with ``hdr: keep`` and must be tone-mapped otherwise."""
    base = PROFILES["chromecast-4k-hevc"]
    tonemap = base.model_copy(
        update={
            "video": base.video.model_copy(
                update={"hdr": "tonemap", "profile": "main", "bit_depth": 8}
            )
        }
    )
    decision = decide(media(v=hevc_4k(pix_fmt="yuv420p")), tonemap)
    assert decision.action is Action.TRANSCODE
    assert_reasons(decision, ("HDR PQ (smpte2084) on an SDR profile",))


@pytest.mark.parametrize(
    ("stream_rate", "format_rate", "audio", "action", "expected"),
    [
        pytest.param(12_000_000, None, None, Action.TRANSCODE, "12.0 Mb/s > 10.0", id="stream"),
        pytest.param(9_000_000, 30_000_000, None, Action.SKIP, None, id="stream-wins-over-format"),
        pytest.param(
            None, 12_500_000, None, Action.TRANSCODE, "12.3 Mb/s > 10.0", id="format-minus-audio"
        ),
        pytest.param(
            None,
            10_150_000,
            (aac(bit_rate=192_000),),
            Action.SKIP,
            None,
            id="format-above-max-but-video-below-after-audio",
        ),
        pytest.param(
            None,
            11_000_000,
            (AudioStream(1, "truehd", channels=8, bit_rate=None), aac(index=2, bit_rate=None)),
            Action.TRANSCODE,
            "11.0 Mb/s > 10.0",
            id="format-minus-unknown-audio",
        ),
        pytest.param(0, 12_500_000, None, Action.TRANSCODE, "12.3 Mb/s", id="zero-stream-rate"),
    ],
)
def test_bitrate(
    stream_rate: int | None,
    format_rate: int | None,
    audio: tuple[AudioStream, ...] | None,
    action: Action,
    expected: str | None,
) -> None:
    info = media(v=video(bit_rate=stream_rate), bit_rate=format_rate, audio=audio)
    decision = run(info, "chromecast-1080p")
    if action is Action.SKIP:
        assert decision.action is Action.SKIP, decision.reasons
    else:
        assert decision.action is action, decision.reasons
        assert_reasons(decision, (f"video bitrate {expected}",))


# ---------------------------------------------------------------------------------------------
# Container, audio and subtitles: the video is copied (remux), with specific reasons.

REMUX_CASES = [
    pytest.param(
        media(path="/m/Film.mkv", format_name=MKV_FORMAT),
        ("container matroska is not MP4",),
        id="container-matroska",
    ),
    pytest.param(
        media(path="/m/Film.mov"),
        ("container QuickTime/MP4 with .mov extension is not MP4",),
        id="container-mp4-with-mov-extension",
    ),
    pytest.param(
        media(path="/m/Film", format_name=MP4_FORMAT),
        ("with no extension is not MP4",),
        id="container-mp4-without-extension",
    ),
    pytest.param(
        media(path="/m/Film.ts", format_name="mpegts"),
        ("container mpegts is not MP4",),
        id="container-mpegts",
    ),
    pytest.param(
        media(audio=(AudioStream(1, "dts", profile="DTS", channels=6, layout="5.1(side)"),)),
        ("no AAC/MP3 audio track with at most 2 channels", "DTS 6ch"),
        id="audio-dts-5.1-only",
    ),
    pytest.param(
        media(audio=(aac(channels=6, layout="5.1"),)),
        ("no AAC/MP3 audio track with at most 2 channels", "AAC 6ch"),
        id="audio-aac-5.1-only",
    ),
    pytest.param(
        media(audio=(AudioStream(1, "ac3", channels=6),)),
        ("no AAC/MP3 audio track", "AC3 6ch"),
        id="audio-ac3-5.1-only",
    ),
    pytest.param(
        media(audio=(AudioStream(1, "ac3", channels=2),)),
        ("no AAC/MP3 audio track", "AC3 2ch"),
        id="audio-ac3-stereo-only",
    ),
    pytest.param(
        media(audio=(aac(profile="HE-AAC"),)),
        ("no AAC/MP3 audio track", "AAC HE-AAC 2ch"),
        id="audio-he-aac-is-not-lc",
    ),
    pytest.param(
        media(audio=(AudioStream(1, "flac", channels=2), AudioStream(2, "opus", channels=2))),
        ("no AAC/MP3 audio track", "FLAC 2ch", "OPUS 2ch"),
        id="audio-flac-and-opus",
    ),
    pytest.param(
        media(subtitles=(SubtitleStream(2, "hdmv_pgs_subtitle", language="eng"),)),
        ("bitmap subtitles (hdmv_pgs_subtitle) cannot play on Cast: kept as sidecar files",),
        id="subs-pgs-in-mp4",
    ),
    pytest.param(
        media(
            subtitles=(SubtitleStream(2, "mov_text"), SubtitleStream(3, "dvd_subtitle")),
        ),
        ("bitmap subtitles (dvd_subtitle)",),
        id="subs-vobsub-next-to-text",
    ),
    pytest.param(
        media(subtitles=(SubtitleStream(2, "eia_608"),)),
        ("subtitle format eia_608 is not playable",),
        id="subs-unknown-format",
    ),
    pytest.param(
        media(videos=(video(), video(index=1, codec="h264"))),
        ("1 extra video stream(s) dropped",),
        id="extra-video-stream",
    ),
]


@pytest.mark.parametrize(("info", "expected"), REMUX_CASES)
@pytest.mark.parametrize("profile", ["chromecast-1080p", "chromecast-1080p60"])
def test_container_audio_subtitle_problems_remux(
    profile: str, info: MediaInfo, expected: tuple[str, ...]
) -> None:
    decision = run(info, profile)
    assert decision.action is Action.REMUX, decision.reasons
    assert_reasons(decision, expected)
    assert "plays directly" not in decision.reasons


@pytest.mark.parametrize(
    ("info", "reasons"),
    [
        pytest.param(
            media(
                path="/m/Film.mkv",
                format_name=MKV_FORMAT,
                subtitles=(SubtitleStream(2, "subrip", language="eng"),),
            ),
            ("container matroska is not MP4",),
            id="subrip-in-mkv-only-container",
        ),
        pytest.param(
            media(
                path="/m/Film.mkv",
                format_name=MKV_FORMAT,
                subtitles=(SubtitleStream(2, "ass"),),
                audio=(AudioStream(1, "dts", channels=6),),
            ),
            (
                "container matroska is not MP4",
                "no AAC/MP3 audio track with at most 2 channels (has: DTS 6ch)",
            ),
            id="ass-and-dts-in-mkv",
        ),
    ],
)
def test_remux_reasons_are_exact(info: MediaInfo, reasons: tuple[str, ...]) -> None:
    assert run(info, "chromecast-1080p") == Decision(Action.REMUX, reasons)


@pytest.mark.parametrize(
    "subtitles",
    [
        pytest.param((SubtitleStream(2, "mov_text", language="eng"),), id="mov-text"),
        pytest.param(
            (SubtitleStream(2, "mov_text"), SubtitleStream(3, "mov_text", forced=True)),
            id="two-mov-text",
        ),
        pytest.param((), id="none"),
    ],
)
def test_text_subtitles_in_mp4_are_skipped(subtitles: tuple[SubtitleStream, ...]) -> None:
    assert run(media(subtitles=subtitles), "chromecast-1080p").action is Action.SKIP


def test_bitmap_subtitles_kept_source_reason() -> None:
    base = PROFILES["chromecast-1080p"]
    keep = base.model_copy(
        update={"subtitles": base.subtitles.model_copy(update={"bitmap": "keep-source"})}
    )
    decision = decide(media(subtitles=(SubtitleStream(2, "hdmv_pgs_subtitle"),)), keep)
    assert decision.action is Action.REMUX
    assert_reasons(decision, ("kept as the kept source",))


@pytest.mark.parametrize(
    ("audio", "action"),
    [
        pytest.param((AudioStream(1, "dts", channels=6),), Action.REMUX, id="dts-5.1-only"),
        pytest.param((aac(channels=6),), Action.REMUX, id="aac-5.1-only"),
        pytest.param((aac(profile="HE-AAC"),), Action.REMUX, id="he-aac"),
        pytest.param((aac(profile="HE-AACv2"),), Action.REMUX, id="he-aac-v2"),
        pytest.param((aac(channels=0),), Action.REMUX, id="aac-unknown-channels"),
        pytest.param(
            (AudioStream(1, "ac3", channels=6), aac(index=2)), Action.SKIP, id="ac3-plus-aac"
        ),
        pytest.param(
            (aac(channels=6), aac(index=2, channels=2)), Action.SKIP, id="aac-5.1-plus-stereo"
        ),
        pytest.param((aac(codec="mp3", profile=None),), Action.SKIP, id="mp3"),
        pytest.param((), Action.SKIP, id="no-audio"),
    ],
)
def test_audio_rule(audio: tuple[AudioStream, ...], action: Action) -> None:
    decision = run(media(audio=audio), "chromecast-1080p")
    assert decision.action is action, decision.reasons
    if action is Action.SKIP:
        assert decision.reasons == ("plays directly",)


def test_no_audio_is_not_a_reason() -> None:
    decision = run(media(audio=(), path="/m/Film.mkv", format_name=MKV_FORMAT), "chromecast-1080p")
    assert decision == Decision(Action.REMUX, ("container matroska is not MP4",))


# ---------------------------------------------------------------------------------------------
# A transcode keeps the container, audio and subtitle reasons.


def test_transcode_keeps_container_audio_and_subtitle_reasons() -> None:
    info = media(
        v=video(codec="hevc", profile="Main", level=120),
        path="/m/Film.mkv",
        format_name=MKV_FORMAT,
        audio=(AudioStream(1, "dts", channels=6),),
        subtitles=(SubtitleStream(2, "hdmv_pgs_subtitle"),),
    )
    decision = run(info, "chromecast-1080p")
    assert decision.action is Action.TRANSCODE
    assert decision.reasons == (
        "video codec HEVC is not H.264",
        "container matroska is not MP4",
        "no AAC/MP3 audio track with at most 2 channels (has: DTS 6ch)",
        "bitmap subtitles (hdmv_pgs_subtitle) cannot play on Cast: kept as sidecar files",
    )


def test_transcode_lists_every_video_problem() -> None:
    stream = video(
        profile="High 10",
        level=51,
        pix_fmt="yuv420p10le",
        width=3840,
        height=2160,
        avg_fps=60.0,
        field_order="tt",
        color_transfer="smpte2084",
        bit_rate=50_000_000,
    )
    decision = run(media(v=stream), "chromecast-1080p")
    assert decision.action is Action.TRANSCODE
    assert_reasons(
        decision,
        (
            "H.264 profile High 10",
            "H.264 level 5.1 > 4.1",
            "10-bit (yuv420p10le)",
            "3840x2160 is larger than 1920x1080",
            "60 fps above 720p > 30",
            "interlaced (tt)",
            "HDR PQ (smpte2084)",
            "video bitrate 50.0 Mb/s > 10.0 Mb/s",
        ),
    )
    assert len(decision.reasons) == 8


def test_transcode_mentions_dropped_extra_video_stream() -> None:
    info = media(videos=(video(field_order="tt"), video(index=1)))
    decision = run(info, "chromecast-1080p")
    assert decision.action is Action.TRANSCODE
    assert decision.reasons[0] == "interlaced (tt)"
    assert decision.reasons[-1] == "1 extra video stream(s) dropped: Cast plays one"


# ---------------------------------------------------------------------------------------------
# Rejects: nothing useful can be done, and the reason says why.


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        pytest.param(
            ProbeFailure(path="/m/broken.mkv", size=12, reason="not a media file (EBML header)"),
            "not a media file (EBML header)",
            id="probe-failure",
        ),
        pytest.param(media(videos=()), "no video stream (audio only)", id="audio-only"),
        pytest.param(
            media(videos=(), audio=()), "no video stream (no streams castui can play)", id="empty"
        ),
        pytest.param(
            media(v=video(codec="cavs_x", decodable=False)),
            "video codec cavs_x cannot be decoded by this FFmpeg",
            id="undecodable-codec",
        ),
        pytest.param(
            media(v=video(width=0, height=0)),
            "video has no frame size (corrupt or unsupported)",
            id="width-and-height-zero",
        ),
        pytest.param(
            media(v=video(width=0)),
            "video has no frame size (corrupt or unsupported)",
            id="width-zero",
        ),
        pytest.param(
            media(v=video(height=0)),
            "video has no frame size (corrupt or unsupported)",
            id="height-zero",
        ),
        pytest.param(media(duration_s=0.0), "duration is zero (empty or corrupt)", id="duration-0"),
    ],
)
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_reject(profile: str, info: MediaInfo | ProbeFailure, reason: str) -> None:
    assert run(info, profile) == Decision(Action.REJECT, (reason,))


def test_reject_wins_over_every_other_problem() -> None:
    info = media(
        v=video(codec="hevc", decodable=False),
        path="/m/Film.mkv",
        format_name=MKV_FORMAT,
        audio=(AudioStream(1, "dts", channels=6),),
    )
    decision = run(info, "chromecast-1080p")
    assert decision.action is Action.REJECT
    assert len(decision.reasons) == 1


@pytest.mark.parametrize(
    ("action", "needs_work"),
    [
        pytest.param(Action.SKIP, False, id="skip"),
        pytest.param(Action.REMUX, True, id="remux"),
        pytest.param(Action.TRANSCODE, True, id="transcode"),
        pytest.param(Action.REJECT, False, id="reject"),
    ],
)
def test_action_needs_work(action: Action, needs_work: bool) -> None:
    assert action.needs_work is needs_work
