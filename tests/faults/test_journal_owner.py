"""Issue 10 item 1: a second castui process never destroys the first one's encode.

Every castui start runs journal recovery. Before owners, it removed *every* ``encoding``
entry's temp, including a live process's: that job then failed validation and used an
attempt. Now each entry is held by its process's owner lock, and recovery handles only
entries whose owner is dead. Real processes, a real (throttled) ffmpeg, a real kill -9.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from realtime_site import castui, clip, make_site, start, until


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    return make_site(tmp_path)


def _entries(site: dict[str, Path]) -> list[Path]:
    return sorted((site["root"] / "state" / "journal").glob("*.json"))


def test_second_processes_leave_a_live_encode_alone(site: dict[str, Path]) -> None:
    clip(site["lib"] / "movie.avi", 20)
    clip(site["elsewhere"] / "other.avi", 1)
    first = start(site, "--no-ui", "--once")
    try:
        list(until(first, " started "))
        assert len(_entries(site)) == 1  # the first process's encode is journaled
        # A second engine on the same database: its start-up runs recovery.
        second = start(site, "--no-ui", "--once")
        try:
            seen = "".join(until(second, "scanning library"))  # started: recovery ran
            second.terminate()
            rest, _ = second.communicate(timeout=60)
        finally:
            if second.poll() is None:
                second.kill()
        assert "removed the partial output" not in seen + rest
        assert first.poll() is None, "the encode must outlast the second start (longer clip)"
        # `castui convert` of another file recovers first thing, inside the first's 20 s.
        other = castui(site, "convert", str(site["elsewhere"] / "other.avi"))
        assert other.returncode == 0, other.stdout + other.stderr
        assert "removed the partial output" not in other.stderr
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out + err
    assert "summary: 1 done, 0 failed" in out
    assert (site["lib"] / "movie.mp4").is_file()
    history = castui(site, "history", "--json")
    jobs = json.loads(history.stdout)
    assert [(Path(j["path"]).name, j["state"], j["attempts"]) for j in jobs] == [
        ("movie.avi", "done", 1)  # one claim, no failed attempt
    ]
    assert _entries(site) == []


def test_kill_9_of_the_owner_lets_the_next_start_recover(site: dict[str, Path]) -> None:
    clip(site["lib"] / "movie.avi", 12)
    clip(site["elsewhere"] / "other.avi", 1)
    first = start(site, "--no-ui", "--once")
    try:
        list(until(first, "%"))  # a progress line: ffmpeg has written part of the temp
        first.kill()  # SIGKILL: the kernel drops its owner lock
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert len(_entries(site)) == 1
    assert any(".castui-" in p.name for p in site["lib"].iterdir())  # the partial temp
    other = castui(site, "convert", str(site["elsewhere"] / "other.avi"))
    assert other.returncode == 0, other.stdout + other.stderr
    assert "recovered: removed the partial output for" in other.stderr
    assert "movie.avi" in other.stderr
    assert _entries(site) == []
    assert [p.name for p in site["lib"].iterdir()] == ["movie.avi"]
