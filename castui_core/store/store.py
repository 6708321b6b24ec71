"""The :class:`Store`: one process's handle on the durable queue, catalog and audit log.

Each process (engine, CLI command, test worker) opens its own Store; SQLite's file locks and
``BEGIN IMMEDIATE`` coordinate between processes, and an ``asyncio.Lock`` serialises the
async tasks of one process on its single connection (one connection cannot hold two
transactions, and an unrelated read must not land inside another task's transaction).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import aiosqlite

from castui_core.errors import StoreError
from castui_core.store import audit, catalog, confirmations, jobs, outputs
from castui_core.store import originals as originals_db
from castui_core.store import outbox as outbox_db
from castui_core.store import watch_history as watch_db
from castui_core.store.db import (
    connect,
    execute,
    fetchall,
    migrate,
    setup_lock,
    translate_error,
)
from castui_core.store.jobs import NewJob, QueuePolicy
from castui_core.store.models import (
    CatalogEntry,
    ClaimedJob,
    EnqueueResult,
    Event,
    HistoryTotals,
    Job,
    JobAction,
    JobResult,
    JobState,
    OutputRecord,
    Progress,
)
from castui_core.store.originals import OriginalRecord, OriginalState
from castui_core.store.outbox import OutboxEntry, OutboxRow

if TYPE_CHECKING:
    from castui_core.queue.protocol import NodeStatus

Clock = Callable[[], float]

DEFAULT_EVENT_RETENTION_S = 180 * 86400.0
NODE_KEY_PREFIX = "node:"


class StoreOptions(TypedDict, total=False):
    """Keyword options of ``Store.connect`` / ``Store.open`` (see ``connect``)."""

    clock: Clock
    lease_seconds: float
    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    busy_timeout_s: float
    rng: random.Random | None
    reclaim_on_open: bool
    event_retention_s: float | None


class Store:
    """Durable job queue + file catalog + audit log in one SQLite file.

    Use :meth:`open` (``async with Store.open(path) as store``) or :meth:`connect` /
    :meth:`close` for a long-lived engine. All methods raise :class:`StoreError` (or a
    subclass) rather than ``sqlite3`` errors. Times are epoch seconds from ``clock``.
    """

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        *,
        clock: Clock,
        policy: QueuePolicy,
    ) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self.path = path
        self._clock = clock
        self._policy = policy
        self._lock = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Clock = time.time,
        lease_seconds: float = 60.0,
        max_attempts: int = 3,
        backoff_base_s: float = 30.0,
        backoff_cap_s: float = 3600.0,
        busy_timeout_s: float = 10.0,
        rng: random.Random | None = None,
        reclaim_on_open: bool = True,
        event_retention_s: float | None = DEFAULT_EVENT_RETENTION_S,
    ) -> Store:
        """Open (creating and migrating if needed) the database at ``path``.

        ``reclaim_on_open`` takes back leases that expired while no castui was running, and
        ``event_retention_s`` prunes older audit events; read-only tools (``castui queue``)
        pass ``False``/``None`` so that looking never changes anything.
        """
        if lease_seconds <= 0 or max_attempts < 1:
            raise ValueError("lease_seconds must be > 0 and max_attempts >= 1")
        db_path = Path(path)
        policy = QueuePolicy(
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            rng=rng or random.Random(),
        )
        store: Store | None = None
        try:
            async with setup_lock(db_path, timeout_s=busy_timeout_s):
                conn = await connect(db_path, busy_timeout_s=busy_timeout_s)
                store = cls(conn, db_path, clock=clock, policy=policy)
                await migrate(conn, db_path)
            if reclaim_on_open:
                await store.reclaim_expired()
            if event_retention_s is not None:
                await store.prune_events(older_than=clock() - event_retention_s)
        except BaseException:
            if store is not None:
                await store.close()
            raise
        assert store is not None
        return store

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: str | os.PathLike[str], **options: Unpack[StoreOptions]
    ) -> AsyncIterator[Store]:
        """``connect`` (same options) as an async context manager that closes the store."""
        store = await cls.connect(path, **options)
        try:
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        """Close after the operation in flight (if any) ends: closing under a running read
        broke it with aiosqlite's bare ``ValueError('Connection closed')``, a traceback in an
        attached dashboard that was refreshing as it quit. Later calls get a StoreError."""
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                await conn.close()

    @property
    def lease_seconds(self) -> float:
        return self._policy.lease_seconds

    def _now(self) -> float:
        return float(self._clock())

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError(f"castui database {self.path} is closed; open the store again.")
        return self._conn

    @asynccontextmanager
    async def _write(self, doing: str) -> AsyncIterator[aiosqlite.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any error."""
        async with self._lock:
            conn = self._require()
            try:
                await execute(conn, "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path, doing) from exc
            except BaseException:
                # Cancelled while BEGIN was queued on aiosqlite's thread: it may still run.
                await asyncio.shield(self._rollback(conn))
                raise
            try:
                yield conn
                await execute(conn, "COMMIT")
            except BaseException as exc:
                # Shielded so a cancelled task still leaves the connection usable.
                await asyncio.shield(self._rollback(conn))
                if isinstance(exc, sqlite3.Error):
                    raise translate_error(exc, self.path, doing) from exc
                raise

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        # Always queued, never skipped on ``conn.in_transaction``: after a cancelled BEGIN the
        # BEGIN may still be waiting on aiosqlite's thread, and this ROLLBACK queues behind it.
        # "no transaction is active" is the harmless answer when there was nothing to undo.
        with suppress(sqlite3.Error):
            await execute(conn, "ROLLBACK")

    @asynccontextmanager
    async def _read(self, doing: str) -> AsyncIterator[aiosqlite.Connection]:
        """A read-only snapshot (deferred transaction) so multi-query reads are consistent."""
        async with self._lock:
            conn = self._require()
            try:
                try:
                    await execute(conn, "BEGIN")
                    yield conn
                finally:
                    # Also after a cancelled BEGIN, which may still run on aiosqlite's thread.
                    await asyncio.shield(self._rollback(conn))
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path, doing) from exc

    # --- queue: workers -----------------------------------------------------------------

    async def enqueue(
        self,
        path: str,
        library: str,
        action: JobAction | str,
        reasons: Sequence[str] = (),
        *,
        priority: int = 0,
        debounce_s: float = 0.0,
    ) -> EnqueueResult:
        """Queue ``path``; see :class:`EnqueueOutcome` for what happens if it is already active."""
        item = NewJob(path, library, action, tuple(reasons), priority, debounce_s)
        async with self._write("queueing a job") as conn:
            return await jobs.enqueue(conn, self._now(), item, self._policy)

    async def enqueue_many(self, items: Iterable[NewJob]) -> list[EnqueueResult]:
        """Queue many paths in one transaction (one fsync): what a full scan should use."""
        batch = list(items)
        async with self._write("queueing jobs") as conn:
            return await jobs.enqueue_many(conn, self._now(), batch, self._policy)

    async def claim(self, owner: str) -> ClaimedJob | None:
        """Take the best ready job (priority desc, run_after, id), or ``None``.

        Returns ``None`` while the queue is paused. Expired leases are reclaimed first, in
        the same transaction, so a crashed worker's job is picked up even without a reaper.
        """
        async with self._write("claiming a job") as conn:
            return await jobs.claim(conn, self._now(), owner, self._policy)

    async def heartbeat(self, job_id: int, token: int, progress: Progress | None = None) -> float:
        """Extend the lease and record progress; returns the new expiry.

        Raises :class:`LeaseLostError` if the job was reclaimed or cancelled: stop ffmpeg and
        leave the files alone.
        """
        async with self._write("recording progress") as conn:
            return await jobs.heartbeat(conn, self._now(), job_id, token, progress, self._policy)

    async def complete(
        self,
        job_id: int,
        token: int,
        result: JobResult,
        outbox: Sequence[OutboxEntry] = (),
    ) -> Job:
        """Mark the job done with its result. Raises :class:`LeaseLostError` if fenced out.

        Call this *before* swapping the output into place; a ``LeaseLostError`` means the
        swap must not happen. ``outbox``: the changes Jellyfin must hear about, written in the
        same transaction (see :mod:`castui_core.store.outbox`).
        """
        async with self._write("recording a finished job") as conn:
            return await jobs.complete(conn, self._now(), job_id, token, result, outbox)

    async def fail(
        self,
        job_id: int,
        token: int,
        reason: str,
        *,
        retryable: bool = True,
        result: JobResult | None = None,
    ) -> Job:
        """Record a failed attempt; returns the job in its new state.

        Retryable failures go back to ``queued`` with exponential backoff + jitter until
        ``max_attempts`` is reached, then ``dead``. ``retryable=False`` goes to ``failed``.
        """
        async with self._write("recording a failed job") as conn:
            return await jobs.fail(
                conn,
                self._now(),
                job_id,
                token,
                reason,
                retryable=retryable,
                result=result,
                policy=self._policy,
            )

    async def release(self, job_id: int, token: int, reason: str = "worker shutting down") -> Job:
        """Hand a running job back to the queue without using up an attempt (clean shutdown)."""
        async with self._write("handing a job back") as conn:
            return await jobs.release(conn, self._now(), job_id, token, reason)

    async def reclaim_expired(self) -> list[Job]:
        """Requeue (or bury, if out of attempts) jobs whose lease expired; returns them."""
        async with self._write("reclaiming expired leases") as conn:
            return await jobs.reclaim_expired(conn, self._now(), self._policy)

    async def reap_forever(self, interval_s: float) -> None:
        """Reclaim expired leases every ``interval_s`` until cancelled (run as a task)."""
        while True:
            await self.reclaim_expired()
            await asyncio.sleep(interval_s)

    # --- queue: operator ----------------------------------------------------------------

    async def pause(self, *, actor: str = "operator", reason: str | None = None) -> None:
        """Stop handing out jobs (persisted across restarts); running jobs continue."""
        async with self._write("pausing the queue") as conn:
            await jobs.set_paused(conn, self._now(), True, actor, reason)

    async def resume(self, *, actor: str = "operator", reason: str | None = None) -> None:
        async with self._write("resuming the queue") as conn:
            await jobs.set_paused(conn, self._now(), False, actor, reason)

    async def is_paused(self) -> bool:
        async with self._read("reading the queue state") as conn:
            return await jobs.is_paused(conn)

    async def cancel(
        self, job_id: int, *, actor: str = "operator", reason: str = "cancelled by operator"
    ) -> Job:
        """Cancel a queued or running job; a running worker gets LeaseLost on its next call."""
        async with self._write("cancelling a job") as conn:
            return await jobs.cancel(conn, self._now(), job_id, actor, reason)

    async def retry(self, job_id: int, *, actor: str = "operator") -> Job:
        """Put a failed/dead/cancelled job back in the queue with a fresh attempt budget."""
        async with self._write("retrying a job") as conn:
            return await jobs.retry(conn, self._now(), job_id, actor)

    async def set_priority(self, job_id: int, priority: int, *, actor: str = "operator") -> Job:
        async with self._write("changing a job's priority") as conn:
            return await jobs.set_priority(conn, self._now(), job_id, priority, actor)

    async def clear_history(
        self,
        *,
        older_than: float | None = None,
        states: Sequence[JobState] | None = None,
        actor: str = "operator",
    ) -> int:
        """Delete finished jobs (optionally only older ones / some states); returns the count.

        The audit log keeps their events, subject to its own retention.
        """
        async with self._write("clearing history") as conn:
            return await jobs.clear_history(
                conn, self._now(), older_than=older_than, states=states, actor=actor
            )

    # --- queue: queries -----------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        async with self._read("reading a job") as conn:
            return await jobs.get_job(conn, job_id)

    async def active_jobs(self) -> list[Job]:
        """Running jobs first, then queued ones in the order they will be claimed."""
        async with self._read("listing active jobs") as conn:
            return await jobs.active_jobs(conn)

    async def history(
        self,
        *,
        states: Sequence[JobState | str] | None = None,
        library: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Finished jobs, newest first; ``since``/``until`` filter on ``finished_at``."""
        async with self._read("reading history") as conn:
            return await jobs.history(
                conn,
                states=states,
                library=library,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )

    async def totals(
        self,
        *,
        library: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> HistoryTotals:
        async with self._read("summing history") as conn:
            return await jobs.totals(conn, library=library, since=since, until=until)

    async def recent_jobs(self, library: str, limit: int = 5) -> list[Job]:
        """``library``'s newest jobs, any state (see JobQueue.recent_jobs)."""
        async with self._read("reading recent jobs") as conn:
            return await jobs.recent(conn, library, limit)

    # --- catalog ------------------------------------------------------------------------

    async def upsert_file(self, entry: CatalogEntry) -> None:
        await self.upsert_files((entry,))

    async def upsert_files(self, entries: Iterable[CatalogEntry]) -> None:
        async with self._write("updating the catalog") as conn:
            await catalog.upsert_files(conn, entries, self._now())

    async def get_file(self, path: str) -> CatalogEntry | None:
        async with self._read("reading the catalog") as conn:
            return await catalog.get_file(conn, path)

    async def needs_probe(
        self, path: str, size: int, mtime_ns: int, inode: int | None = None
    ) -> bool:
        """Whether a scan must (re-)probe this file: unknown, never probed, or changed."""
        async with self._read("reading the catalog") as conn:
            return await catalog.needs_probe(conn, path, size, mtime_ns, inode)

    async def fingerprints(self, library: str | None = None) -> dict[str, tuple[int, int]]:
        async with self._read("reading the catalog") as conn:
            return await catalog.fingerprints(conn, library)

    async def known_files(
        self, *, library: str | None = None, under: str | None = None
    ) -> dict[str, catalog.KnownFile]:
        """One library's (or one folder's) catalog rows in one query, for a rescan's diff."""
        async with self._read("reading the catalog") as conn:
            return await catalog.known_files(conn, library=library, under=under)

    async def list_files(self, library: str | None = None) -> list[CatalogEntry]:
        async with self._read("reading the catalog") as conn:
            return await catalog.list_files(conn, library)

    async def remove_files(self, paths: Iterable[str], *, scan_only: bool = False) -> int:
        async with self._write("updating the catalog") as conn:
            return await catalog.remove_files(conn, paths, scan_only=scan_only)

    # --- outputs castui wrote -------------------------------------------------------------

    async def record_output(self, record: OutputRecord) -> None:
        """Remember a file castui placed (see :mod:`castui_core.store.outputs`)."""
        async with self._write("recording an output") as conn:
            await outputs.record_output(conn, record)

    async def get_output(self, path: str) -> OutputRecord | None:
        async with self._read("reading the outputs") as conn:
            return await outputs.get_output(conn, path)

    async def output_paths(self) -> set[str]:
        async with self._read("reading the outputs") as conn:
            return await outputs.output_paths(conn)

    async def forget_output(self, path: str) -> None:
        async with self._write("updating the outputs") as conn:
            await outputs.forget_output(conn, path)

    async def all_outputs(self) -> list[OutputRecord]:
        async with self._read("reading the outputs") as conn:
            return await outputs.all_outputs(conn)

    async def move_output(
        self,
        old: str,
        record: OutputRecord,
        *,
        outbox_entries: Sequence[OutboxEntry] = (),
        original: OriginalRecord | None = None,
        actor: str = "operator",
    ) -> None:
        """``castui layout migrate``: an output (or its original) moved to the library's
        layout, recorded in one transaction with its notifications and audit entry."""
        async with self._write("recording a layout change") as conn:
            now = self._now()
            if record.path != old:
                await outputs.forget_output(conn, old)
            await outputs.record_output(conn, record)
            if original is not None:
                await originals_db.record_archived(conn, original)
            if outbox_entries:
                await outbox_db.add_entries(conn, now, None, outbox_entries)
            await audit.record_event(
                conn,
                now,
                "layout_migrated",
                path=record.source,
                actor=actor,
                details={
                    "output": record.path,
                    "from": old,
                    "archive": None if original is None else original.archive,
                },
            )

    # --- archived originals (castui_core.originals) ---------------------------------------

    async def record_original(self, record: OriginalRecord) -> None:
        """Remember an original the replace layout moved into the archive."""
        async with self._write("recording an archived original") as conn:
            await originals_db.record_archived(conn, record)

    async def list_originals(
        self, *, state: OriginalState = "archived", library: str | None = None
    ) -> list[OriginalRecord]:
        async with self._read("reading the archived originals") as conn:
            return await originals_db.list_originals(conn, state=state, library=library)

    async def archived_original(self, path: str) -> OriginalRecord | None:
        """The archived original of ``path`` (its home, archive name or castui's output)."""
        async with self._read("reading the archived originals") as conn:
            return await originals_db.archived_at_path(conn, path)

    async def originals_of_jobs(self, job_ids: Sequence[int]) -> dict[int, OriginalRecord]:
        """Where each job's original is now (the newest originals row of its path)."""
        async with self._read("reading the archived originals") as conn:
            return await originals_db.latest_for_jobs(conn, job_ids)

    async def restored_marker(self, path: str) -> OriginalRecord | None:
        """Whether ``path`` was restored from the archive on purpose (and not asked since)."""
        async with self._read("reading the archived originals") as conn:
            return await originals_db.restored_marker(conn, path)

    async def clear_restored_marker(self, path: str, *, actor: str = "operator") -> int:
        async with self._write("updating the archived originals") as conn:
            count = await originals_db.clear_marker(conn, path, self._now())
            if count:
                await audit.record_event(
                    conn, self._now(), "original_convert_again", path=path, actor=actor
                )
            return count

    async def end_original(
        self,
        record: OriginalRecord,
        state: OriginalState,
        *,
        forget_output: str | None = None,
        outbox_entries: Sequence[OutboxEntry] = (),
        actor: str = "operator",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Restore or purge ``record`` in one transaction: its new state, the output record
        that no longer holds (restore), the Jellyfin notifications and the audit entry, so a
        crash leaves all of them or none."""
        assert record.id is not None
        async with self._write("updating the archived originals") as conn:
            now = self._now()
            await originals_db.end(conn, record.id, state, now)
            if forget_output is not None:
                await outputs.forget_output(conn, forget_output)
            if outbox_entries:
                await outbox_db.add_entries(conn, now, None, outbox_entries)
            await audit.record_event(
                conn,
                now,
                f"original_{state}",
                path=record.path,
                actor=actor,
                details={"archive": record.archive, "output": record.output, **(details or {})},
            )

    # --- Jellyfin confirmations -----------------------------------------------------------

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
    ) -> None:
        """Store Jellyfin's answer for a job (see :mod:`castui_core.store.confirmations`)."""
        async with self._write("recording a Jellyfin confirmation") as conn:
            await confirmations.record_confirmation(
                conn,
                at,
                job_id=job_id,
                path=path,
                status=status,
                generation=generation,
                reasons=reasons,
                message=message,
                item_id=item_id,
            )

    async def jellyfin_confirmations(
        self, job_ids: Sequence[int]
    ) -> dict[int, confirmations.StoredConfirmation]:
        async with self._read("reading Jellyfin confirmations") as conn:
            return await confirmations.confirmations_for(conn, job_ids)

    async def pending_jellyfin_confirmations(self) -> list[tuple[int, str, str, float]]:
        """``(job id, library, output path, swap time)`` of confirmations not answered yet."""
        async with self._read("reading Jellyfin confirmations") as conn:
            return await confirmations.pending(conn)

    async def jellyfin_confirmation_counts(self) -> dict[str, int]:
        async with self._read("reading Jellyfin confirmations") as conn:
            return await confirmations.confirmation_counts(conn)

    # --- Jellyfin outbox -------------------------------------------------------------------

    async def outbox_add(self, entries: Sequence[OutboxEntry], job_id: int | None = None) -> None:
        """Queue changes for Jellyfin outside a job (``castui convert``, tests)."""
        async with self._write("queueing Jellyfin notifications") as conn:
            await outbox_db.add_entries(conn, self._now(), job_id, entries)

    async def outbox_due(self, limit: int, target: str = outbox_db.JELLYFIN) -> list[OutboxRow]:
        async with self._read("reading the outbox") as conn:
            return await outbox_db.due(conn, self._now(), limit, target)

    async def outbox_next_due(self, target: str = outbox_db.JELLYFIN) -> float | None:
        async with self._read("reading the outbox") as conn:
            return await outbox_db.next_due(conn, target)

    async def outbox_delivered(self, ids: Sequence[int]) -> None:
        async with self._write("recording delivered Jellyfin notifications") as conn:
            await outbox_db.delivered(conn, ids)

    async def outbox_retry_later(self, ids: Sequence[int], next_at: float, error: str) -> None:
        async with self._write("postponing Jellyfin notifications") as conn:
            await outbox_db.retry_later(conn, ids, next_at, error)

    async def outbox_stop(self, ids: Sequence[int], error: str) -> None:
        async with self._write("stopping Jellyfin notifications") as conn:
            await outbox_db.stop(conn, ids, error)

    async def outbox_resume(self, target: str = outbox_db.JELLYFIN) -> int:
        async with self._write("resuming notifications") as conn:
            return await outbox_db.resume(conn, self._now(), target)

    async def outbox_counts(self, target: str = outbox_db.JELLYFIN) -> dict[str, int]:
        async with self._read("reading the outbox") as conn:
            return await outbox_db.counts(conn, target)

    async def outbox_rows(
        self, limit: int = 1000, target: str = outbox_db.JELLYFIN
    ) -> list[OutboxRow]:
        async with self._read("reading the outbox") as conn:
            return await outbox_db.rows(conn, limit, target)

    async def outbox_all_rows(self, limit: int = 1000) -> list[OutboxRow]:
        """Rows of every target, oldest first (this host's rows to move into a shared queue)."""
        async with self._read("reading the outbox") as conn:
            return await outbox_db.all_rows(conn, limit)

    # --- nodes (castui_core.nodes) ----------------------------------------------------------

    async def node_heartbeat(self, node: NodeStatus) -> None:
        """Keep a node's status as a ``meta`` row ``node:<name>`` (JSON, no migration needed:
        a handful of rows, read whole); ``last_seen`` is this store's clock, not the node's."""
        body = {
            "name": node.name,
            "role": node.role,
            "pid": node.pid,
            "started_at": node.started_at,
            "version": node.version,
            "current_jobs": list(node.current_jobs),
            "encoder": node.encoder,
            "gpu_temp_c": node.gpu_temp_c,
            "guard": node.guard,
            "last_seen": self._now(),
        }
        async with self._write("recording a node's heartbeat") as conn:
            await execute(
                conn,
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (NODE_KEY_PREFIX + node.name, json.dumps(body)),
            )

    async def nodes(self) -> list[NodeStatus]:
        """Every node that ever sent a heartbeat, by name; judge "offline" by ``last_seen``."""
        # Imported here: protocol imports store.models, which loads this package (a cycle).
        from castui_core.queue.protocol import NodeStatus

        async with self._read("listing nodes") as conn:
            rows = await fetchall(
                conn,
                "SELECT value FROM meta WHERE key >= ? AND key < ? ORDER BY key",
                (NODE_KEY_PREFIX, NODE_KEY_PREFIX[:-1] + chr(ord(NODE_KEY_PREFIX[-1]) + 1)),
            )
        out: list[NodeStatus] = []
        for (raw,) in rows:
            d = json.loads(raw)
            temp = d.get("gpu_temp_c")
            out.append(
                NodeStatus(
                    name=str(d["name"]),
                    role=str(d["role"]),
                    pid=int(d["pid"]),
                    started_at=float(d["started_at"]),
                    version=str(d["version"]),
                    current_jobs=tuple(int(j) for j in d.get("current_jobs", ())),
                    encoder=d.get("encoder"),
                    gpu_temp_c=None if temp is None else float(temp),
                    guard=d.get("guard"),
                    last_seen=float(d.get("last_seen", 0.0)),
                )
            )
        return out

    # --- watch history across a swap (castui_core.integrations.jellyfin.userdata) ----------

    async def record_watch_history(
        self, *, job_id: int, path: str, status: str, snapshot: str, message: str
    ) -> None:
        """Store a job's snapshot (``pending``) or its outcome (last write wins)."""
        async with self._write("recording watch history") as conn:
            await watch_db.record(
                conn,
                self._now(),
                job_id=job_id,
                path=path,
                status=status,
                snapshot=snapshot,
                message=message,
            )

    async def watch_history(self, job_ids: Sequence[int]) -> dict[int, watch_db.StoredWatchHistory]:
        async with self._read("reading watch history") as conn:
            return await watch_db.for_jobs(conn, job_ids)

    async def pending_watch_history(self) -> list[watch_db.StoredWatchHistory]:
        async with self._read("reading watch history") as conn:
            return await watch_db.pending(conn)

    # --- audit --------------------------------------------------------------------------

    async def record_event(
        self,
        kind: str,
        *,
        job_id: int | None = None,
        path: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Log an operator action, profile edit (``details={"before":…, "after":…}``) or
        guardrail trip. Job state transitions are logged by the store itself."""
        async with self._write("writing the audit log") as conn:
            return await audit.record_event(
                conn,
                self._now(),
                kind,
                job_id=job_id,
                path=path,
                actor=actor,
                reason=reason,
                details=details,
            )

    async def list_events(
        self,
        *,
        kind: str | None = None,
        job_id: int | None = None,
        path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Newest first."""
        async with self._read("reading the audit log") as conn:
            return await audit.list_events(
                conn, kind=kind, job_id=job_id, path=path, since=since, until=until, limit=limit
            )

    async def prune_events(self, *, older_than: float, keep_last: int | None = None) -> int:
        async with self._write("pruning the audit log") as conn:
            return await audit.prune_events(conn, older_than=older_than, keep_last=keep_last)

    # --- maintenance --------------------------------------------------------------------

    async def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check`` lines; ``["ok"]`` for a healthy file."""
        async with self._read("checking integrity") as conn:
            rows = await fetchall(conn, "PRAGMA integrity_check")
        return [str(r[0]) for r in rows]

    async def backup(self, dest: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Copy the live database to ``dest`` with SQLite's online backup API.

        Safe while workers are writing. Written to ``dest.partial``, verified with
        ``integrity_check``, then renamed into place, so ``dest`` is either absent or a
        complete, consistent copy.
        """
        target_path = Path(dest)
        partial, target = await asyncio.to_thread(
            _open_backup_target, target_path, self.path, overwrite
        )
        try:
            async with self._lock:
                await self._require().backup(target)
            check = await asyncio.to_thread(
                lambda: [str(r[0]) for r in target.execute("PRAGMA integrity_check")]
            )
            if check != ["ok"]:
                raise StoreError(
                    f"the backup {partial} failed its integrity check ({check[:3]}); "
                    "the live database may be damaged: run `castui db backup` again and "
                    "keep earlier backups."
                )
        except sqlite3.Error as exc:
            target.close()
            partial.unlink(missing_ok=True)
            raise translate_error(exc, self.path, "backing up") from exc
        except BaseException:
            target.close()
            partial.unlink(missing_ok=True)
            raise
        target.close()
        try:
            os.replace(partial, target_path)
        except OSError as exc:
            raise StoreError(
                f"backup written to {partial} but could not be renamed to {target_path} "
                f"({exc}); rename it yourself."
            ) from exc
        return target_path


def _open_backup_target(
    target_path: Path, live: Path, overwrite: bool
) -> tuple[Path, sqlite3.Connection]:
    """File-system checks for :meth:`Store.backup` (blocking, so run in a thread)."""
    if target_path.exists() and not overwrite:
        raise StoreError(
            f"{target_path} already exists; choose another backup path or remove it first."
        )
    if target_path.resolve() == live.resolve():
        raise StoreError("the backup path is the live database itself; choose another path.")
    partial = target_path.with_name(target_path.name + ".partial")
    try:
        target_path.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        # check_same_thread=False: aiosqlite runs the backup on its own worker thread.
        return partial, sqlite3.connect(partial, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"cannot write the backup {partial} ({exc}); choose a writable path."
        ) from exc
