"""The ffmpeg command builder: golden argv per profile x backend x source shape, focused rules,
and real ffmpeg runs whose output must then pass castui's own decision (``skip``).

Goldens live in tests/golden/*.json; run with ``CASTUI_UPDATE_GOLDEN=1`` to rewrite them and
review the diff by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import pytest

from castui_core.decide import Action, Decision, decide
from castui_core.ffmpeg import (
    CommandError,
    EncodePlan,
    build_command,
    build_sidecar_commands,
)
from castui_core.ffmpeg.command import Backend, output_geometry
from castui_core.media import AudioStream, MediaInfo, SubtitleStream, VideoStream
from castui_core.probe import probe_pyav
from castui_core.profiles import Profile, builtin_profiles

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CASTUI_UPDATE_GOLDEN") == "1"
PROFILES = builtin_profiles()
P1080 = PROFILES["chromecast-1080p"]
P4K = PROFILES["chromecast-4k-hevc"]
FFMPEG = shutil.which("ffmpeg")
MKV = "matroska,webm"

_H264 = VideoStream(
    index=0,
    codec="h264",
    profile="High",
    level=40,
    pix_fmt="yuv420p",
    width=1920,
    height=1080,
    avg_fps=24000 / 1001,
    field_order="progressive",
    color_transfer="bt709",
    color_primaries="bt709",
    color_space="bt709",
    bit_rate=6_000_000,
)
_AAC = AudioStream(
    index=1, codec="aac", profile="LC", channels=2, sample_rate=48000, language="eng", default=True
)


def _info(name: str, fmt: str, video: VideoStream | None, *audio: Any, subs: Any = ()) -> MediaInfo:
    return MediaInfo(
        path=f"/media/in/{name}",
        size=100_000_000,
        format_name=fmt,
        duration_s=600.0,
        video=(video,) if video else (),
        audio=tuple(audio),
        subtitles=tuple(subs),
        chapters=3,
    )


SHAPES: dict[str, MediaInfo] = {
    "h264_mkv": _info("Compliant.mkv", MKV, _H264, _AAC),
    "hevc10_hdr_mkv": _info(
        "HDR Movie (2160p).mkv",
        MKV,
        replace(
            _H264,
            codec="hevc",
            profile="Main 10",
            level=153,
            pix_fmt="yuv420p10le",
            width=3840,
            height=2160,
            color_transfer="smpte2084",
            color_primaries="bt2020",
            color_space="bt2020nc",
            bit_rate=30_000_000,
        ),
        AudioStream(index=1, codec="eac3", channels=6, language="eng", default=True),
        subs=(SubtitleStream(index=2, codec="hdmv_pgs_subtitle", language="eng"),),
    ),
    "mpeg4_avi_mp3": _info(
        "old.avi",
        "avi",
        replace(
            _H264,
            codec="mpeg4",
            profile="Advanced Simple Profile",
            level=5,
            width=720,
            height=304,
            avg_fps=25.0,
            color_transfer="unknown",
            color_primaries="unknown",
            color_space="unknown",
            bit_rate=1_200_000,
        ),
        AudioStream(index=1, codec="mp3", channels=2, sample_rate=48000),
    ),
    "h264_high10": _info(
        "anime-10bit.mkv", MKV, replace(_H264, profile="High 10", pix_fmt="yuv420p10le"), _AAC
    ),
    "h264_1440p60": _info(
        "game.mkv", MKV, replace(_H264, width=2560, height=1440, avg_fps=60.0, level=51), _AAC
    ),
    "mpeg2_anamorphic": _info(
        "dvd.mpg",
        "mpeg",
        replace(
            _H264,
            index=1,
            codec="mpeg2video",
            profile="Main",
            level=8,
            width=720,
            height=480,
            sar_num=32,
            sar_den=27,
            avg_fps=30000 / 1001,
            color_transfer="unknown",
            color_primaries="unknown",
            color_space="unknown",
        ),
        AudioStream(index=0, codec="ac3", channels=2, sample_rate=48000, default=False),
    ),
    "odd_853x481": _info(
        "odd.webm",
        MKV,
        replace(_H264, codec="vp8", profile=None, level=None, width=853, height=481, avg_fps=25.0),
        AudioStream(index=1, codec="vorbis", channels=2, sample_rate=44100),
    ),
    "mpeg2_interlaced_ts": _info(
        "broadcast.ts",
        "mpegts",
        replace(
            _H264,
            codec="mpeg2video",
            profile="Main",
            level=4,
            avg_fps=30000 / 1001,
            field_order="tt",
        ),
        AudioStream(index=1, codec="ac3", channels=6, language="eng", default=True),
    ),
    "two_audio_subs": _info(
        "Film.mkv",
        MKV,
        _H264,
        AudioStream(index=1, codec="dts", profile="DTS", channels=6, language="eng", default=True),
        AudioStream(index=2, codec="aac", profile="LC", channels=2, language="fre"),
        subs=(
            SubtitleStream(index=3, codec="subrip", language="eng"),
            SubtitleStream(index=4, codec="hdmv_pgs_subtitle", language="eng", forced=True),
        ),
    ),
    "vp9_noaudio": _info(
        "clip.webm", MKV, replace(_H264, codec="vp9", profile="Profile 0", level=None, avg_fps=30.0)
    ),
    # A phone clip: HEVC 4K60 coded landscape, shown portrait (display rotation 90).
    "phone_rotated": _info(
        "IMG_0001.MOV",
        "mov,mp4,m4a,3gp,3g2,mj2",
        replace(
            _H264,
            codec="hevc",
            profile="Main",
            level=153,
            width=3840,
            height=2160,
            avg_fps=59.94,
            bit_rate=40_000_000,
            rotation=90,
        ),
        _AAC,
    ),
    "av1_mkv": _info(
        "web.mkv",
        MKV,
        replace(_H264, codec="av1", profile="Main", level=8, avg_fps=30.0),
        AudioStream(index=1, codec="opus", channels=2, sample_rate=48000, language="eng"),
    ),
    "flac71": _info(
        "concert.mkv",
        MKV,
        replace(_H264, width=1280, height=720, level=31),
        AudioStream(index=1, codec="flac", channels=8, sample_rate=96000, language="eng"),
    ),
}


def _plan(name: str, profile: Profile, backend: str = "cpu", **kw: Any) -> EncodePlan:
    info = SHAPES[name]
    return build_command(
        info,
        profile,
        decide(info, profile),
        output="/media/out/x.mp4",
        backend=cast(Backend, backend),
        **kw,
    )


def _golden_body(info: MediaInfo, profile: Profile, backend: str) -> dict[str, Any]:
    decision = decide(info, profile)
    body: dict[str, Any] = {"decision": str(decision.action)}
    if not decision.action.needs_work:
        return body
    plan = build_command(
        info,
        profile,
        decision,
        output="/media/out/Out -x.mp4",
        backend=cast(Backend, backend),
    )
    body.update(
        encoder=plan.encoder,
        size=[plan.width, plan.height],
        notes=list(plan.notes),
        audio=[a.description for a in plan.audio_plan],
        subtitles=[s.description for s in plan.subtitle_plan],
        sidecars=[asdict(s) for s in plan.sidecars],
        sidecar_commands=[list(c) for c in build_sidecar_commands(info, plan, "/media/out/Out")],
        args=list(plan.args),
    )
    return body


CASES = [(s, p, b) for s in SHAPES for p in PROFILES for b in ("cpu", "nvenc")]


@pytest.mark.parametrize(("shape", "profile_name", "backend"), CASES)
def test_golden(shape: str, profile_name: str, backend: str) -> None:
    body = _golden_body(SHAPES[shape], PROFILES[profile_name], backend)
    path = GOLDEN / f"{shape}__{profile_name}__{backend}.json"
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path.name}: run with CASTUI_UPDATE_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == body


def test_no_stale_goldens() -> None:
    expected = {f"{s}__{p}__{b}.json" for s, p, b in CASES}
    assert {p.name for p in GOLDEN.glob("*.json")} == expected


# --- focused rules ---------------------------------------------------------------------------


def _opt(args: tuple[str, ...], name: str) -> str:
    return args[args.index(name) + 1]


def _filter(plan: EncodePlan) -> str:
    return _opt(plan.args, "-filter:v")


def test_common_options_and_output_path() -> None:
    plan = _plan("h264_1440p60", P1080)
    assert plan.args[0] == "ffmpeg"
    for opt in ("-nostdin", "-y", "-hide_banner", "-nostats"):
        assert opt in plan.args
    assert _opt(plan.args, "-v") == "warning"  # NVENC logs its capability reasons as warnings
    assert _opt(plan.args, "-progress") == "pipe:1"
    assert plan.args[-1] == "file:/media/out/x.mp4"
    assert _opt(plan.args, "-i") == "file:/media/in/game.mkv"
    assert "-map" in plan.args and "0" not in [
        plan.args[i + 1] for i, a in enumerate(plan.args) if a == "-map"
    ]


def test_output_path_starting_with_dash_is_not_an_option() -> None:
    info = SHAPES["h264_mkv"]
    plan = build_command(info, P1080, decide(info, P1080), output="-rf.mp4", backend="cpu")
    assert plan.args[-1] == "file:-rf.mp4"


@pytest.mark.parametrize(
    ("w", "h", "sar", "expect"),
    [
        (1280, 720, (1, 1), (1280, 720)),  # never upscaled
        (640, 360, (1, 1), (640, 360)),
        (3840, 2160, (1, 1), (1920, 1080)),
        (853, 481, (1, 1), (852, 480)),  # even, rounded down
        (720, 480, (32, 27), (852, 480)),  # anamorphic: display aspect kept
        (1440, 1080, (4, 3), (1920, 1080)),
        (1920, 1200, (1, 1), (1728, 1080)),
    ],
)
def test_geometry(w: int, h: int, sar: tuple[int, int], expect: tuple[int, int]) -> None:
    stream = replace(_H264, width=w, height=h, sar_num=sar[0], sar_den=sar[1])
    geo = output_geometry(stream, P1080.video)
    assert (geo.width, geo.height) == expect
    assert geo.width % 2 == 0 and geo.height % 2 == 0
    assert geo.width <= max(w * sar[0] // sar[1], w) and geo.height <= h


def test_anamorphic_outputs_square_pixels() -> None:
    chain = _filter(_plan("mpeg2_anamorphic", P1080))
    assert "scale=w=852:h=480" in chain and "setsar=1" in chain


def test_fps_filter_only_above_cap() -> None:
    assert "fps=30" in _filter(_plan("h264_1440p60", P1080))  # 1080p output, cap 30
    assert "fps=" not in _filter(_plan("h264_1440p60", PROFILES["chromecast-1080p60"]))
    # 720p output on nest-hub: cap 60, source 60 -> no filter
    assert "fps=" not in _filter(_plan("h264_1440p60", PROFILES["nest-hub-720p"]))
    ntsc = replace(SHAPES["h264_1440p60"].video[0], avg_fps=60000 / 1001)
    geo = output_geometry(ntsc, P1080.video)
    assert geo.fps_filter == "30000/1001"


def test_gop_follows_output_fps() -> None:
    plan = _plan("h264_1440p60", P1080)
    assert _opt(plan.args, "-g") == "60"  # 2 s at the capped 30 fps
    plan = _plan("h264_1440p60", PROFILES["chromecast-1080p60"])
    assert _opt(plan.args, "-g") == "120"


@pytest.mark.parametrize("backend", ["cpu", "nvenc"])
def test_hvc1_tag_for_hevc(backend: str) -> None:
    plan = _plan("h264_mkv", P4K, backend)
    assert plan.encoder in ("libx265", "hevc_nvenc")
    assert _opt(plan.args, "-tag:v") == "hvc1"
    copy = _plan("hevc10_hdr_mkv", P4K, backend)  # HEVC Main10 HDR kept: remux
    assert copy.video == "copy" and _opt(copy.args, "-c:v") == "copy"
    assert _opt(copy.args, "-tag:v") == "hvc1"


def test_remux_copies_video() -> None:
    plan = _plan("h264_mkv", P1080, "nvenc")
    assert plan.video == "copy" and plan.encoder == "copy"
    assert _opt(plan.args, "-c:v") == "copy"
    assert "-filter:v" not in plan.args and "-hwaccel" not in plan.args
    assert _opt(plan.args, "-c:a:0") == "copy"


def test_nvenc_full_gpu_path() -> None:
    plan = _plan("h264_1440p60", P1080, "nvenc")
    assert plan.encoder == "h264_nvenc" and plan.hwaccel
    assert plan.args.index("-hwaccel") < plan.args.index("-i")
    assert _opt(plan.args, "-hwaccel_output_format") == "cuda"
    assert _filter(plan).startswith("scale_cuda=w=1920:h=1080:format=nv12")
    for opt, value in [("-rc", "vbr"), ("-cq", "21"), ("-spatial-aq", "1"), ("-bf", "3")]:
        assert _opt(plan.args, opt) == value
    assert _opt(plan.args, "-maxrate") == "10000k" and _opt(plan.args, "-bufsize") == "20000k"
    assert "-crf" not in plan.args


@pytest.mark.parametrize(
    ("shape", "marker"),
    [
        ("mpeg2_interlaced_ts", "bwdif="),
        ("hevc10_hdr_mkv", "tonemap=tonemap=hable"),
        ("h264_high10", "format=yuv420p"),  # NVDEC has no 10-bit H.264
        ("odd_853x481", "scale=w=852:h=480"),
    ],
)
def test_cpu_filters_with_nvenc(shape: str, marker: str) -> None:
    nvdec = frozenset({"h264", "hevc", "mpeg2video"})  # vp8 not decodable here
    plan = _plan(shape, P1080, "nvenc", nvdec_codecs=nvdec)
    assert plan.encoder == "h264_nvenc"
    assert not plan.hwaccel and "scale_cuda" not in _filter(plan)
    assert marker in _filter(plan)
    assert _filter(plan).endswith("format=yuv420p")


def test_gpu_tonemap_option() -> None:
    plan = _plan("hevc10_hdr_mkv", P1080, "nvenc", gpu_tonemap=True)
    assert plan.hwaccel and "tonemap_cuda" in _filter(plan)


def test_hdr_to_sdr_tags_and_kept_hdr_tags() -> None:
    sdr = _plan("hevc10_hdr_mkv", P1080)
    assert "zscale=tin=smpte2084" in _filter(sdr)
    assert [_opt(sdr.args, o) for o in ("-color_primaries", "-color_trc", "-colorspace")] == [
        "bt709"
    ] * 3
    assert "tone-mapped HDR PQ to SDR BT.709" in sdr.notes
    ten = replace(
        SHAPES["hevc10_hdr_mkv"], video=(replace(SHAPES["hevc10_hdr_mkv"].video[0], level=183),)
    )
    plan = build_command(ten, P4K, decide(ten, P4K), output="o.mp4", backend="cpu")
    assert plan.encoder == "libx265"
    assert "tonemap" not in _filter(plan) and _filter(plan).endswith("format=yuv420p10le")
    assert _opt(plan.args, "-color_trc") == "smpte2084"
    assert _opt(plan.args, "-colorspace") == "bt2020nc"


def test_every_audio_track_mapped_and_first_is_default_stereo_aac() -> None:
    plan = _plan("two_audio_subs", P1080)
    maps = [plan.args[i + 1] for i, a in enumerate(plan.args) if a == "-map"]
    assert maps == ["0:0", "0:1", "0:2", "0:3"]  # video, DTS, AAC, SRT; never the PGS
    assert [(a.source_index, a.action, a.default) for a in plan.audio_plan] == [
        (1, "aac", True),
        (2, "copy", False),
    ]
    assert _opt(plan.args, "-ac:a:0") == "2" and _opt(plan.args, "-b:a:0") == "160k"
    assert _opt(plan.args, "-metadata:s:a:1") == "language=fre"
    assert _opt(plan.args, "-disposition:a:1") == "0"
    assert _opt(plan.args, "-c:s:0") == "mov_text"


def test_default_track_becomes_first_output() -> None:
    info = SHAPES["two_audio_subs"]
    swapped = replace(
        info,
        audio=(replace(info.audio[0], default=False), replace(info.audio[1], default=True)),
    )
    plan = build_command(swapped, P1080, decide(swapped, P1080), output="o.mp4", backend="cpu")
    assert [(a.source_index, a.action) for a in plan.audio_plan] == [(2, "copy"), (1, "aac")]


def test_keep_surround_copy_adds_non_default_ac3() -> None:
    profile = P1080.model_copy(
        update={"audio": P1080.audio.model_copy(update={"keep_surround_copy": True})}
    )
    plan = _plan("mpeg2_interlaced_ts", profile)
    assert [(a.source_index, a.action, a.default) for a in plan.audio_plan] == [
        (1, "aac", True),
        (1, "copy", False),
    ]
    assert _opt(plan.args, "-c:a:1") == "copy"


def test_no_audio_maps_nothing() -> None:
    plan = _plan("vp9_noaudio", P1080)
    assert plan.audio_plan == () and not any(a.startswith("-c:a") for a in plan.args)


def test_bitmap_subs_become_sidecars_never_mapped() -> None:
    plan = _plan("two_audio_subs", P1080)
    assert "0:4" not in plan.args
    assert [(s.index, s.suffix, s.format) for s in plan.sidecars] == [(4, ".eng.forced.sup", "sup")]
    (cmd,) = build_sidecar_commands(SHAPES["two_audio_subs"], plan, "/out/Film")
    assert cmd[-1] == "file:/out/Film.eng.forced.sup"
    assert _opt(cmd, "-map") == "0:4" and _opt(cmd, "-f") == "sup"
    keep = P1080.model_copy(
        update={"subtitles": P1080.subtitles.model_copy(update={"bitmap": "keep-source"})}
    )
    plan = _plan("two_audio_subs", keep)
    assert plan.sidecars == () and "0:4" not in plan.args
    assert any("kept in the source" in n for n in plan.notes)


def test_vobsub_sidecar_is_matroska_and_names_unique() -> None:
    info = replace(
        SHAPES["h264_mkv"],
        subtitles=(
            SubtitleStream(index=2, codec="dvd_subtitle", language="eng"),
            SubtitleStream(index=3, codec="dvd_subtitle", language="eng"),
        ),
    )
    plan = build_command(info, P1080, decide(info, P1080), output="o.mp4", backend="cpu")
    assert [s.suffix for s in plan.sidecars] == [".eng.mks", ".eng.2.mks"]
    assert {s.format for s in plan.sidecars} == {"matroska"}


def test_skip_decision_is_refused() -> None:
    with pytest.raises(CommandError):
        build_command(
            SHAPES["h264_mkv"],
            P1080,
            Decision(Action.SKIP, ("plays directly",)),
            output="o.mp4",
            backend="cpu",
        )


@pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg")
@pytest.mark.parametrize("encoder", ["h264_nvenc", "hevc_nvenc"])
def test_nvenc_options_exist_in_this_ffmpeg(encoder: str) -> None:
    assert FFMPEG is not None
    help_text = subprocess.run(
        [FFMPEG, "-hide_banner", "-h", f"encoder={encoder}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    known = set(re.findall(r"^\s+(-[\w-]+)\s", help_text, re.M))
    generic = {"-b:v", "-maxrate", "-bufsize", "-g", "-keyint_min", "-bf", "-c:v", "-tag:v"}
    generic |= {"-profile:v", "-level:v", "-color_primaries", "-color_trc", "-colorspace"}
    generic |= {"-filter:v"}
    seen = 0
    for shape, profile_name, backend in CASES:
        if backend != "nvenc":
            continue
        body = _golden_body(SHAPES[shape], PROFILES[profile_name], backend)
        if body.get("encoder") != encoder:
            continue
        args: list[str] = body["args"]
        # the video options: from the filter chain to the first audio/muxer option
        video_opts = args[args.index("-filter:v") : args.index("-max_muxing_queue_size")]
        for opt in video_opts[::2]:
            if opt.startswith(("-c:a", "-ac:", "-b:a", "-metadata", "-disposition", "-c:s")):
                break
            if opt in generic:
                continue
            assert opt in known, f"{encoder} has no option {opt}"
            seen += 1
        # profile/level values must be named constants of this encoder
        for opt in ("-profile:v", "-level:v", "-preset", "-tune", "-rc"):
            value = args[args.index(opt) + 1]
            assert re.search(rf"^\s+{re.escape(value)}\s", help_text, re.M), (opt, value)
    assert seen > 0


# --- real ffmpeg runs ------------------------------------------------------------------------

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg")


def _make(path: Path, *args: str) -> Path:
    assert FFMPEG is not None
    cmd = [FFMPEG, "-nostdin", "-y", "-hide_banner", "-v", "error", *args, str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path


_V = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=0.6"]
_A = ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.6"]


def _source(kind: str, tmp: Path) -> Path:
    if kind == "h264_aac_mkv":
        return _make(
            tmp / "src.mkv", *_V, *_A, "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-c:a", "aac",
        )  # fmt: skip
    if kind == "h264_10bit_ac3_mkv":
        return _make(
            tmp / "src.mkv", *_V, *_A, "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p10le", "-c:a", "ac3", "-ac", "6",
        )  # fmt: skip
    if kind == "mpeg2_interlaced_ts":
        return _make(
            tmp / "src.ts", *_V, *_A, "-c:v", "mpeg2video", "-flags", "+ilme+ildct",
            "-top", "1", "-vf", "setfield=tff", "-c:a", "ac3", "-ac", "6",
        )  # fmt: skip
    if kind == "hevc_hdr_mkv":
        return _make(
            tmp / "src.mkv", *_V, "-c:v", "libx265", "-preset", "ultrafast",
            "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le",
            "-color_trc", "smpte2084", "-color_primaries", "bt2020", "-colorspace", "bt2020nc",
        )  # fmt: skip
    if kind == "two_audio_srt_mkv":
        srt = tmp / "subs.srt"
        srt.write_text("1\n00:00:00,000 --> 00:00:00,500\nHello\n", encoding="utf-8")
        return _make(
            tmp / "src.mkv", *_V, *_A,
            "-f", "lavfi", "-i", "sine=frequency=880:duration=0.6", "-i", str(srt),
            "-map", "0", "-map", "1", "-map", "2", "-map", "3",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a:0", "ac3", "-ac:a:0", "6", "-c:a:1", "aac", "-c:s", "srt",
            "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre",
            "-disposition:a:0", "default", "-disposition:a:1", "0",
            "-metadata:s:s:0", "language=eng",
        )  # fmt: skip
    raise AssertionError(kind)


@needs_ffmpeg
@pytest.mark.parametrize(
    ("kind", "profile_name", "action", "encoder"),
    [
        ("h264_aac_mkv", "chromecast-1080p", "remux", "copy"),
        ("h264_10bit_ac3_mkv", "chromecast-1080p", "transcode", "libx264"),
        ("mpeg2_interlaced_ts", "chromecast-1080p", "transcode", "libx264"),
        ("hevc_hdr_mkv", "chromecast-1080p", "transcode", "libx264"),
        ("hevc_hdr_mkv", "chromecast-4k-hevc", "remux", "copy"),
        ("two_audio_srt_mkv", "chromecast-1080p", "remux", "copy"),
    ],
)
def test_real_ffmpeg_output_plays_directly(
    tmp_path: Path, kind: str, profile_name: str, action: str, encoder: str
) -> None:
    assert FFMPEG is not None
    profile = PROFILES[profile_name]
    src = _source(kind, tmp_path)
    info = probe_pyav(str(src))
    decision = decide(info, profile)
    assert str(decision.action) == action, decision.reasons
    out = tmp_path / "-out file $'x'.mp4"  # hostile name: leading dash, quotes, dollar
    plan = build_command(info, profile, decision, output=str(out), backend="cpu", ffmpeg=FFMPEG)
    assert plan.encoder == encoder
    result = subprocess.run(plan.args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "progress=end" in result.stdout
    out_info = probe_pyav(str(out))
    assert decide(out_info, profile).action == Action.SKIP, decide(out_info, profile).reasons
    assert len(out_info.audio) == len(plan.audio_plan)
    assert out_info.audio == () or out_info.audio[0].default
    assert len(out_info.subtitles) == len(plan.subtitle_plan)
    if kind == "mpeg2_interlaced_ts":
        assert "deinterlaced" in plan.notes
    if kind == "hevc_hdr_mkv" and profile_name == "chromecast-1080p":
        assert "tone-mapped HDR PQ to SDR BT.709" in plan.notes
        v = out_info.video[0]
        assert (v.pix_fmt, v.color_transfer) == ("yuv420p", "bt709")
    if kind == "two_audio_srt_mkv":
        assert [a.language for a in out_info.audio] == ["eng", "fre"]
        assert out_info.subtitles[0].codec == "mov_text"


# -- rate control per backend (issue 16 #5, #6) ----------------------------------------------


def _video_variant(base: Profile, **update: Any) -> Profile:
    return base.model_copy(update={"video": base.video.model_copy(update=update)})


def test_nvenc_constant_quality_is_cq_with_no_average() -> None:
    plan = _plan("h264_1440p60", P1080, "nvenc")
    assert _opt(plan.args, "-cq") == str(P1080.video.quality)
    assert _opt(plan.args, "-b:v") == "0"
    assert _opt(plan.args, "-maxrate") == f"{P1080.video.max_bitrate_kbps}k"


def test_nvenc_quality_zero_is_automatic_not_cq_zero() -> None:
    plan = _plan("h264_1440p60", _video_variant(P1080, quality=0), "nvenc")
    assert "-cq" not in plan.args
    assert any("automatic" in n for n in plan.notes)
    cpu = _plan("h264_1440p60", _video_variant(P1080, quality=0), "cpu")
    assert _opt(cpu.args, "-crf") == "0"  # x264's own meaning, unchanged


def test_hevc_bufsize_stays_within_level_5_1_main_tier() -> None:
    for backend in ("cpu", "nvenc"):
        plan = _plan("h264_1440p60", P4K, backend)
        assert _opt(plan.args, "-bufsize") == "40000k"
        assert int(_opt(plan.args, "-maxrate").rstrip("k")) <= 40000


def test_h264_bufsize_is_two_maxrates_when_not_set() -> None:
    assert _opt(_plan("h264_1440p60", P1080, "nvenc").args, "-bufsize") == "20000k"


def test_baseline_profile_asks_nvenc_for_no_b_frames() -> None:
    baseline = _video_variant(P1080, profile="baseline", level="3.1")
    assert _opt(_plan("h264_1440p60", baseline, "nvenc").args, "-bf") == "0"
    assert _opt(_plan("h264_1440p60", P1080, "nvenc").args, "-bf") == "3"


def test_tonemap_cuda_only_when_the_probe_found_it() -> None:
    plain = _plan("hevc10_hdr_mkv", P1080, "nvenc")
    assert "tonemap_cuda" not in " ".join(plain.args)
    assert not plain.hwaccel
    found = _plan("hevc10_hdr_mkv", P1080, "nvenc", gpu_tonemap=True)
    assert "tonemap_cuda" in _filter(found)
