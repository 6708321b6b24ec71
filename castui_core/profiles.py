"""Target profiles: what a device plays directly, and what castui writes for it.

A profile is both the *acceptance rule* (the decision engine skips a file that already fits
it) and the *encode recipe* (the command builder writes exactly this). Keeping both in one
validated model means a file castui writes always passes castui's own check on the next scan,
so nothing is ever re-encoded in a loop.

Validation refuses what no Cast device could play: codec/profile combinations that do not
exist, levels above what a Cast device decodes, and sizes/frame rates/bitrates the chosen
level cannot carry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from castui_core.levels import (
    CAST_MAX_LEVEL,
    ENCODE_PROFILES,
    level_display,
    level_limit_problems,
    level_names,
    level_rank,
    normalize_level,
)

#: Absolute Cast limits (Chromecast Ultra / Google TV 4K): nothing above 4K60.
CAST_MAX_WIDTH = 3840
CAST_MAX_HEIGHT = 2160
CAST_MAX_FPS = 60.0

#: H.264 profile names as ffprobe/PyAV report them, by the encode profile that covers them.
_H264_PLAYABLE: dict[str, tuple[str, ...]] = {
    "baseline": ("Constrained Baseline", "Baseline"),
    "main": ("Constrained Baseline", "Baseline", "Main"),
    "high": ("Constrained Baseline", "Baseline", "Main", "Progressive High", "High"),
}
_HEVC_PLAYABLE: dict[str, tuple[str, ...]] = {
    "main": ("Main",),
    "main10": ("Main", "Main 10"),
}


class ProblemList(ValueError):
    """Several ``field: message`` problems found by one cross-field check.

    Raised inside model validators; the settings error formatter splits it into one line per
    field so every problem names its own field path.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("\n".join(f"{field}: {msg}" for field, msg in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class VideoTarget(_Strict):
    """Video limits a device plays, and how castui encodes when a source exceeds them."""

    codec: Literal["h264", "hevc"] = "h264"
    profile: str = Field(
        "high", description="Encode profile: h264 baseline|main|high, hevc main|main10."
    )
    level: str = Field("4.1", description="Highest level the device decodes; encodes use it.")
    max_width: int = Field(1920, ge=16, le=CAST_MAX_WIDTH)
    max_height: int = Field(1080, ge=16, le=CAST_MAX_HEIGHT)
    max_fps: float = Field(60.0, gt=0, le=CAST_MAX_FPS)
    max_fps_above_720p: float | None = Field(
        30.0, gt=0, le=CAST_MAX_FPS, description="Frame-rate cap for frames larger than 1280x720."
    )
    bit_depth: Literal[8, 10] = 8
    max_bitrate_kbps: int = Field(
        10_000, ge=100, description="Sources above are re-encoded; encodes use it as maxrate."
    )
    bufsize_kbps: int | None = Field(None, ge=100, description="VBV buffer; default 2x maxrate.")
    quality: int | None = Field(
        21, ge=0, le=51, description="Constant quality (x264/x265 CRF, NVENC CQ)."
    )
    bitrate_kbps: int | None = Field(
        None, ge=100, description="Average bitrate instead of constant quality."
    )
    gop_seconds: float = Field(2.0, gt=0, le=10)
    hdr: Literal["tonemap", "keep"] = Field(
        "tonemap", description="HDR sources: tone-map to SDR BT.709, or keep HDR10 (HEVC Main10)."
    )
    cpu_preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"
    ] = "medium"
    nvenc_preset: Literal["p1", "p2", "p3", "p4", "p5", "p6", "p7"] = "p5"

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "level" in data and isinstance(data["level"], str | int | float):
                data["level"] = normalize_level(data["level"])
            if data.get("bitrate_kbps") is not None and "quality" not in data:
                data["quality"] = None  # a bitrate alone means "not constant quality"
            if isinstance(data.get("profile"), str):
                data["profile"] = data["profile"].strip().lower().replace(" ", "")
        return data

    @model_validator(mode="after")
    def _check(self) -> VideoTarget:
        problems: list[tuple[str, str]] = []
        allowed_profiles = ENCODE_PROFILES[self.codec]
        if self.profile not in allowed_profiles:
            problems.append(
                (
                    "profile",
                    f"{self.profile!r} is not a Cast-playable {self.codec} profile;"
                    f" allowed: {', '.join(allowed_profiles)}",
                )
            )
        names = level_names(self.codec)
        if self.level not in names:
            problems.append(
                (
                    "level",
                    f"{self.level!r} is not a {self.codec} level; allowed: {', '.join(names)}",
                )
            )
        else:
            cap = CAST_MAX_LEVEL[self.codec]
            if level_rank(self.codec, self.level) > level_rank(self.codec, cap):
                problems.append(
                    (
                        "level",
                        f"{level_display(self.level)} is above what any Cast device decodes"
                        f" ({self.codec} up to {level_display(cap)})",
                    )
                )
        if self.bit_depth == 10 and self.profile != "main10":
            problems.append(
                ("bit_depth", "10 needs codec hevc with profile main10; Cast H.264 is 8-bit only")
            )
        if self.profile == "main10" and self.bit_depth != 10:
            problems.append(("bit_depth", "profile main10 needs bit_depth: 10"))
        if self.hdr == "keep" and self.profile != "main10":
            problems.append(("hdr", "'keep' needs HEVC main10 (HDR10); use 'tonemap'"))
        for field in ("max_width", "max_height"):
            if getattr(self, field) % 2:
                problems.append((field, f"{getattr(self, field)} is odd; 4:2:0 needs even sizes"))
        if self.max_fps_above_720p is not None and self.max_fps_above_720p > self.max_fps:
            problems.append(
                (
                    "max_fps_above_720p",
                    f"{self.max_fps_above_720p:g} is above max_fps ({self.max_fps:g})",
                )
            )
        if self.bitrate_kbps is not None and self.bitrate_kbps > self.max_bitrate_kbps:
            problems.append(
                (
                    "bitrate_kbps",
                    f"{self.bitrate_kbps} is above max_bitrate_kbps ({self.max_bitrate_kbps})",
                )
            )
        if self.quality is None and self.bitrate_kbps is None:
            problems.append(("quality", "set quality (constant quality) or bitrate_kbps"))
        if self.quality is not None and self.bitrate_kbps is not None:
            problems.append(("bitrate_kbps", "set either quality or bitrate_kbps, not both"))
        if not problems:
            problems.extend(self._level_problems())
        if problems:
            raise ProblemList(problems)
        return self

    def _level_problems(self) -> list[tuple[str, str]]:
        """Check the worst cases the profile admits against the level's limits.

        Each problem is reported under the field holding the value the level cannot carry: a
        frame rate under ``max_fps``/``max_fps_above_720p``, the bitrate under
        ``max_bitrate_kbps``, a frame size under ``level``.
        """
        cases: list[tuple[int, int, float, str]] = []
        if self.max_fps_above_720p is not None:
            big_fps, big_field = self.max_fps_above_720p, "max_fps_above_720p"
        else:
            big_fps, big_field = self.max_fps, "max_fps"
        if self.max_width > 1280 or self.max_height > 720:
            cases.append((self.max_width, self.max_height, big_fps, big_field))
            cases.append(
                (min(self.max_width, 1280), min(self.max_height, 720), self.max_fps, "max_fps")
            )
        else:
            cases.append((self.max_width, self.max_height, self.max_fps, "max_fps"))
        problems: list[tuple[str, str]] = []
        for width, height, fps, fps_field in cases:
            for with_fps in (0.0, fps):  # frame size alone first, then the frame rate
                found = level_limit_problems(
                    self.codec,
                    self.level,
                    width=width,
                    height=height,
                    fps=with_fps,
                    maxrate_kbps=None,
                    profile=self.profile,
                )
                if found:
                    field = "level" if with_fps == 0 else fps_field
                    problems.extend((field, p) for p in found)
                    break
        problems.extend(
            ("max_bitrate_kbps", p)
            for p in level_limit_problems(
                self.codec,
                self.level,
                width=16,
                height=16,
                fps=1,
                maxrate_kbps=self.max_bitrate_kbps,
                profile=self.profile,
            )
        )
        return problems

    # Derived facts the decision engine and command builder share.

    @property
    def playable_profiles(self) -> tuple[str, ...]:
        """Source profile names (as probed) that the device decodes directly."""
        table = _H264_PLAYABLE if self.codec == "h264" else _HEVC_PLAYABLE
        return table.get(self.profile, ())

    @property
    def playable_pix_fmts(self) -> tuple[str, ...]:
        """Pixel formats played directly: 8-bit 4:2:0 (incl. full-range), plus 10-bit for Main10."""
        fmts = ("yuv420p", "yuvj420p", "nv12")
        return (*fmts, "yuv420p10le", "p010le") if self.bit_depth == 10 else fmts

    @property
    def effective_bufsize_kbps(self) -> int:
        return self.bufsize_kbps if self.bufsize_kbps is not None else 2 * self.max_bitrate_kbps

    def fits(self, width: int, height: int) -> bool:
        """Whether a frame of this size is within the profile, portrait or landscape.

        The limits bound the long and the short side (a 1920x1080 box also holds a 1080x1920
        phone video): receivers decode a portrait frame exactly like its landscape twin.
        """
        return max(width, height) <= max(self.max_width, self.max_height) and min(
            width, height
        ) <= min(self.max_width, self.max_height)

    def fps_cap(self, width: int, height: int) -> float:
        """Frame-rate cap for a frame of this size (long/short side, as ``fits``)."""
        big = max(width, height) > 1280 or min(width, height) > 720
        if self.max_fps_above_720p is not None and big:
            return self.max_fps_above_720p
        return self.max_fps


class AudioTarget(_Strict):
    """Audio a device plays everywhere: AAC-LC or MP3, at most stereo."""

    codec: Literal["aac"] = Field("aac", description="Encode codec (AAC-LC).")
    channels: int = Field(2, ge=1, le=2, description="Cast plays at most stereo everywhere.")
    bitrate_kbps: int = Field(160, ge=32, le=512)
    accept_codecs: tuple[Literal["aac", "mp3"], ...] = Field(
        ("aac", "mp3"), min_length=1, description="Source codecs played directly."
    )
    keep_surround_copy: bool = Field(
        False, description="Also keep AC-3/E-AC-3 as a non-default track for AV receivers."
    )


class SubtitleTarget(_Strict):
    """What happens to subtitles (text ones always become mov_text in the MP4)."""

    bitmap: Literal["sidecar", "keep-source"] = Field(
        "sidecar",
        description=(
            "Bitmap subs (PGS, VobSub, DVB) cannot go into a Cast MP4: write them as sidecar"
            " files next to the output, or keep the source file (never deleted) beside it."
        ),
    )


class Profile(_Strict):
    """One target device class."""

    description: str = ""
    extends: str | None = Field(None, description="Profile this one starts from.")
    container: Literal["mp4"] = "mp4"
    faststart: bool = Field(True, description="moov before mdat so playback starts at once.")
    video: VideoTarget = Field(default_factory=VideoTarget)
    audio: AudioTarget = Field(default_factory=AudioTarget)
    subtitles: SubtitleTarget = Field(default_factory=SubtitleTarget)


DEFAULT_PROFILE = "chromecast-1080p"

#: Built-in profiles as raw mappings: user overrides are deep-merged onto these before validation.
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "chromecast-1080p": {
        "description": "Every Chromecast: H.264 High <=4.1, 1080p30 / 720p60, AAC stereo, MP4.",
        "video": {
            "codec": "h264",
            "profile": "high",
            "level": "4.1",
            "max_width": 1920,
            "max_height": 1080,
            "max_fps": 60,
            "max_fps_above_720p": 30,
            "max_bitrate_kbps": 10_000,
        },
    },
    "chromecast-1080p60": {
        "description": "Chromecast 3rd gen and later: H.264 High <=4.2, 1080p60.",
        "video": {
            "codec": "h264",
            "profile": "high",
            "level": "4.2",
            "max_width": 1920,
            "max_height": 1080,
            "max_fps": 60,
            "max_fps_above_720p": 60,
            "max_bitrate_kbps": 10_000,
        },
    },
    "chromecast-4k-hevc": {
        "description": "Chromecast Ultra / Google TV 4K: HEVC Main10 <=5.1, 4K60, HDR10 kept.",
        "video": {
            "codec": "hevc",
            "profile": "main10",
            "level": "5.1",
            "bit_depth": 10,
            "max_width": 3840,
            "max_height": 2160,
            "max_fps": 60,
            "max_fps_above_720p": 60,
            "max_bitrate_kbps": 40_000,
            "quality": 22,
            "hdr": "keep",
        },
    },
    "nest-hub-720p": {
        "description": "Nest Hub / Hub Max: H.264 High <=4.1 at 720p.",
        "video": {
            "codec": "h264",
            "profile": "high",
            "level": "4.1",
            "max_width": 1280,
            "max_height": 720,
            "max_fps": 60,
            "max_fps_above_720p": None,
            "max_bitrate_kbps": 5_000,
        },
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` onto ``base`` recursively (mappings merge, anything else replaces)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_profiles(user: dict[str, Any]) -> dict[str, Any]:
    """Built-ins overlaid with the user's ``profiles:`` section, ``extends:`` resolved.

    Returns raw mappings (validated afterwards by the settings model, so errors keep their
    ``profiles.NAME.video.level`` paths). A user entry with the name of a built-in overrides
    it field by field; a new name starts from ``extends:`` (default: chromecast-1080p).
    Raises ``ProblemList`` for unknown or circular ``extends``.
    """
    raw: dict[str, dict[str, Any]] = {}
    for name, body in user.items():
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ProblemList([(f"profiles.{name}", "must be a mapping of profile fields")])
        raw[str(name)] = body
    resolved: dict[str, Any] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return dict(resolved[name])
        if name in chain:
            cycle = " -> ".join((*chain, name))
            raise ProblemList([(f"profiles.{chain[0]}.extends", f"circular: {cycle}")])
        body = raw.get(name)
        if body is None:
            return dict(BUILTIN_PROFILES[name])
        body = dict(body)
        parent = body.get("extends")
        if parent is None or (parent not in raw and parent not in BUILTIN_PROFILES):
            # An unknown parent is reported by the settings cross-checks (with every other
            # problem) rather than raised here, which would hide the rest of the file's errors.
            base = BUILTIN_PROFILES.get(name, BUILTIN_PROFILES[DEFAULT_PROFILE])
        else:
            base = resolve(str(parent), (*chain, name))
        result = deep_merge(base, body)
        video = body.get("video")
        # Asking for a bitrate means "not constant quality", even where the parent profile
        # set a quality: don't make the user write `quality: null` too.
        bitrate_only = (
            isinstance(video, dict)
            and video.get("bitrate_kbps") is not None
            and "quality" not in video
        )
        if bitrate_only:
            result["video"] = {**result["video"], "quality": None}
        resolved[name] = result
        return result

    for name in BUILTIN_PROFILES:
        resolved.setdefault(name, resolve(name, ()))
    for name in raw:
        resolved[name] = resolve(name, ())
    return resolved


def builtin_profiles() -> dict[str, Profile]:
    """The built-in profiles, validated."""
    return {name: Profile.model_validate(body) for name, body in BUILTIN_PROFILES.items()}


# Validate the built-ins at import: a broken one fails every test, not a user's first scan.
builtin_profiles()
