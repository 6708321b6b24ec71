"""Find out once, at start, whether this ffmpeg can encode on NVENC, and pick the backend.

Why a real one-frame encode instead of checking ``ffmpeg -encoders`` or NVML: an ffmpeg built
with NVENC lists ``h264_nvenc`` even with no driver, no GPU, a too-old driver, a GPU without
an encoder (H100/A100) or a container started without the ``video`` capability. Only opening
an encode session answers the question, and its stderr says which of those it is (classified
by ``classify_failure`` so the operator reads the same sentence here as in a failed job).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from castui_core.ffmpeg.failures import classify_failure
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
