"""The outbox sender: tells Jellyfin about committed swaps, in batches, until it has heard.

Why this design (peers lose notifications or hurt the server):

* Rows come from the database (:mod:`castui_core.store.outbox`), written in the transaction
  that completed the job, so a restart, a crash or a Jellyfin that is down loses nothing; a
  row is deleted only after Jellyfin answered 204.
* Changes are gathered for ``batch_window_s`` after the oldest due one, deduplicated per path
  (the newest change wins), ordered by folder and posted as one ``/Library/Media/Updated`` per
  batch: Jellyfin refreshes the nearest folder of each path after its own LibraryMonitorDelay,
  so one request for a burst of swaps is what it wants. Never ``/Library/Refresh`` (it cancels
  a running scan and starts over).
* Connection errors, timeouts and 5xx are retried with exponential backoff and full jitter,
  from a few seconds up to an hour, per batch. 400/401/403/404 are settings problems that a
  retry cannot fix: that batch stops (kept, state ``stopped``), the sender holds, and the
  problem is published (``JellyfinState.last_error`` and a log line) with what to do; a reload
  or restart resumes everything.
* It is its own task: conversions never wait for Jellyfin (the engine only inserts rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Sequence

from castui_core.bus import EventBus
from castui_core.errors import CastuiError, JellyfinConfigError, JellyfinError
from castui_core.events import JellyfinState, LogLine
from castui_core.integrations.jellyfin.client import JellyfinClient
from castui_core.integrations.jellyfin.health import HealthReport, check_health
from castui_core.integrations.jellyfin.paths import to_jellyfin
from castui_core.queue.protocol import JobQueue
from castui_core.settings import JellyfinSettings, Settings
from castui_core.store.outbox import OutboxEntry, OutboxRow
from castui_core.tasks import end_loop

log = logging.getLogger("castui.jellyfin")

#: Most paths in one request (Jellyfin reads the whole body; keep requests a sane size).
BATCH_LIMIT = 500
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 3600.0
#: With nothing due, look again this often: ``castui convert`` (another process) adds rows
#: without being able to wake this sender.
IDLE_POLL_S = 30.0
MIN_WAIT_S = 0.05

ClientFactory = Callable[[JellyfinSettings], JellyfinClient]


def swap_changes(source: str, output: str | None, *, source_exists: bool) -> list[tuple[str, str]]:
    """What a committed swap changed, as Jellyfin update types.

    Same name (``a.mp4`` → ``a.mp4``): the file was replaced, ``Modified``. A new name: the
    output is ``Created`` and, when the source is gone (``delete_source``), it is ``Deleted``.
    """
    if output is None:
        return []
    if output == source:
        return [(output, "Modified")]
    changes = [(output, "Created")]
    if not source_exists:
        changes.append((source, "Deleted"))
    return changes


async def outbox_entries(
    settings: Settings, library: str, source: str, output: str | None
) -> list[OutboxEntry]:
    """The outbox rows for a finished job (none when Jellyfin is off for its library)."""
    if output is None or settings.jellyfin is None:
        return []
    lib = next((x for x in settings.libraries if x.name == library), None)
    if lib is None or not settings.notifies_jellyfin(lib):
        return []
    exists = await asyncio.to_thread(os.path.lexists, source)
    return [
        OutboxEntry(path, kind, library)  # type: ignore[arg-type]
        for path, kind in swap_changes(source, output, source_exists=exists)
    ]


def coalesce(rows: Sequence[OutboxRow]) -> list[tuple[str, str, list[int]]]:
    """``(path, update type, row ids)`` per path, the newest change winning, by folder."""
    by_path: dict[str, tuple[str, str, list[int]]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        _, _, ids = by_path.get(row.path, ("", "", []))
        by_path[row.path] = (row.path, row.update_type, [*ids, row.id])
    return sorted(by_path.values(), key=lambda t: (os.path.dirname(t[0]), t[0]))


def backoff_s(
    attempts: int,
    rng: random.Random | None = None,
    *,
    base_s: float = BACKOFF_BASE_S,
    max_s: float = BACKOFF_MAX_S,
) -> float:
    """Exponential backoff with jitter: uniform in ``[base, min(max, base * 2**attempts)]``,
    so many castui instances (or batches) that failed together do not retry together."""
    ceiling = min(max_s, base_s * (2 ** min(attempts, 30)))
    return (rng or random).uniform(base_s, max(base_s, ceiling))


def _default_client(settings: JellyfinSettings) -> JellyfinClient:
    return JellyfinClient(
        settings.url,
        settings.api_key_value(),
        timeout_s=settings.timeout_s,
        verify_tls=settings.verify_tls,
    )


class JellyfinSender:
    """Runs the health check, then drains the outbox for as long as castui runs."""

    def __init__(
        self,
        store: JobQueue,
        settings: Settings,
        bus: EventBus,
        *,
        client_factory: ClientFactory = _default_client,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        backoff_base_s: float = BACKOFF_BASE_S,
    ) -> None:
        self._store = store
        self._backoff_base_s = backoff_base_s
        self._settings = settings
        self._bus = bus
        self._factory = client_factory
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: JellyfinClient | None = None
        self._held: str | None = None  # a settings problem: sending waits for a reload
        self._stopping = False  # set by _end_loop: the loop ends at its next wait
        self._posting: asyncio.Task[None] | None = None  # a batch on its way (see _post)
        # stop() and reload() one at a time: a stop during a reload's wait for the batch on
        # its way found nothing on its way and posted the same rows again, and the reload then
        # started a loop after the stop. Once stopped, a late reload does nothing.
        self._lifecycle = asyncio.Lock()
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.connected = False
        self.version = ""
        self.last_error = ""
        self.health: HealthReport | None = None
        self.posted_at: list[float] = []  # when each batch was answered (benchmarks)

    async def __aenter__(self) -> JellyfinSender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        # A restart is the operator's "try again": what a config error stopped is due again.
        self._closed = False
        await self._store.outbox_resume()
        self._task = asyncio.create_task(self._run(), name="castui-jellyfin")

    async def stop(self) -> None:
        """Stop the loop, then try once to deliver what is due (``castui --no-ui --once``
        ends right after its last job: that job's change should not wait for the next run).
        Bounded by the client's timeout; whatever is not delivered stays in the outbox."""
        async with self._lifecycle:
            self._closed = True
            await self._stop()

    async def _stop(self) -> None:
        await self._end_loop()
        try:
            async with asyncio.timeout(self._timeout_s()):
                await self._finish_posting()
                if self._held is None and self._settings.jellyfin is not None:
                    rows = await self._store.outbox_due(BATCH_LIMIT)
                    if rows:
                        await self._send(rows)
        except (TimeoutError, CastuiError) as exc:
            log.warning(
                "Jellyfin: could not deliver before stopping (%s); kept for next start", exc
            )
        finally:
            await self._close_client()

    def poke(self) -> None:
        """New rows were committed: look now instead of at the next due time."""
        self._wake.set()

    async def reload(self, settings: Settings) -> None:
        """New settings (key, URL, path_map): check again and resume stopped batches."""
        async with self._lifecycle:
            if not self._closed:
                await self._reload(settings)

    async def _reload(self, settings: Settings) -> None:
        await self._end_loop()
        try:
            async with asyncio.timeout(self._timeout_s()):
                await self._finish_posting()  # with the old settings and client
        except TimeoutError:
            log.warning("Jellyfin: a batch in flight did not finish before the reload; retried")
        self._settings = settings
        self._held = None
        await self._close_client()
        if settings.jellyfin is None:  # switched off: keep what is queued, send nothing
            counts = await self._store.outbox_counts()
            waiting = counts["pending"] + counts["stopped"]
            self._info(f"Jellyfin switched off; {waiting} notification(s) kept in the outbox")
            return
        await self._store.outbox_resume()
        self._task = asyncio.create_task(self._run(), name="castui-jellyfin")

    # --- the loop ----------------------------------------------------------------------------

    async def _end_loop(self) -> None:
        """Stop the loop task and wait for it to end.

        Why a flag as well as ``cancel()``: on Python 3.11, ``asyncio.wait_for`` (redis-py
        wraps every command in it) drops a cancellation that lands as the command completes,
        so the loop may never see the ``CancelledError``. The flag (and the wake-up) end it at
        its next wait instead of after a 30 s idle poll.
        """
        task, self._task = self._task, None
        await end_loop(task, self._set_stopping)

    def _set_stopping(self, stopping: bool) -> None:
        self._stopping = stopping
        if stopping:
            self._wake.set()

    async def _run(self) -> None:
        await self._check()
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except CastuiError as exc:  # the store: say so, try again a little later
                self._problem(f"Jellyfin outbox: {exc}")
                await asyncio.sleep(5)
            except Exception as exc:  # a bug must not silently end every notification
                log.exception("Jellyfin sender failed; restarting it in 5 s")
                self._problem(f"Jellyfin sender failed ({type(exc).__name__}: {exc}); retrying")
                await asyncio.sleep(5)

    async def _check(self) -> None:
        jf = self._settings.jellyfin
        if jf is None:
            return
        try:
            client = self._get_client()
        except CastuiError as exc:
            self._hold(str(exc))
            return
        self.health = await check_health(client, self._settings)
        self.connected = self.health.server is not None
        self.version = self.health.server.version if self.health.server else ""
        for line in self.health.problems:
            self._problem(f"Jellyfin check: {line}")
        if self.health.ok:
            server = self.health.server
            name = f"{server.name} {server.version}" if server else ""
            self._info(f"Jellyfin check passed: {name}, every library mapped")
        if self.health.exit_code == 2 and self.health.key_refused:
            self._held = self.health.problems[0]
        await self._publish()

    async def _step(self) -> None:
        if self._held is not None:
            await self._wait(None)
            return
        rows = await self._store.outbox_due(BATCH_LIMIT)
        if not rows:
            nxt = await self._store.outbox_next_due()
            await self._publish()
            wait = IDLE_POLL_S if nxt is None else min(IDLE_POLL_S, max(0.0, nxt - self._clock()))
            await self._wait(wait)
            return
        jf = self._settings.jellyfin
        window = jf.batch_window_s if jf is not None else 0.0
        oldest = min(r.created_at for r in rows)
        gather = oldest + window - self._clock()
        if gather > 0 and len(rows) < BATCH_LIMIT:
            await asyncio.sleep(gather)  # more changes join this batch; nothing waits on it
            rows = await self._store.outbox_due(BATCH_LIMIT)
            if not rows:
                return
        await self._post(rows)

    async def _post(self, rows: Sequence[OutboxRow]) -> None:
        """``_send`` in a task of its own that a stop does not cut short.

        Why: cancelling a POST that Jellyfin has already received left its rows pending, and
        stop() (or the next start) sent them again: a duplicate notice for one swap. The loop
        may end while the batch is on its way; stop() and reload() wait for it (bounded by the
        client's timeout) through ``_finish_posting``.
        """
        task = asyncio.create_task(self._send(rows), name="castui-jellyfin-post")
        self._posting = task
        try:
            await asyncio.shield(task)
        finally:
            if task.done():  # else the loop was stopped: the batch is _finish_posting's
                self._posting = None

    async def _finish_posting(self) -> None:
        """Wait for a batch the loop left on its way; cancel it if the wait is cancelled (a
        caller's timeout) so no request outlives the sender."""
        task = self._posting
        if task is None:
            return
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        except Exception:  # the loop would have logged it; a stop must still go on
            log.exception("Jellyfin: the batch in flight failed while castui stopped")
        finally:
            if task.done() and self._posting is task:
                self._posting = None

    def _timeout_s(self) -> float:
        jf = self._settings.jellyfin
        return jf.timeout_s * 2 if jf is not None else 10.0

    async def _send(self, rows: Sequence[OutboxRow]) -> None:
        jf = self._settings.jellyfin
        if jf is None:
            await self._wait(None)
            return
        batch = coalesce(rows)
        ids = [i for _, _, row_ids in batch for i in row_ids]
        updates = [(to_jellyfin(path, jf.path_map), kind) for path, kind, _ in batch]
        try:
            await self._get_client().media_updated(updates)
        except JellyfinConfigError as exc:
            self.failed += len(batch)
            await self._store.outbox_stop(ids, str(exc))
            self._hold(f"{exc} ({len(batch)} notification(s) kept; fix it and reload)")
        except (JellyfinError, CastuiError) as exc:
            self.failed += len(batch)
            self.connected = False
            attempts = max(r.attempts for r in rows)
            delay = backoff_s(attempts, self._rng, base_s=self._backoff_base_s)
            await self._store.outbox_retry_later(ids, self._clock() + delay, str(exc))
            self._problem(f"{exc}; {len(batch)} notification(s) retried in {delay:.0f} s")
        else:
            await self._store.outbox_delivered(ids)
            self.posted_at.append(self._clock())
            self.sent += len(batch)
            self.connected = True
            if self.last_error:
                self._info(f"Jellyfin reachable again: {len(batch)} notification(s) delivered")
            self.last_error = ""
        await self._publish()

    # --- helpers -----------------------------------------------------------------------------

    def _get_client(self) -> JellyfinClient:
        jf = self._settings.jellyfin
        if jf is None:
            raise JellyfinConfigError("jellyfin is not configured")
        if self._client is None:
            self._client = self._factory(jf)
        return self._client

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _wait(self, wait_s: float | None) -> None:
        task = asyncio.current_task()
        if self._stopping or (task is not None and task.cancelling()):
            # A stop() whose cancellation a library swallowed (see ``_end_loop``).
            raise asyncio.CancelledError
        self._wake.clear()
        # At least a moment: a due time already past with nothing due (clocks of two hosts,
        # or a row just delivered) must not spin the loop.
        wait_s = None if wait_s is None else max(wait_s, MIN_WAIT_S)
        try:
            async with asyncio.timeout(wait_s):
                await self._wake.wait()
        except TimeoutError:
            if task is not None and task.cancelling():
                # A stop() that landed as the timeout expired: asyncio.timeout turned the
                # cancellation into TimeoutError; swallowing it left stop() waiting forever.
                raise asyncio.CancelledError from None

    def _hold(self, why: str) -> None:
        self._held = why
        self._problem(f"Jellyfin notifications stopped: {why}")

    def _problem(self, line: str) -> None:
        self.last_error = line
        log.warning("%s", line)
        self._bus.publish(LogLine("warning", line))

    def _info(self, line: str) -> None:
        log.info("%s", line)
        self._bus.publish(LogLine("info", line))

    async def _publish(self) -> None:
        self._bus.publish(await self.current_state())

    async def current_state(self) -> JellyfinState:
        """Jellyfin as this sender sees it now: what it publishes, and what a dashboard that
        attaches late is sent first (``Engine.initial_events``)."""
        counts = await self._store.outbox_counts()
        return JellyfinState(
            connected=self.connected,
            version=self.version,
            outbox_pending=counts["pending"],
            outbox_stopped=counts["stopped"],
            sent=self.sent,
            failed=self.failed,
            last_error=self.last_error,
            problems=self.health.problems if self.health else (),
        )


async def start_sender(settings: Settings, store: JobQueue, bus: EventBus) -> JellyfinSender | None:
    """The sender for an engine, or ``None`` when Jellyfin is not configured."""
    if settings.jellyfin is None:
        return None
    sender = JellyfinSender(store, settings, bus)
    await sender.start()
    return sender
