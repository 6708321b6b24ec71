"""What ``castui scan`` and ``castui --no-ui`` import before they do any work (issue 14).

Every module a CLI path imports is paid for on each run: ``castui scan`` of an unchanged
library spent over half its time importing. rich (~50 ms), textual, httpx and redis are only
needed for a table or colour on a terminal, the dashboard, Jellyfin/Sonarr calls and a Redis
queue; PyAV is for the probe workers, not the main process. These tests run the real command
in a fresh interpreter and fail if one of them comes back at start-up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import castui_env

#: Top-level packages the non-interactive CLI paths must not import.
HEAVY = ("rich", "textual", "httpx", "httpcore", "redis", "hiredis", "av")

#: Runs ``python -m castui ARGS`` and, at exit, writes the imported module names to DUMP.
_WRAPPER = """
import atexit, json, runpy, sys
dump = sys.argv.pop(1)
atexit.register(lambda: open(dump, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "castui"
runpy.run_module("castui", run_name="__main__", alter_sys=True)
"""


def _no_terminal_env(home: Path) -> dict[str, str]:
    """castui's isolated environment, minus what would make rich treat a pipe as a terminal."""
    env = castui_env(home)
    for name in ("FORCE_TERMINAL", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "FORCE_COLOR"):
        env.pop(name, None)
    return env


def _heavy(modules: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    dump = tmp_path / "modules.json"
    dump.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(dump), *args],
        capture_output=True,
        text=True,
        env=_no_terminal_env(tmp_path / "home"),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    modules: list[str] = json.loads(dump.read_text()) if dump.exists() else []
    return done, modules


def _library(tmp_path: Path, samples: dict[str, Path]) -> Path:
    """One file a Chromecast plays as it is (H.264 + AAC in MP4): the scan skips it."""
    (tmp_path / "home").mkdir()
    library = tmp_path / "lib"
    library.mkdir()
    shutil.copy(samples["compliant.mp4"], library / "clip.mp4")
    return library


def test_scan_of_an_unchanged_library_imports_no_ui_or_network_package(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    library = _library(tmp_path, samples)
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"database: {tmp_path / 'castui.db'}\nlibraries:\n  - name: tiny\n    path: {library}\n"
    )
    first, _ = _run(tmp_path, "scan", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "1 files probed" in first.stderr

    again, modules = _run(tmp_path, "scan", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert "1 unchanged files not probed again" in again.stderr  # the catalog was reused
    assert again.stdout.startswith("1 files: 1 skip, 0 remux, 0 transcode, 0 reject;")
    assert modules, "the wrapper wrote no module list"
    assert "castui.scan_view" in modules  # it really ran the scan
    assert _heavy(modules) == []


def test_scan_with_a_table_still_draws_it_with_rich(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    """The lazy import is not a lost feature: ``--all`` shows the table, through rich."""
    library = _library(tmp_path, samples)
    done, modules = _run(tmp_path, "scan", "--all", str(library))
    assert done.returncode == 0, done.stderr
    assert "clip.mp4" in done.stdout and "skip" in done.stdout
    assert "rich" in {m.split(".")[0] for m in modules}


def test_cli_and_headless_modules_import_no_ui_or_network_package(tmp_path: Path) -> None:
    """``castui --no-ui`` (service and ``--once``) starts from these two modules."""
    code = (
        "import json, sys, castui.cli, castui.headless\n"
        "castui.cli.build_parser()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_no_terminal_env(tmp_path),
        cwd=tmp_path,  # not the checkout: the installed castui, as a user runs it
        timeout=120,
        check=True,
    )
    modules = json.loads(done.stdout)
    assert _heavy(modules) == []
    # ruamel.yaml writes the settings file: a save on request, never at start-up.
    assert not [m for m in modules if m.startswith("ruamel")]
