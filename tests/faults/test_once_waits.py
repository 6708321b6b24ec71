"""``castui --no-ui --once`` held by a guardrail: it says why it waits, and never ends as if it
had done its work. Issue 10 #13.

The guardrail is a real one: a processing window that excludes the present hour.
"""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import castui_env, run_castui

from castui_core.guardrails.disk import disk_reason

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
GB = 1_000_000_000


def _window_not_now() -> str:
    """A processing window that starts two hours from now (so it excludes now)."""
    start = datetime.now() + timedelta(hours=2)
    end = start + timedelta(hours=1)
    return f"{start:%H:00}-{end:%H:00}"


@pytest.fixture
def held(tmp_path: Path) -> dict[str, Path]:
    """A library with one file to transcode, and a schedule that holds every job."""
    lib = tmp_path / "lib"
    lib.mkdir()
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1",
            "-c:v", "mpeg4", str(lib / "a.avi"),
        ],
        check=True,
    )  # fmt: skip
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"database: {tmp_path}/state/castui.db\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {lib}, watch: false}}\n"
        "operational: {encoder: cpu, min_free_gb: 0}\n"
        "scan: {settle_seconds: 0}\n"
        f"guardrails: {{schedule: ['{_window_not_now()}'], sample_interval_s: 1}}\n"
        "service: {shutdown_grace_s: 0}\n",
        encoding="utf-8",
    )
    return {"root": tmp_path, "lib": lib, "settings": settings}


def test_max_wait_ends_the_wait_with_what_is_still_queued_and_why(held: dict[str, Path]) -> None:
    result = run_castui(
        "--no-ui", "--once", "--status-every", "1s", "--max-wait", "4s",
        "--config", str(held["settings"]),
        home=held["root"], timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 job still queued: " in result.stdout, result.stdout
    assert "outside processing window" in result.stdout.split("still queued: ")[1]
    waits = [line for line in result.stderr.splitlines() if "waiting: 1 job queued:" in line]
    assert len(waits) >= 2, result.stderr  # every --status-every, not once
    assert "processing window" in waits[0]
    assert not (held["lib"] / "a.mp4").exists()


def _lines(stream: object) -> queue.Queue[str]:
    """Lines of ``stream`` as they come, read in a thread (a wait can time out)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], needle: str, timeout_s: float) -> str:
    end = time.monotonic() + timeout_s
    seen: list[str] = []
    while (left := end - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return line
    pytest.fail(f"no line with {needle!r} within {timeout_s} s; got:\n{''.join(seen)}")


def test_sigterm_while_held_exits_1_naming_the_reason(held: dict[str, Path]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "castui", "--no-ui", "--once", "--status-every", "1s",
            "--config", str(held["settings"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=castui_env(held["root"]),
        cwd=held["root"],
    )  # fmt: skip
    try:
        lines = _lines(proc.stderr)
        line = _wait_for(lines, "waiting: 1 job queued:", timeout_s=60)
        assert "outside processing window" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out
    assert "summary: 0 done, 0 failed" in out
    assert "1 job still queued: outside processing window" in out, out


@pytest.mark.parametrize(
    ("free", "needed", "keep", "shown"),
    [
        (4_000_000, 0, 1 * GB, "waiting: 4 MB free on /m < 1 GB"),
        (0, 0, 5 * GB, "waiting: 0 MB free on /m < 5 GB"),
        (2 * GB, 300_000_000, 2 * GB, "< 2 GB plus the 300 MB estimated output"),
    ],
)
def test_sizes_below_a_gb_are_shown_in_mb(free: int, needed: int, keep: int, shown: str) -> None:
    """A full disk said "0 GB free", which reads like a reading error, not like a full disk."""
    reason = disk_reason(free, needed, keep, "/m")
    assert reason is not None and shown in reason
    assert "0 GB" not in reason.replace("20 GB", "")


@pytest.mark.parametrize("value", ["soon", "0s", "5x", "5 minutes"])
def test_a_bad_max_wait_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = run_castui("--no-ui", "--once", "--max-wait", value, home=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--max-wait" in result.stderr and "Traceback" not in result.stderr
    assert "is not a duration like 90s" in result.stderr or "more than 0" in result.stderr


def test_max_wait_needs_no_ui(tmp_path: Path) -> None:
    result = run_castui("--max-wait", "5m", home=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "need --no-ui" in result.stderr


def test_a_disk_guard_holding_is_named_too(held: dict[str, Path]) -> None:
    """The other guardrail the issue names: free space below the reserve (a real statvfs)."""
    text = held["settings"].read_text(encoding="utf-8")
    text = text.replace("min_free_gb: 0", "min_free_gb: 1000000000")  # a billion GB: never
    text = "\n".join(line for line in text.splitlines() if not line.startswith("guardrails:"))
    held["settings"].write_text(text + "\nguardrails: {sample_interval_s: 1}\n", encoding="utf-8")
    result = run_castui(
        "--no-ui", "--once", "--status-every", "1s", "--max-wait", "5s",
        "--config", str(held["settings"]),
        home=held["root"], timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    tail = result.stdout.split("1 job still queued: ")[1]
    assert " free on " in tail and "< 1000000000 GB" in tail, result.stdout
