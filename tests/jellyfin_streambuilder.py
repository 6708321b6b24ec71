"""What Jellyfin's server does with a DeviceProfile: media description and direct-play verdict.

A test fixture standing in for the parts of Jellyfin (MediaBrowser.Model.Dlna.StreamBuilder and
ConditionProcessor, 10.8 to 12.0) that answer ``PlaybackInfo``: the item's ``MediaSource`` as
Jellyfin describes a probed file, the check of a DeviceProfile's DirectPlayProfiles and
CodecProfiles against it, and Jellyfin's ``TranscodeReason`` names. It implements the fields the
Cast receiver's profile uses, with Jellyfin's semantics: an unknown value satisfies a condition
unless ``IsRequired``; a boolean condition whose value is not ``true``/``false`` fails; codec
and container lists match literally (``h265`` is not ``hevc``).

It is not castui code and uses none of castui's decisions; the stand-in server and the
agreement test both use it, so castui is checked against Jellyfin's rules, not its own.
"""

from __future__ import annotations

from typing import Any

from castui_core.media import MP4_FORMAT, MediaInfo

#: Enum values Jellyfin's model binder accepts; anything else is a 400.
PROFILE_TYPES = {"Audio", "Video", "Photo", "Subtitle", "Lyric"}
CODEC_TYPES = {"Video", "VideoAudio", "Audio"}
CONDITION_TYPES = {"Equals", "NotEquals", "LessThanEqual", "GreaterThanEqual", "EqualsAny"}
CONDITION_VALUES = {
    "AudioChannels", "AudioBitrate", "AudioProfile", "Width", "Height", "Has64BitOffsets",
    "PacketLength", "VideoBitDepth", "VideoBitrate", "VideoFramerate", "VideoLevel",
    "VideoProfile", "VideoTimestamp", "IsAnamorphic", "RefFrames", "NumAudioStreams",
    "NumVideoStreams", "IsSecondaryAudio", "VideoCodecTag", "IsAvc", "IsInterlaced",
    "AudioSampleRate", "AudioBitDepth", "VideoRangeType", "NumStreams",
}  # fmt: skip
SUBTITLE_METHODS = {"Encode", "Embed", "External", "Hls", "Drop"}
CONTEXTS = {"Streaming", "Static"}
PROTOCOLS = {"http", "hls"}

#: StreamBuilder.GetTranscodeReasonForFailedCondition, for the properties that have one.
_REASON_FOR = {
    "AudioChannels": "AudioChannelsNotSupported",
    "AudioBitrate": "AudioBitrateNotSupported",
    "AudioProfile": "AudioProfileNotSupported",
    "AudioSampleRate": "AudioSampleRateNotSupported",
    "AudioBitDepth": "AudioBitDepthNotSupported",
    "Width": "VideoResolutionNotSupported",
    "Height": "VideoResolutionNotSupported",
    "IsAnamorphic": "AnamorphicVideoNotSupported",
    "IsInterlaced": "InterlacedVideoNotSupported",
    "IsSecondaryAudio": "SecondaryAudioNotSupported",
    "RefFrames": "RefFramesNotSupported",
    "VideoBitDepth": "VideoBitDepthNotSupported",
    "VideoBitrate": "VideoBitrateNotSupported",
    "VideoCodecTag": "VideoCodecTagNotSupported",
    "VideoFramerate": "VideoFramerateNotSupported",
    "VideoLevel": "VideoLevelNotSupported",
    "VideoProfile": "VideoProfileNotSupported",
    "VideoRangeType": "VideoRangeTypeNotSupported",
}


def profile_errors(profile: Any) -> list[str]:
    """Why Jellyfin's JSON binder would refuse this DeviceProfile (400), or ``[]``."""
    if not isinstance(profile, dict):
        return ["DeviceProfile must be an object"]
    errors: list[str] = []

    def check(value: Any, allowed: set[str], where: str) -> None:
        if value is not None and value not in allowed:
            errors.append(f"{where}: unknown value {value!r}")

    for i, p in enumerate(profile.get("DirectPlayProfiles") or []):
        check(p.get("Type"), PROFILE_TYPES, f"DirectPlayProfiles[{i}].Type")
    for i, p in enumerate(profile.get("TranscodingProfiles") or []):
        check(p.get("Type"), PROFILE_TYPES, f"TranscodingProfiles[{i}].Type")
        check(p.get("Context"), CONTEXTS, f"TranscodingProfiles[{i}].Context")
        check(p.get("Protocol"), PROTOCOLS, f"TranscodingProfiles[{i}].Protocol")
    for i, p in enumerate(profile.get("CodecProfiles") or []):
        check(p.get("Type"), CODEC_TYPES, f"CodecProfiles[{i}].Type")
        for j, c in enumerate(p.get("Conditions") or []):
            check(c.get("Condition"), CONDITION_TYPES, f"CodecProfiles[{i}].Conditions[{j}]")
            check(c.get("Property"), CONDITION_VALUES, f"CodecProfiles[{i}].Conditions[{j}]")
    for i, p in enumerate(profile.get("SubtitleProfiles") or []):
        check(p.get("Method"), SUBTITLE_METHODS, f"SubtitleProfiles[{i}].Method")
    return errors


def jellyfin_container(info: MediaInfo) -> str:
    """Container as Jellyfin's probe normalizer names it (MP4 keeps ffprobe's full list)."""
    if info.format_name == MP4_FORMAT:
        return MP4_FORMAT
    if info.format_name == "matroska,webm":
        return "webm" if info.extension == ".webm" else "mkv"
    return info.format_name.split(",")[0]


def media_source(info: MediaInfo, item_id: str) -> dict[str, Any]:
    """A ``MediaSourceInfo`` as Jellyfin builds it from its own probe of the file."""
    streams: list[dict[str, Any]] = []
    for v in info.video:
        streams.append(
            {
                "Type": "Video",
                "Index": v.index,
                "Codec": v.codec,
                "Profile": v.profile,
                "Level": v.level,
                "Width": v.width,
                "Height": v.height,
                "BitDepth": v.bit_depth,
                "BitRate": info.video_bit_rate(v),
                "RealFrameRate": v.fps,
                "IsInterlaced": v.interlaced,
                "IsAnamorphic": (v.sar_num, v.sar_den) not in ((1, 1), (0, 1), (0, 0)),
                "VideoRangeType": {"PQ": "HDR10", "HLG": "HLG"}.get(v.hdr or "", "SDR"),
            }
        )
    for a in info.audio:
        streams.append(
            {
                "Type": "Audio",
                "Index": a.index,
                "Codec": a.codec,
                "Profile": a.profile,
                "Channels": a.channels,
                "SampleRate": a.sample_rate,
                "BitRate": a.bit_rate,
                "IsDefault": a.default,
            }
        )
    for s in info.subtitles:
        streams.append({"Type": "Subtitle", "Index": s.index, "Codec": s.codec})
    return {
        "Id": item_id,
        "Path": info.path,
        "Protocol": "File",
        "Container": jellyfin_container(info),
        "Size": info.size,
        "Bitrate": info.bit_rate,
        "RunTimeTicks": int(info.duration_s * 10_000_000) if info.duration_s else None,
        "MediaStreams": streams,
    }


def _tokens(csv: str | None) -> list[str]:
    return [t.strip().lower() for t in (csv or "").split(",") if t.strip()]


def _contains(csv: str | None, value: str | None) -> bool:
    """ContainerHelper.ContainsContainer: an empty list matches all; else any token in common."""
    allowed = _tokens(csv)
    if not allowed:
        return True
    return any(t in allowed for t in _tokens(value))


def _satisfied(cond: dict[str, Any], value: Any) -> bool:
    """ConditionProcessor.IsConditionSatisfied for one value of the condition's type."""
    required = bool(cond.get("IsRequired"))
    kind, expected = cond["Condition"], str(cond.get("Value", ""))
    if value is None or value == "":
        return not required
    if isinstance(value, bool):
        if expected.lower() not in ("true", "false"):
            return False
        want = expected.lower() == "true"
        return value == want if kind == "Equals" else value != want
    if isinstance(value, int | float):
        try:
            number = float(expected)
        except ValueError:
            return False
        return {
            "Equals": value == number,
            "EqualsAny": value == number,
            "NotEquals": value != number,
            "LessThanEqual": value <= number,
            "GreaterThanEqual": value >= number,
        }[kind]
    text = str(value).lower()
    if kind == "EqualsAny":
        return text in [e.strip().lower() for e in expected.split("|")]
    if kind == "Equals":
        return text == expected.lower()
    if kind == "NotEquals":
        return text != expected.lower()
    raise ValueError(f"Unexpected ProfileConditionType: {kind}")


def _first(source: dict[str, Any], kind: str) -> dict[str, Any] | None:
    streams = [s for s in source["MediaStreams"] if s["Type"] == kind]
    if kind == "Audio":
        default = [s for s in streams if s.get("IsDefault")]
        streams = default or streams
    return streams[0] if streams else None


def transcode_reasons(profile: dict[str, Any], source: dict[str, Any]) -> list[str]:
    """Jellyfin's TranscodeReasons for direct play of ``source`` (``[]``: direct play)."""
    video = _first(source, "Video")
    audio = _first(source, "Audio")
    container = source["Container"]
    reasons: list[str] = []

    def add(reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)

    bitrate = source.get("Bitrate")
    limit = profile.get("MaxStreamingBitrate")
    if bitrate and limit and bitrate > limit:
        add("ContainerBitrateExceedsLimit")

    candidates: list[list[str]] = []
    for dp in profile.get("DirectPlayProfiles") or []:
        if dp.get("Type") != "Video":
            continue
        miss = []
        if not _contains(dp.get("Container"), container):
            miss.append("ContainerNotSupported")
        if video is not None and not _contains(dp.get("VideoCodec"), video["Codec"]):
            miss.append("VideoCodecNotSupported")
        if audio is not None and not _contains(dp.get("AudioCodec"), audio["Codec"]):
            miss.append("AudioCodecNotSupported")
        candidates.append(miss)
    if not candidates:
        add("ContainerNotSupported")
    elif all(candidates):
        for r in min(candidates, key=len):
            add(r)

    audio_streams = [s for s in source["MediaStreams"] if s["Type"] == "Audio"]
    for cp in profile.get("CodecProfiles") or []:
        kind = cp.get("Type")
        if cp.get("Container") and not _contains(cp["Container"], container):
            continue
        if kind == "Video" and video is not None:
            if cp.get("Codec") and video["Codec"].lower() not in _tokens(cp["Codec"]):
                continue
            values = {
                "Width": video["Width"],
                "Height": video["Height"],
                "VideoBitDepth": video["BitDepth"],
                "VideoBitrate": video["BitRate"],
                "VideoProfile": video["Profile"],
                "VideoLevel": video["Level"],
                "VideoFramerate": video["RealFrameRate"],
                "IsAnamorphic": video["IsAnamorphic"],
                "IsInterlaced": video["IsInterlaced"],
                "VideoRangeType": video["VideoRangeType"],
                "NumAudioStreams": len(audio_streams),
                "NumVideoStreams": 1,
            }
        elif kind == "VideoAudio" and audio is not None:
            if cp.get("Codec") and audio["Codec"].lower() not in _tokens(cp["Codec"]):
                continue
            values = {
                "AudioChannels": audio["Channels"],
                "AudioBitrate": audio["BitRate"],
                "AudioSampleRate": audio["SampleRate"],
                "AudioProfile": audio["Profile"],
                # MediaSourceInfo.IsSecondaryAudio: not the first audio stream of the file.
                "IsSecondaryAudio": audio["Index"] != audio_streams[0]["Index"],
            }
        else:
            continue
        for cond in cp.get("Conditions") or []:
            prop = cond["Property"]
            if prop not in values:
                continue  # properties Jellyfin does not evaluate here pass
            if not _satisfied(cond, values[prop]):
                add(_REASON_FOR.get(prop, "DirectPlayError"))
    return reasons
