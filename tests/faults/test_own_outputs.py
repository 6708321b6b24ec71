"""Issue 10 item 10: castui recognises its own work and a Cast-ready copy already in place.

Before, a file converted with ``castui convert`` was queued again by the service and failed
with "... already exists; castui never overwrites a file it did not write" (castui did
write it), and ``castui scan`` kept saying transcode. Now every output castui writes is
recorded in the database (``outputs``, schema version 3) by whichever command wrote it, a
source whose output name holds castui's own output or any Cast-ready copy of the same length
is ``skip`` with the copy named, and a copy that is not Cast-ready is reported with what to do
(never overwritten). Real encodes, the real CLI, the real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from realtime_site import FFMPEG, castui, clip, make_site

from castui_core.layout import archive_path


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    return make_site(tmp_path)


def _scan_rows(site: dict[str, Path]) -> dict[str, tuple[str, list[str]]]:
    result = castui(site, "scan", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    files = rows["files"] if isinstance(rows, dict) else rows
    return {Path(r["path"]).name: (r["action"], r["reasons"]) for r in files}


def _once(site: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    return castui(site, "--no-ui", "--once")


def _queue(site: dict[str, Path]) -> list[object]:
    return list(json.loads(castui(site, "queue", "--json").stdout))


def _h264_copy(source: Path, target: Path, *, seconds: float | None = None) -> None:
    """What a user's own tool makes: H.264/AAC in MP4, optionally cut short."""
    cut = ["-t", str(seconds)] if seconds is not None else []
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-i", str(source), *cut,
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-movflags", "+faststart", str(target),
        ],
        check=True,
    )  # fmt: skip


def test_the_service_skips_what_castui_convert_wrote(site: dict[str, Path]) -> None:
    source = clip(site["lib"] / "movie.avi", 2)
    converted = castui(site, "convert", str(source))
    assert converted.returncode == 0, converted.stdout + converted.stderr
    output = site["lib"] / "movie.mp4"
    result = _once(site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already exists" not in result.stdout + result.stderr
    assert "summary: 0 done, 0 failed" in result.stdout
    assert _queue(site) == []
    history = json.loads(castui(site, "history", "--json").stdout)
    assert [j for j in history if j["state"] != "done"] == []
    rows = _scan_rows(site)
    assert "movie.avi" not in rows  # the replace layout archived it; .castui is never scanned
    assert rows["movie.mp4"] == ("skip", ["castui output (convert, from movie.avi)"])
    # Recorded in the service's database, by the command that wrote it.
    with sqlite3.connect(f"file:{site['root'] / 'state' / 'castui.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT path, source, written_by, size FROM outputs").fetchall()
    assert rows == [(str(output), str(source), "convert", output.stat().st_size)]


def test_a_users_cast_ready_copy_makes_the_source_skip(site: dict[str, Path]) -> None:
    source = clip(site["lib"] / "movie.avi", 2)
    _h264_copy(source, site["lib"] / "movie.mp4")
    before = (site["lib"] / "movie.mp4").read_bytes()
    assert _scan_rows(site)["movie.avi"] == ("skip", ["a Cast-ready copy exists: movie.mp4"])
    result = _once(site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 0 done, 0 failed" in result.stdout
    assert _queue(site) == []
    again = castui(site, "convert", str(source))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("skipped")
    assert "a Cast-ready copy exists: movie.mp4" in again.stdout
    assert (site["lib"] / "movie.mp4").read_bytes() == before  # never touched


@pytest.mark.parametrize(
    ("make", "why"),
    [
        ("mpeg4", "video codec mpeg4 is not H.264"),
        ("short", "it lasts 1.0 s, the source 3.0 s"),
    ],
)
def test_a_copy_that_is_not_cast_ready_says_what_to_do(
    site: dict[str, Path], make: str, why: str
) -> None:
    source = clip(site["lib"] / "movie.avi", 3)
    copy = site["lib"] / "movie.mp4"
    if make == "mpeg4":  # the source's own streams, only rewrapped: not playable
        subprocess.run(
            [FFMPEG, "-nostdin", "-v", "error", "-i", str(source), "-c", "copy", str(copy)],
            check=True,
        )
    else:
        _h264_copy(source, copy, seconds=1)
    before = copy.read_bytes()
    advice = f"movie.mp4 exists but is not Cast-ready ({why}"
    action, reasons = _scan_rows(site)["movie.avi"]
    assert action == "transcode"
    assert any(r.startswith(advice) and r.endswith("move it away or delete it") for r in reasons)
    converted = castui(site, "convert", str(source))
    assert converted.returncode == 1, converted.stdout + converted.stderr
    assert converted.stdout.startswith("failed") and advice in converted.stdout
    assert copy.read_bytes() == before  # never overwritten
    result = _once(site)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"failed: {source}: movie.avi: {advice}" in result.stdout
    assert _queue(site) == []  # not retried: it would fail the same way
    if make == "mpeg4":  # the copy is a library file too: converted in place, archived
        assert archive_path(site["lib"], copy).read_bytes() == before
    else:
        assert copy.read_bytes() == before


def test_castuis_output_for_another_profile_is_never_queued(site: dict[str, Path]) -> None:
    """``convert --profile chromecast-1080p`` in a library whose profile is 720p: the
    output does not suit the library's profile, yet castui wrote it from that source on
    purpose. The service queues neither the output (castui's own file) nor the source."""
    settings = site["settings"].read_text()
    site["settings"].write_text(
        settings.replace("    watch: false\n", "    watch: false\n    profile: nest-hub-720p\n")
    )
    source = clip(site["lib"] / "movie.avi", 1, size="1600x900")
    converted = castui(site, "convert", "--profile", "chromecast-1080p", str(source))
    assert converted.returncode == 0, converted.stdout + converted.stderr
    result = _once(site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 0 done, 0 failed" in result.stdout
    assert _queue(site) == []
    assert not (site["lib"] / "movie.original.mp4").exists()  # the output was left alone
    assert castui(site, "history", "--json").stdout.strip() == "[]"
    rows = _scan_rows(site)  # `castui scan` reads the same record (and writes nothing)
    assert rows["movie.mp4"] == ("skip", ["castui output (convert, from movie.avi)"])
    assert "movie.avi" not in rows  # archived by the replace layout
