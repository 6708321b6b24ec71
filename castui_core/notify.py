"""Notifications to people (ntfy, Telegram, e-mail, ... through Apprise): ``notify:`` settings.

What is worth a message: a job went dead (its retries are used up: only a person can help), a
guardrail has held work back for ``guardrail_held_after_s``, Jellyfin stopped answering, and
an optional daily summary. Each becomes a row in the durable outbox (target ``notify``, the
same table that carries Jellyfin's and Sonarr/Radarr's changes) before anything is sent, so a
restart or a notification service that is down loses nothing, and a slow service never holds
up work: the :class:`Notifier` delivers rows on its own task.

Apprise's ``notify`` is blocking (HTTP, SMTP): it runs in a thread under ``timeout_s``; a try
that fails or times out is retried with the Jellyfin sender's backoff. The URLs carry tokens:
they are read when sending, never stored in the outbox, logged or put in an error (Apprise's
own logger and urllib3's request log are quietened for the same reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from castui_core.bus import EventBus
from castui_core.errors import CastuiError
from castui_core.events import GuardrailCleared, GuardrailTripped, JellyfinState, JobStateChanged
from castui_core.integrations.jellyfin.sender import backoff_s
from castui_core.settings import NotifySettings
from castui_core.store.outbox import NOTIFY, OutboxEntry, OutboxRow

if TYPE_CHECKING:
    from castui_core.queue.protocol import JobQueue

log = logging.getLogger("castui.notify")

IDLE_POLL_S = 30.0
TITLE = "castui"


# --- pure parts ---------------------------------------------------------------------------------


def dead_message(path: str, reason: str, job_id: int) -> str:
    return (
        f"Job #{job_id} is dead (retries used up): {path}\n"
        f"Reason: {reason or 'no reason recorded'}\n"
        f"Fix the cause, then: castui retry {job_id}"
    )


def guardrail_message(name: str, reason: str, held_s: float) -> str:
    return f"Guardrail {name} has held work back for {held_s / 3600:.1f} h: {reason}"


def next_summary_at(now: float, hhmm: str) -> float:
    """The next local time ``hhmm`` after ``now`` (epoch seconds)."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    local = dt.datetime.fromtimestamp(now).astimezone()
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at.timestamp() <= now:
        at += dt.timedelta(days=1)
    return at.timestamp()


def send_blocking(urls: list[str], title: str, body: str) -> bool:
    """One Apprise delivery to every URL (runs in a thread); True when all accepted it."""
    import apprise

    # async_mode off and no service_timeout: each URL is sent in this thread, one after
    # another (a service timeout moves the call to a pool). castui already runs
    # this in a thread under a timeout; Apprise's process-wide pools would only add threads
    # that outlive the call.
    sender = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False, service_timeout=0))
    for url in urls:
        if not sender.add(url):
            return False
    return bool(sender.notify(body=body, title=title))


# --- the notifier -------------------------------------------------------------------------------


class Notifier:
    """Turns events into outbox rows and delivers ``notify`` rows through Apprise."""

    def __init__(self, store: JobQueue, settings: NotifySettings, bus: EventBus) -> None:
        self._store = store
        self._settings = settings
        self._bus = bus
        self._wake = asyncio.Event()
        self._held: dict[str, asyncio.Task[None]] = {}
        self._jellyfin_up: bool | None = None
        self.sent = 0
        self.failed = 0
        # Their messages can hold the URLs (and so the tokens): Apprise's own log, and the
        # request lines urllib3 logs at debug for the HTTP plug-ins (castui itself uses httpx).
        logging.getLogger("apprise").setLevel(logging.CRITICAL)
        logging.getLogger("urllib3").setLevel(logging.WARNING)
        self._sub = bus.subscribe()
        self._tasks = [
            asyncio.create_task(self._follow()),
            asyncio.create_task(self._deliver()),
        ]
        if "daily_summary" in settings.on and settings.daily_summary_at is not None:
            self._tasks.append(asyncio.create_task(self._daily(settings.daily_summary_at)))

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._sub.close()
        for task in [*self._tasks, *self._held.values()]:
            task.cancel()
        for task in [*self._tasks, *self._held.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def queue(
        self, text: str, *, path: str = "", library: str = "", job: int | None = None
    ) -> None:
        """Keep one notification in the outbox, then wake the sender."""
        entry = OutboxEntry(path, "Modified", library, target=NOTIFY, message=text)
        await self._store.outbox_add([entry], job_id=job)
        self._wake.set()

    async def _follow(self) -> None:
        on = set(self._settings.on)
        async for event in self._sub:
            try:
                if isinstance(event, JobStateChanged):
                    if event.new == "dead" and event.old != "dead" and "dead" in on:
                        text = dead_message(event.path, event.reason, event.job_id)
                        await self.queue(
                            text, path=event.path, library=event.library, job=event.job_id
                        )
                elif isinstance(event, GuardrailTripped) and "guardrail_held" in on:
                    if event.name not in self._held:
                        self._held[event.name] = asyncio.create_task(
                            self._held_for_long(event.name, event.reason)
                        )
                elif isinstance(event, GuardrailCleared):
                    task = self._held.pop(event.name, None)
                    if task is not None:
                        task.cancel()
                elif isinstance(event, JellyfinState) and "jellyfin_unreachable" in on:
                    if self._jellyfin_up and not event.connected:
                        why = event.last_error or "no answer"
                        await self.queue(f"Jellyfin is unreachable: {why}")
                    self._jellyfin_up = event.connected
            except CastuiError as exc:  # the database said no: say so, keep following
                log.error("notification not queued: %s", exc)

    async def _held_for_long(self, name: str, reason: str) -> None:
        wait = self._settings.guardrail_held_after_s
        await asyncio.sleep(wait)  # a timer: cancelled when the guardrail clears
        self._held.pop(name, None)
        await self.queue(guardrail_message(name, reason, wait))

    async def _daily(self, hhmm: str) -> None:
        while True:
            at = next_summary_at(time.time(), hhmm)
            await asyncio.sleep(max(0.0, at - time.time()))  # a clock timer, not a wait-for
            totals = await self._store.totals(since=time.time() - 86400)
            saved_gb = totals.bytes_saved / 1e9
            await self.queue(
                f"Last 24 h: {totals.files_done} converted ({saved_gb:.1f} GB saved),"
                f" {totals.failed} failed, {totals.dead} dead"
            )

    async def _deliver(self) -> None:
        while True:
            rows = await self._store.outbox_due(50, target=NOTIFY)
            for row in rows:
                await self._send(row)
            if not rows:
                nxt = await self._store.outbox_next_due(target=NOTIFY)
                wait = IDLE_POLL_S if nxt is None else max(0.0, nxt - time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, IDLE_POLL_S))
                self._wake.clear()

    async def _send(self, row: OutboxRow) -> None:
        try:
            urls = self._settings.url_list()
        except CastuiError as exc:
            await self._store.outbox_stop([row.id], str(exc))
            log.error("notification held: %s (fix notify: and reload)", exc)
            return
        try:
            ok = await asyncio.wait_for(
                asyncio.to_thread(send_blocking, urls, TITLE, row.folder),
                self._settings.timeout_s,
            )
            error = "" if ok else "a notification service refused it or did not answer"
        except TimeoutError:
            ok, error = False, f"no answer in {self._settings.timeout_s:g}s"
        except Exception as exc:  # Apprise plug-ins raise anything; never show the URL
            ok, error = False, f"Apprise failed ({type(exc).__name__})"
        if ok:
            await self._store.outbox_delivered([row.id])
            self.sent += 1
            return
        self.failed += 1
        delay = backoff_s(row.attempts + 1)
        await self._store.outbox_retry_later([row.id], time.time() + delay, error)
        log.warning("notification not delivered (%s); retried in %.0fs", error, delay)
