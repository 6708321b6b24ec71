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
        # A second engine on the same database: it steps aside (the first serves the
        # control socket) and, whatever it does first, must not touch the first's temp.
        second = castui(site, "--no-ui", "--once")
        assert "removed the partial output" not in second.stdout + second.stderr
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


def test_recovery_leaves_a_live_writers_files_and_lock_alone(tmp_path: Path) -> None:
    """The same rule at the journal's level: two owners (flock works between two open
    files in one process as between two processes), one alive, one gone."""
    from castui_core.swap import Journal, begin, plan_placement, recover

    source = tmp_path / "movie.avi"
    source.write_bytes(b"original")
    live = Journal(tmp_path / "journal")
    p = plan_placement(source, token="live")
    begin(live, p, delete_source=False)
    p.temp.write_bytes(b"half an encode")
    # A write of the live owner caught between its temp file and the rename:
    writing = live.directory / f".{p.key}.{live.owner}.json.tmp"
    writing.write_bytes(b"{}")
    debris = live.directory / ".0123.json.tmp"  # a pre-owner temp: nobody's
    debris.write_bytes(b"{}")

    other = Journal(tmp_path / "journal")
    assert recover(other) == []
    assert p.temp.read_bytes() == b"half an encode" and writing.exists()
    assert not debris.exists()
    assert (live.directory / "owners" / f"{live.owner}.lock").exists()

    live.close()  # the owner is gone: now its entry is the next start's to recover
    lines = recover(Journal(tmp_path / "journal"))
    assert lines == [
        f"recovered: removed the partial output for {source} (crash during the encode)"
    ]
    assert not p.temp.exists() and not writing.exists()
    assert list((live.directory / "owners").iterdir()) == []
