"""``castui --version``: what a bug report needs in four lines.

castui's version (one source: ``castui_core.__version__``, which pyproject.toml reads too),
Python's, ffmpeg's (the binary castui would use) and the database schema: the version this
castui writes and the one the configured database is at, so a downgrade or a pending
migration shows before anything runs.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from castui_core import __version__
from castui_core.errors import CastuiError
from castui_core.settings import load_settings
from castui_core.store.db import SCHEMA_VERSION
from castui_core.subproc import run_bounded
from castui_core.tools import find_tool


def database_version(path: Path) -> int | None:
    """The schema version of the database at ``path`` (read-only), None if there is none."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def ffmpeg_line(configured: Path | None) -> str:
    try:
        path = find_tool("ffmpeg", configured)
    except CastuiError as exc:
        return f"ffmpeg: not found ({exc})"
    try:
        done = asyncio.run(
            run_bounded([str(path), "-hide_banner", "-version"], timeout_s=10, capture_stdout=True)
        )
    except OSError as exc:
        return f"ffmpeg: {path} did not run ({exc or type(exc).__name__})"
    # Imported here: castui_core.doctor is heavy and every castui command imports this module.
    from castui_core.doctor import parse_version

    version = parse_version(done.stdout.decode("utf-8", errors="replace")) or "unknown version"
    return f"ffmpeg {version} ({path})"


def version_lines(config: str | None) -> list[str]:
    lines = [f"castui {__version__}", f"Python {platform.python_version()}"]
    try:
        settings = load_settings(config)
    except CastuiError as exc:
        return [*lines, ffmpeg_line(None), f"database schema {SCHEMA_VERSION} ({exc})"]
    lines.append(ffmpeg_line(settings.ffmpeg))
    at = database_version(settings.database)
    if at is None:
        lines.append(f"database schema {SCHEMA_VERSION} (no database at {settings.database} yet)")
    else:
        note = (
            "up to date"
            if at == SCHEMA_VERSION
            else "migrated (after a backup) at next start"
            if at < SCHEMA_VERSION
            else "NEWER than this castui: upgrade castui or restore the pre-upgrade backup"
        )
        lines.append(f"database schema {SCHEMA_VERSION}; {settings.database} is at {at}: {note}")
    return lines


class VersionAction(argparse.Action):
    """``--version``: print the lines and exit (reads ``--config`` when given before it)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("nargs", 0)
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print("\n".join(version_lines(getattr(namespace, "config", None))))
        parser.exit()
