"""castui's own folder cannot be written: one sentence naming that folder, exit 2, everywhere.

Issue 10 #8. Tests run as root, for whom mode bits stop nothing, so the folder is made
unusable the ways root meets too: a regular file where the folder should be (ENOTDIR), and an
immutable folder (``chattr +i``: EPERM even for root; skipped where the filesystem has no
such flag).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import run_castui
from realtime_site import tiny_clip


def _settings(root: Path, database: Path) -> Path:
    lib = root / "lib"
    lib.mkdir(exist_ok=True)
    settings = root / "settings.yaml"
    settings.write_text(
        f"database: {database}\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {lib}, watch: false}}\n"
        "operational: {encoder: cpu, min_free_gb: 0}\n"
        "scan: {settle_seconds: 0}\n",
        encoding="utf-8",
    )
    return settings


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Folders to make immutable with ``chattr +i``; made mutable again afterwards."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def _freeze(folder: Path, immutable: list[Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here")
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {done.stderr.decode().strip()}")
    immutable.append(folder)
    try:
        (folder / "probe").touch()
    except OSError:
        return
    (folder / "probe").unlink()
    pytest.skip("an immutable folder is still writable here")


def _assert_one_sentence(result: subprocess.CompletedProcess[str], folder: Path) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot write castui's folder {folder} (" in result.stderr, result.stderr
    assert "set `database:` in the settings" in result.stderr


ENTRY_POINTS = [
    pytest.param(["--no-ui", "--once"], id="headless"),
    pytest.param(["convert", "{lib}/a.avi"], id="convert"),
    pytest.param(["queue"], id="queue"),
    pytest.param(["history"], id="history"),
    pytest.param([], id="dashboard"),
]


@pytest.mark.parametrize("argv", ENTRY_POINTS)
def test_database_folder_under_a_file(tmp_path: Path, argv: list[str]) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where castui's folder should be\n")
    settings = _settings(tmp_path, blocker / "castui" / "castui.db")
    tiny_clip(tmp_path / "lib" / "a.avi")
    args = [a.format(lib=tmp_path / "lib") for a in argv]
    config = ["--config", str(settings)]
    result = run_castui(*args, *config, home=tmp_path, timeout=60)
    _assert_one_sentence(result, blocker / "castui")
    assert f"{blocker} is a file, not a folder" in result.stderr

    check = run_castui("config", "check", *config, home=tmp_path)
    _assert_one_sentence(check, blocker / "castui")


@pytest.mark.parametrize("sub", ["", "logs", "journal"])
def test_read_only_folder_is_named_not_the_library(
    tmp_path: Path, immutable: list[Path], sub: str
) -> None:
    """A read-only database folder, ``logs/`` or ``journal/``: the service and ``convert``
    name that folder (not "cannot prepare <library>", not a traceback from the log set-up)."""
    database = tmp_path / "state" / "castui.db"
    settings = _settings(tmp_path, database)
    source = tiny_clip(tmp_path / "lib" / "a.avi")
    frozen = database.parent / sub if sub else database.parent
    _freeze(frozen, immutable)
    config = ["--config", str(settings)]

    result = run_castui("--no-ui", "--once", *config, home=tmp_path, timeout=60)
    _assert_one_sentence(result, frozen)
    assert "Operation not permitted" in result.stderr

    result = run_castui("convert", str(source), *config, home=tmp_path, timeout=120)
    _assert_one_sentence(result, frozen)
    assert "cannot prepare" not in result.stderr
    assert not (tmp_path / "lib" / "a.mp4").exists()

    check = run_castui("config", "check", *config, home=tmp_path)
    _assert_one_sentence(check, frozen)


def test_config_check_alone_finds_a_read_only_journal(
    tmp_path: Path, immutable: list[Path]
) -> None:
    """Nothing has run yet (no ``logs/``): ``config check`` still looks at ``journal/``."""
    database = tmp_path / "state" / "castui.db"
    settings = _settings(tmp_path, database)
    _freeze(database.parent / "journal", immutable)
    check = run_castui("config", "check", "--config", str(settings), home=tmp_path)
    _assert_one_sentence(check, database.parent / "journal")
    assert not (database.parent / "logs").exists()  # a check creates nothing
