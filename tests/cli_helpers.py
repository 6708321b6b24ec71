"""Running the real ``castui`` command in a subprocess, isolated from the developer's setup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def castui_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment with HOME and the XDG dirs under ``home`` and no $CASTUI_CONFIG, so
    no real settings, database or logs are ever touched; ``extra`` is added on top."""
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    env.pop("CASTUI_CONFIG", None)
    env.pop("CASTUI_SHIM_REALTIME", None)
    env.update(extra)
    return env


def run_castui(
    *args: str, home: Path, cwd: Path | None = None, timeout: float = 300, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m castui ARGS`` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "castui", *args],
        capture_output=True,
        text=True,
        env=castui_env(home, **extra_env),
        cwd=cwd or home,
        timeout=timeout,
        check=False,
    )
