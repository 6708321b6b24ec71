"""``castui demo --no-ui DIR`` as a real process: it makes the sample library with the real
ffmpeg, runs the real headless engine on it to the end, and every file ends Cast-ready
(castui's own probe and decide() say so), already fine, or left alone with its reason."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import run_castui

from castui_core.decide import Action, decide
from castui_core.demo import DEMO, MARKER
from castui_core.probe import probe_pyav
from castui_core.settings import load_settings

PART = "Still Downloading.mkv.part"


def test_demo_headless_ends_with_every_file_cast_ready(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    done = run_castui("demo", "--no-ui", str(root), home=tmp_path, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summary: 6 done, 0 failed, 0 dead" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr

    settings = load_settings(str(root / "settings.yaml"))
    assert settings.database.is_relative_to(root)
    (library,) = settings.libraries
    assert library.path == root / "library"
    assert library.profile == "chromecast-1080p"
    profile = settings.profile_for(library)
    files = sorted(p.name for p in library.path.iterdir())

    for name, sample in DEMO.items():
        source = library.path / name
        if sample.action == "ignored":
            continue
        output = source.with_suffix(".mp4")
        assert output.is_file(), f"{name}: no output; library holds {sorted(files)}"
        info = probe_pyav(str(output))
        decision = decide(info, profile)
        assert decision.action is Action.SKIP, (name, decision)
        if sample.action == "skip":
            assert source == output  # already fine: never queued
            assert f"queued remux {source}" not in done.stderr
            assert f"queued transcode {source}" not in done.stderr
    # The two languages and the subtitle made it into the Cast-ready file.
    both = probe_pyav(str(library.path / "Two Languages (H.264, subtitles).mp4"))
    assert len(both.audio) == 2 and len(both.subtitles) == 1, both

    # The still-downloading file: not queued, not converted, not rewritten.
    part = library.path / PART
    outputs = [
        (library.path / name).with_suffix(".mp4")
        for name, sample in DEMO.items()
        if sample.action in ("remux", "transcode")
    ]
    assert all(part.stat().st_mtime_ns <= p.stat().st_mtime_ns for p in outputs)
    assert sorted(p.name for p in library.path.glob("Still Downloading*")) == [PART]
    assert str(part) not in done.stdout + done.stderr

    # castui's own scan agrees afterwards: nothing left to do, and the .part is not media yet.
    scan = run_castui(
        "scan", "--all", "--json", "--config", str(root / "settings.yaml"), home=tmp_path
    )
    assert scan.returncode == 0, scan.stderr
    rows = json.loads(scan.stdout)
    assert rows and {row["action"] for row in rows} == {"skip"}, rows
    assert PART not in {Path(row["path"]).name for row in rows}

    # A second run in the same folder recreates the demo and works again.
    again = run_castui("demo", "--no-ui", str(root), home=tmp_path, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"recreated the earlier demo in {root}" in again.stdout
    assert "summary: 6 done, 0 failed, 0 dead" in again.stdout, again.stdout
    assert part.is_file()


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    """Someone's real folder is never emptied: only a new, empty or demo-marked one is used."""
    mine = tmp_path / "Movies"
    mine.mkdir()
    precious = mine / "wedding.mkv"
    precious.write_bytes(b"not a sample\n")
    done = run_castui("demo", "--no-ui", str(mine), home=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not empty and was not made by `castui demo`" in done.stderr
    assert "Traceback" not in done.stderr
    assert precious.read_bytes() == b"not a sample\n"
    assert sorted(p.name for p in mine.iterdir()) == ["wedding.mkv"]
    assert not (mine / MARKER).exists()
