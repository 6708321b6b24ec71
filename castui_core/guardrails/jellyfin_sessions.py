"""Jellyfin sessions guard: hold new encodes and pause running ones while people watch.

Why: castui and Jellyfin usually share one machine. A library conversion that saturates the CPU
or the NVENC sessions makes a viewer's Jellyfin transcode stutter; the viewer matters more than
the backlog. Either anybody playing counts (``playing``) or only playback Jellyfin transcodes
itself (``transcoding``: direct play costs the server almost nothing).

The decision is a pure function of ``GET /Sessions?activeWithinSeconds=N`` (table-tested); a
:class:`SessionsPoller` asks Jellyfin on a timer and feeds the answer to the guardrail monitor
as the guard ``jellyfin_sessions``, which pauses running encodes (SIGSTOP) like a hot GPU.
When Jellyfin cannot be asked, the guard clears: a server that is down has nobody watching,
and castui must not stop for good because a URL is wrong (the failure is logged once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from castui_core.bus import EventBus
from castui_core.events import LogLine
from castui_core.guardrails.monitor import Guardrails
from castui_core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

JELLYFIN_SESSIONS = "jellyfin_sessions"
SessionsMode = Literal["playing", "transcoding"]
#: Fetches the raw ``/Sessions`` JSON list (the Jellyfin client's job, with its timeouts).
FetchSessions = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Viewer:
    """One Jellyfin session that is playing something."""

    who: str  # user id, or the device when no user is signed in
    user: str
    item: str
    play_method: str | None  # DirectPlay | DirectStream | Transcode
    transcoding: bool
    paused: bool


def viewers(sessions: Any) -> list[Viewer]:
    """The sessions that are playing an item (``NowPlayingItem``), from Jellyfin's JSON.

    A paused playback still counts: the person is coming back. Anything that is not the
    documented shape is skipped rather than trusted.
    """
    found: list[Viewer] = []
    if not isinstance(sessions, list):
        return found
    for s in sessions:
        if not isinstance(s, dict) or not isinstance(s.get("NowPlayingItem"), dict):
            continue
        raw_state = s.get("PlayState")
        state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
        method = state.get("PlayMethod")
        transcoding = method == "Transcode" or isinstance(s.get("TranscodingInfo"), dict)
        found.append(
            Viewer(
                who=str(s.get("UserId") or s.get("DeviceId") or s.get("Id") or len(found)),
                user=str(s.get("UserName") or s.get("DeviceName") or "someone"),
                item=str(s["NowPlayingItem"].get("Name") or "?"),
                play_method=method if isinstance(method, str) else None,
                transcoding=transcoding,
                paused=bool(state.get("IsPaused")),
            )
        )
    return found


def _people(n: int) -> str:
    return "1 person" if n == 1 else f"{n} people"


def sessions_reason(found: list[Viewer], mode: SessionsMode) -> str | None:
    """Why encodes pause now (``"paused: 2 people are watching on Jellyfin"``), or ``None``.

    People are counted once however many devices they play on.
    """
    if mode == "transcoding":
        busy = {v.who for v in found if v.transcoding}
        if not busy:
            return None
        return f"paused: Jellyfin is transcoding for {_people(len(busy))}"
    watching = {v.who for v in found}
    if not watching:
        return None
    verb = "is" if len(watching) == 1 else "are"
    return f"paused: {_people(len(watching))} {verb} watching on Jellyfin"


class SessionsPoller:
    """Asks Jellyfin who is watching every ``interval_s`` and trips or clears the guard."""

    def __init__(
        self,
        guardrails: Guardrails,
        fetch: FetchSessions,
        *,
        mode: SessionsMode = "playing",
        interval_s: float = 15.0,
        bus: EventBus | None = None,
    ) -> None:
        self._guardrails = guardrails
        self._fetch = fetch
        self._mode = mode
        self._interval_s = interval_s
        self._bus = bus
        self._task: asyncio.Task[None] | None = None
        self._failing: str | None = None
        self.last_viewers: list[Viewer] = []

    async def poll_once(self) -> str | None:
        """Ask once; returns the guard's reason now (``None``: encodes may run)."""
        try:
            payload = await self._fetch()
        except Exception as exc:  # any failure to ask: the guard clears, said once
            problem = f"Jellyfin sessions could not be read ({exc}); not pausing for viewers"
            if problem != self._failing:
                self._failing = problem
                log.warning("%s", problem)
                if self._bus is not None:
                    self._bus.publish(LogLine("warning", problem))
            self.last_viewers = []
            self._guardrails.set_external(
                JELLYFIN_SESSIONS, None, pauses_running=True, cleared="Jellyfin not answering"
            )
            return None
        if self._failing is not None:
            self._failing = None
            if self._bus is not None:
                self._bus.publish(LogLine("info", "Jellyfin sessions readable again"))
        self.last_viewers = viewers(payload)
        reason = sessions_reason(self.last_viewers, self._mode)
        self._guardrails.set_external(
            JELLYFIN_SESSIONS,
            reason,
            pauses_running=True,
            cleared="nobody is watching on Jellyfin"
            if self._mode == "playing"
            else "Jellyfin is not transcoding",
        )
        return reason

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="castui-jellyfin-sessions")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
