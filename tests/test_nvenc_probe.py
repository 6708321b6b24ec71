"""The start-up probes test what jobs will run: NVDEC + scale_cuda per source codec, and each
profile's NVENC options (codec, main10/p010, B-frames), with real ffmpeg and shims that print
ffmpeg 5.1's real failure lines."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest
import yaml
from test_engine import make_engine

from castui_core.ffmpeg import nvenc
from castui_core.ffmpeg.nvenc import (
    NVDEC_SAMPLE_ENCODERS,
    detect_nvdec,
    detect_nvenc_for_profiles,
    profile_probe_args,
)
from castui_core.profiles import Profile, builtin_profiles
from castui_core.settings import Settings, parse_settings
from castui_core.tools import Tools

TESTS = Path(__file__).parent
PROFILES = builtin_profiles()

SHIM = """
import os, sys
sys.path.insert(0, {tests!r})
from nvenc_shim import rewrite
from nvdec_fail_shim import EPILOGUE, FILTER_FAILURE
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(" ".join(args) + "\\n")
if "-hwaccel" in args and any("av1" in a for a in args):
    sys.stderr.write(FILTER_FAILURE + EPILOGUE)  # this "GPU" has no AV1 NVDEC
    sys.exit(1)
if "main10" in args:
    sys.stderr.write("[hevc_nvenc @ 0x55] 10 bit encode not supported\\n"
                     "[hevc_nvenc @ 0x55] No capable devices found\\n" + EPILOGUE)
    sys.exit(1)
args = rewrite(args)
args = [a.replace("scale_cuda=w=128:h=72:format=nv12", "scale=w=128:h=72,format=nv12")
        for a in args]
real = os.environ.get("CASTUI_REAL_FFMPEG") or "{ffmpeg}"
os.execv(real, [real, *args])
"""


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    nvenc._NVDEC_CACHE.clear()
    nvenc._PROFILE_CACHE.clear()


def _shim(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "calls.log"
    script = tmp_path / "shim.py"
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    script.write_text(SHIM.format(tests=str(TESTS), log=str(log), ffmpeg=ffmpeg))
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, log


async def test_nvdec_probe_on_this_machine_finds_no_gpu(tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    status = await detect_nvdec(ffmpeg, tmp_path, codecs=("h264", "av1"))
    if status.codecs:  # pragma: no cover - only on a machine with a working NVIDIA GPU
        pytest.skip("this machine decodes on an NVIDIA GPU")
    assert set(status.reasons) == {"h264", "av1"}
    assert all("libcuda.so.1" in r for r in status.reasons.values()), status.reasons
    assert list(tmp_path.iterdir()) == []  # samples removed


async def test_nvdec_probe_keeps_what_decodes_and_says_why_not(tmp_path: Path) -> None:
    wrapper, log = _shim(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    status = await detect_nvdec(wrapper, work, codecs=("h264", "vp9", "av1"))
    assert status.codecs == frozenset({"h264", "vp9"})
    assert "CPU decoding" in status.reasons["av1"]
    probes = [line for line in log.read_text().splitlines() if "-hwaccel" in line]
    assert any("-c:v av1 -i" in line for line in probes)  # native decoder forced for AV1
    assert all("scale_cuda=w=128:h=72:format=nv12" in line for line in probes)
    calls = len(log.read_text().splitlines())
    again = await detect_nvdec(wrapper, work, codecs=("h264", "vp9", "av1"))
    assert again is status
    assert len(log.read_text().splitlines()) == calls  # once per process


def test_every_nvdec_codec_has_a_sample_encoder_in_this_ffmpeg() -> None:
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    listed = subprocess.run(
        [ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    for codec, args in NVDEC_SAMPLE_ENCODERS.items():
        assert f" {args[1]} " in listed, codec


def _variant(base: Profile, **update: object) -> Profile:
    return base.model_copy(update={"video": base.video.model_copy(update=update)})


def test_profile_probe_uses_the_jobs_options() -> None:
    hevc = PROFILES["chromecast-4k-hevc"]
    args = profile_probe_args("ffmpeg", _variant(hevc, profile="main").video)
    assert args[args.index("-pix_fmt") + 1] == "yuv420p"
    assert args[args.index("-c:v") + 1] == "hevc_nvenc"
    assert args[args.index("-bf") + 1] == "3"
    assert "-tier" in args
    ten = profile_probe_args("ffmpeg", hevc.video)  # main10
    assert ten[ten.index("-pix_fmt") + 1] == "p010le"
    base = profile_probe_args(
        "ffmpeg", _variant(PROFILES["chromecast-1080p"], profile="baseline", level="3.1").video
    )
    assert base[base.index("-bf") + 1] == "0"


async def test_profile_probe_remembers_per_profile_what_works(tmp_path: Path) -> None:
    wrapper, log = _shim(tmp_path)
    hevc = PROFILES["chromecast-4k-hevc"]
    profiles = {
        "hd": PROFILES["chromecast-1080p"],
        "uhd8": _variant(hevc, profile="main"),
        "uhd10": hevc,  # the built-in 4K profile is main10
        "hd-again": PROFILES["chromecast-1080p"],
    }
    found = await detect_nvenc_for_profiles(wrapper, profiles)
    assert found["hd"].available and found["uhd8"].available, found
    assert not found["uhd10"].available
    assert "10-bit" in found["uhd10"].reason
    assert found["hd-again"] is found["hd"]
    assert len(log.read_text().splitlines()) == 3  # identical options probed once


async def test_profile_probe_on_this_machine(tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    found = await detect_nvenc_for_profiles(ffmpeg, dict(PROFILES))
    if any(s.available for s in found.values()):  # pragma: no cover - a GPU with NVENC
        pytest.skip("this machine has working NVENC")
    assert set(found) == set(PROFILES)
    assert all(s.reason.startswith("NVENC unavailable") for s in found.values()), found


async def test_a_reload_probes_a_profile_the_libraries_now_use(tmp_path: Path) -> None:
    """A library switched (from the settings screen) to a 10-bit HEVC profile on a GPU that
    cannot encode it: probed on reload, so its jobs go to the CPU under auto instead of
    failing on NVENC (the per-profile probe ran only at start)."""
    wrapper, _log = _shim(tmp_path)
    (tmp_path / "lib").mkdir()

    def settings(profile: str) -> Settings:
        return parse_settings(
            yaml.safe_dump(
                {
                    "database": f"{tmp_path}/state/castui.db",
                    "libraries": [
                        {"name": "T", "path": f"{tmp_path}/lib", "watch": "off", "profile": profile}
                    ],
                    "operational": {"encoder": "auto", "min_free_gb": 0},
                }
            )
        )

    ffprobe = shutil.which("ffprobe")
    assert ffprobe is not None
    engine = make_engine(
        settings("chromecast-1080p"),
        nvenc=nvenc.NvencStatus(True, "h264_nvenc encoded a test frame"),
        tools=Tools(ffmpeg=wrapper, ffprobe=Path(ffprobe)),
        scan_at_start=False,
    )
    await engine.start()
    try:
        assert "chromecast-4k-hevc" not in engine.converter.profile_nvenc
        await engine.reload(settings("chromecast-4k-hevc"))
        status = engine.converter.profile_nvenc["chromecast-4k-hevc"]
        assert not status.available and "10-bit" in status.reason, status
        assert engine.converter.profile_nvenc["chromecast-1080p"].available
    finally:
        await engine.stop()
