"""A throwaway castui site for fault tests: a library, settings and a real-time ffmpeg.

The ffmpeg is the real one behind ``tests/nvenc_shim.py``; with ``realtime=True`` it reads
its input at native rate (``-re``), so an encode lasts as long as the clip and a test can act
in the middle of it (replace the source, start a second castui, kill the first).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import castui_env, run_castui
from textual.pilot import Pilot
from tui import tui_helpers

from castui_core.control import find_live_socket
from castui_core.settings import Settings, load_settings

SHIM = Path(__file__).parent.parent / "nvenc_shim.py"
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def clip(path: Path, seconds: float, *, size: str = "320x240") -> Path:
    """MPEG-4/MP3 in AVI (castui must transcode it), ``seconds`` long."""
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=duration={seconds}",
            "-c:v", "mpeg4", "-c:a", "libmp3lame", "-f", "avi", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def tiny_clip(path: Path) -> Path:
    """One second of 160x120 MPEG-4 video, no audio: the smallest file castui must transcode,
    for tests about what happens around a conversion rather than during it."""
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1",
            "-c:v", "mpeg4", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def make_site(root: Path, *, extra_yaml: str = "") -> dict[str, Path]:
    """``lib/`` (the library), ``elsewhere/`` (outside it) and ``settings.yaml``."""
    lib = root / "lib"
    lib.mkdir()
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    wrapper = root / "ffmpeg-realtime"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SHIM}" "$@"\n')
    wrapper.chmod(0o755)
    settings = root / "settings.yaml"
    settings.write_text(
        f"database: {root}/state/castui.db\n"
        f"ffmpeg: {wrapper}\n"
        "libraries:\n"
        "  - name: Movies\n"
        f"    path: {lib}\n"
        "    watch: false\n"
        "operational: {encoder: cpu, min_free_gb: 0}\n"
        "scan: {settle_seconds: 0.2}\n"
        "service: {shutdown_grace_s: 0, lease_seconds: 3}\n" + extra_yaml
    )
    return {"root": root, "lib": lib, "elsewhere": elsewhere, "settings": settings}


def start(site: dict[str, Path], *args: str, realtime: bool = True) -> subprocess.Popen[str]:
    """``castui ARGS --config SETTINGS`` running in the background, output piped."""
    extra = {"CASTUI_REAL_FFMPEG": FFMPEG}
    if realtime:
        extra["CASTUI_SHIM_REALTIME"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "castui", *args, "--config", str(site["settings"])],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=castui_env(site["root"], **extra),
        cwd=site["root"],
    )


def until(proc: subprocess.Popen[str], text: str, deadline_s: float = 60) -> Iterator[str]:
    """Lines of a running castui's stderr up to the first that contains ``text`` (or fail)."""
    assert proc.stderr is not None
    end = time.monotonic() + deadline_s
    for line in proc.stderr:
        yield line
        if text in line:
            return
        if time.monotonic() > end:
            break
    pytest.fail(f"castui never logged {text!r}")


def wait_for(condition: object, what: str, deadline_s: float = 60) -> None:
    """Poll ``condition()`` until true (a file castui creates has no event to wait on)."""
    assert callable(condition)
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def castui(site: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    """``castui ARGS --config SETTINGS`` to completion (normal-speed ffmpeg)."""
    return run_castui(
        *args, "--config", str(site["settings"]), home=site["root"], timeout=180,
        CASTUI_REAL_FFMPEG=FFMPEG,
    )  # fmt: skip


def hidden(directory: Path) -> list[str]:
    """Hidden debris (temps); the replace layout's archive folder ``.castui`` is not debris."""
    return sorted(
        p.name for p in directory.rglob(".*") if ".castui" not in p.relative_to(directory).parts
    )


def duration(path: Path) -> float:
    out = subprocess.run(
        [
            shutil.which("ffprobe") or "ffprobe", "-v", "error", "-show_entries",
            "format=duration", "-of", "csv=p=0", str(path),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip())


async def wait_until(
    pilot: Pilot[object],
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float = 30.0,
) -> None:
    """The dashboard tests' ``wait_until`` with the fault tests' order and bound: ``what``
    comes third, and 30 s by default, since a real-time encode in another process is slower
    to show than the in-process engine the TUI tests use."""
    await tui_helpers.wait_until(pilot, condition, timeout=timeout, what=what)


class Service:
    """``castui --no-ui`` processes on one site, each returned once its control socket listens
    (its log in a file: a full pipe would stall it). ``realtime``: the shim reads at native
    rate, so an encode lasts as long as its clip."""

    def __init__(self, site: dict[str, Path], *, realtime: bool = True) -> None:
        self.site = site
        self.settings: Settings = load_settings(site["settings"])
        self.realtime = realtime
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, deadline_s: float = 30) -> subprocess.Popen[bytes]:
        extra = {"CASTUI_REAL_FFMPEG": FFMPEG}
        if self.realtime:
            extra["CASTUI_SHIM_REALTIME"] = "1"
        log = open(self.log_path(len(self.procs)), "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "castui", "--no-ui", "--config", str(self.site["settings"])],
            stdout=log,
            stderr=log,
            env=castui_env(self.site["root"], **extra),
            cwd=self.site["root"],
        )
        log.close()
        self.procs.append(proc)
        deadline = time.monotonic() + deadline_s
        while find_live_socket(self.settings.database) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the service did not start: {self.log(len(self.procs) - 1)}")
            time.sleep(0.05)  # a socket appearing has no event to wait on
        return proc

    def log_path(self, n: int) -> Path:
        return self.site["root"] / f"service-{n}.log"

    def log(self, n: int) -> str:
        return self.log_path(n).read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
