"""castui's built-in profiles agree with Jellyfin's Cast DeviceProfile, generation by generation.

The DeviceProfile is castui's restatement of jellyfin-chromecast v1.2.0; the verdict is Jellyfin's
rules (tests/jellyfin_streambuilder.py), not castui's. For every source shape in the grid,
castui's ``skip`` must hold exactly where Jellyfin would direct-play. The few places where castui
is deliberately different are listed with the reason, and the test fails if the set changes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import run_castui
from jellyfin_fixtures import jellyfin  # noqa: F401
from jellyfin_standin import StandinJellyfin
from jellyfin_streambuilder import media_source, profile_errors, transcode_reasons

from castui_core.decide import Action, decide
from castui_core.integrations.jellyfin.deviceprofile import (
    BUILTIN_GENERATIONS,
    CastGeneration,
    build_device_profile,
    device_profile_for,
    generation_for,
)
from castui_core.media import MP4_FORMAT, AudioStream, MediaInfo, VideoStream
from castui_core.profiles import Profile, builtin_profiles


def shape(
    codec: str = "h264",
    profile: str = "High",
    level: int = 40,
    size: tuple[int, int] = (1920, 1080),
    fps: float = 24.0,
    pix_fmt: str = "yuv420p",
    sar: tuple[int, int] = (1, 1),
    field_order: str = "progressive",
    transfer: str = "bt709",
    video_kbps: int = 5_000,
    ext: str = ".mp4",
    fmt: str = MP4_FORMAT,
    audio: tuple[str, str | None, int] = ("aac", "LC", 2),
) -> MediaInfo:
    video = VideoStream(
        index=0,
        codec=codec,
        profile=profile,
        level=level,
        pix_fmt=pix_fmt,
        width=size[0],
        height=size[1],
        sar_num=sar[0],
        sar_den=sar[1],
        avg_fps=fps,
        field_order=field_order,
        color_transfer=transfer,
        bit_rate=video_kbps * 1000,
    )
    sound = AudioStream(
        index=1, codec=audio[0], profile=audio[1], channels=audio[2], bit_rate=160_000
    )
    return MediaInfo(
        path=f"/media/movie{ext}",
        size=100_000_000,
        format_name=fmt,
        duration_s=600.0,
        bit_rate=video_kbps * 1000 + 160_000,
        video=(video,),
        audio=(sound,),
    )


#: The grid: source shapes that differ in one property Cast or Jellyfin cares about.
GRID: dict[str, MediaInfo] = {
    "h264 High 4.0 1080p24": shape(),
    "h264 High 3.1 720p30": shape(level=31, size=(1280, 720), fps=30),
    "h264 High 3.2 720p60": shape(level=32, size=(1280, 720), fps=60),
    "h264 High 4.2 1080p60": shape(level=42, fps=60),
    "h264 High 5.1 2160p24": shape(level=51, size=(3840, 2160), video_kbps=30_000),
    "h264 Main 3.0 480p": shape(profile="Main", level=30, size=(854, 480)),
    "h264 High 10 4.0 1080p": shape(profile="High 10", pix_fmt="yuv420p10le"),
    "h264 High 4:2:2 4.0 1080p": shape(profile="High 4:2:2", pix_fmt="yuv422p"),
    "h264 anamorphic 576p": shape(level=30, size=(720, 576), sar=(16, 15), fps=25),
    "h264 1080i": shape(field_order="tt", fps=25),
    "h264 15 Mb/s 1080p": shape(video_kbps=15_000),
    "h264 in MKV": shape(ext=".mkv", fmt="matroska,webm"),
    "h264 in .mov": shape(ext=".mov"),
    "h264 + AC-3 5.1": shape(audio=("ac3", None, 6)),
    "h264 + AAC 5.1": shape(audio=("aac", "LC", 6)),
    "h264 + MP3 stereo": shape(audio=("mp3", None, 2)),
    "HEVC Main 4.0 1080p": shape(codec="hevc", profile="Main", level=120),
    "HEVC Main10 5.1 2160p HDR10": shape(
        codec="hevc",
        profile="Main 10",
        level=153,
        size=(3840, 2160),
        pix_fmt="yuv420p10le",
        transfer="smpte2084",
        video_kbps=25_000,
    ),
    "HEVC Main10 6.1 2160p120": shape(
        codec="hevc",
        profile="Main 10",
        level=183,
        size=(3840, 2160),
        fps=120,
        pix_fmt="yuv420p10le",
        video_kbps=25_000,
    ),
    "HEVC 8K": shape(codec="hevc", profile="Main", level=183, size=(7680, 4320)),
    "HEVC 50 Mb/s 2160p": shape(
        codec="hevc", profile="Main", level=153, size=(3840, 2160), video_kbps=50_000
    ),
}

#: Where castui and Jellyfin's Cast profile differ on purpose: (profile, shape) → why.
_ULTRA_H264 = (
    "chromecast-4k-hevc writes HEVC Main10; castui re-encodes H.264 that Jellyfin's Ultra"
    " profile would direct-play (choose chromecast-1080p60 to keep H.264)"
)
DELIBERATE: dict[tuple[str, str], str] = {
    **{
        ("chromecast-4k-hevc", name): _ULTRA_H264
        for name in (
            "h264 High 4.0 1080p24",
            "h264 High 3.1 720p30",
            "h264 High 3.2 720p60",
            "h264 High 4.2 1080p60",
            "h264 Main 3.0 480p",
            "h264 High 10 4.0 1080p",
            "h264 + MP3 stereo",
            "h264 1080i",
            "h264 15 Mb/s 1080p",
            "h264 in .mov",
        )
    },
    ("chromecast-4k-hevc", "HEVC Main10 6.1 2160p120"): (
        "the receiver keys its HEVC conditions as 'h265', which Jellyfin never matches to"
        " 'hevc': Jellyfin would send level 6.1 / 120 fps that no Cast device decodes"
    ),
    **{
        (name, "h264 1080i"): "Cast receivers do not deinterlace; the receiver profile has no"
        " IsInterlaced condition"
        for name in ("chromecast-1080p", "chromecast-1080p60")
    },
    **{
        (name, "h264 in .mov"): "castui writes .mp4 (Cast picks the MIME type by it); Jellyfin"
        " matches the QuickTime/MP4 format list"
        for name in ("chromecast-1080p", "chromecast-1080p60")
    },
}


def _verdicts() -> list[tuple[str, str, bool, bool, tuple[str, ...], list[str]]]:
    rows = []
    for name, profile in builtin_profiles().items():
        _, device_profile = device_profile_for(name, profile)
        for shape_name, info in GRID.items():
            decision = decide(info, profile)
            reasons = transcode_reasons(device_profile, media_source(info, "x"))
            rows.append(
                (
                    name,
                    shape_name,
                    decision.action == Action.SKIP,
                    not reasons,
                    decision.reasons,
                    reasons,
                )
            )
    return rows


def test_castui_skips_exactly_where_jellyfin_direct_plays() -> None:
    disagreements = {}
    for name, shape_name, skip, direct, ours, theirs in _verdicts():
        if skip != direct:
            disagreements[(name, shape_name)] = f"castui {ours} / Jellyfin {theirs}"
    unexpected = {k: v for k, v in disagreements.items() if k not in DELIBERATE}
    assert not unexpected, "castui and Jellyfin disagree:\n" + "\n".join(
        f"{k}: {v}" for k, v in unexpected.items()
    )
    gone = set(DELIBERATE) - set(disagreements)
    assert not gone, f"listed as deliberate but they agree now: {sorted(gone)}"


def test_anamorphic_source_is_reencoded_like_jellyfin_asks() -> None:
    profile = builtin_profiles()["chromecast-1080p"]
    info = GRID["h264 anamorphic 576p"]
    decision = decide(info, profile)
    assert decision.action == Action.TRANSCODE
    assert any("anamorphic (pixel aspect 16:15)" in r for r in decision.reasons)
    _, device_profile = device_profile_for("chromecast-1080p", profile)
    assert transcode_reasons(device_profile, media_source(info, "x")) == [
        "AnamorphicVideoNotSupported"
    ]


@pytest.mark.parametrize(
    ("shape_name", "profile_name", "expected"),
    [
        ("h264 High 4.2 1080p60", "chromecast-1080p", ["VideoLevelNotSupported"]),
        ("h264 High 10 4.0 1080p", "chromecast-1080p", ["VideoProfileNotSupported"]),
        ("h264 + AC-3 5.1", "chromecast-1080p", ["AudioCodecNotSupported"]),
        ("h264 + AAC 5.1", "chromecast-1080p", ["AudioChannelsNotSupported"]),
        ("h264 in MKV", "chromecast-1080p", ["ContainerNotSupported"]),
        ("h264 15 Mb/s 1080p", "chromecast-1080p", ["ContainerBitrateExceedsLimit"]),
        ("h264 High 4.0 1080p24", "nest-hub-720p", ["VideoResolutionNotSupported"]),
        ("HEVC Main 4.0 1080p", "chromecast-1080p60", ["VideoCodecNotSupported"]),
        ("HEVC 8K", "chromecast-4k-hevc", ["VideoResolutionNotSupported"]),
    ],
)
def test_jellyfin_reasons_per_shape(
    shape_name: str, profile_name: str, expected: list[str]
) -> None:
    profile = builtin_profiles()[profile_name]
    _, device_profile = device_profile_for(profile_name, profile)
    assert transcode_reasons(device_profile, media_source(GRID[shape_name], "x")) == expected
    assert decide(GRID[shape_name], profile).action != Action.SKIP


def _codec_profile(body: dict[str, Any], codec: str) -> dict[str, str]:
    (cp,) = [c for c in body["CodecProfiles"] if c.get("Codec") == codec]
    return {c["Property"]: c["Value"] for c in cp["Conditions"]}


@pytest.mark.parametrize(
    ("generation", "h264_level", "width", "high10", "hevc", "vp9"),
    [
        (CastGeneration.GEN1AND2, "41", "1920", False, False, False),
        (CastGeneration.GEN3, "42", "1920", False, False, False),
        (CastGeneration.ULTRA, "42", "3840", True, True, True),
        (CastGeneration.GOOGLE_TV, "51", "3840", True, True, True),
        (CastGeneration.NEST_HUB, "41", "1280", False, False, True),
    ],
)
def test_device_profile_matches_the_receiver(
    generation: CastGeneration, h264_level: str, width: str, high10: bool, hevc: bool, vp9: bool
) -> None:
    body = build_device_profile(generation, bitrate_bps=10_000_000)
    assert profile_errors(body) == []
    h264 = _codec_profile(body, "h264")
    assert h264["VideoLevel"] == h264_level
    assert h264["Width"] == width
    assert h264["IsAnamorphic"] == "true"  # NotEquals true
    assert ("high 10" in h264["VideoProfile"]) == high10
    mp4 = next(p for p in body["DirectPlayProfiles"] if p["Container"] == "mp4,m4v")
    assert mp4["AudioCodec"] == "aac,mp3"  # AC-3 / E-AC-3 off
    assert ("hevc" in mp4["VideoCodec"].split(",")) == hevc
    webm = {p["VideoCodec"] for p in body["DirectPlayProfiles"] if p["Container"] == "webm"}
    assert ("VP9" in webm) == vp9
    assert _codec_profile(body, "aac") == {"AudioChannels": "2"}
    assert body["SubtitleProfiles"] == [
        {"Format": "vtt", "Method": "External"},
        {"Format": "vtt", "Method": "Hls"},
    ]
    assert body["MaxStaticBitrate"] == body["MaxStreamingBitrate"] == 10_000_000


def test_generation_for_builtin_and_user_profiles() -> None:
    builtins = builtin_profiles()
    for name, generation in BUILTIN_GENERATIONS.items():
        assert generation_for(name, builtins[name]) == generation
    base = builtins["chromecast-1080p"].model_dump()
    tv = Profile.model_validate(
        {**base, "video": {**base["video"], "max_width": 1280, "max_height": 720}}
    )
    assert generation_for("my-tv", tv) == CastGeneration.NEST_HUB
    sixty = Profile.model_validate({**base, "video": {**base["video"], "level": "4.2"}})
    assert generation_for("sixty", sixty) == CastGeneration.GEN3
    assert generation_for("mine", builtins["chromecast-1080p"]) == CastGeneration.GEN1AND2


def test_an_unknown_enum_string_is_refused() -> None:
    body = build_device_profile(CastGeneration.GEN3, bitrate_bps=10_000_000)
    body["CodecProfiles"][2]["Conditions"][0]["Property"] = "IsSquare"
    assert profile_errors(body) == ["CodecProfiles[2].Conditions[0]: unknown value 'IsSquare'"]


# --- castui scan --jellyfin: the real CLI, real files, real HTTP to the stand-in ---------------


def test_scan_jellyfin_shows_jellyfins_reasons_and_the_disagreements(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(samples["compliant.mp4"], lib / "plays.mp4")
    shutil.copy(samples["compliant.mkv"], lib / "remux.mkv")
    shutil.copy(samples["compliant.mp4"], lib / "quicktime.mov")  # same streams, .mov name
    jellyfin.add_library("Movies", [str(lib)])
    jellyfin.scan()
    shutil.copy(samples["compliant.mp4"], lib / "unknown.mp4")  # not picked up by Jellyfin yet
    config = tmp_path / "castui.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": str(tmp_path / "castui.db"),
                "libraries": [{"name": "Movies", "path": str(lib), "watch": "off"}],
                "jellyfin": {
                    "url": jellyfin.url,
                    "api_key": jellyfin.api_key,
                    "user": "castui-test",
                },
            }
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    ran = run_castui("scan", "--jellyfin", "--json", "--config", str(config), home=home)
    assert ran.returncode == 0, ran.stderr
    by_name = {Path(f["path"]).name: f for f in json.loads(ran.stdout)}
    assert by_name["plays.mp4"]["action"] == "skip"
    assert by_name["plays.mp4"]["jellyfin"]["direct_play"] is True
    assert by_name["remux.mkv"]["jellyfin"]["reasons"] == ["ContainerNotSupported"]
    assert by_name["remux.mkv"]["jellyfin"]["disagreement"] is None  # both would change it
    assert by_name["quicktime.mov"]["action"] == "remux"
    assert by_name["quicktime.mov"]["jellyfin"]["disagreement"] == (
        "castui would remux it, but Jellyfin would direct-play it"
    )
    assert by_name["unknown.mp4"]["jellyfin"]["known"] is False
    # Items were listed by library with their Path (no Path filter), then asked one by one.
    assert all("Path" not in r.query for r in jellyfin.requests_to("/Items", "GET"))
    assert len(jellyfin.playback.asked) == 3

    table = run_castui("scan", "--jellyfin", "--config", str(config), home=home, COLUMNS="300")
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert "Jellyfin: ContainerNotSupported" in text
    assert "DISAGREES: castui would remux it, but Jellyfin would direct-play it" in text
