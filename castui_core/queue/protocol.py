"""The job queue as a protocol: what the engine, ingest, the control socket, the CLI and the
dashboard may ask of whichever backend holds the jobs.

Why a protocol: one host keeps its queue in SQLite (:class:`castui_core.store.Store`, the
embedded default); several hosts share one in Redis (:mod:`castui_core.queue.redis`). Both
implement this, both pass the same conformance suite (``tests/queue/``), and the rules that
decide what a transition does (:mod:`castui_core.queue.policy`) are shared, pure functions, so
a second backend does not copy the policy.

The contract every backend keeps:

* one active job per path; ``enqueue`` of a known path follows :class:`EnqueueOutcome`;
* ``claim`` hands each ready job to exactly one caller, best priority first, FIFO within it,
  and bumps the job's fencing token; ``heartbeat`` / ``complete`` / ``fail`` / ``release``
  with a stale token raise :class:`~castui_core.errors.LeaseLostError` and change nothing;
* leases are measured on the backend's clock (Redis: the server's ``TIME``), so hosts whose
  clocks differ agree on when a lease expired;
* every transition writes exactly one audit event, in the same atomic step as the change;
* a change the call returned from is durable (SQLite: a committed transaction; Redis: AOF);
* errors are :class:`~castui_core.errors.StoreError` (or a subclass) with words that say what
  to do, never a driver's exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from castui_core.store.models import (
    ClaimedJob,
    EnqueueResult,
    Event,
    HistoryTotals,
    Job,
    JobAction,
    JobResult,
    JobState,
    Progress,
)
from castui_core.store.outbox import JELLYFIN, OutboxEntry, OutboxRow

if TYPE_CHECKING:
    # Type-only: importing the policy at run time from here would close the cycle
    # queue.policy -> store (package) -> store.jobs -> queue.policy when the queue package is
    # imported first (the store must be loaded before the policy, which the import above does).
    from castui_core.queue.policy import NewJob


#: How many of the newest jobs ``recent_jobs`` may look through for a library's: bounded, so a
#: node's start check costs little however big the queue is (Redis: ~80 ms of server time in
#: slices of ~10 ms, for a library none of whose jobs is among them).
RECENT_SCAN = 20_000


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One castui engine's heartbeat as the queue keeps it (the dashboard's nodes table).

    ``last_seen`` is stamped by the backend with its own clock when the heartbeat is stored
    (the value a node sends is ignored), so "offline" is judged on one clock.
    """

    name: str
    role: str  # "all" (ingest + sender + workers) or "worker"
    pid: int
    started_at: float
    version: str
    current_jobs: tuple[int, ...] = ()
    encoder: str | None = None
    gpu_temp_c: float | None = None
    guard: str | None = None  # why it is not claiming now ("GPU at 87 °C"), or None
    last_seen: float = 0.0


@runtime_checkable
class JobQueue(Protocol):
    """A durable, fenced job queue with its audit trail and the notification outbox."""

    @property
    def lease_seconds(self) -> float: ...

    async def close(self) -> None: ...

    # --- workers --------------------------------------------------------------------------

    async def enqueue(
        self,
        path: str,
        library: str,
        action: JobAction | str,
        reasons: Sequence[str] = (),
        *,
        priority: int = 0,
        debounce_s: float = 0.0,
    ) -> EnqueueResult: ...

    async def enqueue_many(self, items: Iterable[NewJob]) -> list[EnqueueResult]: ...

    async def claim(self, owner: str) -> ClaimedJob | None:
        """The best ready job for ``owner`` (``node:pid/wN``), or ``None`` (none ready or
        paused). Expired leases are reclaimed first."""

    async def heartbeat(
        self, job_id: int, token: int, progress: Progress | None = None
    ) -> float: ...

    async def complete(
        self,
        job_id: int,
        token: int,
        result: JobResult,
        outbox: Sequence[OutboxEntry] = (),
    ) -> Job: ...

    async def fail(
        self,
        job_id: int,
        token: int,
        reason: str,
        *,
        retryable: bool = True,
        result: JobResult | None = None,
    ) -> Job: ...

    async def release(
        self, job_id: int, token: int, reason: str = "worker shutting down"
    ) -> Job: ...

    async def reclaim_expired(self) -> list[Job]: ...

    # --- operator -------------------------------------------------------------------------

    async def pause(self, *, actor: str = "operator", reason: str | None = None) -> None: ...
    async def resume(self, *, actor: str = "operator", reason: str | None = None) -> None: ...
    async def is_paused(self) -> bool: ...

    async def cancel(
        self, job_id: int, *, actor: str = "operator", reason: str = "cancelled by operator"
    ) -> Job: ...

    async def retry(self, job_id: int, *, actor: str = "operator") -> Job: ...

    async def set_priority(self, job_id: int, priority: int, *, actor: str = "operator") -> Job: ...

    async def clear_history(
        self,
        *,
        older_than: float | None = None,
        states: Sequence[JobState] | None = None,
        actor: str = "operator",
    ) -> int: ...

    # --- queries --------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job: ...

    async def active_jobs(self) -> list[Job]: ...

    async def history(
        self,
        *,
        states: Sequence[JobState | str] | None = None,
        library: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]: ...

    async def totals(
        self,
        *,
        library: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> HistoryTotals: ...

    async def recent_jobs(self, library: str, limit: int = 5) -> list[Job]:
        """Up to ``limit`` of ``library``'s newest jobs (highest id first, any state): the
        files a node expects to find through its path map (castui_core.nodes). A backend
        may look only at its newest :data:`RECENT_SCAN` jobs (Redis walks ids one by one)."""
        ...

    # --- audit ----------------------------------------------------------------------------

    async def record_event(
        self,
        kind: str,
        *,
        job_id: int | None = None,
        path: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int: ...

    async def list_events(
        self,
        *,
        kind: str | None = None,
        job_id: int | None = None,
        path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[Event]: ...

    # --- notification outbox (Jellyfin, Sonarr/Radarr, Apprise) ---------------------------

    async def outbox_add(
        self, entries: Sequence[OutboxEntry], job_id: int | None = None
    ) -> None: ...

    async def outbox_due(self, limit: int, target: str = JELLYFIN) -> list[OutboxRow]: ...
    async def outbox_next_due(self, target: str = JELLYFIN) -> float | None: ...
    async def outbox_delivered(self, ids: Sequence[int]) -> None: ...
    async def outbox_retry_later(self, ids: Sequence[int], next_at: float, error: str) -> None: ...
    async def outbox_stop(self, ids: Sequence[int], error: str) -> None: ...
    async def outbox_resume(self, target: str = JELLYFIN) -> int: ...
    async def outbox_counts(self, target: str = JELLYFIN) -> dict[str, int]: ...
    async def outbox_rows(self, limit: int = 1000, target: str = JELLYFIN) -> list[OutboxRow]: ...

    # --- nodes (castui_core.nodes) ----------------------------------------------------------

    async def node_heartbeat(self, node: NodeStatus) -> None:
        """Store ``node``'s status; the backend stamps ``last_seen`` with its own clock."""
        ...

    async def nodes(self) -> list[NodeStatus]:
        """Every node that ever sent a heartbeat, sorted by name."""
        ...
