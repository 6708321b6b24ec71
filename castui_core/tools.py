"""Finding ffmpeg and ffprobe.

Order: the ``ffmpeg:``/``ffprobe:`` paths in settings, then jellyfin-ffmpeg (its build has
the GPU tone-mapping filters and matches what Jellyfin itself transcodes with), then ``PATH``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from castui_core.errors import ToolNotFoundError

JELLYFIN_FFMPEG_DIR = Path("/usr/lib/jellyfin-ffmpeg")

ToolName = Literal["ffmpeg", "ffprobe"]

_INSTALL_HINT = (
    "install FFmpeg (Debian/Ubuntu: sudo apt-get install ffmpeg; or jellyfin-ffmpeg), "
    "or set {name}: /path/to/{name} in settings.yaml"
)


@dataclass(frozen=True)
class Tools:
    ffmpeg: Path
    ffprobe: Path


def find_tool(
    name: ToolName,
    configured: Path | None = None,
    *,
    jellyfin_dir: Path = JELLYFIN_FFMPEG_DIR,
    path_env: str | None = None,
) -> Path:
    """Locate one tool; raise ``ToolNotFoundError`` saying how to install it."""
    if configured is not None:
        if configured.is_file() and os.access(configured, os.X_OK):
            return configured
        raise ToolNotFoundError(
            f"{name}: {configured} (from settings) is not an executable file; fix the path or "
            f"remove the {name}: key to search {jellyfin_dir} and PATH"
        )
    bundled = jellyfin_dir / name
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which(name, path=path_env)
    if found is not None:
        return Path(found)
    raise ToolNotFoundError(f"{name} not found: " + _INSTALL_HINT.format(name=name))


def find_tools(
    ffmpeg: Path | None = None,
    ffprobe: Path | None = None,
    *,
    jellyfin_dir: Path = JELLYFIN_FFMPEG_DIR,
    path_env: str | None = None,
) -> Tools:
    """Locate both tools (each may come from a different place)."""
    return Tools(
        ffmpeg=find_tool("ffmpeg", ffmpeg, jellyfin_dir=jellyfin_dir, path_env=path_env),
        ffprobe=find_tool("ffprobe", ffprobe, jellyfin_dir=jellyfin_dir, path_env=path_env),
    )
