"""``castui --version``: castui, Python, ffmpeg and schema versions, from one version source."""

from __future__ import annotations

import asyncio
import platform
import shutil
import subprocess
import tomllib
from pathlib import Path

from cli_helpers import run_castui

from castui_core import __version__
from castui_core.store import Store
from castui_core.store.db import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent


def test_version_names_castui_python_ffmpeg_and_the_schema(tmp_path: Path) -> None:
    database = tmp_path / "state" / "castui.db"
    settings = tmp_path / "settings.yaml"
    (tmp_path / "lib").mkdir()
    settings.write_text(f"database: {database}\nlibraries: [{{name: M, path: {tmp_path}/lib}}]\n")
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    real = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True)
    ffmpeg_version = real.stdout.split()[2]

    before = run_castui("--config", str(settings), "--version", home=tmp_path, timeout=60)
    assert before.returncode == 0, before.stderr
    lines = before.stdout.splitlines()
    assert lines[0] == f"castui {__version__}"
    assert lines[1] == f"Python {platform.python_version()}"
    assert lines[2].startswith(f"ffmpeg {ffmpeg_version} ")
    assert lines[3] == f"database schema {SCHEMA_VERSION} (no database at {database} yet)"

    async def create() -> None:
        async with Store.open(database):
            pass

    asyncio.run(create())
    after = run_castui("--config", str(settings), "--version", home=tmp_path, timeout=60)
    assert f"{database} is at {SCHEMA_VERSION}: up to date" in after.stdout


def test_one_version_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]  # no second copy to forget
    assert project["project"]["dynamic"] == ["version"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "castui_core.__version__"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
