"""The one surface every front end drives an engine through: :class:`EngineAPI`.

Why: the dashboard, the settings screen and the readiness report must work the same with
the engine in-process (:class:`~castui_core.engine.Engine`) and attached to ``castui --no-ui``
(:class:`~castui_core.control.RemoteEngine`). When the two only looked alike, front ends
reached past them (``engine.store.set_priority``, ``isinstance(engine, Engine)``), and an
attached dashboard wrote its audit entries into the database behind the service's back.
Front ends now see only this protocol; mypy checks that both engines implement all of it
(see the end of ``control.py``), so a command added to one and forgotten in the other is a
type error, not a dashboard that fails only when attached.

Commands (pause, cancel, audit entries …) go to whichever process owns the queue. Reads
(queue listing, history, job detail, totals) come from the database, which an attached
dashboard reads through its own read-only handle: the service is not asked for every
refresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from castui_core.bus import EventBus
from castui_core.events import Event
from castui_core.queue.protocol import JobQueue, NodeStatus
from castui_core.report import Calibration, ReadinessReport, build_report
from castui_core.settings import Settings
from castui_core.settings_update import Edit, SettingsUpdate, SettingsView
from castui_core.store import Event as AuditEvent
from castui_core.store import HistoryTotals, Job, JobState, Store
from castui_core.store.confirmations import StoredConfirmation
from castui_core.store.originals import OriginalRecord
from castui_core.store.watch_history import StoredWatchHistory


class EngineAPI(Protocol):
    """What a front end may do with an engine, local or remote."""

    settings: Settings
    bus: EventBus

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None: ...

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop what this process runs: an in-process engine gives running jobs ``grace_s``;
        an attached one only disconnects (the service keeps running)."""

    # --- commands ------------------------------------------------------------------------

    async def pause_queue(self, *, actor: str = ..., reason: str | None = ...) -> None: ...
    async def resume_queue(self, *, actor: str = ..., reason: str | None = ...) -> None: ...
    async def cancel_job(self, job_id: int, *, actor: str = ...) -> Job: ...
    async def retry_job(self, job_id: int, *, actor: str = ...) -> Job: ...
    async def set_priority(self, job_id: int, priority: int, *, actor: str = ...) -> Job: ...
    async def scan(self, library: str | None = ...) -> None: ...
    async def reload(self, settings: Settings) -> None: ...

    async def settings_view(self) -> SettingsView:
        """The engine's settings for a settings screen (secrets as ``set``), and the file a
        save goes to (the service's own, when attached)."""

    async def update_settings(
        self, edits: Sequence[Edit], *, actor: str = ..., revision: str | None = ...
    ) -> SettingsUpdate:
        """Validate, save (round-trip, atomic, backup), audit and apply ``edits`` in the
        process that owns the engine (castui_core/settings_update.py). A refused edit raises
        :class:`~castui_core.errors.SettingsRejected` and nothing is written; ``revision`` (the
        view's) refuses it when the file changed since the view was read."""

    async def restore_original(self, target: int | str, *, actor: str = ...) -> str:
        """Put back the archived original of a done job (``target``: its id, or a path: the
        original's home, castui's output or the archive file) and remove castui's output;
        the line saying what happened, or a CastuiError saying why not and what to do. The
        process that owns the queue does it (the service, when attached)."""

    async def record_event(
        self,
        kind: str,
        *,
        actor: str = ...,
        reason: str | None = ...,
        details: Mapping[str, Any] | None = ...,
    ) -> None:
        """Write an operator's action (a profile or settings edit) to the audit log of the
        database the engine owns."""

    # --- reads ---------------------------------------------------------------------------

    async def running_ids(self) -> list[int]:
        """Jobs this engine (the service, when attached) is encoding now."""

    async def initial_events(self) -> list[Event]:
        """The engine's state now (queue paused, tripped guardrails, libraries, GPUs) as the
        events a viewer that joins late would have seen."""

    async def active_jobs(self) -> list[Job]:
        """Running jobs first, then the queue in the order it will run."""

    async def get_job(self, job_id: int) -> Job: ...

    async def job_events(self, job_id: int, *, limit: int = ...) -> list[AuditEvent]:
        """The audit log of one job, newest first."""

    async def jellyfin_confirmations(
        self, job_ids: Sequence[int]
    ) -> dict[int, StoredConfirmation]: ...

    async def watch_history(self, job_ids: Sequence[int]) -> dict[int, StoredWatchHistory]:
        """What became of the users' Jellyfin watch state across each job's swap."""

    async def originals_for(self, job_ids: Sequence[int]) -> dict[int, OriginalRecord]:
        """Where each job's original is (the newest record: archived with its archive path
        and size, restored or purged); jobs whose original was never archived are absent."""

    async def history(
        self,
        *,
        states: Sequence[JobState | str] | None = ...,
        library: str | None = ...,
        limit: int = ...,
    ) -> list[Job]: ...

    async def totals(self, *, library: str | None = ...) -> HistoryTotals: ...

    async def nodes(self) -> list[NodeStatus]:
        """Every node that heartbeats into the queue (the dashboard's nodes panel)."""
        ...

    async def readiness_report(self, library: str | None = ...) -> ReadinessReport:
        """Per built-in profile: what plays directly and what fixing the rest costs."""
        ...

    async def calibrate(self, library: str | None = ...) -> Calibration:
        """Measure now, with the encoder this engine's jobs use (the service's, when
        attached), the speed of the resolution classes the report has no history for; the
        result is cached beside the database, where ``readiness_report`` reads it. A failed
        encode is not raised: the result's ``failure`` says why (castui_core/calibrate.py)."""
        ...


class StoreReads:
    """The EngineAPI reads, answered from ``self.store``.

    Why one place: the in-process engine, the attached one (its own read handle on the shared
    database) and the dashboard tests' fake engine all answer reads straight from the store;
    written three times, a read added to the API had to be copied three times and could drift.
    A class using this sets ``store`` before the first read (in ``start``).
    """

    store: Store
    settings: Settings

    @property
    def queue(self) -> JobQueue:
        """Where jobs live; this host's store unless a subclass has a shared queue (Redis)."""
        return self.store

    async def active_jobs(self) -> list[Job]:
        """Running jobs first, then the queue in the order it will run."""
        return await self.queue.active_jobs()

    async def get_job(self, job_id: int) -> Job:
        return await self.queue.get_job(job_id)

    async def job_events(self, job_id: int, *, limit: int = 20) -> list[AuditEvent]:
        return await self.queue.list_events(job_id=job_id, limit=limit)

    async def jellyfin_confirmations(self, job_ids: Sequence[int]) -> dict[int, StoredConfirmation]:
        return await self.store.jellyfin_confirmations(job_ids)

    async def watch_history(self, job_ids: Sequence[int]) -> dict[int, StoredWatchHistory]:
        return await self.store.watch_history(job_ids)

    async def originals_for(self, job_ids: Sequence[int]) -> dict[int, OriginalRecord]:
        return await self.store.originals_of_jobs(job_ids)

    async def history(
        self,
        *,
        states: Sequence[JobState | str] | None = None,
        library: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        return await self.queue.history(states=states, library=library, limit=limit)

    async def totals(self, *, library: str | None = None) -> HistoryTotals:
        return await self.queue.totals(library=library)

    async def nodes(self) -> list[NodeStatus]:
        return await self.queue.nodes()

    async def readiness_report(self, library: str | None = None) -> ReadinessReport:
        """The readiness report (castui_core/report.py) from the catalog and finished jobs,
        with the cached calibration (``calibration.json`` beside the database, written by the
        engine or ``castui report``): reads only, never probes or encodes, so a dashboard can
        ask for it at any time."""
        from castui_core.calibrate import cache_path, cached_calibration
        from castui_core.store.catalog import scan_label

        entries = await self.store.list_files()
        history = await self.queue.history(states=["done"], library=None, limit=10_000)
        if library is not None:
            wanted = {library, scan_label(library)}
            entries = [e for e in entries if e.library in wanted]
            history = [j for j in history if j.library in wanted]
        calibration = await cached_calibration(cache_path(self.settings.database))
        return build_report(entries, history, library=library, calibration=calibration)

    async def calibrate(self, library: str | None = None) -> Calibration:
        """Calibrate in this process (an in-process engine is the node that encodes);
        RemoteEngine sends it to the service instead."""
        from castui_core.calibrate import calibrate_report

        report = await self.readiness_report(library)
        return await calibrate_report(self.settings, report, library=library)


__all__ = [
    "AuditEvent",
    "EngineAPI",
    "HistoryTotals",
    "OriginalRecord",
    "StoreReads",
    "StoredConfirmation",
    "StoredWatchHistory",
]
