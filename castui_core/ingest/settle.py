"""The settle tracker: a nominated file is handed on only once it has stopped changing.

Filesystem events (and scans that find a freshly written file) only *nominate* a path. A
downloader or a copy over the network writes a file for minutes, and a file probed or converted
half-way through is a broken job at best and a broken output at worst. So a nominated path is
handed on only when its (size, mtime_ns, inode) has stayed the same for ``settle_seconds``; a
file that is still growing is simply looked at again later, never rejected.

The tracker is deliberately pure: it never touches the filesystem or the event loop itself.
The caller asks which paths are :meth:`SettleTracker.due`, stats them (in a thread, batched,
with :func:`stat_many`) and reports what it saw with :meth:`SettleTracker.observe`. The clock
is injectable, so the unit tests run the whole state machine deterministically with fake time.
"""

from __future__ import annotations

import heapq
import os
import stat as stat_mod
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


@dataclass(frozen=True, slots=True)
class FileStat:
    """What "unchanged" means for a file: same size, same mtime, same inode."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


#: What a stat found: a regular file's fingerprint, or ``None`` for "not there (any more)".
Observation = FileStat | None
StatFn = Callable[[str], Observation]


def stat_file(path: str) -> Observation:
    """Fingerprint of a regular file (symlinks followed); ``None`` if missing or not a file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return FileStat.from_stat(st)


def stat_many(paths: Iterable[str], stat: StatFn = stat_file) -> list[Observation]:
    """Stat many paths in one go (the caller runs this in a thread: stat can block on NFS)."""
    return [stat(p) for p in paths]


class Verdict(StrEnum):
    WAITING = "waiting"  # changed, or not stable for long enough yet: looked at again later
    SETTLED = "settled"  # unchanged for settle_seconds: hand it on (probe, decide, queue)
    GONE = "gone"  # vanished before it settled: forgotten


@dataclass(slots=True)
class _Pending:
    library: str
    seen: Observation | Literal["unknown"]
    changed_at: float
    due_at: float
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Settled:
    """A path that stopped changing, with the fingerprint it settled at."""

    path: str
    library: str
    stat: FileStat
    retries: int


class SettleTracker:
    """Pending nominated paths and when each should next be looked at.

    ``nominate`` may carry the stat taken when the event happened (the watchdog thread takes
    it, so the loop never blocks); then a file written for the last time at *t* settles at
    ``t + settle_seconds`` with a single further stat. Without it, the first look records the
    fingerprint and the file settles one window later.
    """

    def __init__(self, settle_seconds: float, *, clock: Callable[[], float] = time.monotonic):
        if settle_seconds < 0:
            raise ValueError("settle_seconds must be >= 0")
        self.settle_seconds = settle_seconds
        self.clock = clock
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, str]] = []  # (due_at, path); stale entries skipped

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: object) -> bool:
        return path in self._pending

    def pending(self) -> dict[str, str]:
        """path -> library of every path still settling."""
        return {p: e.library for p, e in self._pending.items()}

    def _schedule(self, path: str, entry: _Pending, due_at: float) -> None:
        entry.due_at = due_at
        heapq.heappush(self._heap, (due_at, path))

    def nominate(
        self,
        path: str,
        library: str,
        seen: Observation | Literal["unknown"] = "unknown",
        *,
        delay: float | None = None,
    ) -> None:
        """Something happened to ``path``: (re)start its settle window from now.

        Many events for one path collapse into one pending entry, so a burst of a hundred
        writes costs one stat at the end, and one job at most. ``delay`` overrides the window
        (a probe that failed on a settled file waits a little longer before the next look).
        """
        now = self.clock()
        window = self.settle_seconds if delay is None else delay
        entry = self._pending.get(path)
        if entry is None:
            entry = _Pending(library, seen, now, now + window)
            self._pending[path] = entry
        else:
            entry.library = library
            if seen != "unknown":
                entry.seen = seen
            entry.changed_at = now
        self._schedule(path, entry, now + window)

    def retry_later(self, settled: Settled, delay: float) -> None:
        """Look at a settled file again after ``delay`` (its probe failed: maybe not done yet)."""
        self.nominate(settled.path, settled.library, settled.stat, delay=delay)
        self._pending[settled.path].retries = settled.retries + 1

    def forget(self, path: str) -> bool:
        """Drop a pending path (deleted or moved away); True if it was pending."""
        return self._pending.pop(path, None) is not None

    def forget_under(self, directory: str) -> list[str]:
        """Drop every pending path below ``directory`` (a folder went away)."""
        prefix = directory.rstrip("/") + "/"
        gone = [p for p in self._pending if p.startswith(prefix)]
        for path in gone:
            del self._pending[path]
        return gone

    def next_deadline(self) -> float | None:
        """When the earliest pending path is due (clock time), or ``None`` if none is pending."""
        while self._heap:
            due_at, path = self._heap[0]
            entry = self._pending.get(path)
            if entry is not None and entry.due_at == due_at:
                return due_at
            heapq.heappop(self._heap)  # stale: forgotten or rescheduled since
        return None

    def due(self) -> list[str]:
        """Paths whose window has run out: stat them and pass the results to ``observe``."""
        now = self.clock()
        out: dict[str, None] = {}  # ordered and without duplicates
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, path = heapq.heappop(self._heap)
            out[path] = None
        return list(out)

    def observe(self, path: str, seen: Observation) -> tuple[Verdict, Settled | None]:
        """Judge one due path by what a fresh stat found."""
        entry = self._pending.get(path)
        if entry is None:
            return Verdict.GONE, None
        now = self.clock()
        if seen is None:
            del self._pending[path]
            return Verdict.GONE, None
        if entry.seen != seen:
            # Changed since the last look (or never looked at): the window starts again.
            entry.seen = seen
            entry.changed_at = now
            self._schedule(path, entry, now + self.settle_seconds)
            return Verdict.WAITING, None
        if now - entry.changed_at < self.settle_seconds - 1e-9:
            self._schedule(path, entry, entry.changed_at + self.settle_seconds)
            return Verdict.WAITING, None
        del self._pending[path]
        return Verdict.SETTLED, Settled(path, entry.library, seen, entry.retries)

    def check_due(self, stat: StatFn = stat_file) -> list[tuple[str, Verdict, Settled | None]]:
        """``due`` + stat + ``observe`` in one blocking call (for tests and simple callers)."""
        return [(p, *self.observe(p, stat(p))) for p in self.due()]
