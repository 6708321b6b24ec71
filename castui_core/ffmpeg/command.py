"""Build the ffmpeg argument list that turns one source file into a Cast-ready MP4.

Everything here is a pure function of the probed ``MediaInfo``, the target ``Profile`` and the
``Decision``: no process is started and nothing is read from disk, so the exact argv can be
golden-tested and shown to a person before anything runs. The command encodes precisely what
the profile's acceptance rule checks (codec, profile, level, size, frame rate, bit depth,
audio, subtitles), so the output passes ``decide`` on the next scan and is never re-encoded.

Design choices, and why:

- Streams are mapped one by one (``-map 0:N``), never ``-map 0``: cover art, fonts, data and
  bitmap subtitle streams would make the MP4 muxer fail or produce a file Cast refuses.
- Input and output paths get a ``file:`` prefix: an output named ``-x.mp4`` would otherwise be
  parsed as an option and a name containing ``:`` as a protocol.
- The output size is computed here (not with ``force_original_aspect_ratio``) because the
  display aspect includes the sample aspect ratio, which ffmpeg's box fitting ignores; square
  pixels are written (``setsar=1``) so every receiver shows the right shape.
- The NVENC "full GPU" path (NVDEC decode, ``scale_cuda``, NVENC) is used only when no CPU-only
  filter is needed; deinterlacing and HDR tone-mapping run on the CPU and only the encode runs
  on the GPU, which is still much faster than x264 and works on every NVENC card.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from castui_core.decide import Action, Decision
from castui_core.errors import CastuiError
from castui_core.levels import HEVC_LEVELS
from castui_core.media import AudioStream, MediaInfo, SubtitleStream, VideoStream
from castui_core.profiles import Profile, VideoTarget

Backend = Literal["cpu", "nvenc"]
Encoder = Literal["libx264", "libx265", "h264_nvenc", "hevc_nvenc", "copy"]

#: Source codecs NVDEC decodes on every NVENC-capable card castui supports (AV1 needs Ampere+;
#: the caller narrows this from its capability probe).
DEFAULT_NVDEC_CODECS: frozenset[str] = frozenset(
    {"h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9", "av1"}
)

#: Options every castui ffmpeg run starts with: never read the terminal, overwrite the temp
#: output, print warnings and errors, and machine-readable progress on stdout instead of the
#: status line. Warning level, not error: ffmpeg 5.1's NVENC logs *why* it refuses an encode
#: ("10 bit encode not supported", "Max B-frames 3 exceed 0") as a warning and only a summary
#: as an error, and the classifier needs the reason. Progress is on stdout, so the extra
#: stderr lines only pass through the runner's bounded head/tail buffer.
COMMON_OPTIONS: tuple[str, ...] = (
    "-nostdin",
    "-y",
    "-hide_banner",
    "-v",
    "warning",
    "-progress",
    "pipe:1",
    "-nostats",
)

#: CPU deinterlacer: one output frame per input frame (keeps the frame rate, so the fps cap and
#: GOP stay right), both field orders detected from the stream.
DEINTERLACE_FILTER = "bwdif=mode=send_frame:parity=auto:deint=all"

#: Audio codecs kept as an extra non-default track when ``keep_surround_copy`` is set: AV
#: receivers decode them through HDMI/optical passthrough.
SURROUND_COPY_CODECS = frozenset({"ac3", "eac3"})

#: Sidecar container per bitmap subtitle codec: what the real ffmpeg can write with ``-c:s copy``.
_SIDECAR_FORMATS: dict[str, tuple[str, str]] = {
    "hdmv_pgs_subtitle": ("sup", "sup"),
    "dvd_subtitle": ("mks", "matroska"),
    "dvb_subtitle": ("mks", "matroska"),
}

_SDR_TAGS = ("bt709", "bt709", "bt709")
_NTSC_TOLERANCE = 0.02


#: Cast receivers decode AAC-LC up to 48 kHz; 88.2/96 kHz sources (FLAC rips) are resampled.
MAX_AAC_SAMPLE_RATE = 48_000


class CommandError(CastuiError):
    """The decision asks for nothing ffmpeg can do (skip/reject, or a file without video)."""


@dataclass(frozen=True)
class AudioOut:
    """One output audio track: which source track feeds it and whether it is re-encoded."""

    source_index: int
    action: Literal["copy", "aac"]
    codec: str  # source codec
    channels: int  # output channels (source channels when copied)
    language: str | None
    default: bool
    sample_rate: int | None = None  # source rate; AAC above 48 kHz is not Cast-safe

    @property
    def description(self) -> str:
        lang = self.language or "und"
        what = "copy" if self.action == "copy" else f"AAC {self.channels}ch"
        flag = " (default)" if self.default else ""
        return f"#{self.source_index} {self.codec} {lang} -> {what}{flag}"


@dataclass(frozen=True)
class SubtitleOut:
    """One text subtitle track converted to mov_text inside the MP4."""

    source_index: int
    codec: str
    language: str | None
    default: bool
    forced: bool

    @property
    def description(self) -> str:
        return f"#{self.source_index} {self.codec} {self.language or 'und'} -> mov_text"


@dataclass(frozen=True)
class Sidecar:
    """A bitmap subtitle stream extracted next to the output (Cast cannot render it in the MP4).

    ``suffix`` is appended to the output's stem: ``Movie.eng.sup``, ``Movie.fre.forced.mks``;
    Jellyfin and most players pick such files up as external subtitles.
    """

    index: int
    codec: str
    language: str | None
    forced: bool
    suffix: str
    format: str  # ffmpeg muxer name: "sup" or "matroska"


@dataclass(frozen=True)
class EncodePlan:
    """The complete ffmpeg command for one job, plus what it does in words."""

    args: tuple[str, ...]
    video: Literal["copy", "encode"]
    backend: Backend
    encoder: Encoder
    audio_plan: tuple[AudioOut, ...]
    subtitle_plan: tuple[SubtitleOut, ...]
    sidecars: tuple[Sidecar, ...]
    notes: tuple[str, ...]
    width: int
    height: int
    fps: float | None
    filters: str | None

    @property
    def hwaccel(self) -> bool:
        """True when frames are decoded and scaled on the GPU (the full NVENC path)."""
        return "-hwaccel" in self.args


@dataclass(frozen=True)
class _VideoGeometry:
    width: int
    height: int
    scaled: bool  # size or pixel aspect changes
    fps_in: float | None
    fps_out: float | None
    fps_filter: str | None  # value for the fps= filter when capping


def _floor_even(value: float) -> int:
    return max(2, math.floor(value + 1e-6) // 2 * 2)


def output_geometry(stream: VideoStream, target: VideoTarget) -> _VideoGeometry:
    """Output size and frame rate: display aspect kept, never upscaled, even, fps capped.

    The display width is the coded width times the sample aspect ratio; a source with a
    quarter-turn display rotation (phone video) is planned in its *displayed* orientation,
    because ffmpeg's autorotate (left on: castui never passes ``-noautorotate``) turns the
    frames upright before castui's filters and the output carries no rotation. The profile's
    box bounds the long and the short side (``VideoTarget.fits``), so a portrait clip is not
    scaled down for being tall. The fit uses a scale factor of at most 1 and rounds *down* to
    even numbers so 4:2:0 encoders accept it and the frame never grows.
    """
    sar = stream.sar_num / stream.sar_den if stream.sar_num > 0 and stream.sar_den > 0 else 1.0
    display_w = stream.width * sar
    display_h = float(stream.height)
    shown_w, shown_h = stream.width, stream.height
    if stream.quarter_turn:
        display_w, display_h = display_h, display_w
        shown_w, shown_h = shown_h, shown_w
    long_side = max(target.max_width, target.max_height)
    short_side = min(target.max_width, target.max_height)
    box_w, box_h = (long_side, short_side) if display_w >= display_h else (short_side, long_side)
    factor = min(1.0, box_w / display_w, box_h / display_h)
    width = min(_floor_even(display_w * factor), box_w)
    height = min(_floor_even(display_h * factor), box_h)
    scaled = (width, height) != (shown_w, shown_h) or abs(sar - 1.0) > 1e-9
    fps_in = stream.fps
    cap = target.fps_cap(width, height)
    fps_out = fps_in
    fps_filter = None
    if fps_in is not None and fps_in > cap + 0.01:
        ntsc = abs(fps_in * 1.001 - round(fps_in * 1.001)) < _NTSC_TOLERANCE and (
            abs(fps_in - round(fps_in)) > _NTSC_TOLERANCE
        )
        if ntsc and float(cap).is_integer():
            fps_filter = f"{int(cap) * 1000}/1001"
            fps_out = cap * 1000 / 1001
        else:
            fps_filter = f"{cap:g}"
            fps_out = cap
    return _VideoGeometry(width, height, scaled, fps_in, fps_out, fps_filter)


def _audio_compatible(stream: AudioStream, profile: Profile) -> bool:
    """The same rule ``decide`` uses: accepted codec, at most the target channels, AAC-LC."""
    target = profile.audio
    return (
        stream.codec in target.accept_codecs
        and 0 < stream.channels <= target.channels
        and (stream.codec != "aac" or stream.profile in (None, "LC"))
    )


def _copy(stream: AudioStream, *, default: bool) -> AudioOut:
    return AudioOut(stream.index, "copy", stream.codec, stream.channels, stream.language, default)


def plan_audio(info: MediaInfo, profile: Profile) -> tuple[AudioOut, ...]:
    """Every source audio track, the primary one first, each copied or converted to AAC.

    The primary track is the source's default track (else the first): the person chose that
    language, so it becomes the first, default output track; it is copied when it already
    plays everywhere, else converted to AAC-LC stereo (downmix). Other tracks follow in
    source order. With ``keep_surround_copy`` an AC-3/E-AC-3 track is additionally copied
    right after its AAC version, non-default, for AV receivers.
    """
    if not info.audio:
        return ()
    primary = next((a for a in info.audio if a.default), info.audio[0])
    ordered = [primary, *(a for a in info.audio if a is not primary)]
    out: list[AudioOut] = []
    for stream in ordered:
        first = not out
        if _audio_compatible(stream, profile):
            out.append(
                AudioOut(
                    stream.index, "copy", stream.codec, stream.channels, stream.language, first
                )
            )
            continue
        channels = min(profile.audio.channels, stream.channels or profile.audio.channels)
        out.append(
            AudioOut(
                stream.index,
                "aac",
                stream.codec,
                channels,
                stream.language,
                first,
                stream.sample_rate,
            )
        )
        if profile.audio.keep_surround_copy and stream.codec in SURROUND_COPY_CODECS:
            out.append(
                AudioOut(
                    stream.index, "copy", stream.codec, stream.channels, stream.language, False
                )
            )
    return tuple(out)


def plan_subtitles(
    info: MediaInfo, profile: Profile
) -> tuple[tuple[SubtitleOut, ...], tuple[Sidecar, ...], tuple[str, ...]]:
    """Text subtitles into the MP4 as mov_text; bitmap ones as sidecars or left in the source."""
    texts: list[SubtitleOut] = []
    sidecars: list[Sidecar] = []
    notes: list[str] = []
    used: set[str] = set()
    for sub in info.subtitles:
        if sub.is_text:
            texts.append(SubtitleOut(sub.index, sub.codec, sub.language, sub.default, sub.forced))
        elif sub.is_bitmap:
            if profile.subtitles.bitmap == "keep-source":
                notes.append(
                    f"bitmap subtitle #{sub.index} ({sub.codec}, {sub.language or 'und'})"
                    " not in the MP4: kept in the source file"
                )
                continue
            fmt = _SIDECAR_FORMATS.get(sub.codec)
            if fmt is None:
                notes.append(
                    f"bitmap subtitle #{sub.index} ({sub.codec}) dropped:"
                    " ffmpeg cannot write it to a sidecar file"
                )
                continue
            sidecar = _sidecar(sub, fmt, used)
            used.add(sidecar.suffix)
            sidecars.append(sidecar)
            notes.append(f"bitmap subtitle #{sub.index} ({sub.codec}) -> sidecar {sidecar.suffix}")
        else:
            notes.append(f"subtitle #{sub.index} ({sub.codec}) dropped: not a known text format")
    return tuple(texts), tuple(sidecars), tuple(notes)


def _sidecar(sub: SubtitleStream, fmt: tuple[str, str], used: set[str]) -> Sidecar:
    ext, muxer = fmt
    parts = [sub.language or "und"]
    if sub.forced:
        parts.append("forced")
    base = "." + ".".join(parts)
    suffix = f"{base}.{ext}"
    n = 2
    while suffix in used:
        suffix = f"{base}.{n}.{ext}"
        n += 1
    return Sidecar(sub.index, sub.codec, sub.language, sub.forced, suffix, muxer)


def _file_url(path: str) -> str:
    """``file:`` prefix so a leading ``-`` or a ``proto:`` lookalike is read as a plain path."""
    return path if path.startswith("file:") else f"file:{path}"


def _needs_tonemap(stream: VideoStream, target: VideoTarget) -> bool:
    return stream.hdr is not None and target.hdr != "keep"


def _color_tags(stream: VideoStream, target: VideoTarget) -> tuple[str, str, str]:
    """(primaries, transfer, matrix) to write: BT.709 for SDR output, BT.2020 for kept HDR."""
    if stream.hdr is not None and target.hdr == "keep":
        return ("bt2020", stream.color_transfer, "bt2020nc")
    return _SDR_TAGS


def _source_is_601(stream: VideoStream) -> bool:
    """SD sources are BT.601: converted to the BT.709 matrix the output is tagged with."""
    if stream.color_space in ("smpte170m", "bt470bg"):
        return True
    return stream.color_space in ("unknown", "unspecified") and stream.height <= 576


def _tonemap_chain(stream: VideoStream) -> str:
    """CPU HDR->SDR: linearise with zscale, Hable curve, back to BT.709 limited-range 8-bit."""
    tin = stream.color_transfer
    pin = stream.color_primaries if stream.color_primaries == "bt2020" else "bt2020"
    return (
        f"zscale=tin={tin}:pin={pin}:min=bt2020nc:t=linear:npl=100,format=gbrpf32le,"
        "zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv"
    )


def build_command(
    info: MediaInfo,
    profile: Profile,
    decision: Decision,
    *,
    output: str,
    backend: Backend,
    ffmpeg: str = "ffmpeg",
    nvdec_codecs: frozenset[str] = DEFAULT_NVDEC_CODECS,
    gpu_tonemap: bool = False,
) -> EncodePlan:
    """The ffmpeg argv that converts ``info`` for ``profile`` as ``decision`` says.

    ``remux`` copies the video and converts only container, audio and subtitles;
    ``transcode`` re-encodes the video with the CPU (libx264/libx265) or NVENC. ``output`` is
    the MP4 path to write (normally a temp name the caller renames after validation).
    Raises ``CommandError`` for skip/reject decisions or a file without video.
    """
    if decision.action not in (Action.REMUX, Action.TRANSCODE):
        raise CommandError(f"{info.path}: nothing to run for a {decision.action} decision")
    if not info.video:
        raise CommandError(f"{info.path}: no video stream to convert")
    stream = info.video[0]
    target = profile.video
    notes: list[str] = []
    audio = plan_audio(info, profile)
    texts, sidecars, sub_notes = plan_subtitles(info, profile)

    pre_input: list[str] = []
    video_args: list[str] = []
    filters: str | None = None
    encoder: Encoder
    if decision.action == Action.REMUX:
        geometry = _VideoGeometry(stream.width, stream.height, False, stream.fps, stream.fps, None)
        encoder = "copy"
        video_args = ["-c:v", "copy"]
        if stream.codec == "hevc":
            video_args += ["-tag:v", "hvc1"]
        notes.append(f"video copied ({stream.codec})")
    else:
        geometry = output_geometry(stream, target)
        encoder, pre_input, filters, video_args = _encode_video(
            stream,
            target,
            geometry,
            backend=backend,
            nvdec_codecs=nvdec_codecs,
            gpu_tonemap=gpu_tonemap,
            notes=notes,
        )
    if len(info.video) > 1:
        notes.append(f"{len(info.video) - 1} extra video stream(s) not kept")
    if info.attachments:
        notes.append(f"{info.attachments} attachment(s)/cover art not kept (MP4 for Cast)")
    notes.extend(sub_notes)

    args: list[str] = [ffmpeg, *COMMON_OPTIONS, *pre_input, "-i", _file_url(info.path)]
    args += ["-map", f"0:{stream.index}"]
    args += [arg for a in audio for arg in ("-map", f"0:{a.source_index}")]
    args += [arg for s in texts for arg in ("-map", f"0:{s.source_index}")]
    args += ["-map_metadata", "0", "-map_chapters", "0"]
    args += video_args
    args += _audio_args(audio, profile)
    args += _subtitle_args(texts)
    args += ["-max_muxing_queue_size", "4096"]
    if profile.faststart:
        args += ["-movflags", "+faststart"]
    args += ["-f", "mp4", _file_url(output)]
    return EncodePlan(
        args=tuple(args),
        video="copy" if encoder == "copy" else "encode",
        backend=backend,
        encoder=encoder,
        audio_plan=audio,
        subtitle_plan=texts,
        sidecars=sidecars,
        notes=tuple(notes),
        width=geometry.width,
        height=geometry.height,
        fps=geometry.fps_out,
        filters=filters,
    )


def _full_gpu_ok(
    stream: VideoStream, tonemap: bool, gpu_tonemap: bool, nvdec_codecs: frozenset[str]
) -> tuple[bool, str | None]:
    """Whether NVDEC + CUDA filters can do all of it; else the reason the CPU must help."""
    if stream.codec not in nvdec_codecs:
        return False, f"{stream.codec} has no NVDEC path: CPU decode"
    if stream.rotation:
        # ffmpeg's autorotate inserts a software transpose/flip, which GPU frames cannot take.
        return False, f"rotated {stream.rotation}°: ffmpeg turns it upright on the CPU"
    if stream.interlaced:
        return False, "deinterlace runs on the CPU"
    if tonemap and not gpu_tonemap:
        return False, "HDR tone-mapping runs on the CPU"
    if stream.chroma != "4:2:0":
        return False, f"NVDEC cannot decode {stream.chroma}: CPU decode"
    if stream.codec == "h264" and stream.bit_depth > 8:
        return False, "NVDEC cannot decode 10-bit H.264: CPU decode"
    return True, None


def _encode_video(
    stream: VideoStream,
    target: VideoTarget,
    geo: _VideoGeometry,
    *,
    backend: Backend,
    nvdec_codecs: frozenset[str],
    gpu_tonemap: bool,
    notes: list[str],
) -> tuple[Encoder, list[str], str, list[str]]:
    """Encoder name, options before ``-i``, the filter chain and the video encode options."""
    tonemap = _needs_tonemap(stream, target)
    ten_bit = target.profile == "main10"
    hevc = target.codec == "hevc"
    if stream.interlaced:
        notes.append("deinterlaced")
    if stream.rotation:
        notes.append(f"turned upright (display rotation {stream.rotation}°)")
    if geo.scaled:
        notes.append(f"scaled {stream.width}x{stream.height} -> {geo.width}x{geo.height}")
    if geo.fps_filter is not None and geo.fps_in is not None and geo.fps_out is not None:
        notes.append(f"frame rate capped {geo.fps_in:.4g} -> {geo.fps_out:.4g}")
    if tonemap:
        notes.append(f"tone-mapped HDR {stream.hdr} to SDR BT.709")
    elif stream.hdr is not None:
        notes.append(f"HDR {stream.hdr} kept (no mastering metadata written)")
    if stream.bit_depth > 8 and not ten_bit:
        notes.append(f"{stream.bit_depth}-bit -> 8-bit")

    pre_input: list[str] = []
    full_gpu = False
    if backend == "nvenc":
        full_gpu, why = _full_gpu_ok(stream, tonemap, gpu_tonemap, nvdec_codecs)
        if why:
            notes.append(f"NVENC with CPU filters: {why}")

    parts: list[str] = []
    if full_gpu:
        pre_input = ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]
        if stream.codec == "av1":
            # Debian's 5.1 prefers libdav1d, which has no hwaccel: frames would stay on the CPU
            # and fail at scale_cuda. The native decoder is the one NVDEC hooks into.
            pre_input += ["-c:v", "av1"]
        gpu_fmt = "p010" if ten_bit else "nv12"
        if tonemap:
            parts.append(f"scale_cuda=w={geo.width}:h={geo.height}")
            parts.append("tonemap_cuda=format=nv12:p=bt709:t=bt709:m=bt709:tonemap=hable:desat=0")
            notes.append("GPU tone-mapping with tonemap_cuda (needs jellyfin-ffmpeg)")
        else:
            parts.append(f"scale_cuda=w={geo.width}:h={geo.height}:format={gpu_fmt}")
        parts.append("setsar=1")
        if geo.fps_filter:
            parts.append(f"fps={geo.fps_filter}")
    else:
        if stream.interlaced:
            parts.append(DEINTERLACE_FILTER)
        matrix = not tonemap and _source_is_601(stream)
        if geo.scaled or matrix:
            scale = f"scale=w={geo.width}:h={geo.height}"
            if matrix:
                scale += ":in_color_matrix=bt601:out_color_matrix=bt709"
                notes.append("colour matrix BT.601 -> BT.709")
            parts += [scale, "setsar=1"]
        if geo.fps_filter:
            parts.append(f"fps={geo.fps_filter}")
        if tonemap:
            parts.append(_tonemap_chain(stream))
        if backend == "nvenc":
            parts.append("format=p010le" if ten_bit else "format=yuv420p")
        else:
            parts.append("format=yuv420p10le" if ten_bit else "format=yuv420p")
    chain = ",".join(parts)

    fps_out = geo.fps_out or 25.0
    gop = max(1, round(target.gop_seconds * fps_out))
    # x264 clamps keyint_min to keyint/2+1; one second lets scene cuts get their own IDR.
    keyint_min = max(1, min(round(fps_out), gop // 2 + 1))
    maxrate = f"{target.max_bitrate_kbps}k"
    bufsize_kbps = target.effective_bufsize_kbps
    if hevc:
        # HEVC Main tier's coded-picture buffer equals its MaxBR (level 5.1: 40,000 kbit); the
        # default 2 x maxrate would exceed it, and a receiver may underflow.
        cpb = HEVC_LEVELS[target.level].max_br_kbps
        if bufsize_kbps > cpb:
            bufsize_kbps = cpb
            notes.append(f"VBV buffer capped at {cpb}k (HEVC level {target.level} Main tier)")
    bufsize = f"{bufsize_kbps}k"
    encoder: Encoder
    args: list[str] = ["-filter:v", chain]
    if backend == "nvenc":
        encoder = "hevc_nvenc" if hevc else "h264_nvenc"
        args += ["-c:v", encoder, "-preset", target.nvenc_preset, "-tune", "hq"]
        args += ["-profile:v", target.profile, "-level:v", target.level]
        if hevc:
            args += ["-tier", "main"]
        args += ["-rc", "vbr"]
        if target.quality:
            # Constant quality: -cq with VBR; -b:v 0 clears h264_nvenc's 2M default average
            # so only -cq and the -maxrate cap steer the rate.
            args += ["-cq", str(target.quality), "-b:v", "0"]
        elif target.quality == 0:
            # NVENC reads -cq 0 as "automatic", not lossless as x264's -crf 0: say so and let
            # the driver choose, still capped by -maxrate.
            args += ["-b:v", "0"]
            notes.append("quality 0: NVENC chooses the quality (automatic), capped at maxrate")
        else:
            args += ["-b:v", f"{target.bitrate_kbps}k"]
        args += ["-maxrate", maxrate, "-bufsize", bufsize]
        args += ["-spatial-aq", "1", "-temporal-aq", "1", "-rc-lookahead", "20"]
        # Baseline has no B-frames: asking NVENC for 3 contradicts the profile it writes.
        args += ["-bf", "0" if target.profile == "baseline" else "3"]
    else:
        encoder = "libx265" if hevc else "libx264"
        args += ["-c:v", encoder, "-preset", target.cpu_preset]
        if hevc:
            args += ["-profile:v", target.profile]
            args += ["-x265-params", f"level-idc={target.level}:log-level=error"]
        else:
            args += ["-profile:v", target.profile, "-level:v", target.level]
        if target.quality is not None:
            args += ["-crf", str(target.quality)]
        else:
            args += ["-b:v", f"{target.bitrate_kbps}k"]
        args += ["-maxrate", maxrate, "-bufsize", bufsize]
    args += ["-g", str(gop), "-keyint_min", str(keyint_min)]
    primaries, transfer, matrix_tag = _color_tags(stream, target)
    if full_gpu and not tonemap and _source_is_601(stream):
        # scale_cuda keeps the BT.601 matrix: tag it honestly rather than claim BT.709.
        primaries, transfer, matrix_tag = ("smpte170m", "smpte170m", "smpte170m")
        notes.append("colour kept BT.601 (tagged smpte170m)")
    args += ["-color_primaries", primaries, "-color_trc", transfer, "-colorspace", matrix_tag]
    if hevc:
        args += ["-tag:v", "hvc1"]
    return encoder, pre_input, chain, args


def _audio_args(audio: Sequence[AudioOut], profile: Profile) -> list[str]:
    args: list[str] = []
    for n, track in enumerate(audio):
        if track.action == "copy":
            args += [f"-c:a:{n}", "copy"]
        else:
            args += [f"-c:a:{n}", "aac", f"-ac:a:{n}", str(track.channels)]
            args += [f"-b:a:{n}", f"{profile.audio.bitrate_kbps}k"]
            if track.sample_rate is not None and track.sample_rate > MAX_AAC_SAMPLE_RATE:
                args += [f"-ar:a:{n}", str(MAX_AAC_SAMPLE_RATE)]
        if track.language:
            args += [f"-metadata:s:a:{n}", f"language={track.language}"]
        args += [f"-disposition:a:{n}", "default" if track.default else "0"]
    return args


def _subtitle_args(subs: Iterable[SubtitleOut]) -> list[str]:
    args: list[str] = []
    for n, sub in enumerate(subs):
        args += [f"-c:s:{n}", "mov_text"]
        if sub.language:
            args += [f"-metadata:s:s:{n}", f"language={sub.language}"]
        flags = [f for f, on in (("default", sub.default), ("forced", sub.forced)) if on]
        args += [f"-disposition:s:{n}", "+".join(flags) or "0"]
    return args


def build_sidecar_commands(
    info: MediaInfo,
    plan_or_sidecars: EncodePlan | Sequence[Sidecar],
    output_stem: str,
    *,
    ffmpeg: str = "ffmpeg",
) -> list[tuple[str, ...]]:
    """One ffmpeg argv per bitmap subtitle sidecar: ``{output_stem}{suffix}``, stream copied.

    Kept separate from the main command so a sidecar failure never loses the encode, and so
    the caller can write sidecars only after the MP4 validated.
    """
    sidecars = (
        plan_or_sidecars.sidecars if isinstance(plan_or_sidecars, EncodePlan) else plan_or_sidecars
    )
    commands: list[tuple[str, ...]] = []
    for side in sidecars:
        commands.append(
            (
                ffmpeg,
                "-nostdin",
                "-y",
                "-hide_banner",
                "-v",
                "error",
                "-i",
                _file_url(info.path),
                "-map",
                f"0:{side.index}",
                "-c:s",
                "copy",
                "-f",
                side.format,
                _file_url(f"{output_stem}{side.suffix}"),
            )
        )
    return commands
