"""The decision: does a file play directly on the target, and if not, what castui does.

``decide`` is a pure function of the probed ``MediaInfo`` and the target ``Profile``. Every
reason names the property, the value found and the limit, so a person can check it against
their device ("H.264 level 5.1 > 4.1", "10-bit (yuv420p10le)"), and the same reasons are stored
in the catalog and shown in the dashboard.

Actions, in increasing cost:
- ``skip``: plays directly already;
- ``remux``: the video stream is copied, only the container/audio/subtitles change;
- ``transcode``: the video is re-encoded (audio and subtitles handled as in a remux);
- ``reject``: castui cannot do anything useful (not media, no video, undecodable, empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from castui_core.levels import level_display, level_from_ffprobe, level_rank
from castui_core.media import MediaInfo, ProbeFailure, VideoStream
from castui_core.profiles import Profile, VideoTarget

_CODEC_LABEL = {"h264": "H.264", "hevc": "HEVC"}


class Action(StrEnum):
    SKIP = "skip"
    REMUX = "remux"
    TRANSCODE = "transcode"
    REJECT = "reject"

    @property
    def needs_work(self) -> bool:
        return self in (Action.REMUX, Action.TRANSCODE)


@dataclass(frozen=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]


def _label(codec: str) -> str:
    return _CODEC_LABEL.get(codec, codec)


def _mbps(bits_per_s: int) -> str:
    return f"{bits_per_s / 1_000_000:.1f} Mb/s"


def video_reasons(info: MediaInfo, stream: VideoStream, target: VideoTarget) -> list[str]:
    """Why ``stream`` must be re-encoded for ``target`` (empty: it can be copied)."""
    reasons: list[str] = []
    want = _label(target.codec)
    if stream.codec != target.codec:
        reasons.append(f"video codec {_label(stream.codec)} is not {want}")
    else:
        if stream.profile is not None and stream.profile not in target.playable_profiles:
            best = target.playable_profiles[-1]
            reasons.append(f"{want} profile {stream.profile} is not playable (up to {best})")
        level = level_from_ffprobe(target.codec, stream.level) if stream.level is not None else None
        if level is not None and level_rank(target.codec, level) > level_rank(
            target.codec, target.level
        ):
            reasons.append(f"{want} level {level_display(level)} > {level_display(target.level)}")
        if stream.dolby_vision and target.hdr != "keep":
            reasons.append("Dolby Vision video on an SDR profile")
    if stream.pix_fmt is not None and stream.pix_fmt not in target.playable_pix_fmts:
        if stream.bit_depth > target.bit_depth:
            reasons.append(f"{stream.bit_depth}-bit ({stream.pix_fmt})")
        elif stream.chroma != "4:2:0":
            reasons.append(f"chroma {stream.chroma} ({stream.pix_fmt}), needs 4:2:0")
        else:
            reasons.append(f"pixel format {stream.pix_fmt} is not playable")
    if not target.fits(stream.width, stream.height):  # long/short side: portrait is fine
        reasons.append(
            f"{stream.width}x{stream.height} is larger than {target.max_width}x{target.max_height}"
        )
    fps = stream.fps
    cap = target.fps_cap(stream.width, stream.height)
    if fps is not None and fps > cap + 0.01:
        where = " above 720p" if cap != target.max_fps else ""
        reasons.append(f"{fps:.3g} fps{where} > {cap:g}")
    if stream.interlaced:
        reasons.append(f"interlaced ({stream.field_order})")
    if stream.sar_num > 0 and stream.sar_den > 0 and stream.sar_num != stream.sar_den:
        # Jellyfin's Cast receiver refuses anamorphic H.264/HEVC (IsAnamorphic must be false);
        # castui's encodes write square pixels (setsar=1), so the output is not re-encoded.
        reasons.append(f"anamorphic (pixel aspect {stream.sar_num}:{stream.sar_den}), needs 1:1")
    if stream.hdr is not None and target.hdr != "keep":
        reasons.append(f"HDR {stream.hdr} ({stream.color_transfer}) on an SDR profile")
    bit_rate = info.video_bit_rate(stream)
    if bit_rate is not None and bit_rate > target.max_bitrate_kbps * 1000:
        reasons.append(f"video bitrate {_mbps(bit_rate)} > {_mbps(target.max_bitrate_kbps * 1000)}")
    return reasons


def container_reasons(info: MediaInfo, profile: Profile) -> list[str]:
    """Why the container, audio or subtitles must change (video can be copied)."""
    reasons: list[str] = []
    if not info.is_mp4:
        reasons.append(f"container {info.container_label} is not MP4")
    audio_target = profile.audio
    if info.audio and not any(
        a.codec in audio_target.accept_codecs
        and 0 < a.channels <= audio_target.channels
        and (a.codec != "aac" or a.profile in (None, "LC"))
        for a in info.audio
    ):
        found = ", ".join(f"{_audio_label(a.codec, a.profile)} {a.channels}ch" for a in info.audio)
        accepted = "/".join(c.upper() for c in audio_target.accept_codecs)
        reasons.append(
            f"no {accepted} audio track with at most {audio_target.channels} channels"
            f" (has: {found})"
        )
    bitmap = [s for s in info.subtitles if s.is_bitmap]
    if bitmap:
        codecs = ", ".join(sorted({s.codec for s in bitmap}))
        where = "sidecar files" if profile.subtitles.bitmap == "sidecar" else "the kept source"
        reasons.append(f"bitmap subtitles ({codecs}) cannot play on Cast: kept as {where}")
    unknown = [s for s in info.subtitles if not s.is_bitmap and not s.is_text]
    if unknown:
        codecs = ", ".join(sorted({s.codec for s in unknown}))
        reasons.append(f"subtitle format {codecs} is not playable")
    return reasons


def _audio_label(codec: str, profile: str | None) -> str:
    if codec == "aac" and profile and profile != "LC":
        return f"AAC {profile}"
    return codec.upper() if len(codec) <= 4 else codec


def decide(info: MediaInfo | ProbeFailure, profile: Profile) -> Decision:
    """Decide what to do with one probed file for one target profile."""
    if isinstance(info, ProbeFailure):
        return Decision(Action.REJECT, (info.reason,))
    if not info.video:
        kind = "audio only" if info.audio else "no streams castui can play"
        return Decision(Action.REJECT, (f"no video stream ({kind})",))
    stream = info.video[0]
    if not stream.decodable:
        return Decision(
            Action.REJECT, (f"video codec {stream.codec} cannot be decoded by this FFmpeg",)
        )
    if stream.width <= 0 or stream.height <= 0:
        return Decision(Action.REJECT, ("video has no frame size (corrupt or unsupported)",))
    if info.duration_s is not None and info.duration_s <= 0:
        return Decision(Action.REJECT, ("duration is zero (empty or corrupt)",))
    reasons = video_reasons(info, stream, profile.video)
    if len(info.video) > 1:
        extra = len(info.video) - 1
        reasons_tail = [f"{extra} extra video stream(s) dropped: Cast plays one"]
    else:
        reasons_tail = []
    container = container_reasons(info, profile)
    if reasons:
        return Decision(Action.TRANSCODE, (*reasons, *container, *reasons_tail))
    if container or reasons_tail:
        return Decision(Action.REMUX, (*container, *reasons_tail))
    return Decision(Action.SKIP, ("plays directly",))


#: How far a copy's duration may be from the source's and still count as the same content:
#: containers round differently and a remux may drop a partial last frame.
COPY_DURATION_TOLERANCE_S = 1.0
COPY_DURATION_TOLERANCE_RATIO = 0.01


def copy_decision(
    needed: Decision,
    source: MediaInfo,
    copy: MediaInfo | ProbeFailure,
    profile: Profile,
    name: str,
) -> Decision:
    """The source's decision when a file already sits at its output name ``name``.

    A copy that plays directly on ``profile`` and lasts as long as the source *is* the work
    (castui's own output from an earlier run, or the user's): the source is ``skip`` with
    the copy named. Anything else is never overwritten, so the source keeps ``needed``'s
    action with one more reason that says what to do about the copy.
    """
    verdict = decide(copy, profile)
    problem: str | None = None
    if verdict.action is not Action.SKIP:
        problem = "; ".join(verdict.reasons) or verdict.action.value
    elif isinstance(copy, MediaInfo) and source.duration_s and copy.duration_s:
        tolerance = max(
            COPY_DURATION_TOLERANCE_S, COPY_DURATION_TOLERANCE_RATIO * source.duration_s
        )
        if abs(copy.duration_s - source.duration_s) > tolerance:
            problem = f"it lasts {copy.duration_s:.1f} s, the source {source.duration_s:.1f} s"
    if problem is None:
        return Decision(Action.SKIP, (f"a Cast-ready copy exists: {name}",))
    advice = f"{name} exists but is not Cast-ready ({problem}); move it away or delete it"
    return Decision(needed.action, (*needed.reasons, advice))
