"""Find out once, at start, whether this ffmpeg can encode on NVENC, and pick the backend.

Why a real one-frame encode instead of checking ``ffmpeg -encoders`` or NVML: an ffmpeg built
with NVENC lists ``h264_nvenc`` even with no driver, no GPU, a too-old driver, a GPU without
an encoder (H100/A100) or a container started without the ``video`` capability. Only opening
an encode session answers the question, and its stderr says which of those it is (classified
by ``classify_failure`` so the operator reads the same sentence here as in a failed job).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from castui_core.ffmpeg.failures import classify_failure
from castui_core.profiles import Profile, VideoTarget
from castui_core.subproc import run_bounded

NvencCodec = Literal["h264", "hevc"]
BackendChoice = Literal["cpu", "nvenc"]

_CPU_ENCODER: dict[NvencCodec, str] = {"h264": "libx264", "hevc": "libx265"}


@dataclass(frozen=True)
class NvencStatus:
    """Whether NVENC works here; ``reason`` says why not (or what was tested) in plain words."""

    available: bool
    reason: str


def probe_args(ffmpeg: Path | str, codec: NvencCodec = "h264") -> list[str]:
    """The capability probe: encode one tiny black frame with NVENC and throw it away."""
    return [
        str(ffmpeg),
        "-nostdin",
        "-hide_banner",
        "-v",
        "warning",  # NVENC's capability reasons are warnings (see COMMON_OPTIONS)
        "-f",
        "lavfi",
        "-i",
        "color=black:s=256x144:r=1",
        "-frames:v",
        "1",
        "-c:v",
        f"{codec}_nvenc",
        "-f",
        "null",
        "-",
    ]


async def detect_nvenc(
    ffmpeg: Path | str, *, codec: NvencCodec = "h264", timeout_s: float = 20.0
) -> NvencStatus:
    """Run the capability probe and report whether ``<codec>_nvenc`` can encode here.

    Never raises for an environment problem: an ffmpeg that cannot be started, hangs past
    ``timeout_s`` (it is killed and reaped) or fails gives ``available=False`` with the reason,
    because "no NVENC" is a normal answer on most machines. Only exit 0 means available.
    """
    args = probe_args(ffmpeg, codec)
    try:
        done = await run_bounded(args, timeout_s=timeout_s)
    except TimeoutError:
        return NvencStatus(
            False,
            f"the NVENC probe did not finish within {timeout_s:g} s (driver hung?): using it "
            "would risk stuck jobs",
        )
    except OSError as exc:
        return NvencStatus(False, f"ffmpeg could not be started ({ffmpeg}): {exc.strerror or exc}")
    if done.returncode == 0:
        return NvencStatus(True, f"{codec}_nvenc encoded a test frame")
    failure = classify_failure(done.stderr.decode("utf-8", errors="replace"), done.returncode)
    return NvencStatus(False, failure.reason)


def choose_backend(
    preference: Literal["auto", "nvenc", "cpu"],
    status: NvencStatus | None,
    *,
    codec: NvencCodec = "h264",
) -> tuple[BackendChoice, str]:
    """Pick the encode backend from the setting and the probe result, with a sentence why.

    ``auto`` uses NVENC only when the probe succeeded (``status`` None means it was not run,
    which counts as unavailable). An explicit ``nvenc`` is honoured even when the probe failed:
    the operator asked for it, and silently encoding on the CPU instead would hide a broken
    GPU setup; each job then fails with the classified NVENC reason, which is where a person
    sees it. ``cpu`` always uses the CPU.
    """
    cpu = _CPU_ENCODER[codec]
    if preference == "cpu":
        return "cpu", f"cpu requested: using CPU ({cpu})"
    if preference == "nvenc":
        if status is None or status.available:
            return "nvenc", "nvenc requested"
        return "nvenc", (
            f"nvenc requested although NVENC is unavailable ({status.reason}): jobs will fail "
            "until that is fixed or the backend is set to auto/cpu"
        )
    if status is None:
        return "cpu", f"auto: NVENC was not probed: using CPU ({cpu})"
    if status.available:
        return "nvenc", "auto: NVENC available"
    return "cpu", f"auto: {status.reason}; using CPU ({cpu})"


# --- GPU decoding (NVDEC) and the CUDA scaler, per source codec ----------------------------

#: A CPU encoder per source codec NVDEC may take, to write the probe's one-frame sample. AV1
#: uses SVT-AV1 (fast); the GPU side forces ffmpeg's native ``av1`` decoder, as plans do.
NVDEC_SAMPLE_ENCODERS: dict[str, tuple[str, ...]] = {
    "h264": ("-c:v", "libx264", "-preset", "ultrafast"),
    "hevc": ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"),
    "mpeg2video": ("-c:v", "mpeg2video"),
    "mpeg4": ("-c:v", "mpeg4"),
    "vp8": ("-c:v", "libvpx"),
    "vp9": ("-c:v", "libvpx-vp9"),
    "av1": ("-c:v", "libsvtav1", "-preset", "12"),
}


@dataclass(frozen=True)
class NvdecStatus:
    """Which source codecs this GPU decodes *and* hands to ``scale_cuda`` (``codecs``), and in
    plain words why each other one does not (``reasons``): the plan's full-GPU path needs both."""

    codecs: frozenset[str]
    reasons: dict[str, str]


def nvdec_sample_args(ffmpeg: Path | str, codec: str, sample: Path) -> list[str]:
    """Write a tiny one-frame sample of ``codec`` on the CPU (the input of the GPU probe)."""
    return [
        str(ffmpeg), "-nostdin", "-y", "-hide_banner", "-v", "error", "-f", "lavfi", "-i",
        "testsrc2=s=256x144:r=1", "-frames:v", "1", "-pix_fmt", "yuv420p",
        *NVDEC_SAMPLE_ENCODERS[codec], str(sample),
    ]  # fmt: skip


def nvdec_probe_args(ffmpeg: Path | str, codec: str, sample: Path) -> list[str]:
    """Decode the sample on the GPU and scale it with ``scale_cuda``'s ``format=`` exactly as a
    full-GPU plan does: a codec NVDEC skips fails here the way the job would (CPU frames into
    ``scale_cuda``), and an ffmpeg whose ``scale_cuda`` lacks ``format=`` (4.4) fails too."""
    forced = ["-c:v", "av1"] if codec == "av1" else []
    return [
        str(ffmpeg), "-nostdin", "-hide_banner", "-v", "warning",
        "-hwaccel", "cuda", "-hwaccel_output_format", "cuda", *forced, "-i", str(sample),
        "-frames:v", "1", "-vf", "scale_cuda=w=128:h=72:format=nv12", "-f", "null", "-",
    ]  # fmt: skip


_NVDEC_CACHE: dict[str, NvdecStatus] = {}


async def detect_nvdec(
    ffmpeg: Path | str,
    workdir: Path,
    *,
    codecs: tuple[str, ...] = tuple(NVDEC_SAMPLE_ENCODERS),
    timeout_s: float = 20.0,
) -> NvdecStatus:
    """Probe, once per process and ffmpeg, which source codecs decode on this GPU.

    Why a real decode: NVDEC support depends on the GPU generation (AV1 needs Ampere, VP9
    Pascal...), the driver and the container's capabilities, and ffmpeg silently decodes on
    the CPU when NVDEC cannot, which only fails later at ``scale_cuda``. Never raises: a codec
    whose sample cannot be made or whose probe fails is left out with the reason.
    """
    key = str(ffmpeg)
    if key in _NVDEC_CACHE:
        return _NVDEC_CACHE[key]
    ok: set[str] = set()
    reasons: dict[str, str] = {}
    for codec in codecs:
        sample = workdir / f"nvdec-probe-{codec}.mkv"
        try:
            made = await run_bounded(nvdec_sample_args(ffmpeg, codec, sample), timeout_s=timeout_s)
            if made.returncode != 0:
                reasons[codec] = f"no CPU encoder here to make a {codec} test sample"
                continue
            done = await run_bounded(nvdec_probe_args(ffmpeg, codec, sample), timeout_s=timeout_s)
        except TimeoutError:
            reasons[codec] = f"the NVDEC probe did not finish within {timeout_s:g} s"
            continue
        except OSError as exc:
            reasons[codec] = f"ffmpeg could not be started ({ffmpeg}): {exc.strerror or exc}"
            continue
        finally:
            sample.unlink(missing_ok=True)
        if done.returncode == 0:
            ok.add(codec)
        else:
            text = done.stderr.decode("utf-8", errors="replace")
            reasons[codec] = classify_failure(text, done.returncode).reason
    status = NvdecStatus(frozenset(ok), reasons)
    _NVDEC_CACHE[key] = status
    return status


# --- per-profile NVENC probe: the options castui will really use --------------------------


def profile_probe_args(ffmpeg: Path | str, target: VideoTarget) -> list[str]:
    """Encode a few tiny frames with the encoder options a job of this profile uses: the codec
    (h264/hevc_nvenc), profile and level, 10-bit input (p010) for main10, B-frames (HEVC
    B-frames need Turing or later; none for baseline) and the rate-control mode."""
    hevc = target.codec == "hevc"
    rate = ["-cq", str(target.quality), "-b:v", "0"] if target.quality else ["-b:v", "0"]
    return [
        str(ffmpeg), "-nostdin", "-hide_banner", "-v", "warning",
        "-f", "lavfi", "-i", "testsrc2=s=256x144:r=25", "-frames:v", "5",
        "-pix_fmt", "p010le" if target.profile == "main10" else "yuv420p",
        "-c:v", "hevc_nvenc" if hevc else "h264_nvenc", "-preset", target.nvenc_preset,
        "-profile:v", target.profile, "-level:v", target.level,
        *(["-tier", "main"] if hevc else []), "-rc", "vbr", *rate,
        "-bf", "0" if target.profile == "baseline" else "3", "-f", "null", "-",
    ]  # fmt: skip


_PROFILE_CACHE: dict[tuple[str, tuple[str, ...]], NvencStatus] = {}


async def detect_nvenc_for_profiles(
    ffmpeg: Path | str, profiles: Mapping[str, Profile], *, timeout_s: float = 20.0
) -> dict[str, NvencStatus]:
    """Whether NVENC can run each profile's encode here, remembered per process.

    One default h264_nvenc frame says little: a GPU may encode H.264 but not HEVC, 8-bit but
    not main10, or HEVC without B-frames. A profile whose probe fails is encoded on the CPU
    under ``encoder: auto`` with the probe's reason; profiles with identical encoder options
    share one probe.
    """
    out: dict[str, NvencStatus] = {}
    for name, profile in profiles.items():
        args = profile_probe_args(ffmpeg, profile.video)
        key = (str(ffmpeg), tuple(args))
        if key not in _PROFILE_CACHE:
            try:
                done = await run_bounded(args, timeout_s=timeout_s)
            except TimeoutError:
                _PROFILE_CACHE[key] = NvencStatus(
                    False, f"the NVENC probe did not finish within {timeout_s:g} s (driver hung?)"
                )
            except OSError as exc:
                _PROFILE_CACHE[key] = NvencStatus(
                    False, f"ffmpeg could not be started ({ffmpeg}): {exc.strerror or exc}"
                )
            else:
                encoder = args[args.index("-c:v") + 1]
                _PROFILE_CACHE[key] = (
                    NvencStatus(True, f"{encoder} encoded {profile.video.profile} test frames")
                    if done.returncode == 0
                    else NvencStatus(
                        False,
                        classify_failure(
                            done.stderr.decode("utf-8", errors="replace"), done.returncode
                        ).reason,
                    )
                )
        out[name] = _PROFILE_CACHE[key]
    return out
