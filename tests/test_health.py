"""/healthz and /readyz: a real service run, a library that disappears and returns, a stuck loop."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import castui_env

from castui_core.engine import Engine
from castui_core.health import Health, check_library_root, fstab_mount_points
from castui_core.settings import parse_settings

TIMEOUT_S = 60.0


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(url: str, want: Callable[[int, dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the endpoint until ``want`` holds (the service's own checks change the answer)."""
    end = time.monotonic() + TIMEOUT_S
    last: tuple[int, Any] = (0, None)
    while time.monotonic() < end:
        try:
            last = get(url)
        except OSError:  # not listening yet
            time.sleep(0.1)
            continue
        if want(*last):
            return last[1]
        time.sleep(0.1)
    pytest.fail(f"{url} never matched; last answer {last}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(body: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in body["checks"] if c["name"] == name]
    return found


def test_readiness_follows_a_library_root_during_a_real_run(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    port = free_port()
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"database: {tmp_path}/state/castui.db\n"
        f"ffmpeg: {shutil.which('ffmpeg')}\n"
        "libraries:\n"
        "  - name: Movies\n"
        f"    path: {lib}\n"
        "    watch: false\n"
        "operational: {encoder: cpu, min_free_gb: 0}\n"
        f"metrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "castui", "--no-ui", "--config", str(settings)],
        env=castui_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        live = wait_for(f"{base}/healthz", lambda code, _: code == 200)
        assert check(live, "event loop")["ok"] is True
        ready = wait_for(f"{base}/readyz", lambda code, _: code == 200)
        assert {c["name"] for c in ready["checks"]} == {
            "event loop",
            "database",
            "library Movies",
            "ffmpeg",
        }
        lib.rename(tmp_path / "lib.away")
        gone = wait_for(f"{base}/readyz", lambda code, _: code == 503)
        assert gone["status"] == "fail"
        assert check(gone, "library Movies")["ok"] is False
        assert "missing" in check(gone, "library Movies")["reason"]
        assert check(gone, "database")["ok"] is True  # only the library is at fault
        assert get(f"{base}/healthz")[0] == 200  # alive, just not ready
        (tmp_path / "lib.away").rename(lib)
        wait_for(f"{base}/readyz", lambda code, _: code == 200)
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
            # metrics still served, dead jobs counted (for the CastuiDeadJobs alert), every
            # series labelled with the node that serves it (issue 13)
            body = answer.read()
            assert re.search(rb'castui_queue_jobs\{node="[^"]+",state="dead"\} 0\.0', body), body
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_fstab_mount_point_not_mounted_is_not_ready(tmp_path: Path) -> None:
    lib = tmp_path / "share"
    lib.mkdir()
    points = fstab_mount_points(
        f"# comment\nnas:/v {lib} nfs defaults 0 0\n/dev/sdb none swap sw\n"
    )
    assert points == {str(lib)}
    probe = check_library_root("TV", lib, fstab_points=points, is_mount=lambda _: False)
    assert not probe.ok and "not mounted" in probe.reason
    assert check_library_root("TV", lib, fstab_points=points, is_mount=lambda _: True).ok
    assert check_library_root("TV", lib, fstab_points=set(), is_mount=lambda _: False).ok
    file = tmp_path / "file"
    file.write_text("x")
    assert not check_library_root("TV", file, fstab_points=set(), is_mount=lambda _: False).ok


async def test_a_blocked_event_loop_fails_healthz(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    text = f"database: {tmp_path}/state/c.db\nlibraries: [{{name: L, path: {tmp_path}/lib}}]\n"
    settings = parse_settings(text)
    engine = Engine(settings)  # not started: readiness must say so
    health = Health(engine, tick_s=0.02, stall_s=0.3, db_timeout_s=0.5)
    await asyncio.sleep(0.05)  # let the ticker run once
    assert health.live()[0] == 200
    seen: list[tuple[int, bytes]] = []
    blocked = threading.Event()

    def ask_while_blocked() -> None:
        blocked.wait(10)
        time.sleep(0.5)  # the loop is stuck for this long, past stall_s
        seen.append(health.live())

    asker = threading.Thread(target=ask_while_blocked)
    asker.start()
    blocked.set()
    time.sleep(1.0)  # the fault under test: a blocking call on the event loop
    asker.join()
    status, body = seen[0]
    assert status == 503 and "stuck" in json.loads(body)["checks"][0]["reason"]
    async with asyncio.timeout(5):
        while health.live()[0] != 200:
            await asyncio.sleep(0.02)
    status, body = await asyncio.to_thread(health.ready)
    assert status == 503
    assert "not opened the database" in check(json.loads(body), "database")["reason"]
    health.close()
