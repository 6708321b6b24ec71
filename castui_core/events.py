"""Every event the core publishes: the one stream the TUI, headless mode and tests read.

Events are frozen dataclasses. High-rate kinds (progress) set ``coalesce = True``: a
subscriber that has not yet taken one gets it replaced by the newer one with the same
``coalesce_key`` instead of a growing backlog (the TUI bridge maps this to ``can_replace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Event:
    """Base class of all core events."""

    coalesce: ClassVar[bool] = False

    @property
    def coalesce_key(self) -> object:
        return type(self)


@dataclass(frozen=True)
class ScanStarted(Event):
    library: str
    root: str


@dataclass(frozen=True)
class ScanProgress(Event):
    """Periodic scan progress: files found by the walk so far and files decided so far."""

    coalesce: ClassVar[bool] = True
    library: str
    found: int
    decided: int
    walk_done: bool

    @property
    def coalesce_key(self) -> object:
        return (type(self), self.library)


@dataclass(frozen=True)
class FileDecided(Event):
    """One file probed and decided."""

    library: str
    path: str
    size: int
    action: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ScanProblem(Event):
    """Something the scan could not read (a directory, a loop, a missing root)."""

    library: str
    path: str
    reason: str


@dataclass(frozen=True)
class ScanFinished(Event):
    library: str
    files: int
    counts: tuple[tuple[str, int], ...]
    bytes_to_process: int
    seconds: float


@dataclass(frozen=True)
class JobStarted(Event):
    """An encode (or remux) of one file started; ``command`` is the exact ffmpeg argv."""

    path: str
    action: str
    backend: str
    encoder: str
    command: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobProgress(Event):
    """Encode progress of one file (coalesced: a slow reader sees only the newest)."""

    coalesce: ClassVar[bool] = True
    path: str
    percent: float | None
    fps: float | None
    speed: float | None
    eta_s: float | None
    out_time_s: float | None
    output_bytes: int | None

    @property
    def coalesce_key(self) -> object:
        return (type(self), self.path)


@dataclass(frozen=True)
class JobNote(Event):
    """Something worth telling about a running job (fallback to CPU, validation, swap)."""

    path: str
    message: str


@dataclass(frozen=True)
class JobFinished(Event):
    """One file finished: ``status`` is done, skipped, rejected, failed or cancelled."""

    path: str
    status: str
    action: str
    reason: str | None
    output_path: str | None
    bytes_before: int
    bytes_after: int | None
    seconds: float
    encoder: str | None
