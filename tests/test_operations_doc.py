"""Every ``sh tested`` block in docs/operations.md runs as written, in order, in a fresh home.

The guide is what an operator copies into a terminal at a bad moment (a restore, a rollback):
a command that no longer works there costs the most. Blocks run in one bash with ``set -e``
and ``pipefail``, HOME and the XDG folders in a temp dir, castui from this checkout on PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cli_helpers import castui_env

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"
BLOCK = re.compile(r"^```sh tested\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def marked_blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_guide_has_the_sections_the_issue_asks_for() -> None:
    text = DOC.read_text(encoding="utf-8")
    for heading in (
        "## Install",
        "### As a systemd service",
        "## Upgrade",
        "## Backup and restore",
        "## Rollback",
        "## Moving the database",
        "## inotify limits",
        "## Several engines on one host",
        "## Container and several hosts",
        "## Uninstall",
    ):
        assert heading in text, heading
    assert len(marked_blocks()) >= 7


def test_every_tested_command_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    castui = bindir / "castui"  # this checkout's castui, whatever venv runs the tests
    castui.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m castui "$@"\n')
    castui.chmod(0o755)
    env = castui_env(home, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    env["PYTHONPATH"] = str(ROOT)
    for n, block in enumerate(marked_blocks()):
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + block],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"block {n}:\n{block}\n{done.stdout}\n{done.stderr}"
        if "castui --version" in block:
            assert done.stdout.startswith("castui ")
        if "castui queue" in block:
            assert "Traceback" not in done.stderr
    # The last block uninstalled: nothing of castui's is left in the home.
    assert not (home / ".local" / "share" / "castui").exists()
    assert (home / "newdisk" / "castui.db").is_file()  # the moved database was used
