"""Free-space guard: a job starts only if its output fits and ``min_free_gb`` stays free.

Why before the job and not only when writing: a 40 GB encode that fills the disk at 95 % wastes
hours and can break other programs on the same disk (Jellyfin's database, downloads). Waiting
with a reason ("waiting: 3.1 GB free on /media < 20 GB") lets the operator act instead.

Sizes are decimal GB (10⁹ bytes), the unit ``df -H`` and file managers show.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from castui_core.fsinfo import filesystem_of

GB = 1_000_000_000


@dataclass(frozen=True)
class FreeSpace:
    """Free bytes (for unprivileged users) on the filesystem holding a path, and its mount."""

    free_bytes: int
    mount: str


#: Reads free space for a path; may block (network shares), so it runs in a thread.
FreeSpaceReader = Callable[[Path], FreeSpace]


def gb_to_bytes(gb: float) -> int:
    return round(gb * GB)


def format_gb(n: int, digits: int = 1) -> str:
    """``3.1 GB``, ``20 GB`` (no ``.0``); below 1 GB in MB (``250 MB``, ``4 MB``), so a full
    disk never reads "0 GB free"."""
    mb = n / 1_000_000
    if round(abs(mb)) < 1000:
        return f"{mb:.1f} MB" if 0 < abs(mb) < 10 and round(mb) != mb else f"{mb:.0f} MB"
    value = n / GB
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} GB"


def _existing(path: Path) -> Path:
    """The path itself, or its nearest existing parent (outputs may go to a dir not yet made)."""
    probe = path.expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _mount_point(path: Path) -> str:
    mount = filesystem_of(path)
    if mount is not None:
        return mount.mount_point
    probe = path.resolve()
    while not os.path.ismount(probe) and probe != probe.parent:
        probe = probe.parent
    return str(probe)


def read_free_space(path: Path) -> FreeSpace:
    """Free space for ``path`` (or its nearest existing parent) and that filesystem's mount.

    Blocks (statvfs on a dead network share can hang): call it off the event loop.
    """
    probe = _existing(path)
    return FreeSpace(shutil.disk_usage(probe).free, _mount_point(probe))


def disk_reason(free_bytes: int, needed_bytes: int, min_free_bytes: int, mount: str) -> str | None:
    """Why a job must wait for space on ``mount``, or ``None`` when it fits.

    The job fits when ``free - needed >= min_free``: the output must be written *and* the
    configured reserve must still be free afterwards.
    """
    needed_bytes = max(needed_bytes, 0)
    min_free_bytes = max(min_free_bytes, 0)
    if free_bytes - needed_bytes >= min_free_bytes:
        return None
    limit = min_free_bytes if needed_bytes == 0 else needed_bytes if min_free_bytes == 0 else None
    free_text = format_gb(free_bytes)
    if limit is not None and free_text == format_gb(limit):
        free_text = format_gb(free_bytes, 3)  # "19.96 GB free < 20 GB", not "20 GB < 20 GB"
    free = f"waiting: {free_text} free on {mount}"
    if needed_bytes == 0:
        return f"{free} < {format_gb(min_free_bytes)}"
    if min_free_bytes == 0:
        return f"{free} < the {format_gb(needed_bytes)} estimated output"
    return (
        f"{free} < {format_gb(min_free_bytes)} plus the {format_gb(needed_bytes)} estimated output"
    )
