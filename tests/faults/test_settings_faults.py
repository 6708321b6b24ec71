"""Settings a person got wrong are refused whole, in one run, by the real ``castui`` command.

Issue 10 #7 (libraries inside each other), #14 (duplicate keys; every problem in one run) and
the ``config check`` half of #8 (a library path that is a file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_castui
from realtime_site import tiny_clip


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_duplicate_top_level_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    movies = tmp_path / "movies"
    shows = tmp_path / "shows"
    movies.mkdir()
    shows.mkdir()
    settings = _write(
        tmp_path / "settings.yaml",
        f"database: {tmp_path}/state/castui.db\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {movies}}}\n"
        "operational: {encoder: cpu}\n"
        "libraries:\n"
        f"  - {{name: Shows, path: {shows}}}\n",
    )
    result = run_castui("config", "check", "--config", str(settings), home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "libraries: given twice (lines 2 and 5)" in result.stderr
    assert "Traceback" not in result.stderr
    # Every entry point loads settings the same way: the service refuses too.
    result = run_castui("--no-ui", "--once", "--config", str(settings), home=tmp_path)
    assert result.returncode == 2 and "given twice" in result.stderr


def test_nested_duplicates_and_field_errors_are_listed_in_one_run(tmp_path: Path) -> None:
    settings = _write(
        tmp_path / "settings.yaml",
        f"database: {tmp_path}/state/castui.db\n"
        "operational:\n"
        "  encoder: cpu\n"
        "  max_concurrent_jobs: 0\n"
        "  encoder: nvenc\n"
        "scan:\n"
        "  probe_timeout_s: -1\n",
    )
    result = run_castui("config", "check", "--config", str(settings), home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "encoder: given twice (lines 3 and 5)" in result.stderr
    assert "operational.max_concurrent_jobs: 0" in result.stderr
    assert "scan.probe_timeout_s: -1" in result.stderr


def test_a_field_error_does_not_hide_an_unknown_profile(tmp_path: Path) -> None:
    settings = _write(
        tmp_path / "settings.yaml",
        f"database: {tmp_path}/state/castui.db\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {tmp_path}, profile: chromecast-8k}}\n"
        "operational: {max_concurrent_jobs: 99}\n",
    )
    result = run_castui("config", "check", "--config", str(settings), home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "operational.max_concurrent_jobs: 99" in result.stderr
    assert "libraries.0.profile: 'chromecast-8k' is not a profile" in result.stderr


@pytest.mark.parametrize("how", ["inside", "dotdot", "symlink"])
def test_overlapping_libraries_are_refused_naming_both(tmp_path: Path, how: str) -> None:
    movies = tmp_path / "media" / "movies"
    kids = movies / "kids"
    kids.mkdir(parents=True)
    inner = {
        "inside": str(kids),
        "dotdot": f"{kids}/../kids",
        "symlink": str(tmp_path / "kids-link"),
    }[how]
    if how == "symlink":
        (tmp_path / "kids-link").symlink_to(kids)
    settings = _write(
        tmp_path / "settings.yaml",
        f"database: {tmp_path}/state/castui.db\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {movies}}}\n"
        f"  - {{name: Kids, path: '{inner}', profile: nest-hub-720p}}\n",
    )
    result = run_castui("config", "check", "--config", str(settings), home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "library 'Kids' at" in result.stderr
    assert f"inside library 'Movies' at {movies}" in result.stderr
    assert "remove one of them" in result.stderr

    # scan loads the settings the same way: it refuses rather than list a file twice.
    tiny_clip(kids / "film.avi")
    result = run_castui("scan", "--json", "--config", str(settings), home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "inside library 'Movies'" in result.stderr


def test_separate_libraries_still_pass_and_scan_lists_each_file_once(tmp_path: Path) -> None:
    """The refusal is about overlap, not about two libraries side by side (or a shared prefix
    of names like /media/movies and /media/movies-4k)."""
    movies = tmp_path / "media" / "movies"
    movies4k = tmp_path / "media" / "movies-4k"
    movies.mkdir(parents=True)
    movies4k.mkdir()
    tiny_clip(movies / "a.avi")
    tiny_clip(movies4k / "b.avi")
    settings = _write(
        tmp_path / "settings.yaml",
        f"database: {tmp_path}/state/castui.db\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {movies}}}\n"
        f"  - {{name: Movies4k, path: {movies4k}, profile: chromecast-4k-hevc}}\n",
    )
    result = run_castui("config", "check", "--config", str(settings), home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_castui("scan", "--json", "--all", "--config", str(settings), home=tmp_path)
    assert result.returncode == 0, result.stderr
    paths = [Path(row["path"]).name for row in json.loads(result.stdout)]
    assert sorted(paths) == ["a.avi", "b.avi"]


def test_config_check_refuses_a_library_that_is_a_file(tmp_path: Path) -> None:
    not_a_folder = _write(tmp_path / "movies.txt", "not a folder\n")
    settings = _write(
        tmp_path / "settings.yaml",
        f"database: {tmp_path}/state/castui.db\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {not_a_folder}}}\n",
    )
    result = run_castui("config", "check", "--config", str(settings), home=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{not_a_folder} (library 'Movies') is a file, not a folder" in result.stderr
