"""Text for numbers a person reads at a glance: sizes, durations, ages, progress bars."""

from __future__ import annotations

from pathlib import PurePath

from castui.scan_view import format_bytes
from castui_core.paths import display_path

__all__ = ["bar", "duration", "format_bytes", "name_of", "opt"]


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h04m``, ``3d02h``; ``—`` when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def ago(then: float | None, now: float) -> str:
    if then is None:
        return "—"
    return f"{duration(max(0.0, now - then))} ago"


def bar(percent: float | None, width: int = 12) -> str:
    """A text progress bar: works in any terminal and any colour depth."""
    if percent is None:
        return "·" * width
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    return "█" * filled + "░" * (width - filled)


def opt(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def name_of(path: str) -> str:
    """The file's name as one printable line (a newline or undecodable byte is escaped)."""
    return display_path(PurePath(path).name)
