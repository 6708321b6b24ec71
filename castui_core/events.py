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
class JobOutput(Event):
    """The last lines ffmpeg wrote to stderr for a running job (coalesced: a rolling tail, so
    a flood of warnings never floods the bus)."""

    coalesce: ClassVar[bool] = True
    path: str
    tail: str

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


@dataclass(frozen=True)
class JobStateChanged(Event):
    """A job's state change, published only once the store has committed it.

    Every transition the engine makes (claimed, done, failed, dead, released, cancelled,
    retried, priority changed, reclaimed after a lost lease) is published right after the
    store call returns, so a subscriber that acts on it (the dashboard, metrics, a media
    server notifier) never acts on a state a crash could still undo. ``old``/``new`` are
    ``JobState`` values (equal for a priority change); ``output_path`` is set when ``new`` is
    ``done``; ``reason`` says why in words (the failure, "waiting: disk full", ...).
    """

    job_id: int
    path: str
    library: str
    old: str
    new: str
    reason: str = ""
    output_path: str | None = None
    attempts: int = 0
    priority: int = 0
    actor: str = ""


@dataclass(frozen=True)
class JobQueued(Event):
    """A file was queued for work (or an already queued job was pushed back: debounce)."""

    path: str
    library: str
    action: str
    reasons: tuple[str, ...]
    outcome: str  # created | debounced | rerun_scheduled


@dataclass(frozen=True)
class JobCancelled(Event):
    path: str
    reason: str


@dataclass(frozen=True)
class LibraryState(Event):
    """How a library is watched now: watching, polling, paused (with reason) or off."""

    library: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class GuardrailTripped(Event):
    """A guardrail stops new work (or pauses running work); ``reason`` is shown as is."""

    name: str
    reason: str
    pauses_running: bool = False


@dataclass(frozen=True)
class GuardrailCleared(Event):
    name: str
    reason: str = ""


@dataclass(frozen=True)
class GpuSample(Event):
    """One NVML reading (coalesced per GPU)."""

    coalesce: ClassVar[bool] = True
    index: int
    name: str
    temperature_c: int | None
    encoder_percent: int | None
    encoder_sessions: int | None

    @property
    def coalesce_key(self) -> object:
        return (type(self), self.index)


@dataclass(frozen=True)
class QueueState(Event):
    """The queue was paused or resumed (by an operator, or at start-up from the store)."""

    paused: bool
    actor: str = ""
    reason: str = ""


@dataclass(frozen=True)
class LogLine(Event):
    """A line for the log pane / headless log that is not tied to another event."""

    level: str  # debug | info | warning | error
    message: str


@dataclass(frozen=True)
class ServiceConnection(Event):
    """A dashboard's link to a castui service in another process changed (published only by
    :class:`~castui_core.control.RemoteEngine`): a lost service is shown, never hidden."""

    state: str  # attached | lost | waiting (for a service that is still starting)
    detail: str = ""  # "pid 1234" when attached; why, when lost or waiting
    retry_in_s: float | None = None  # the next try, when lost or waiting
    attempt: int = 0  # tries since the link was lost


@dataclass(frozen=True)
class JellyfinConfirmed(Event):
    """Jellyfin's answer about a finished job's output, published once it is stored.

    ``status``: ``direct_play``, ``transcode`` (``reasons`` are Jellyfin's TranscodeReasons:
    castui's output does not do its job, look at it) or ``unconfirmed`` (Jellyfin did not list
    the file in time, or could not be asked). ``message`` is the line history shows.
    """

    job_id: int
    path: str
    status: str
    message: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class JellyfinState(Event):
    """Jellyfin as castui sees it: for the dashboard, logs and metrics (never the key).

    ``outbox_pending``: notifications waiting to be sent (due or backing off);
    ``outbox_stopped``: ones Jellyfin refused (a settings problem, ``last_error`` says what to
    do; a reload resumes them). ``sent``/``failed`` count notifications since start.
    ``problems``: the latest health check's failures (unmapped libraries, key refused).
    """

    coalesce: ClassVar[bool] = True
    connected: bool
    version: str = ""
    outbox_pending: int = 0
    outbox_stopped: int = 0
    sent: int = 0
    failed: int = 0
    last_error: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class OriginalChanged(Event):
    """An original was archived, restored or purged (published after the database commit).

    ``path``: where the original lives in the library (its home); ``archive``: its place in
    ``<library>/.castui/originals``; ``detail``: the line history and logs show.
    """

    action: str  # "archived" | "restored" | "purged"
    path: str
    archive: str
    detail: str = ""
