"""Failure classification (table-driven over real ffmpeg stderr), backend choice, NVENC probe."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest

from castui_core.ffmpeg.failures import Failure, FailureKind, classify_failure
from castui_core.ffmpeg.nvenc import NvencStatus, choose_backend, detect_nvenc

FAKE = Path(__file__).with_name("fake_ffmpeg.py")

EPILOGUE = (
    "Error initializing output stream 0:0 -- Error while opening encoder for output stream "
    "#0:0 - maybe incorrect parameters such as bit_rate, rate, width or height\n"
    "Conversion failed!\n"
)

K = FailureKind

# (id, stderr, kind, words the reason must contain)
CASES: list[tuple[str, str, FailureKind, str]] = [
    (
        "libcuda",
        "[h264_nvenc @ 0x55c670b2a800] Cannot load libcuda.so.1\n" + EPILOGUE,
        K.nvenc_unavailable,
        "libcuda.so.1",
    ),
    (
        "libnvidia-encode",
        "[hevc_nvenc @ 0x5600] Cannot load libnvidia-encode.so.1\n"
        "[hevc_nvenc @ 0x5600] The minimum required Nvidia driver for nvenc is 520.56.06 "
        "or newer\n" + EPILOGUE,
        K.nvenc_unavailable,  # ffmpeg prints the driver hint after any NVENC load failure
        "NVIDIA_DRIVER_CAPABILITIES",
    ),
    (
        "driver-hint-alone",
        "[h264_nvenc @ 0x5600] The minimum required Nvidia driver for nvenc is 520.56.06 or "
        "newer\n" + EPILOGUE,
        K.nvenc_driver_too_old,
        "update the driver",
    ),
    (
        "no-nvenc-devices",
        "[h264_nvenc @ 0x5600] No NVENC capable devices found\n" + EPILOGUE,
        K.nvenc_unavailable,
        "no NVIDIA GPU",
    ),
    (
        "cuda-no-device",
        "[AVHWDeviceContext @ 0x55] cu->cuInit(0) failed -> CUDA_ERROR_NO_DEVICE: no "
        "CUDA-capable device is detected\n"
        "Device creation failed: -542398533.\n",
        K.nvenc_unavailable,
        "NVENC unavailable",
    ),
    (
        "unknown-encoder",
        "Unknown encoder 'h264_nvenc'\n",
        K.nvenc_unavailable,
        "built without NVENC",
    ),
    (
        "driver-too-old",
        "[h264_nvenc @ 0x562b] Driver does not support the required nvenc API version. "
        "Required: 12.0 Found: 11.1\n"
        "[h264_nvenc @ 0x562b] The minimum required Nvidia driver for nvenc is 520.56.06 or "
        "newer\n" + EPILOGUE,
        K.nvenc_driver_too_old,
        "too old",
    ),
    (
        "unsupported-device",
        "[h264_nvenc @ 0x55f0] OpenEncodeSessionEx failed: unsupported device (2): "
        "(no details)\n" + EPILOGUE,
        K.nvenc_unsupported_device,
        "no NVENC encoder",
    ),
    (
        "session-limit",
        "[h264_nvenc @ 0x5581] OpenEncodeSessionEx failed: out of memory (10): (no details)\n"
        "[h264_nvenc @ 0x5581] No capable devices found\n" + EPILOGUE,
        K.nvenc_session_limit,
        "max_concurrent_jobs",
    ),
    (
        "client-key",
        "[hevc_nvenc @ 0x5581] OpenEncodeSessionEx failed: incompatible client key (21): "
        "(no details)\n" + EPILOGUE,
        K.nvenc_session_limit,
        "3-8 concurrent encodes",
    ),
    (
        "b-ref-mode",
        "[h264_nvenc @ 0x5581] B frames as references are not supported\n" + EPILOGUE,
        K.nvenc_option,
        "setting",
    ),
    (
        "no-capable-devices",
        "[hevc_nvenc @ 0x5581] 10 bit encode not supported\n"
        "[hevc_nvenc @ 0x5581] No capable devices found\n" + EPILOGUE,
        K.nvenc_option,
        "CPU backend",
    ),
    (
        "nvenc-other",
        "[h264_nvenc @ 0x5581] EncodePicture failed!: generic error (20): (no details)\n"
        "Video encoding failed\n",
        K.nvenc_option,
        "NVENC failed while",
    ),
    (
        "disk-full",
        "[mp4 @ 0x55d4] Error writing trailer: No space left on device\n"
        "av_interleaved_write_frame(): No space left on device\n"
        "Error writing trailer of /media/out/.castui-tmp/Movie.mp4: No space left on device\n"
        + EPILOGUE,
        K.disk_full,
        "disk full while writing the output",
    ),
    ("enospc", "write error: ENOSPC\n", K.disk_full, "disk full"),
    ("quota", "Movie.mp4: Disk quota exceeded\n", K.disk_full, "quota"),
    (
        "garbage-input",
        "[matroska,webm @ 0x5637] EBML header parsing failed\n"
        "/media/in/Movie.mkv: Invalid data found when processing input\n",
        K.decode_error,
        "damaged",
    ),
    (
        "h264-corrupt",
        "[h264 @ 0x5612] Invalid NAL unit size (1937 > 1220).\n"
        "[h264 @ 0x5612] Error splitting the input into NAL units.\n"
        "Error while decoding stream #0:0: Invalid data found when processing input\n",
        K.decode_error,
        "will not help",
    ),
    (
        "missing-picture",
        "[h264 @ 0x5612] missing picture in access unit with size 52\n[h264 @ 0x5612] no frame!\n",
        K.decode_error,
        "decode error",
    ),
    (
        "corrupt-frame",
        "[hevc @ 0x5612] corrupt decoded frame in stream 0\n",
        K.decode_error,
        "damaged",
    ),
    (
        "moov",
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] moov atom not found\n"
        "/media/in/a.mp4: Invalid data found when processing input\n",
        K.decode_error,
        "damaged",
    ),
    (
        "input-missing",
        "/media/in/Gone.mkv: No such file or directory\n",
        K.input_missing,
        "/media/in/Gone.mkv",
    ),
    (
        "input-missing-ffmpeg6",
        "[in#0 @ 0x55] Error opening input: No such file or directory\n"
        "Error opening input file /media/in/Gone.mkv.\n",
        K.input_missing,
        "file not found",
    ),
    (
        "permission",
        "/media/in/Locked.mkv: Permission denied\n",
        K.permission,
        "/media/in/Locked.mkv",
    ),
    (
        "read-only",
        "[mp4 @ 0x55] /media/out/x.mp4: Read-only file system\n",
        K.permission,
        "read-only",
    ),
    # -- ffmpeg 5.1's own lines (strings of libavcodec.so.59 / libavutil.so.57 / libavfilter.so.8
    # and the ffmpeg binary, or a real run on this machine), each with the epilogue that
    # follows it in a real failure, so the specific line must beat the generic one.
    (
        "5.1-10bit-warning-then-summary",
        "[hevc_nvenc @ 0x55] 10 bit encode not supported\n"
        "[hevc_nvenc @ 0x55] Provided device doesn't support required NVENC features\n" + EPILOGUE,
        K.nvenc_option,
        "10-bit",
    ),
    (
        "5.1-required-features-alone",  # what -v error shows on the GPU-frame path
        "[hevc_nvenc @ 0x55] Provided device doesn't support required NVENC features\n" + EPILOGUE,
        K.nvenc_option,
        "retries on the CPU",
    ),
    (
        "5.1-max-b-frames",
        "[hevc_nvenc @ 0x55] Max B-frames 3 exceed 0\n"
        "[hevc_nvenc @ 0x55] No capable devices found\n" + EPILOGUE,
        K.nvenc_option,
        "B-frame",
    ),
    (
        "5.1-each-b-ref",
        "[hevc_nvenc @ 0x55] Each B frame as reference is not supported\n"
        "[hevc_nvenc @ 0x55] No capable devices found\n" + EPILOGUE,
        K.nvenc_option,
        "B-frame",
    ),
    (
        "5.1-codec-not-supported",
        "[hevc_nvenc @ 0x55] Codec not supported\n"
        "[hevc_nvenc @ 0x55] No capable devices found\n" + EPILOGUE,
        K.nvenc_unsupported_device,
        "no NVENC encoder",
    ),
    (
        "5.1-no-capable-devices-alone",  # a GPU without NVENC: not an unsupported *setting*
        "[h264_nvenc @ 0x55] No capable devices found\n" + EPILOGUE,
        K.nvenc_unsupported_device,
        "no GPU here has an NVENC encoder",
    ),
    (
        "5.1-no-cuda-devices",  # no hyphen, as libavcodec's nvenc.c prints it
        "[h264_nvenc @ 0x55] No CUDA capable devices found\n" + EPILOGUE,
        K.nvenc_unavailable,
        "no NVIDIA GPU",
    ),
    (
        "5.1-width-exceeds",
        "[h264_nvenc @ 0x55] Width 8192 exceeds 4096\n"
        "[h264_nvenc @ 0x55] No capable devices found\n" + EPILOGUE,
        K.nvenc_option,
        "this large",
    ),
    (
        "5.1-rc-lookahead",
        "[h264_nvenc @ 0x55] RC lookahead not supported\n"
        "[h264_nvenc @ 0x55] No capable devices found\n" + EPILOGUE,
        K.nvenc_option,
        "look-ahead",
    ),
    (
        "5.1-encodepicture-with-conversion-failed",  # the generic line must not win
        "[h264_nvenc @ 0x55] EncodePicture failed!: generic error (20): (no details)\n"
        "Video encoding failed\nConversion failed!\n",
        K.nvenc_option,
        "retries on the CPU",
    ),
    (
        "5.1-unlisted-nvenc-line-beats-epilogue",
        "[h264_nvenc @ 0x55] something new in a later driver\n" + EPILOGUE,
        K.nvenc_option,
        "NVENC rejected",
    ),
    (
        "5.1-libnvcuvid",
        "[AVHWDeviceContext @ 0x55] Cannot load libnvcuvid.so.1\n"
        "[h264 @ 0x55] Failed loading nvcuvid.\n" + EPILOGUE,
        K.gpu_decode,
        "CPU decoding",
    ),
    (
        # A real run of this machine's ffmpeg 5.1 (no driver): -hwaccel cuda, -v warning. The
        # "Operation not permitted" line must not make it a permission problem.
        "5.1-real-hwaccel-no-driver",
        "[AVHWDeviceContext @ 0x558e86e7e9c0] Cannot load libcuda.so.1\n"
        "[AVHWDeviceContext @ 0x558e86e7e9c0] Could not dynamically load CUDA\n"
        "Device creation failed: -1.\n"
        "[rawvideo @ 0x558e86e7a8c0] No device available for decoder: device type cuda needed "
        "for codec rawvideo.\n"
        "Device setup failed for decoder on input stream #0:0 : Operation not permitted\n",
        K.nvenc_unavailable,
        "libcuda.so.1",
    ),
    (
        # A real run (this machine): CPU frames reaching scale_cuda; what a GPU-decode plan
        # prints when NVDEC did not decode the stream.
        "5.1-real-cpu-frames-into-cuda-filter",
        "Impossible to convert between the formats supported by the filter 'graph 0 input "
        "from stream 0:0' and the filter 'auto_scale_0'\n"
        "Error reinitializing filters!\n"
        "Failed to inject frame into filter network: Function not implemented\n"
        "Error while processing the decoded data for stream #0:0\n" + EPILOGUE,
        K.gpu_decode,
        "retries with CPU decoding",
    ),
    ("reinit-filters-alone", "Error reinitializing filters!\n", K.gpu_decode, "GPU"),
    ("encoder-generic", EPILOGUE, K.encoder_error, "encoder"),
    ("conversion-failed", "Conversion failed!\n", K.encoder_error, "output"),
    ("unknown-x264", "Unknown encoder 'libx264'\n", K.encoder_error, "encoder"),
    ("unknown", "something odd happened\n", K.unknown, "something odd happened"),
    ("empty", "", K.unknown, "no error message"),
]


@pytest.mark.parametrize(
    ("stderr", "kind", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_classify(stderr: str, kind: FailureKind, words: str) -> None:
    failure = classify_failure(stderr, 1)
    assert failure.kind is kind, failure
    assert words.lower() in failure.reason.lower()
    assert "\n" not in failure.reason


def test_libcuda_reason_exact() -> None:
    failure = classify_failure("[h264_nvenc @ 0x55] Cannot load libcuda.so.1\n" + EPILOGUE, 1)
    assert failure.reason == (
        "NVENC unavailable: the NVIDIA driver library libcuda.so.1 could not be loaded (no "
        "NVIDIA driver, or the container lacks GPU access)"
    )
    assert failure.detail == "[h264_nvenc @ 0x55] Cannot load libcuda.so.1"


def test_the_cause_wins_over_the_epilogue_whatever_the_line_order() -> None:
    stderr = EPILOGUE + "[h264_nvenc @ 0x55] OpenEncodeSessionEx failed: out of memory (10)\n"
    assert classify_failure(stderr, 1).kind is K.nvenc_session_limit


def test_disk_full_beats_decode_noise() -> None:
    stderr = "[h264 @ 0x1] error while decoding MB 3 4\n" * 3 + "x.mp4: No space left on device\n"
    assert classify_failure(stderr, 1).kind is K.disk_full


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (-9, "killed by SIGKILL"),
        (-15, "killed by SIGTERM"),
        (-11, "killed by SIGSEGV"),
        (-200, "killed by signal 200"),
        (None, "without an exit status"),
    ],
)
def test_signal_exit_is_killed(code: int | None, words: str) -> None:
    # stderr with an NVENC line must not turn a kill into an NVENC failure
    failure = classify_failure("[h264_nvenc @ 0x1] Cannot load libcuda.so.1\n", code)
    assert failure.kind is K.killed
    assert words in failure.reason
    assert not failure.nvenc_related


def test_exit_code_appears_in_unknown_reason() -> None:
    assert "exit code 187" in classify_failure("weird\n", 187).reason


@pytest.mark.parametrize("kind", list(FailureKind))
def test_nvenc_related(kind: FailureKind) -> None:
    assert Failure(kind, "r").nvenc_related is kind.value.startswith("nvenc_")
    assert Failure(kind, "r").gpu_decode_related is (kind is K.gpu_decode)


def test_every_kind_value_is_its_name() -> None:
    assert {k.value for k in FailureKind} == {k.name for k in FailureKind}
    assert len(FailureKind) == 16


def test_every_nvenc_pattern_is_a_string_ffmpeg_really_has() -> None:
    """Each NVENC/CUDA phrase the classifier keys on is in this machine's ffmpeg libraries
    (when they are the Debian 5.1 ones the table was built from)."""
    libs = [
        Path("/usr/lib/x86_64-linux-gnu/libavcodec.so.59"),
        Path("/usr/lib/x86_64-linux-gnu/libavutil.so.57"),
        Path("/usr/lib/x86_64-linux-gnu/libavfilter.so.8"),
    ]
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None or not all(lib.exists() for lib in libs):
        pytest.skip("not the ffmpeg 5.1 libraries the table was taken from")
    blob = b"".join(lib.read_bytes() for lib in libs) + Path(ffmpeg).read_bytes()
    for phrase in (
        b"10 bit encode not supported",
        b"Provided device doesn't support required NVENC features",
        b"Max B-frames %d exceed %d",
        b"Each B frame as reference is not supported",
        b"B frames as references are not supported",
        b"Codec not supported",
        b"No capable devices found",
        b"No CUDA capable devices found",
        b"EncodePicture failed!",
        b"RC lookahead not supported",
        b"Width %d exceeds %d",
        b"Failed loading nvcuvid.",
        b"libnvcuvid.so.1",
        b"Could not dynamically load CUDA",
        b"Impossible to convert between the formats supported by the filter",
        b"Error reinitializing filters!",
    ):
        assert phrase in blob, phrase


# -- choose_backend ------------------------------------------------------------------------

UP = NvencStatus(True, "h264_nvenc encoded a test frame")
DOWN = NvencStatus(False, "NVENC unavailable: libcuda.so.1 missing")


@pytest.mark.parametrize(
    ("preference", "status", "backend", "why"),
    [
        ("auto", UP, "nvenc", "auto: NVENC available"),
        (
            "auto",
            DOWN,
            "cpu",
            "auto: NVENC unavailable: libcuda.so.1 missing; using CPU (libx264)",
        ),
        ("auto", None, "cpu", "auto: NVENC was not probed: using CPU (libx264)"),
        ("cpu", UP, "cpu", "cpu requested: using CPU (libx264)"),
        ("cpu", None, "cpu", "cpu requested: using CPU (libx264)"),
        ("nvenc", UP, "nvenc", "nvenc requested"),
        ("nvenc", None, "nvenc", "nvenc requested"),
    ],
)
def test_choose_backend(
    preference: str, status: NvencStatus | None, backend: str, why: str
) -> None:
    assert choose_backend(preference, status) == (backend, why)  # type: ignore[arg-type]


def test_choose_backend_nvenc_forced_but_unavailable_keeps_nvenc_and_says_why() -> None:
    backend, why = choose_backend("nvenc", DOWN)
    assert backend == "nvenc"
    assert "libcuda.so.1 missing" in why
    assert "fail" in why


def test_choose_backend_hevc_names_x265() -> None:
    assert choose_backend("auto", DOWN, codec="hevc")[1].endswith("using CPU (libx265)")


# -- detect_nvenc --------------------------------------------------------------------------


def _wrapper(tmp_path: Path, mode: str) -> Path:
    """An executable that behaves like ffmpeg in the given fake mode (passes argv through)."""
    script = tmp_path / f"ffmpeg-{mode}"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" {mode} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


async def test_detect_nvenc_real_ffmpeg_without_gpu() -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    status = await detect_nvenc(ffmpeg)
    if status.available:  # pragma: no cover - only on a machine with a working NVIDIA GPU
        pytest.skip("this machine has working NVENC")
    assert "NVENC unavailable" in status.reason
    assert "libcuda" in status.reason


async def test_detect_nvenc_hevc_real_ffmpeg() -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    status = await detect_nvenc(ffmpeg, codec="hevc")
    if status.available:  # pragma: no cover
        pytest.skip("this machine has working NVENC")
    assert status.reason.startswith("NVENC unavailable")


async def test_detect_nvenc_fake_ok(tmp_path: Path) -> None:
    status = await detect_nvenc(_wrapper(tmp_path, "ok"))
    assert status == NvencStatus(True, "h264_nvenc encoded a test frame")


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("session-limit", "max_concurrent_jobs"),
        ("driver-old", "too old"),
        ("unsupported-device", "no NVENC encoder"),
        ("nvenc-missing", "libcuda.so.1"),
    ],
)
async def test_detect_nvenc_fake_failures(tmp_path: Path, mode: str, words: str) -> None:
    status = await detect_nvenc(_wrapper(tmp_path, mode))
    assert not status.available
    assert words in status.reason


async def test_detect_nvenc_hanging_probe_is_killed(tmp_path: Path) -> None:
    status = await detect_nvenc(_wrapper(tmp_path, "progress-then-hang"), timeout_s=0.5)
    assert not status.available
    assert "did not finish within 0.5 s" in status.reason


async def test_detect_nvenc_missing_binary(tmp_path: Path) -> None:
    status = await detect_nvenc(tmp_path / "no-ffmpeg-here")
    assert not status.available
    assert "could not be started" in status.reason
