"""What the dashboard knows from the event stream, in one plain object (no widgets here).

The app applies every :class:`~castui.tui.bridge.CoreEvent` to a :class:`LiveState` and
tells the visible screen which parts changed; screens render from it. Durable facts (the
queue, history, attempts) are read from the store; only what the store does not hold (live
progress, GPU readings, tripped guardrails, library watch states, the log) lives here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from castui.headless import EventFormatter
from castui_core.events import (
    Event,
    GpuSample,
    GuardrailCleared,
    GuardrailTripped,
    JellyfinState,
    JobCancelled,
    JobFinished,
    JobNote,
    JobOutput,
    JobProgress,
    JobQueued,
    JobStarted,
    LibraryState,
    QueueState,
    ScanFinished,
    ScanProgress,
    ScanStarted,
    ServiceConnection,
)

#: Parts of the state an event can change (screens refresh only what they show).
JOBS = "jobs"  # the set of queued/running jobs changed: re-read the store
PROGRESS = "progress"
GUARDS = "guards"
LOG = "log"
LIBRARIES = "libraries"
SERVICE = "service"  # the link to a castui service in another process
JELLYFIN = "jellyfin"  # Jellyfin's link, version and outbox

HISTORY_POINTS = 60


@dataclass
class LiveJob:
    """A running encode as the events describe it (the store has the rest)."""

    path: str
    action: str = ""
    backend: str = ""
    encoder: str = ""
    command: tuple[str, ...] = ()
    percent: float | None = None
    fps: float | None = None
    speed: float | None = None
    eta_s: float | None = None
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    stderr_tail: str = ""


@dataclass
class LibraryView:
    state: str = "unknown"
    reason: str = ""
    scanning: bool = False
    found: int = 0
    last_scan_at: float | None = None
    last_scan_files: int | None = None


class LiveState:
    """The dashboard's memory of the event stream."""

    def __init__(self, clock: Callable[[], float], log_lines: int = 500) -> None:
        self.clock = clock
        self.paused = False
        self.pause_reason = ""
        self.guards: dict[str, str] = {}
        self.gpus: dict[int, GpuSample] = {}
        self.temp_history: dict[int, deque[float]] = {}
        self.encoder_history: dict[int, deque[float]] = {}
        self.live: dict[str, LiveJob] = {}
        self.libraries: dict[str, LibraryView] = {}
        self.log: deque[tuple[float, str, str]] = deque(maxlen=log_lines)
        self.log_serial = 0
        #: The link to a service in another process; None when the engine is in-process.
        self.service: ServiceConnection | None = None
        #: Jellyfin as the engine last reported it; None until a report (or not configured).
        self.jellyfin: JellyfinState | None = None
        self._formatter = EventFormatter(clock=clock)

    def apply(self, event: Event) -> set[str]:
        """Update from one event; returns the parts that changed."""
        changed: set[str] = set()
        line = self._formatter.line(event)
        if line is not None and line[0] != "debug":
            self.log.append((self.clock(), line[0], line[1]))
            self.log_serial += 1
            changed.add(LOG)
        if isinstance(event, ServiceConnection):
            return changed | self._service(event)
        if isinstance(event, JobProgress):
            job = self.live.setdefault(event.path, LiveJob(event.path))
            job.percent, job.fps, job.speed, job.eta_s = (
                event.percent,
                event.fps,
                event.speed,
                event.eta_s,
            )
            changed.add(PROGRESS)
        elif isinstance(event, JobStarted):
            job = self.live.setdefault(event.path, LiveJob(event.path))
            job.action, job.backend, job.encoder = event.action, event.backend, event.encoder
            job.command = event.command
            job.notes.extend(event.notes)
            changed |= {JOBS, PROGRESS}
        elif isinstance(event, JobNote):
            self.live.setdefault(event.path, LiveJob(event.path)).notes.append(event.message)
            changed.add(PROGRESS)
        elif isinstance(event, JobOutput):
            self.live.setdefault(event.path, LiveJob(event.path)).stderr_tail = event.tail
            changed.add(PROGRESS)
        elif isinstance(event, JobFinished | JobCancelled):
            self.live.pop(event.path, None)
            changed |= {JOBS, PROGRESS}
        elif isinstance(event, JobQueued):
            changed.add(JOBS)
        elif isinstance(event, JellyfinState):
            self.jellyfin = event
            changed.add(JELLYFIN)
        elif isinstance(event, QueueState):
            self.paused = event.paused
            self.pause_reason = event.reason or (f"by {event.actor}" if event.actor else "")
            changed |= {GUARDS, JOBS}
        elif isinstance(event, GuardrailTripped):
            self.guards[event.name] = event.reason
            changed.add(GUARDS)
        elif isinstance(event, GuardrailCleared):
            self.guards.pop(event.name, None)
            changed.add(GUARDS)
        elif isinstance(event, GpuSample):
            self.gpus[event.index] = event
            if event.temperature_c is not None:
                self._push(self.temp_history, event.index, float(event.temperature_c))
            if event.encoder_percent is not None:
                self._push(self.encoder_history, event.index, float(event.encoder_percent))
            changed.add(GUARDS)
        elif isinstance(event, LibraryState):
            lib = self.libraries.setdefault(event.library, LibraryView())
            lib.state, lib.reason = event.state, event.reason
            changed.add(LIBRARIES)
        elif isinstance(event, ScanStarted):
            lib = self.libraries.setdefault(event.library, LibraryView())
            lib.scanning, lib.found = True, 0
            changed.add(LIBRARIES)
        elif isinstance(event, ScanProgress):
            lib = self.libraries.setdefault(event.library, LibraryView())
            lib.found = event.found
            changed.add(LIBRARIES)
        elif isinstance(event, ScanFinished):
            lib = self.libraries.setdefault(event.library, LibraryView())
            lib.scanning = False
            lib.last_scan_at, lib.last_scan_files = self.clock(), event.files
            changed |= {LIBRARIES, JOBS}
        return changed

    def _service(self, event: ServiceConnection) -> set[str]:
        """Lost: nothing live may look current (no frozen progress). Attached: forget what the
        old stream said; the service sends its state again right after."""
        was = self.service
        self.service = event
        if event.state == "attached":
            self.guards.clear()
            self.gpus.clear()
            self.live.clear()
            self.jellyfin = None  # the service's Jellyfin, if any, is sent again
            self._note("info", f"attached to the castui service ({event.detail})")
        else:
            self.live.clear()  # RemoteEngine logs the loss itself
            if was is None and event.state == "waiting":
                self._note("warning", self.service_text())
        return {SERVICE, PROGRESS, GUARDS, JOBS, LOG, JELLYFIN}

    def _note(self, level: str, text: str) -> None:
        self.log.append((self.clock(), level, text))
        self.log_serial += 1

    def service_text(self) -> str:
        """The link to the service in plain words ('' when the engine is in-process)."""
        link = self.service
        if link is None:
            return ""
        if link.state == "attached":
            return f"attached to the castui service ({link.detail})"
        retry = "" if link.retry_in_s is None else f" · retrying in {link.retry_in_s:g} s"
        tries = f" (try {link.attempt})" if link.attempt > 1 else ""
        if link.state == "waiting":
            return f"waiting for the castui service: {link.detail}{retry}{tries}"
        return f"service lost: {link.detail}{retry}{tries}"

    def jellyfin_text(self) -> str:
        """Jellyfin in plain words ('' when no report came: Jellyfin is not configured).

        Built only from :class:`JellyfinState`, which never holds the API key, so nothing here
        can show it. The first line is the link and the outbox; each failed health check
        (an unmapped library, a refused key) follows on its own line, because the guardrail
        panel is where an operator looks for why things are not happening.
        """
        jf = self.jellyfin
        if jf is None:
            return ""
        outbox = f"outbox {jf.outbox_pending:,} pending"
        if jf.outbox_stopped:
            outbox += f", {jf.outbox_stopped:,} stopped"
        name = f"Jellyfin {jf.version}" if jf.version else "Jellyfin"
        checks = [p for p in jf.problems if f"Jellyfin check: {p}" != jf.last_error]
        error = jf.last_error
        if jf.connected:
            line = f"{name}: connected · {outbox}"
            if error and not error.startswith("Jellyfin check: "):
                line += f" · {error}"
        else:
            line = f"{name}: unreachable" + (f" — {error}" if error else "") + f" · {outbox}"
        return "\n".join([line, *(f"check: {p}" for p in checks)])

    @property
    def jellyfin_trouble(self) -> bool:
        """Jellyfin needs a look: unreachable, a refused batch or a failed health check."""
        jf = self.jellyfin
        return jf is not None and (
            not jf.connected or bool(jf.outbox_stopped or jf.problems or jf.last_error)
        )

    @property
    def service_lost(self) -> bool:
        return self.service is not None and self.service.state != "attached"

    @staticmethod
    def _push(history: dict[int, deque[float]], index: int, value: float) -> None:
        history.setdefault(index, deque(maxlen=HISTORY_POINTS)).append(value)

    def waiting_reason(self) -> str:
        """Why no new job starts now, in plain words ('' when work may start)."""
        if self.paused:
            return "queue paused" + (f" ({self.pause_reason})" if self.pause_reason else "")
        if self.guards:
            return "; ".join(self.guards[name] for name in sorted(self.guards))
        return ""
