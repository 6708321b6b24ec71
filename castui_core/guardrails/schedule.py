"""Processing windows (``schedule: ["01:00-07:00"]``): when castui may start new work.

Why pure functions of an injected "now": window logic (midnight crossing, the next start) is
easy to get wrong and impossible to test against the real clock. Times are local wall-clock
times, as a person writes them in the settings file.

A window includes its start and excludes its end (``01:00-07:00``: 01:00 to 06:59:59). A
window whose start equals its end (``00:00-00:00``) covers the whole day. An empty schedule
means "always".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import NamedTuple


class Window(NamedTuple):
    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


def parse_window(text: str) -> Window:
    """``"22:00-06:00"`` → ``Window(22:00, 06:00)``; ``ValueError`` on anything else."""
    start, sep, end = text.strip().partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a window like '01:00-07:00'")
    try:
        return Window(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a window like '01:00-07:00'") from exc


def _windows(windows: Iterable[str | Window]) -> list[Window]:
    return [w if isinstance(w, Window) else parse_window(w) for w in windows]


def _inside(now: time, window: Window) -> bool:
    start, end = window
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end  # crosses midnight


def in_window(now: time, windows: Iterable[str | Window]) -> bool:
    """Whether ``now`` lies in any window (always, for an empty schedule)."""
    parsed = _windows(windows)
    if not parsed:
        return True
    now = now.replace(tzinfo=None)
    return any(_inside(now, w) for w in parsed)


def next_window_start(now: datetime, windows: Iterable[str | Window]) -> datetime:
    """The first window start strictly after ``now`` (same tzinfo as ``now``).

    ``ValueError`` for an empty schedule, which has no starts.
    """
    parsed = _windows(windows)
    if not parsed:
        raise ValueError("an empty schedule has no window starts")
    candidates = []
    for window in parsed:
        start = datetime.combine(now.date(), window.start, tzinfo=now.tzinfo)
        if start <= now:
            start += timedelta(days=1)
        candidates.append(start)
    return min(candidates)


def schedule_reason(now: datetime, windows: Iterable[str | Window]) -> str | None:
    """``"outside processing window 01:00–07:00 (next start 01:00)"``, or ``None`` inside."""
    parsed = _windows(windows)
    if in_window(now.time(), parsed):
        return None
    label = "window" if len(parsed) == 1 else "windows"
    shown = ", ".join(str(w) for w in parsed)
    nxt = next_window_start(now, parsed)
    return f"outside processing {label} {shown} (next start {nxt:%H:%M})"
