"""Issue 10 item 3: a source replaced during its encode never gets the old content's output.

Before, ``castui convert`` printed "done" and left the *old* content's ``.mp4`` beside the
new source, and every later run refused the name forever. Now the swap compares the
source's identity (device, inode, size, mtime) with what was read at the start: the output
is discarded, ``convert`` says so, and the engine requeues the new content without using an
attempt. Real encodes (throttled to real time), a real rename over the source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from realtime_site import castui, clip, duration, hidden, make_site, start, until, wait_for


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    return make_site(tmp_path)


def _replace(source: Path, seconds: float) -> bytes:
    """A new file renamed over ``source`` (as a downloader or ``mv`` does)."""
    new = clip(source.with_name(".incoming.avi"), seconds)
    data = new.read_bytes()
    os.rename(new, source)
    return data


def _temp_written(lib: Path) -> bool:
    return any(".castui-" in p.name and p.stat().st_size > 0 for p in lib.iterdir())


def test_convert_discards_the_output_of_a_replaced_source(site: dict[str, Path]) -> None:
    source = clip(site["lib"] / "movie.avi", 8)
    proc = start(site, "convert", str(source))
    try:
        wait_for(lambda: _temp_written(site["lib"]), "the encode to write its temp")
        new = _replace(source, 2)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "source changed during encode" in out
    assert "another file was put in its place" in out
    assert "done" not in out.split("\n")[0]
    assert not (site["lib"] / "movie.mp4").exists()  # no stale output
    assert hidden(site["lib"]) == []
    assert source.read_bytes() == new  # the new content is untouched
    # And the next run converts the new content (the name is not blocked).
    again = castui(site, "convert", str(source))
    assert again.returncode == 0, again.stdout + again.stderr
    assert abs(duration(site["lib"] / "movie.mp4") - 2.0) < 0.5


def test_engine_requeues_the_new_content_without_using_an_attempt(
    site: dict[str, Path],
) -> None:
    source = clip(site["lib"] / "movie.avi", 8)
    proc = start(site, "--no-ui", "--once")
    try:
        list(until(proc, " started "))
        wait_for(lambda: _temp_written(site["lib"]), "the encode to write its temp")
        _replace(source, 2)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "source changed during encode" in err
    assert "summary: 1 done, 0 failed" in out
    assert abs(duration(site["lib"] / "movie.mp4") - 2.0) < 0.5  # the new content's output
    assert hidden(site["lib"]) == []
    history = castui(site, "history", "--json")
    jobs = json.loads(history.stdout)
    assert [(Path(j["path"]).name, j["state"], j["attempts"]) for j in jobs] == [
        ("movie.avi", "done", 1)  # the replaced run gave its attempt back
    ]
