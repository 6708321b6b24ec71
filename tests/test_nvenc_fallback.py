"""A GPU-decode plan that fails the way ffmpeg 5.1 really fails (CPU frames reaching the CUDA
filters) is retried with CPU decoding on NVENC, then on libx264, and the record says why."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from castui_core.bus import EventBus
from castui_core.convert import Converter, ConvertOptions, ConvertOutcome
from castui_core.events import JobNote, JobStarted
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.probe import ProbePool, probe_pyav
from castui_core.profiles import builtin_profiles
from castui_core.swap import Journal
from castui_core.tools import Tools

P1080 = builtin_profiles()["chromecast-1080p"]
SHIM = Path(__file__).with_name("nvdec_fail_shim.py")


def _shim_tools(tmp_path: Path) -> Tools:
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SHIM}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    ffprobe = shutil.which("ffprobe")
    assert ffprobe is not None
    return Tools(ffmpeg=wrapper, ffprobe=Path(ffprobe))


async def _convert(
    tmp_path: Path,
    source: Path,
    encoder: str,
    *,
    profile_nvenc: dict[str, NvencStatus] | None = None,
    **options: Any,
) -> tuple[ConvertOutcome, list[object]]:
    """Convert ``source`` through the NVDEC-failing shim on a machine whose probe found NVENC
    (``profile_nvenc``: what it found per profile); the outcome and every event published."""
    bus = EventBus()
    sub = bus.subscribe()
    with ProbePool(1, timeout=30) as pool:
        converter = Converter(
            tools=_shim_tools(tmp_path),
            pool=pool,
            journal=Journal(tmp_path / "journal"),
            bus=bus,
            nvenc=NvencStatus(True, "h264_nvenc encoded a test frame"),
        )
        converter.profile_nvenc = dict(profile_nvenc or {})
        outcome = await converter.convert(
            source,
            ConvertOptions(profile=P1080, encoder=encoder, **options),  # type: ignore[arg-type]
        )
    events: list[object] = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    return outcome, events


@pytest.fixture
def source(samples: dict[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / "clip.webm"  # VP9: NVDEC decodes it on the plan, so -hwaccel is used
    shutil.copy(samples["vp9_noaudio.webm"], path)
    return path


async def test_gpu_decode_failure_retries_with_cpu_decoding_on_nvenc(
    tmp_path: Path, source: Path
) -> None:
    outcome, events = await _convert(tmp_path, source, "auto")
    assert outcome.status == "done", outcome.reason
    started = [e for e in events if isinstance(e, JobStarted)]
    assert [e.encoder for e in started] == ["h264_nvenc", "h264_nvenc"]
    assert "-hwaccel" in started[0].command and "-hwaccel" not in started[1].command
    notes = [e.message for e in events if isinstance(e, JobNote)]
    assert any("GPU decoding failed" in n and "CPU decoding" in n for n in notes), notes
    assert any("GPU decoding failed" in n for n in outcome.notes)
    out = probe_pyav(str(outcome.output_path))
    assert out.video[0].codec == "h264"


async def test_then_no_nvenc_ends_on_the_cpu_encoder_with_both_reasons(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_NO_NVENC", "1")
    outcome, events = await _convert(tmp_path, source, "auto")
    assert outcome.status == "done", outcome.reason
    assert [e.encoder for e in events if isinstance(e, JobStarted)] == [
        "h264_nvenc",
        "h264_nvenc",
        "libx264",
    ]
    notes = outcome.notes
    assert any("GPU decoding failed" in n for n in notes), notes
    fell_back = [n for n in notes if "fell back to CPU" in n]
    assert fell_back and "no GPU here has an NVENC encoder" in fell_back[0], notes


async def test_forced_nvenc_still_gets_the_cpu_decode_retry_but_not_libx264(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_NO_NVENC", "1")
    outcome, events = await _convert(tmp_path, source, "nvenc")
    assert outcome.status == "failed"
    assert [e.encoder for e in events if isinstance(e, JobStarted)] == [
        "h264_nvenc",
        "h264_nvenc",
    ]
    assert "no GPU here has an NVENC encoder" in (outcome.reason or "")
    assert source.exists()


async def test_a_profile_the_probe_refused_goes_straight_to_the_cpu(
    tmp_path: Path, source: Path
) -> None:
    refused = NvencStatus(False, "NVENC on this GPU cannot encode 10-bit")
    outcome, events = await _convert(
        tmp_path,
        source,
        "auto",
        profile_nvenc={"chromecast-1080p": refused},
        profile_name="chromecast-1080p",
    )
    assert outcome.status == "done", outcome.reason
    started = [e.encoder for e in events if isinstance(e, JobStarted)]
    assert started == ["libx264"]
    assert any("cannot encode 10-bit" in n for n in outcome.notes), outcome.notes
