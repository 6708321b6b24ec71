"""Turn a failed ffmpeg run (stderr and exit code) into a kind and a sentence to act on.

ffmpeg's own messages are terse and often misleading on their own: a missing NVIDIA driver ends
with the generic "Error initializing output stream ... maybe incorrect parameters such as
bit_rate", which sends people looking at the wrong thing. The worker needs more than words,
too: an NVENC problem justifies retrying the job on the CPU, a corrupt source must not be
retried at all, and a full disk should pause the queue. So every failure gets a ``FailureKind``
the worker can branch on plus a ``reason`` written for the operator.

This module is pure (strings in, a value out) so every pattern is covered by a table test. The
patterns are checked in a fixed order, most specific first: the same stderr usually holds both
the real cause (``Cannot load libcuda.so.1``) and ffmpeg's generic epilogue (``Error
initializing output stream``, ``Conversion failed!``), and only the cause is useful.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from enum import StrEnum


class FailureKind(StrEnum):
    """Why a run failed, in the granularity the worker needs to decide what happens next."""

    nvenc_unavailable = "nvenc_unavailable"  # no driver / no GPU / ffmpeg built without NVENC
    nvenc_driver_too_old = "nvenc_driver_too_old"
    nvenc_unsupported_device = "nvenc_unsupported_device"  # GPU without NVENC (H100, A100...)
    nvenc_session_limit = "nvenc_session_limit"  # consumer-card session cap or VRAM full
    nvenc_option = "nvenc_option"  # the card rejects a setting (b_ref_mode, 10 bit, size...)
    gpu_decode = "gpu_decode"  # NVDEC unusable (no libnvcuvid) or CPU frames reached CUDA filters
    disk_full = "disk_full"
    decode_error = "decode_error"  # the source is corrupt or not media
    input_missing = "input_missing"
    permission = "permission"
    encoder_error = "encoder_error"  # ffmpeg's generic "could not set up the output"
    killed = "killed"  # ended by a signal nobody in castui sent on purpose
    stalled = "stalled"  # set by the runner: no progress for too long
    timed_out = "timed_out"  # set by the runner: overall time limit
    cancelled = "cancelled"  # set by the runner: an operator or shutdown asked
    unknown = "unknown"


_NVENC_KINDS = frozenset(
    {
        FailureKind.nvenc_unavailable,
        FailureKind.nvenc_driver_too_old,
        FailureKind.nvenc_unsupported_device,
        FailureKind.nvenc_session_limit,
        FailureKind.nvenc_option,
    }
)


@dataclass(frozen=True)
class Failure:
    """A classified failure: ``kind`` for the code, ``reason`` for the person.

    ``detail`` is the ffmpeg line the classification rests on (empty when there is none), kept
    apart from ``reason`` so the sentence stays readable while the evidence is still shown in
    the job's log.
    """

    kind: FailureKind
    reason: str
    detail: str = ""

    @property
    def nvenc_related(self) -> bool:
        """True when the GPU encoder is the problem, so the same job may succeed on the CPU."""
        return self.kind in _NVENC_KINDS

    @property
    def gpu_decode_related(self) -> bool:
        """True when GPU *decoding* (or a CUDA filter fed CPU frames) failed: the same job may
        succeed with CPU decoding and the GPU encoder, then on the CPU encoder.

        A filter-format error counts only because castui's CPU plans never use a CUDA filter:
        the caller retries it only for a plan that decoded on the GPU (``EncodePlan.hwaccel``).
        """
        return self.kind is FailureKind.gpu_decode


@dataclass(frozen=True)
class _Rule:
    kind: FailureKind
    pattern: re.Pattern[str]
    reason: str  # may contain {path}: the text before ": <error>" on the matching line


def _rule(kind: FailureKind, pattern: str, reason: str) -> _Rule:
    return _Rule(kind, re.compile(pattern, re.IGNORECASE), reason)


_SESSION_ADVICE = (
    "NVENC session limit reached (consumer GPUs allow 3-8 concurrent encodes) or GPU memory is "
    "full: lower max_concurrent_jobs"
)

_CPU_RETRY = "; castui retries on the CPU when encoder is auto"

#: Checked in order; the first rule whose pattern matches any stderr line wins. NVENC and CUDA
#: causes come first because their stderr also contains the generic encoder epilogue, and
#: among them the specific capability reasons (which ffmpeg 5.1 logs at *warning* level, hence
#: ``-v warning``) come before the summary lines printed after them ("No capable devices
#: found", "Provided device doesn't support required NVENC features"). Every pattern is a line
#: ffmpeg 5.1 really prints (``strings`` of libavcodec/libavutil/libavfilter and the ffmpeg
#: binary, or a real run): tests/test_failures.py quotes them. File-system errors come before
#: decode errors because ffmpeg reports a write error as a muxing problem.
_RULES: tuple[_Rule, ...] = (
    _rule(
        FailureKind.nvenc_driver_too_old,
        r"Driver does not support the required nvenc API version",
        "NVENC unavailable: the NVIDIA driver is too old for this ffmpeg's NVENC API: update the "
        "driver (or use an ffmpeg built against an older NVENC SDK)",
    ),
    _rule(
        FailureKind.nvenc_unavailable,
        r"Cannot load libcuda\.so|Could not dynamically load CUDA",
        "NVENC unavailable: the NVIDIA driver library libcuda.so.1 could not be loaded (no "
        "NVIDIA driver, or the container lacks GPU access)",
    ),
    _rule(
        FailureKind.nvenc_unavailable,
        r"Cannot load libnvidia-encode\.so",
        "NVENC unavailable: libnvidia-encode.so.1 could not be loaded (the container was "
        "started without the 'video' capability: set NVIDIA_DRIVER_CAPABILITIES="
        "compute,video,utility; or the driver install lacks its encode library)",
    ),
    _rule(
        FailureKind.nvenc_unavailable,
        r"No NVENC capable devices found|No CUDA capable devices found|CUDA_ERROR_NO_DEVICE"
        r"|no CUDA-capable device",
        "NVENC unavailable: no NVIDIA GPU with an NVENC encoder was found",
    ),
    _rule(
        FailureKind.nvenc_unavailable,
        r"Unknown encoder '\w+_nvenc'|Encoder \(?\w+_nvenc\)? not found",
        "NVENC unavailable: this ffmpeg was built without NVENC support: install an ffmpeg "
        "build with --enable-nvenc (e.g. jellyfin-ffmpeg) or use the CPU backend",
    ),
    # ffmpeg prints this hint after *any* failure to load the NVENC library, so it only decides
    # when none of the more specific lines above is present.
    _rule(
        FailureKind.nvenc_driver_too_old,
        r"minimum required Nvidia driver|CUDA_ERROR_INSUFFICIENT_DRIVER",
        "NVENC unavailable: the NVIDIA driver is too old for this ffmpeg's NVENC API: update the "
        "driver (or use an ffmpeg built against an older NVENC SDK)",
    ),
    _rule(
        FailureKind.nvenc_session_limit,
        r"OpenEncodeSessionEx failed: (out of memory|incompatible client key)"
        r"|CUDA_ERROR_OUT_OF_MEMORY",
        _SESSION_ADVICE,
    ),
    _rule(
        FailureKind.nvenc_unsupported_device,
        r"OpenEncodeSessionEx failed: unsupported device|Codec not supported",
        "NVENC unavailable: this GPU has no NVENC encoder for this codec (data-centre GPUs such "
        "as the H100 have none): use the CPU backend" + _CPU_RETRY,
    ),
    _rule(
        FailureKind.nvenc_option,
        r"10 bit encode not supported",
        "NVENC on this GPU cannot encode 10-bit (main10 needs Pascal or later for HEVC): use an "
        "8-bit profile or the CPU backend" + _CPU_RETRY,
    ),
    _rule(
        FailureKind.nvenc_option,
        r"Max B-frames \d+ exceed \d+|B frames as references are not supported"
        r"|Each B frame as reference is not supported",
        "NVENC on this GPU does not support these B-frame settings (HEVC B-frames need Turing or "
        "later): use the CPU backend" + _CPU_RETRY,
    ),
    _rule(
        FailureKind.nvenc_option,
        r"Width \d+ exceeds \d+|Height \d+ exceeds \d+",
        "NVENC on this GPU cannot encode a frame this large: use a smaller profile or the CPU "
        "backend" + _CPU_RETRY,
    ),
    _rule(
        FailureKind.nvenc_option,
        r"YUV444P not supported|Lossless encoding not supported|Temporal AQ not supported"
        r"|Weighted Prediction not supported|RC lookahead not supported"
        r"|Interlaced encoding is not supported|Requested GPU \d+, but only \d+ GPUs",
        "NVENC rejected an encode setting this GPU does not support (look-ahead, AQ, 4:4:4 or "
        "the GPU index): retry without it or use the CPU backend" + _CPU_RETRY,
    ),
    # Printed (error level) after the warning-level reasons above when every GPU failed the
    # capability check: alone, it means this GPU has no NVENC for the codec at all.
    _rule(
        FailureKind.nvenc_unsupported_device,
        r"No capable devices found",
        "NVENC unavailable: no GPU here has an NVENC encoder for this codec (data-centre GPUs "
        "such as the H100 have none): use the CPU backend" + _CPU_RETRY,
    ),
    # The GPU-frame path's summary: the reason was logged at warning level (see above).
    _rule(
        FailureKind.nvenc_option,
        r"Provided device doesn't support required NVENC features",
        "NVENC on this GPU lacks a feature this encode needs (10-bit, B-frames or size; ffmpeg "
        "logs which at warning level): use the CPU backend" + _CPU_RETRY,
    ),
    _rule(
        FailureKind.nvenc_option,
        r"EncodePicture failed|InitializeEncoder failed|OpenEncodeSessionEx failed"
        r"|Failed to create nvenc instance|failed to reconfigure nvenc",
        "NVENC failed while opening or running the encoder (see the ffmpeg message): use the "
        "CPU backend" + _CPU_RETRY,
    ),
    _rule(
        FailureKind.gpu_decode,
        r"Cannot load libnvcuvid\.so|Failed loading nvcuvid",
        "GPU decoding unavailable: libnvcuvid.so.1 (NVDEC) could not be loaded (the container "
        "lacks the 'video' capability, or the driver install lacks it); castui retries with CPU "
        "decoding",
    ),
    _rule(
        FailureKind.disk_full,
        r"No space left on device|\bENOSPC\b",
        "disk full while writing the output: free space on the output/temp disk",
    ),
    _rule(
        FailureKind.disk_full,
        r"Disk quota exceeded|\bEDQUOT\b",
        "disk quota exceeded while writing the output: free space or raise the quota",
    ),
    _rule(
        FailureKind.permission,
        r"Permission denied|Read-only file system|Operation not permitted",
        "permission denied on {path}: check that castui's user may read the source and write "
        "the output folder (and that the disk is not mounted read-only)",
    ),
    _rule(
        FailureKind.input_missing,
        r"No such file or directory",
        "file not found: {path} (the source was moved or deleted since the scan, or the output "
        "folder is missing)",
    ),
    _rule(
        FailureKind.decode_error,
        r"Invalid data found when processing input|EBML header parsing failed"
        r"|moov atom not found|Error while decoding stream|missing picture in access unit"
        r"|Invalid NAL unit size|Error splitting the input into NAL units"
        r"|error while decoding MB|Header missing|\bcorrupt|Packet mismatch"
        r"|Invalid frame dimensions|partial file",
        "the source is damaged or not a media file ffmpeg can read (decode error): re-rip or "
        "re-download it; converting again will not help",
    ),
    # Frames in one memory reached a filter that takes the other: with castui's plans that is
    # a GPU-decode plan whose stream ffmpeg decoded on the CPU (AV1 without -c:v av1, a codec or
    # size this NVDEC lacks), so CPU frames met scale_cuda. Before the generic epilogue.
    _rule(
        FailureKind.gpu_decode,
        r"Impossible to convert between the formats supported by the filter"
        r"|Error reinitializing filters"
        r"|hwaccel requested for input stream .* but cannot be initialized",
        "the GPU did not decode this stream (NVDEC lacks this codec, profile or size), so its "
        "frames could not reach the CUDA filters; castui retries with CPU decoding",
    ),
)

#: An NVENC encoder context prefix such as ``[h264_nvenc @ 0x55c6...]``: any otherwise
#: unrecognised error from NVENC itself is still an NVENC problem, worth a CPU retry. Checked
#: before the generic epilogue (which would otherwise win: it is in every failed run's stderr).
_NVENC_LINE = re.compile(r"\[(h264|hevc|av1)_nvenc @", re.IGNORECASE)

#: ffmpeg's generic epilogue: checked last, after the NVENC-prefix catch-all.
_GENERIC = _rule(
    FailureKind.encoder_error,
    r"Error initializing output stream|Error while opening encoder|Unknown encoder"
    r"|Could not write header|Error initializing filter|Conversion failed!",
    "ffmpeg could not set up the output encoder or muxer: see the ffmpeg message in the log",
)


_PATH_BEFORE_ERROR = re.compile(r"^(?:\[[^\]]*\]\s*)?(?P<path>.+?):\s+[^:]+$")

_SIGNAL_HINTS: dict[int, str] = {
    signal.SIGKILL: " (often the kernel's out-of-memory killer, or an operator)",
    signal.SIGSEGV: " (ffmpeg crashed: a bug or a corrupt source)",
    signal.SIGBUS: " (ffmpeg crashed: often a file truncated while it was read)",
}


def _path_on(line: str) -> str:
    """The file name ffmpeg put before ``: <error>``, or a neutral phrase when absent."""
    match = _PATH_BEFORE_ERROR.match(line.strip())
    if match is None or match.group("path").lower().startswith("error"):
        return "a file ffmpeg needed"
    return match.group("path").strip()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _killed(exit_code: int | None) -> Failure:
    if exit_code is None:
        return Failure(FailureKind.killed, "ffmpeg ended without an exit status (killed or lost)")
    number = -exit_code
    hint = _SIGNAL_HINTS.get(number, "")
    return Failure(FailureKind.killed, f"ffmpeg was killed by {_signal_name(number)}{hint}")


def classify_failure(stderr: str, exit_code: int | None) -> Failure:
    """Classify one ffmpeg run from its stderr text and exit code.

    A missing or negative exit code means a signal ended the process; that is reported as
    ``killed`` whatever stderr says, because the cause is outside ffmpeg (the runner reports
    its own stops, cancel/stall/timeout, itself and never calls this for them). Otherwise the
    first matching rule wins (see ``_RULES`` for the order); an exit code of 0 with no known
    error line gives ``unknown``, as does any unrecognised stderr, with ffmpeg's last line as
    the reason so the operator still sees something concrete.
    """
    if exit_code is None or exit_code < 0:
        return _killed(exit_code)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for rule in _RULES:
        for line in lines:
            if rule.pattern.search(line):
                reason = rule.reason
                if "{path}" in reason:
                    reason = reason.format(path=_path_on(line))
                return Failure(rule.kind, reason, line)
    for line in lines:
        if _NVENC_LINE.search(line):
            return Failure(
                FailureKind.nvenc_option,
                "NVENC rejected the encode (see the ffmpeg message): use the CPU backend"
                + _CPU_RETRY,
                line,
            )
    for line in lines:
        if _GENERIC.pattern.search(line):
            return Failure(_GENERIC.kind, _GENERIC.reason, line)
    if not lines:
        return Failure(
            FailureKind.unknown,
            f"ffmpeg failed with exit code {exit_code} and printed no error message",
        )
    last = lines[-1]
    return Failure(FailureKind.unknown, f"ffmpeg failed (exit code {exit_code}): {last}", last)
