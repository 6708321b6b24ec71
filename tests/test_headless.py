"""``castui --no-ui`` as a real process: --once exit codes, SIGTERM and kill -9 mid-encode."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from cli_helpers import castui_env, run_castui
from faults.realtime_site import make_site

from castui_core.layout import archive_path

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _clip(path: Path, seconds: float) -> Path:
    """MPEG-4/MP3 in AVI, or 10-bit H.264/AAC for .mkv (whose header keeps the full duration
    when the file is cut short, like a real interrupted download)."""
    codecs = (
        ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-c:a", "aac"]
        if path.suffix == ".mkv"
        else ["-c:v", "mpeg4", "-c:a", "libmp3lame"]
    )
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=duration={seconds}",
            *codecs, str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A library, a settings file, and an ffmpeg that reads input in real time (slow encodes):
    the fault tests' site (tests/faults/realtime_site.py)."""
    return make_site(tmp_path)


def _env(root: Path, *, realtime: bool) -> dict[str, str]:
    extra = {"CASTUI_REAL_FFMPEG": FFMPEG}
    if realtime:
        extra["CASTUI_SHIM_REALTIME"] = "1"
    return castui_env(root, **extra)


def _castui(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return run_castui(*args, home=root, timeout=180, CASTUI_REAL_FFMPEG=FFMPEG)


def _started(proc: subprocess.Popen[str], deadline_s: float = 60) -> Iterator[str]:
    """Lines of a running headless castui until its first 'started' line (or fail)."""
    assert proc.stderr is not None
    end = time.monotonic() + deadline_s
    for line in proc.stderr:
        yield line
        if " started " in line:
            return
        if time.monotonic() > end:
            break
    pytest.fail("castui never started an encode")


def _hidden(lib: Path) -> list[str]:
    """Hidden debris (temps) in the library; castui's archive folder is not debris."""
    return sorted(p.name for p in lib.rglob(".*") if ".castui" not in p.relative_to(lib).parts)


def test_once_exit_codes_and_summary(site: dict[str, Path], samples: dict[str, Path]) -> None:
    shutil.copy(samples["mpeg4.avi"], site["lib"] / "a.avi")
    config = str(site["settings"])
    node = ("--node", "film-box")
    result = _castui("--no-ui", "--once", "--config", config, *node, root=site["root"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 1 done, 0 failed" in result.stdout
    # Job lines name the node castui runs as (--node), not the host name it had before.
    job_lines = [line for line in result.stderr.splitlines() if "[job=" in line]
    assert job_lines and all(line.endswith("node=film-box]") for line in job_lines), job_lines
    assert (site["lib"] / "a.mp4").is_file()

    # A truncated source: its output falls short of the probed duration -> failed -> exit 1.
    data = _clip(site["root"] / "long.mkv", 4).read_bytes()
    (site["lib"] / "cut.mkv").write_bytes(data[: len(data) // 2])
    result = _castui("--no-ui", "--once", "--config", str(site["settings"]), root=site["root"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "summary: 0 done, 1 failed" in result.stdout
    assert "failed: " in result.stdout and "cut.mkv" in result.stdout
    assert "truncated?" in result.stdout

    bad = site["root"] / "bad.yaml"
    bad.write_text("operational: {max_concurrent_jobs: 0}\n")
    result = _castui("--no-ui", "--once", "--config", str(bad), root=site["root"])
    assert result.returncode == 2
    assert "operational.max_concurrent_jobs" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_mid_encode_requeues_and_leaves_no_trace(
    site: dict[str, Path],
) -> None:
    source = _clip(site["lib"] / "movie.avi", 8)
    before = _digest(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "castui", "--no-ui", "--config", str(site["settings"])],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(site["root"], realtime=True),
        cwd=site["root"],
    )
    try:
        list(_started(proc))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _digest(source) == before
    assert _hidden(site["lib"]) == []
    assert not (site["lib"] / "movie.mp4").exists()
    queue = _castui("queue", "--json", "--config", str(site["settings"]), root=site["root"])
    jobs = json.loads(queue.stdout)
    assert [(Path(j["path"]).name, j["state"], j["attempts"]) for j in jobs] == [
        ("movie.avi", "queued", 0)
    ]


def test_kill_9_mid_encode_then_restart_finishes_the_job(site: dict[str, Path]) -> None:
    source = _clip(site["lib"] / "movie.avi", 8)
    before = _digest(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "castui", "--no-ui", "--config", str(site["settings"])],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=_env(site["root"], realtime=True),
        cwd=site["root"],
    )
    try:
        list(_started(proc))
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "ffmpeg should be running under castui"
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # ffmpeg dies with its parent (PR_SET_PDEATHSIG) instead of writing on for minutes.
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert _digest(source) == before

    result = _castui("--no-ui", "--once", "--config", str(site["settings"]), root=site["root"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 1 done" in result.stdout
    assert _digest(archive_path(site["lib"], source)) == before  # archived, not deleted
    assert (site["lib"] / "movie.mp4").is_file()
    assert _hidden(site["lib"]) == []
    history = _castui("history", "--json", "--config", str(site["settings"]), root=site["root"])
    done = json.loads(history.stdout)
    assert [(Path(j["path"]).name, j["state"]) for j in done] == [("movie.avi", "done")]
