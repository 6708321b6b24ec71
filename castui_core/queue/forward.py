"""Move this host's outbox rows into the shared queue's outbox (several hosts, issue 13).

Why: some changes are recorded in the local SQLite store together with their notices, in one
transaction (a restored original: ``castui_core.originals.restore``; ``castui layout
migrate``), which is what makes them atomic. With ``queue.backend: redis`` the Jellyfin,
Sonarr/Radarr and notification senders read the outbox from the shared queue, so a notice
left in the local table would never be sent. The forwarder copies each local row into the
shared outbox and deletes it locally only once the shared queue acknowledged it
(at-least-once: a crash between the two sends the notice twice, which Jellyfin, Sonarr and
Radarr treat as one). While the queue is unreachable the rows stay where they are and the
next try moves them.

Paths go through this node's ``node.path_map`` on the way out (``castui_core.nodes.map_out``):
the shared outbox speaks the library host's paths, like the jobs do.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping

from castui_core.errors import CastuiError
from castui_core.nodes import map_out
from castui_core.queue.protocol import JobQueue
from castui_core.settings import Settings
from castui_core.store.outbox import NOTIFY, OutboxEntry, OutboxRow
from castui_core.store.store import Store
from castui_core.tasks import end_loop, wait_set

log = logging.getLogger("castui.queue.forward")

#: Rows moved per round trip (a restore writes two; a layout migration may write thousands).
BATCH = 500


def entry_of(row: OutboxRow, path_map: Mapping[str, str]) -> OutboxEntry:
    """The stored row as the entry the shared queue should hold (pure): the path as the
    library host sees it; a notification keeps its text (kept in ``folder``)."""
    message = row.folder if row.target == NOTIFY else None
    path = row.path if message is not None else map_out(row.path, path_map)
    return OutboxEntry(path, row.update_type, row.library, row.target, message)


async def forward_outbox(
    store: Store, queue: JobQueue, path_map: Mapping[str, str] | None = None
) -> set[str]:
    """Move every local outbox row into ``queue``; the targets of the rows moved.

    Nothing to do when ``queue`` is the store itself (one host: the senders read it). Raises
    the queue's :class:`~castui_core.errors.StoreError` (``QueueUnreachableError`` while Redis
    is down); rows not acknowledged by then stay in the store.
    """
    if queue is store:
        return set()
    moved: set[str] = set()
    while rows := await store.outbox_all_rows(BATCH):
        # One add per job (the shared row keeps its job id); rows arrive in id order.
        for job_id, group in itertools.groupby(rows, key=lambda r: r.job_id):
            batch = list(group)
            await queue.outbox_add([entry_of(r, path_map or {}) for r in batch], job_id)
            await store.outbox_delivered([r.id for r in batch])
            moved.update(r.target for r in batch)
    return moved


async def forward_for_command(settings: Settings, store: Store) -> str | None:
    """For a command that just wrote notices into ``store`` (``castui originals restore``,
    ``castui layout migrate``): move them into the settings' shared queue now, so the library
    host's senders have them without waiting for an engine on this host. ``None`` when there
    is nothing to say (one host, or moved); else the line saying they wait here and why."""
    if settings.queue.backend == "sqlite":
        return None
    from castui_core.queue.open import open_queue  # the Redis client only when it is used

    try:
        queue = await open_queue(settings, store)
    except CastuiError as exc:
        return _kept(exc)
    try:
        await forward_outbox(store, queue, settings.node.path_map)
    except CastuiError as exc:
        return _kept(exc)
    finally:
        await queue.close()
    return None


def _kept(exc: CastuiError) -> str:
    return (
        f"notices for Jellyfin/Sonarr/Radarr kept on this host ({exc}); the castui service"
        " moves them to the shared queue once it reaches it"
    )


class OutboxForwarder:
    """Runs :func:`forward_outbox` at start, when poked (right after a restore) and every
    ``retry_s`` (rows another castui command wrote here, or a try Redis was down for).

    ``on_moved`` hears the targets moved (the engine pokes those senders); ``on_problem``
    hears a failure's message once per distinct message, so a Redis that stays down does not
    fill the log. One forward at a time (a lock), so two triggers never copy a row twice.
    """

    def __init__(
        self,
        store: Store,
        queue: JobQueue,
        *,
        path_map: Mapping[str, str] | None = None,
        on_moved: Callable[[set[str]], None] = lambda targets: None,
        on_problem: Callable[[str], None] = lambda message: None,
        retry_s: float = 10.0,
    ) -> None:
        self._store = store
        self._queue = queue
        self.path_map: Mapping[str, str] = path_map or {}
        self._on_moved = on_moved
        self._on_problem = on_problem
        self._retry_s = retry_s
        self._lock = asyncio.Lock()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: The last failure's message while rows wait locally, else None.
        self.problem: str | None = None

    async def forward_now(self) -> set[str]:
        """Forward what is there now; never raises a CastuiError (it says so instead)."""
        async with self._lock:
            try:
                moved = await forward_outbox(self._store, self._queue, self.path_map)
            except CastuiError as exc:
                message = f"notices kept on this host until the queue takes them: {exc}"
                if message != self.problem:
                    self.problem = message
                    self._on_problem(message)
                return set()
            self.problem = None
        if moved:
            self._on_moved(moved)
        return moved

    def poke(self) -> None:
        """Forward now rather than at the next retry."""
        self._poke.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="castui-outbox-forward")

    async def stop(self) -> None:
        """End the loop and wait for it. Why a flag as well as ``cancel()``: on Python 3.11
        redis-py's ``asyncio.wait_for`` drops a cancellation that lands as its command
        completes, and the loop would then wait and forward for ever (an engine's stop hung
        so); the flag and the poke end it at its next turn."""
        task, self._task = self._task, None
        await end_loop(task, self._set_stopping)

    def _set_stopping(self, stopping: bool) -> None:
        self._stopping = stopping
        if stopping:
            self._poke.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._poke.clear()
            try:
                await self.forward_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not silently end forwarding; try again later
                log.exception("forwarding the outbox failed; trying again in %g s", self._retry_s)
            if self._stopping:
                return
            await wait_set(self._poke, self._retry_s)
