"""The Jellyfin parts that follow the engine: confirmations and the sessions guard.

Why one place: both need their own client (the sender has its own; a slow PlaybackInfo must
not hold a notification back), both follow the settings, and the engine starts and stops them
with one call, like the sender. Both are off unless ``jellyfin:`` is configured;
confirmation needs ``jellyfin.user`` (without it each finished job is recorded as
"unconfirmed: set jellyfin.user", never silently skipped) and the sessions guard needs
``jellyfin.pause_while``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from castui_core.bus import EventBus, Subscription
from castui_core.errors import CastuiError
from castui_core.events import JellyfinConfirmed, JobStateChanged, LogLine
from castui_core.guardrails.jellyfin_sessions import SessionsPoller
from castui_core.guardrails.monitor import Guardrails
from castui_core.integrations.jellyfin.client import JellyfinClient
from castui_core.integrations.jellyfin.confirm import (
    Confirmation,
    ConfirmTimes,
    JellyfinApi,
    confirm,
)
from castui_core.integrations.jellyfin.connect import client_for
from castui_core.integrations.jellyfin.deviceprofile import device_profile_for
from castui_core.integrations.jellyfin.paths import to_jellyfin
from castui_core.profiles import Profile
from castui_core.settings import Settings
from castui_core.store import Store
from castui_core.tasks import cancel_and_wait

# --- the service: one confirmation per committed "done" -----------------------------------------


class ConfirmationStore(Protocol):
    """Where confirmations are kept (the castui Store)."""

    async def record_jellyfin_confirmation(
        self,
        *,
        job_id: int,
        path: str,
        status: str,
        generation: str,
        reasons: tuple[str, ...],
        message: str,
        item_id: str | None,
        at: float,
    ) -> None: ...

    async def pending_jellyfin_confirmations(self) -> list[tuple[int, str, str, float]]: ...


#: For a job's library: ``(profile name, profile)``, or ``None`` when Jellyfin is off for it.
TargetFor = Callable[[str], tuple[str, Profile] | None]


class Confirmer:
    """Confirms every job whose ``done`` the store has committed (``JobStateChanged``).

    A ``pending`` row is written first (with the swap time), so a castui restart resumes the
    confirmation instead of losing it; the final answer replaces it and is published as
    :class:`~castui_core.events.JellyfinConfirmed`. At most ``parallel`` at a time: each one
    mostly sleeps through Jellyfin's monitor delay.
    """

    def __init__(
        self,
        api: JellyfinApi,
        store: ConfirmationStore,
        bus: EventBus,
        *,
        user: str,
        to_jellyfin: Callable[[str], str | None],
        target_for: TargetFor,
        times: ConfirmTimes | None = None,
        parallel: int = 4,
    ) -> None:
        self._api = api
        self._store = store
        self._bus = bus
        self._user = user
        self._to_jellyfin = to_jellyfin
        self._target_for = target_for
        self._times = times or ConfirmTimes()
        self._slots = asyncio.Semaphore(parallel)
        self._tasks: set[asyncio.Task[None]] = set()
        self._follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe to committed job states; resume confirmations a restart interrupted."""
        sub = self._bus.subscribe()
        self._follow = asyncio.create_task(self._run(sub), name="castui-jellyfin-confirm")
        for job_id, library, path, at in await self._store.pending_jellyfin_confirmations():
            self._spawn(job_id, library, path, at)

    async def stop(self) -> None:
        follow, self._follow = self._follow, None
        await cancel_and_wait(*self._tasks, follow)

    async def wait_idle(self) -> None:
        """Wait until every confirmation started so far has its answer stored."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                if (
                    isinstance(event, JobStateChanged)
                    and event.new == "done"
                    and event.output_path
                    and self._target_for(event.library) is not None
                ):
                    self._spawn(event.job_id, event.library, event.output_path, time.time())
        finally:
            sub.close()

    def _spawn(self, job_id: int, library: str, path: str, swapped_at: float) -> None:
        task = asyncio.create_task(self._confirm_job(job_id, library, path, swapped_at))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm_job(self, job_id: int, library: str, path: str, swapped_at: float) -> None:
        target = self._target_for(library)
        if target is None:
            return
        name, profile = target
        generation, device_profile = device_profile_for(name, profile)
        await self._save(
            job_id,
            path,
            Confirmation("unconfirmed", generation, detail="pending"),
            swapped_at,
            status="pending",
        )
        async with self._slots:
            mapped = self._to_jellyfin(path)
            if mapped is None:
                result = Confirmation(
                    "unconfirmed", generation, detail=f"{path} is outside every path_map entry"
                )
            else:
                result = await confirm(
                    self._api,
                    jellyfin_path=mapped,
                    generation=generation,
                    device_profile=device_profile,
                    user=self._user,
                    swapped_at=swapped_at,
                    times=self._times,
                )
        await self._save(job_id, path, result, time.time())
        self._bus.publish(
            JellyfinConfirmed(
                job_id=job_id,
                path=path,
                status=result.status,
                message=result.message,
                reasons=result.reasons,
            )
        )

    async def _save(
        self, job_id: int, path: str, result: Confirmation, at: float, *, status: str = ""
    ) -> None:
        await self._store.record_jellyfin_confirmation(
            job_id=job_id,
            path=path,
            status=status or result.status,
            generation=result.generation.value,
            reasons=result.reasons,
            message=result.message,
            item_id=result.item_id,
            at=at,
        )


class JellyfinWatchers:
    """Confirmer and sessions poller for one engine run."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        bus: EventBus,
        guardrails: Guardrails,
        *,
        times: ConfirmTimes | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._bus = bus
        self._guardrails = guardrails
        self._times = times
        self._client: JellyfinClient | None = None
        self.confirmer: Confirmer | None = None
        self.sessions: SessionsPoller | None = None

    def _target_for(self, library: str) -> tuple[str, Profile] | None:
        for lib in self._settings.libraries:
            if lib.name == library:
                if not self._settings.notifies_jellyfin(lib):
                    return None
                return lib.profile, self._settings.profile_for(lib)
        return None

    def _to_jellyfin(self, path: str) -> str | None:
        jf = self._settings.jellyfin
        return None if jf is None else to_jellyfin(path, jf.path_map)

    async def start(self) -> None:
        jf = self._settings.jellyfin
        if jf is None:
            return
        try:
            self._client = client_for(jf)
        except CastuiError as exc:  # no key: the health check says so; nothing to start
            self._bus.publish(LogLine("warning", f"Jellyfin confirmations off: {exc}"))
            return
        if jf.confirm:
            times = self._times or ConfirmTimes(
                settle_s=min(5.0, jf.confirm_poll_s),
                poll_s=jf.confirm_poll_s,
                give_up_s=jf.confirm_give_up_s,
            )
            self.confirmer = Confirmer(
                self._client,
                self._store,
                self._bus,
                user=jf.user or "",
                to_jellyfin=self._to_jellyfin,
                target_for=self._target_for,
                times=times,
            )
            await self.confirmer.start()
        if jf.pause_while != "off":
            client = self._client
            self.sessions = SessionsPoller(
                self._guardrails,
                lambda: client.sessions(active_within_s=max(60.0, 4 * jf.sessions_poll_s)),
                mode=jf.pause_while,
                interval_s=jf.sessions_poll_s,
                bus=self._bus,
            )
            self.sessions.start()

    async def stop(self) -> None:
        if self.sessions is not None:
            await self.sessions.stop()
        if self.confirmer is not None:
            await self.confirmer.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
