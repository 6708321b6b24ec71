"""``castui config check`` and ``castui --version`` through the real console entry point.

Each run is a subprocess (``python -m castui``) with HOME and the XDG dirs pointed at temp
dirs, so a developer's real settings are never read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from castui_core import __version__

REPO_ROOT = Path(__file__).resolve().parents[1]


def castui(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CASTUI_CONFIG" and not k.startswith("XDG_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "castui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def fake_tools(tmp_path: Path) -> dict[str, Path]:
    """Executable stand-ins for ffmpeg/ffprobe (config check only looks them up)."""
    tools = {}
    for name in ("ffmpeg", "ffprobe"):
        path = tmp_path / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
        tools[name] = path
    return tools


def valid_settings(tmp_path: Path, tools: dict[str, Path]) -> Path:
    movies = tmp_path / "media" / "movies"
    movies.mkdir(parents=True)
    path = tmp_path / "settings.yaml"
    path.write_text(
        f"database: {tmp_path / 'data' / 'castui.db'}\n"
        f"ffmpeg: {tools['ffmpeg']}\n"
        f"ffprobe: {tools['ffprobe']}\n"
        "libraries:\n"
        "  - name: Movies\n"
        f"    path: {movies}\n"
        "    profile: chromecast-1080p\n"
        "    watch: true\n"
        "    delete_source: false\n"
        "operational:\n"
        "  max_concurrent_jobs: 1\n",
        encoding="utf-8",
    )
    return path


def test_valid_file_prints_ok_and_exits_0(
    tmp_path: Path, home: Path, fake_tools: dict[str, Path]
) -> None:
    path = valid_settings(tmp_path, fake_tools)
    result = castui("config", "check", "--config", str(path), home=home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ok"
    assert str(path) in result.stdout
    assert "Movies" in result.stdout
    assert "chromecast-1080p" in result.stdout
    assert str(fake_tools["ffprobe"]) in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "operational:\n  max_concurrent_jobs: 0\n"
            "libraries:\n  - name: Movies\n    path: /media/movies\n    wach: true\n"
            "profiles:\n  mine:\n    video:\n      level: 6.2\n",
            (
                "operational.max_concurrent_jobs: 0: ",
                "libraries.0.wach: unknown setting",
                "profiles.mine.video.level: 6.2 is above what any Cast device decodes",
            ),
            id="three-field-problems",
        ),
        pytest.param(
            "libraries:\n  - name: Movies\n    path: /media/movies\n    profile: nope\n",
            ("libraries.0.profile: 'nope' is not a profile",),
            id="unknown-profile",
        ),
        pytest.param(
            "database: castui.db\n",
            ("database: 'castui.db': must be an absolute path",),
            id="relative-database",
        ),
        pytest.param(
            "libraries:\n  - name: [Movies\n",
            ("(line 3, column 1): not valid YAML",),
            id="invalid-yaml",
        ),
        pytest.param(
            "- database: /x.db\n",
            ("the top level must be a mapping",),
            id="top-level-list",
        ),
    ],
)
def test_invalid_file_exits_2_with_every_problem_on_stderr(
    tmp_path: Path, home: Path, text: str, problems: tuple[str, ...]
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    result = castui("config", "check", "--config", str(path), home=home, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("castui: ")
    assert str(path) in result.stderr
    for problem in problems:
        assert problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_explicit_file_exits_2(tmp_path: Path, home: Path) -> None:
    missing = tmp_path / "typo.yaml"
    result = castui("config", "check", "--config", str(missing), home=home, cwd=tmp_path)
    assert result.returncode == 2
    assert f"settings file {missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_configured_ffmpeg_missing_is_reported(
    tmp_path: Path, home: Path, fake_tools: dict[str, Path]
) -> None:
    path = valid_settings(tmp_path, fake_tools)
    fake_tools["ffmpeg"].unlink()
    result = castui("config", "check", "--config", str(path), home=home, cwd=tmp_path)
    assert result.returncode == 2
    assert f"ffmpeg: {fake_tools['ffmpeg']} (from settings) is not an executable" in (result.stderr)
    assert "Traceback" not in result.stderr


def test_version(tmp_path: Path, home: Path) -> None:
    result = castui("--version", home=home, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"castui {__version__}"  # then Python, ffmpeg, schema
