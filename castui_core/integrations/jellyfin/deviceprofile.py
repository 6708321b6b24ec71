"""The Cast DeviceProfile Jellyfin's own receiver sends, built per device generation.

Why castui builds it: Jellyfin decides direct play vs transcode by evaluating a DeviceProfile
against the item's media. When castui asks ``PlaybackInfo`` whether a file it wrote will
direct-play on a Chromecast, it must send the profile the real receiver sends, or the answer
is about some other device. This is a faithful, pure re-statement of jellyfin-chromecast's
``src/components/deviceprofileBuilder.ts`` and the helpers it calls in
``src/components/codecSupportHelper.ts`` and ``src/components/castDevices.ts`` at tag v1.2.0,
commit ``57172d7c204f4217ef221341a85384a786626c7b`` (github.com/jellyfin/jellyfin-chromecast).
What the receiver learns at run time from ``canDisplayType`` (HEVC, VP8, VP9) is fixed here per
generation from the same probes ``getActiveDeviceId`` uses:

- gen 1/2: ``avc1.640029`` (H.264 High 4.1), no HEVC, no VP9;
- gen 3: ``avc1.64002A`` (High 4.2), no HEVC, no VP9;
- Ultra: HEVC (``hev1.1.6.L153``) and VP9;
- Google TV: as Ultra, with H.264 up to 5.1 (``getH264LevelSupport``);
- Nest Hub / Hub Max: VP9 without HEVC, 1280 wide.

Kept exactly as upstream, oddities included, because agreeing with the real server matters more
than tidiness: AC-3/E-AC-3 are hard-coded off (``hasAC3Support`` returns false), AAC at most
2 channels, and the H.265 CodecProfile is keyed ``h265`` (Jellyfin matches codec names literally,
so it never applies to streams Jellyfin names ``hevc``). The H.264 width limit is the receiver's
``window.innerWidth`` (an HLS manifest larger than the screen fails); castui takes the screen as
as wide as the device's decoder limit (``screen_width`` overrides it). Text subtitles go out as
external (and HLS) WebVTT.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from castui_core.levels import level_rank
from castui_core.profiles import Profile


class CastGeneration(StrEnum):
    """Cast device classes, as jellyfin-chromecast's ``deviceIds`` tells them apart."""

    GEN1AND2 = "gen1/2"
    GEN3 = "gen3"
    ULTRA = "ultra"
    GOOGLE_TV = "google-tv"
    NEST_HUB = "nest-hub"

    @property
    def label(self) -> str:
        """How a person names the device ("Chromecast (gen 1/2)")."""
        return _LABELS[self]


_LABELS = {
    CastGeneration.GEN1AND2: "Chromecast (gen 1/2)",
    CastGeneration.GEN3: "Chromecast (gen 3)",
    CastGeneration.ULTRA: "Chromecast Ultra",
    CastGeneration.GOOGLE_TV: "Chromecast with Google TV",
    CastGeneration.NEST_HUB: "Nest Hub / Hub Max",
}


@dataclass(frozen=True)
class _Caps:
    """What codecSupportHelper.ts answers for one device id."""

    max_width: int  # getMaxWidthSupport
    h264_level: int  # getH264LevelSupport (x10, as Jellyfin stores H.264 levels)
    h264_profiles: str  # getH264ProfileSupport
    h265_level: int  # getH265LevelSupport
    h265_profiles: str  # getH265ProfileSupport
    hevc: bool  # hasH265Support: canDisplayType('video/mp4', 'hev1.1.6.L150.B0')
    vpx: tuple[str, ...]  # getSupportedVPXVideoCodecs


_H264 = "high|main|baseline|constrained baseline"
_H265_4K = "high|main|baseline|constrained baseline|high 10"

CAPS: dict[CastGeneration, _Caps] = {
    CastGeneration.GEN1AND2: _Caps(1920, 41, _H264, 0, "", False, ("VP8",)),
    CastGeneration.GEN3: _Caps(1920, 42, _H264, 0, "", False, ("VP8",)),
    CastGeneration.ULTRA: _Caps(3840, 42, _H264 + "|high 10", 52, _H265_4K, True, ("VP8", "VP9")),
    CastGeneration.GOOGLE_TV: _Caps(
        3840, 51, _H264 + "|high 10", 52, _H265_4K, True, ("VP8", "VP9")
    ),
    CastGeneration.NEST_HUB: _Caps(1280, 41, _H264, 0, "", False, ("VP8", "VP9")),
}

#: castui's built-in profiles and the Cast generation each is written for.
BUILTIN_GENERATIONS: dict[str, CastGeneration] = {
    "chromecast-1080p": CastGeneration.GEN1AND2,
    "chromecast-1080p60": CastGeneration.GEN3,
    "chromecast-4k-hevc": CastGeneration.ULTRA,
    "nest-hub-720p": CastGeneration.NEST_HUB,
}

#: getSupportedAudioCodecs: audio-only direct play formats.
_AUDIO_FORMATS = ("opus", "mp3", "aac", "flac", "webma", "wav")
_MP4_AUDIO = ("aac", "mp3")  # getSupportedMP4AudioCodecs with AC-3/E-AC-3 off
_WEBM_AUDIO = ("vorbis", "opus")


def generation_for(name: str, profile: Profile) -> CastGeneration:
    """The Cast generation a castui profile targets.

    Built-ins map by name; a user's profile by what it asks of the device: HEVC or wider than
    1920 is an Ultra-class device, at most 1280 wide a Nest Hub, H.264 above 4.1 a gen 3.
    """
    if name in BUILTIN_GENERATIONS:
        return BUILTIN_GENERATIONS[name]
    video = profile.video
    if video.codec == "hevc" or video.max_width > 1920:
        return CastGeneration.ULTRA
    if video.max_width <= 1280:
        return CastGeneration.NEST_HUB
    if level_rank("h264", video.level) > level_rank("h264", "4.1"):
        return CastGeneration.GEN3
    return CastGeneration.GEN1AND2


def _condition(prop: str, cond: str, value: str, required: bool = False) -> dict[str, Any]:
    return {"Condition": cond, "IsRequired": required, "Property": prop, "Value": value}


def _direct_play_profiles(caps: _Caps) -> list[dict[str, Any]]:
    mp4_video = ["h264", *(("h265", "hevc") if caps.hevc else ())]
    profiles: list[dict[str, Any]] = [
        {
            "AudioCodec": ",".join(_WEBM_AUDIO),
            "Container": "webm",
            "Type": "Video",
            "VideoCodec": codec,
        }
        for codec in caps.vpx
    ]
    profiles.append(
        {
            "AudioCodec": ",".join(_MP4_AUDIO),
            "Container": "mp4,m4v",
            "Type": "Video",
            "VideoCodec": ",".join(mp4_video),
        }
    )
    for fmt in _AUDIO_FORMATS:
        if fmt == "mp3":
            profiles.append({"AudioCodec": fmt, "Container": fmt, "Type": "Audio"})
        elif fmt == "webma":
            profiles.append({"Container": "webma,webm", "Type": "Audio"})
        else:
            profiles.append({"Container": fmt, "Type": "Audio"})
        if fmt == "aac":
            profiles.append({"AudioCodec": fmt, "Container": "m4a,m4b", "Type": "Audio"})
    return profiles


def _video_codec_profile(codec: str, profiles: str, level: int, width: int) -> dict[str, Any]:
    return {
        "Codec": codec,
        "Conditions": [
            _condition("IsAnamorphic", "NotEquals", "true"),
            _condition("VideoProfile", "EqualsAny", profiles),
            _condition("VideoLevel", "LessThanEqual", str(level)),
            _condition("Width", "LessThanEqual", str(width), True),
        ],
        "Type": "Video",
    }


def _codec_profiles(caps: _Caps, screen_width: int) -> list[dict[str, Any]]:
    return [
        {
            "Codec": "flac",
            "Conditions": [
                _condition("AudioSampleRate", "LessThanEqual", "96000"),
                _condition("AudioBitDepth", "LessThanEqual", "24"),
            ],
            "Type": "Audio",
        },
        {
            "Codec": "aac",
            "Conditions": [_condition("AudioChannels", "LessThanEqual", "2")],
            "Type": "VideoAudio",
        },
        _video_codec_profile("h264", caps.h264_profiles, caps.h264_level, screen_width),
        _video_codec_profile("h265", caps.h265_profiles, caps.h265_level, caps.max_width),
        {
            "Conditions": [_condition("Width", "LessThanEqual", str(caps.max_width), True)],
            "Type": "Video",
        },
        {
            "Conditions": [_condition("IsSecondaryAudio", "Equals", "false")],
            "Type": "VideoAudio",
        },
    ]


def _transcoding_profiles(caps: _Caps) -> list[dict[str, Any]]:
    audio_channels = "2"  # hasSurroundSupport() is hasAC3Support(): false
    hls_audio = ",".join(_MP4_AUDIO)
    profiles: list[dict[str, Any]] = [
        {
            "AudioCodec": hls_audio,
            "BreakOnNonKeyFrames": False,
            "Container": "ts",
            "Context": "Streaming",
            "MaxAudioChannels": audio_channels,
            "MinSegments": 1,
            "Protocol": "hls",
            "Type": "Audio",
        }
    ]
    profiles.extend(
        {
            "AudioCodec": fmt,
            "Container": fmt,
            "Context": "Streaming",
            "MaxAudioChannels": audio_channels,
            "Protocol": "http",
            "Type": "Audio",
        }
        for fmt in _AUDIO_FORMATS
    )
    profiles.append(
        {
            "AudioCodec": hls_audio,
            "BreakOnNonKeyFrames": False,
            "Container": "ts",
            "Context": "Streaming",
            "MaxAudioChannels": audio_channels,
            "MinSegments": 1,
            "Protocol": "hls",
            "Type": "Video",
            "VideoCodec": "h264",  # getSupportedHLSVideoCodecs: the server has no fMP4 HLS
        }
    )
    if caps.vpx:
        profiles.append(
            {
                "AudioCodec": "vorbis",
                "Container": "webm",
                "Context": "Streaming",
                "MaxAudioChannels": audio_channels,
                "Protocol": "http",
                "Type": "Video",
                "VideoCodec": "vpx",
            }
        )
    return profiles


def build_device_profile(
    generation: CastGeneration,
    *,
    bitrate_bps: int,
    name: str | None = None,
    screen_width: int | None = None,
) -> dict[str, Any]:
    """The DeviceProfile jellyfin-chromecast sends from a ``generation`` device.

    ``bitrate_bps`` is the receiver's ``bitrateSetting`` (the sender's bitrate choice). castui
    passes its profile's video maxrate plus its audio bitrate, so Jellyfin's check of the file's
    bitrate and castui's check of the video bitrate agree.
    It is also sent as ``MaxStaticBitrate``, which Jellyfin otherwise takes as 8 Mb/s.
    """
    caps = CAPS[generation]
    profile: dict[str, Any] = {
        "MaxStaticBitrate": bitrate_bps,
        "MaxStreamingBitrate": bitrate_bps,
        "MusicStreamingTranscodingBitrate": min(bitrate_bps, 192_000),
        "DirectPlayProfiles": _direct_play_profiles(caps),
        "TranscodingProfiles": _transcoding_profiles(caps),
        "ContainerProfiles": [],
        "CodecProfiles": _codec_profiles(
            caps, caps.max_width if screen_width is None else screen_width
        ),
        "SubtitleProfiles": [
            {"Format": "vtt", "Method": "External"},
            {"Format": "vtt", "Method": "Hls"},
        ],
        "ResponseProfiles": [{"Container": "m4v", "MimeType": "video/mp4", "Type": "Video"}],
    }
    if name is not None:
        profile["Name"] = name
    return profile


def device_profile_for(name: str, profile: Profile) -> tuple[CastGeneration, dict[str, Any]]:
    """The generation castui profile ``name`` targets and the DeviceProfile to ask Jellyfin with."""
    generation = generation_for(name, profile)
    body = build_device_profile(
        generation,
        # Jellyfin compares the whole file's bitrate; castui's limit is the video's maxrate
        # and its audio comes on top.
        bitrate_bps=(profile.video.max_bitrate_kbps + profile.audio.bitrate_kbps) * 1000,
        name=f"castui {name} ({generation.label})",
    )
    return generation, body
