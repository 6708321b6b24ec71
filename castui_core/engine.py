"""The engine: store, ingest, guardrails and N workers in one async context.

``async with Engine(settings) as engine:`` is all a front end needs: the TUI, headless mode
and tests drive the same object and read the same event bus. Every state change is
published as an event and every decision to wait or pause is published with its reason, so
nothing happens silently.

Workers claim jobs with leases from the SQLite store (several engines, in several
processes, can share one database), heartbeat with progress while ffmpeg runs, and check the
lease once more right before the swap: a worker whose lease was taken over never touches the
user's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from castui_core import __version__, nodes
from castui_core import events as ev
from castui_core.api import StoreReads
from castui_core.bus import EventBus
from castui_core.convert import Converter, ConvertOptions, ConvertOutcome, options_for
from castui_core.errors import CastuiError, LeaseLostError, QueueUnreachableError
from castui_core.events import (
    GuardrailCleared,
    GuardrailTripped,
    JobNote,
    JobProgress,
    JobQueued,
    JobStarted,
    JobStateChanged,
    LogLine,
    QueueState,
)
from castui_core.ffmpeg.nvenc import (
    NvencStatus,
    detect_nvdec,
    detect_nvenc,
    detect_nvenc_for_profiles,
)
from castui_core.guardrails import GpuBackend, Guardrails, JobNeeds, open_gpu_backend
from castui_core.guardrails.disk import FreeSpaceReader, read_free_space
from castui_core.ingest import Ingest
from castui_core.integrations.arr import ArrSender, arr_entries, start_arr_senders
from castui_core.integrations.jellyfin.sender import (
    JellyfinSender,
    outbox_entries,
    start_sender,
)
from castui_core.integrations.jellyfin.userdata import WatchHistoryKeeper, start_keeper
from castui_core.integrations.jellyfin.watchers import JellyfinWatchers
from castui_core.originals import at_start as originals_at_start
from castui_core.originals import restore_job
from castui_core.probe import ProbePool
from castui_core.profiles import DEFAULT_PROFILE
from castui_core.queue.forward import OutboxForwarder
from castui_core.queue.open import open_queue
from castui_core.queue.protocol import JobQueue, NodeStatus
from castui_core.report import Calibration
from castui_core.settings import Settings
from castui_core.settings_update import (
    Edit,
    SettingsUpdate,
    SettingsView,
    read_view,
    update_settings,
)
from castui_core.store import ClaimedJob, Job, JobResult, JobState, Progress, Store
from castui_core.store.outbox import JELLYFIN
from castui_core.swap import Journal, recover
from castui_core.tasks import wait_set
from castui_core.tools import Tools, find_tools

T = TypeVar("T")

#: Failure kinds that mean "the disk is full", not "this file is bad": the job is handed back
#: without using an attempt and waits for space (``disk_space``: the pre-check refused it;
#: ``disk_full``: ENOSPC while writing, from ffmpeg's stderr or the swap's OSError).
DISK_WAIT = frozenset({"disk_space", "disk_full"})
#: How long ``stop`` waits, after cancelling running jobs, for their workers to record the
#: hand-back (a cancel ends ffmpeg within its SIGTERM grace; the swap is short).
_RECORD_GRACE_S = 30.0

NODE_HEARTBEAT_S = nodes.HEARTBEAT_S
#: Backoff between claims while the queue is unreachable.
_QUEUE_BACKOFF_MIN_S = 1.0
_QUEUE_BACKOFF_MAX_S = 30.0

#: Failure kinds that will fail again the same way: recorded as failed, never retried.
NOT_RETRYABLE = frozenset(
    {
        "decode_error",
        "input_missing",
        "permission",
        "output_exists",
        "config",
        "rejected",
        "name_too_long",
    }
)


@dataclass
class RunningJob:
    """A job this engine is working on right now."""

    claimed: ClaimedJob
    #: The source as this node sees it (the job's path through ``node.path_map``).
    path: str = ""
    #: The ``node.path_map`` it was mapped with: its output is mapped back with the same one,
    #: even if a reload changed the settings' map meanwhile.
    path_map: Mapping[str, str] = field(default_factory=dict)
    encoder: str | None = None
    progress: Progress | None = None
    paused: bool = False
    lease_lost: bool = False
    #: Its encode ended: the job's heartbeat loop stops (even if its cancellation was lost).
    finished: bool = False
    #: Handed back because the converter found too little space (see ``_work_once``).
    released_for_space: bool = False


@dataclass
class RunSummary:
    """What this engine did since it started (for ``--once``)."""

    outcomes: list[ConvertOutcome] = field(default_factory=list)

    @property
    def done(self) -> list[ConvertOutcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def failed(self) -> list[ConvertOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "rejected")]

    @property
    def bytes_saved(self) -> int:
        return sum(o.bytes_before - (o.bytes_after or 0) for o in self.done)


class Engine(StoreReads):
    """Runs castui's main job until stopped. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        gpu: GpuBackend | None = None,
        nvenc: NvencStatus | None = None,
        watch: bool = True,
        scan_at_start: bool = True,
        owner: str | None = None,
        idle_poll_s: float = 2.0,
        lease_seconds: float | None = None,
        tools: Tools | None = None,
        free_space: FreeSpaceReader = read_free_space,
        now: Callable[[], datetime] = datetime.now,
        queue: JobQueue | None = None,
        node_heartbeat_s: float = NODE_HEARTBEAT_S,
    ) -> None:
        self.settings = settings
        self.bus = bus if bus is not None else EventBus()
        #: This node's name (nodes table, job history) and role (``worker``: claim and convert
        #: only). Workers' lease owners are ``{node}:{pid}/wN`` (castui_core.nodes).
        self.node = settings.node.node_name()
        self.role = settings.node.role
        self.owner = owner or f"{self.node}:{os.getpid()}"
        self._queue_given = queue
        self._queue: JobQueue | None = queue
        self._node_heartbeat_s = node_heartbeat_s
        self._beat = asyncio.Event()  # set (and replaced) after each node heartbeat
        self._started_at = time.time()
        #: Why this node claims nothing now (its path map does not reach a library), or None.
        self.refusal: str | None = None
        #: "queue unreachable: ..." while the queue cannot be reached, else None.
        self.queue_problem: str | None = None
        self.summary = RunSummary()
        #: What the command line sets over the settings file (``--node``/``--role``): applied
        #: by every reload (SIGHUP, a dashboard's save, the control socket's reload), which
        #: read the file alone; without it a save from the dashboard turned a worker node
        #: back into the file's role.
        self.settings_overrides: Callable[[Settings], Settings] | None = None
        self._gpu = gpu
        self._nvenc = nvenc
        self._watch = watch
        self._scan_at_start = scan_at_start
        self._idle_poll_s = idle_poll_s
        self._lease_seconds = (
            lease_seconds if lease_seconds is not None else settings.service.lease_seconds
        )
        self._tools = tools
        self._free_space = free_space
        self._now = now
        self._running: dict[int, RunningJob] = {}
        self._none_running = asyncio.Event()
        self._none_running.set()
        self._stopping = asyncio.Event()
        #: Set by stop() as it cancels the background loops: each ends at its next turn even
        #: when redis-py swallowed the cancellation (Python 3.11's wait_for drops one that
        #: lands as a command completes, and the loop then slept and ran on: stop() hung).
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        #: Workers waiting in ``_idle`` (they found nothing they may do); ``_parked_changed`` is
        #: set (and replaced) each time one parks, so ``wait_idle`` needs no fixed poll.
        self._parked: set[int] = set()
        self._parked_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Worker number -> task; a reload changes ``_worker_limit`` and the set follows it.
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._worker_limit = settings.operational.max_concurrent_jobs
        self._exit: contextlib.AsyncExitStack | None = None
        self._paused_by_guard: str | None = None
        # Set in start():
        self.store: Store
        self.pool: ProbePool
        self.converter: Converter
        self.journal: Journal
        self.guardrails: Guardrails
        self.ingest: Ingest | None = None
        self.jellyfin_watchers: JellyfinWatchers | None = None  # confirmations, sessions guard
        self.jellyfin: JellyfinSender | None = None  # tells Jellyfin of committed swaps
        self.watch_keeper: WatchHistoryKeeper | None = None  # users' state across a swap
        self.arr: list[ArrSender] = []  # asks Sonarr/Radarr to rescan after each swap
        #: Moves this host's outbox rows (a restore's notices) into a shared queue's outbox.
        self.forwarder: OutboxForwarder | None = None

    @property
    def queue(self) -> JobQueue:
        """The job queue (shared by every node): the settings' backend, or this host's store."""
        return self._queue if self._queue is not None else self.store

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        settings = self.settings
        stack = contextlib.AsyncExitStack()
        self._exit = stack
        try:
            tools = self._tools or find_tools(settings.ffmpeg, settings.ffprobe)
            self.store = await Store.connect(settings.database, lease_seconds=self._lease_seconds)
            stack.push_async_callback(self.store.close)
            if self._queue is None:  # the settings' queue: this store, or a shared Redis
                self._queue = await open_queue(
                    settings, self.store, lease_seconds=self._lease_seconds
                )
                if self._queue is not self.store:
                    stack.push_async_callback(self._queue.close)
            worker_only = self.role == "worker"  # claim and convert: no senders, no ingest
            if not worker_only:
                self.jellyfin = await start_sender(settings, self.queue, self.bus)
                if self.jellyfin is not None:
                    stack.push_async_callback(self.jellyfin.stop)
                self.watch_keeper = await start_keeper(settings, self.store, self.bus)
                if self.watch_keeper is not None:  # users' watched state across each swap
                    stack.push_async_callback(self.watch_keeper.stop)
                self.arr = await start_arr_senders(settings, self.queue, self.bus)
                stack.push_async_callback(self._stop_arr)  # Sonarr/Radarr rescans, same outbox
            if self.queue is not self.store:  # notices written here (restores) go to the queue
                self.forwarder = OutboxForwarder(
                    self.store,
                    self.queue,
                    path_map=settings.node.path_map,
                    on_moved=self._poke_senders,
                    on_problem=lambda message: self._log("warning", message),
                )
                self.forwarder.start()  # forwards at once, then on pokes and every 10 s
                stack.push_async_callback(self.forwarder.stop)
            journal = Journal(settings.database.parent / "journal")
            stack.callback(journal.close)  # after the workers: their entries are finished
            self.journal = journal  # restores from the dashboard journal here too
            for line in await asyncio.to_thread(recover, journal):
                self._log("warning", line)
            for line in await originals_at_start(settings, self.store, self.bus):
                self._log("info", line)  # crash-left restores recorded; originals_keep_days
            self.pool = ProbePool(
                settings.scan.probe_workers,
                timeout=settings.scan.probe_timeout_s,
                idle_timeout_s=settings.scan.probe_idle_s,  # idle engine: no probe processes
            )
            stack.callback(self.pool.close)
            if self._nvenc is None and settings.operational.encoder != "cpu":
                self._nvenc = await detect_nvenc(tools.ffmpeg)
            if self._nvenc is not None:
                state = "available" if self._nvenc.available else self._nvenc.reason
                self._log("info", f"NVENC: {state}")
            self.converter = Converter(
                tools=tools,
                pool=self.pool,
                journal=journal,
                bus=self.bus,
                nvenc=self._nvenc,
                store=self.store,  # outputs are recorded where `castui convert` records them
                written_by="engine",
            )
            if self._nvenc is not None and self._nvenc.available:
                # Decode on the GPU only what this GPU decodes (issue 16 #1): probed once.
                nvdec = await detect_nvdec(tools.ffmpeg, settings.database.parent)
                self.converter.nvdec_codecs = nvdec.codecs
                missing = ", ".join(f"{c} ({r})" for c, r in sorted(nvdec.reasons.items()))
                self._log("info", f"NVDEC: {', '.join(sorted(nvdec.codecs)) or 'none'}")
                if missing:
                    self._log("info", f"decoded on the CPU: {missing}")
                await self._probe_profiles(settings)
            gpu = self._gpu if self._gpu is not None else await asyncio.to_thread(open_gpu_backend)
            self.guardrails = Guardrails(
                settings.guardrails,
                min_free_bytes=int(settings.operational.min_free_gb * 1e9),
                bus=self.bus,
                gpu=gpu,
                on_change=self._guardrail_changed,
                free_space=self._free_space,
                now=self._now,
            )
            await stack.enter_async_context(self.guardrails)
            if settings.jellyfin is not None and not worker_only:  # confirmations, sessions
                watchers = JellyfinWatchers(settings, self.store, self.bus, self.guardrails)
                self.jellyfin_watchers = watchers
                stack.push_async_callback(watchers.stop)
                await watchers.start()
            if await self.queue.is_paused():  # persisted by an operator: say so at start
                self.bus.publish(QueueState(paused=True, reason="paused before this start"))
            await self._check_path_map()
            nvenc_missing = self._nvenc_missing()
            if nvenc_missing is not None:  # leave the jobs to a node that has NVENC
                self.refusal = "; ".join(r for r in (self.refusal, nvenc_missing) if r)
                self._log("error", f"node {self.node} claims no jobs: {nvenc_missing}")
            if (self._watch or self._scan_at_start) and not worker_only:
                self.ingest = Ingest(
                    settings,
                    self.store,
                    self.pool,
                    self.bus,
                    watch=self._watch,
                    scan_at_start=self._scan_at_start,
                    queue=self.queue,
                )
                await stack.enter_async_context(self.ingest)
            self.converter.publish_finished = False  # published by _record, once committed
            self._spawn(self._reap_forever(max(5.0, self._lease_seconds / 2)))
            self._spawn(self._watch_events())
            self._spawn(self._enforce_pauses())
            self._spawn(self._node_heartbeats())
            self._start_workers()
        except BaseException:
            await stack.aclose()
            raise

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    def _start_workers(self) -> None:
        """Start workers up to the limit (a reload that raises it starts the extra ones)."""
        for n in range(self._worker_limit):
            task = self._workers.get(n)
            if task is None or task.done():
                self._workers[n] = asyncio.create_task(self._worker(n), name=f"castui-w{n}")

    @property
    def worker_count(self) -> int:
        """Workers alive now (a lowered limit: surplus ones exit after their current job)."""
        return sum(1 for t in self._workers.values() if not t.done())

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; let running jobs finish for ``grace_s``, then cancel and requeue them."""
        if self._exit is None:
            return
        grace = self.settings.service.shutdown_grace_s if grace_s is None else grace_s
        self._stopping.set()
        self._wake.set()
        if self._running:
            self._log(
                "info", f"stopping: {len(self._running)} job(s) running, waiting up to {grace:g} s"
            )
            await wait_set(self._none_running, grace)
            for running in list(self._running.values()):
                await self.converter.cancel(running.path, "castui is stopping")
            # Every phase (encode, validation) ends on the cancel; let the workers record the
            # hand-back (no attempt used) before their tasks go. A swap in progress finishes.
            await wait_set(self._none_running, _RECORD_GRACE_S)
        workers = [*self._workers.values(), *self._tasks]
        self._workers = {}
        self._tasks = []
        self._closing.set()
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stack, self._exit = self._exit, None
        await stack.aclose()

    async def wait_idle(self, *, poll_s: float = 0.2) -> None:
        """Return once the initial scans are done and no job is ready or running.

        Idle means every worker is parked (it looked at the queue after its last job and
        found nothing it may do), none runs a job and the queue has no ready or running job.
        A worker parking wakes this at once, so ``--once`` ends right after the last job is
        recorded instead of a poll or two later; ``poll_s`` stays as the fallback for work
        that appears elsewhere (another node's jobs, a retry coming due).
        """
        while True:
            if self.ingest is not None:
                await self.ingest.wait_scans()
            changed = self._parked_changed
            if (
                self._all_parked()
                and not await self._ready_jobs()
                and self._all_parked()  # still: no worker woke and claimed meanwhile
            ):
                return
            await wait_set(changed, poll_s)

    def _all_parked(self) -> bool:
        """No job runs here and every live worker waits in ``_idle``."""
        live = (n for n, task in self._workers.items() if not task.done())
        return not self._running and all(n in self._parked for n in live)

    async def _ready_jobs(self) -> bool:
        now = time.time()
        for job in await self.queue.active_jobs():
            if job.state is JobState.RUNNING or job.run_after <= now:
                return True
        return False

    # --- commands (from the TUI, signals, tests) -----------------------------------------------

    async def pause_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self.queue.pause(actor=actor, reason=reason)
        self.bus.publish(QueueState(paused=True, actor=actor, reason=reason or ""))

    async def resume_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self.queue.resume(actor=actor, reason=reason)
        self.bus.publish(QueueState(paused=False, actor=actor, reason=reason or ""))
        self._wake.set()

    async def cancel_job(self, job_id: int, *, actor: str = "operator") -> Job:
        """Cancel a queued or running job (a running encode is stopped, its output discarded)."""
        old = (await self.queue.get_job(job_id)).state
        job = await self.queue.cancel(job_id, actor=actor)
        self._committed(job, old, actor=actor)
        running = self._running.get(job_id)
        if running is not None:
            await self.converter.cancel(running.path, f"cancelled by {actor}")
        return job

    async def retry_job(self, job_id: int, *, actor: str = "operator") -> Job:
        old = (await self.queue.get_job(job_id)).state
        job = await self.queue.retry(job_id, actor=actor)
        self._committed(job, old, actor=actor, reason=f"retried by {actor}")
        self._wake.set()
        return job

    async def set_priority(self, job_id: int, priority: int, *, actor: str = "operator") -> Job:
        job = await self.queue.set_priority(job_id, priority, actor=actor)
        self._committed(job, job.state, actor=actor, reason=f"priority {priority} by {actor}")
        self._wake.set()
        return job

    def _committed(
        self, job: Job, old: JobState | str, *, reason: str | None = None, actor: str = ""
    ) -> None:
        """Publish a job's state change; called only after the store call that made it
        returned (committed), never before."""
        self.bus.publish(
            JobStateChanged(
                job_id=job.id,
                path=job.path,
                library=job.library,
                old=old.value if isinstance(old, JobState) else old,
                new=job.state.value,
                reason=reason if reason is not None else (job.reason or ""),
                output_path=job.result.output_path,
                attempts=job.attempts,
                priority=job.priority,
                actor=actor or (job.lease_owner or ""),
            )
        )

    async def _reap_forever(self, interval_s: float) -> None:
        """Reclaim expired leases (a crashed worker's jobs) and publish each change."""
        while not self._closing.is_set():
            try:
                for job in await self.queue.reclaim_expired():
                    self._committed(job, JobState.RUNNING, reason="lease expired", actor="reaper")
            except QueueUnreachableError as exc:
                self._queue_unreachable(exc)  # try again next round
            except CastuiError as exc:
                self._log("warning", f"reclaiming expired leases: {exc}")
            await wait_set(self._closing, interval_s)

    async def scan(self, library: str | None = None) -> None:
        """Scan one library (or all) now; new work is queued as it is found."""
        if self.ingest is None:
            raise CastuiError("this engine was started without ingest; restart it to scan")
        names = [library] if library else [lib.name for lib in self.settings.libraries]
        for name in names:
            await self.ingest.scan_library(name)
        self._wake.set()

    async def _stop_arr(self) -> None:
        senders, self.arr = self.arr, []
        for sender in senders:
            await sender.stop()

    async def reload(self, settings: Settings) -> None:
        """Apply new settings to everything that can change while running; name the rest.

        Applied now: guardrail thresholds and schedule, the free-space reserve,
        ``max_concurrent_jobs`` (extra workers start; surplus ones exit after their current
        job), library profiles, timeouts and encoder choice for jobs that start from now on
        (running jobs keep theirs), libraries and watch/scan settings. What is bound at start
        (the database, the metrics listener, ffmpeg's path, the probe pool, lease length) is
        named in the log line as needing a restart, with its old and new value.
        """
        if self.settings_overrides is not None:
            settings = self.settings_overrides(settings)
        old, self.settings = self.settings, settings
        self.guardrails.reconfigure(
            settings.guardrails, min_free_bytes=int(settings.operational.min_free_gb * 1e9)
        )
        self._worker_limit = settings.operational.max_concurrent_jobs
        self._start_workers()
        if self.ingest is not None:
            await self.ingest.reload(settings)
        if self.jellyfin is not None:  # checks again, resumes what a refusal stopped
            await self.jellyfin.reload(settings)
        if settings.arr != old.arr or self.arr:  # Sonarr/Radarr: check again, resume stopped
            await self._stop_arr()
            self.arr = await start_arr_senders(settings, self.queue, self.bus)
        await self._probe_profiles(settings)
        await self._recheck_node()
        restart = [
            f"{name} ({before} -> {after})"
            for name, before, after in (
                ("database", old.database, settings.database),
                ("metrics.enabled", old.metrics.enabled, settings.metrics.enabled),
                ("metrics.listen", old.metrics.listen, settings.metrics.listen),
                ("ffmpeg", old.ffmpeg, settings.ffmpeg),
                ("ffprobe", old.ffprobe, settings.ffprobe),
                ("scan.probe_workers", old.scan.probe_workers, settings.scan.probe_workers),
                ("scan.probe_timeout_s", old.scan.probe_timeout_s, settings.scan.probe_timeout_s),
                ("node.name", old.node.node_name(), settings.node.node_name()),
                ("node.role", old.node.role, settings.node.role),
                (
                    "service.lease_seconds",
                    old.service.lease_seconds,
                    settings.service.lease_seconds,
                ),
            )
            if before != after
        ]
        line = (
            f"settings reloaded from {settings.source or 'defaults'}: guardrails,"
            f" {settings.operational.max_concurrent_jobs} concurrent job(s), libraries,"
            " profiles and timeouts applied"
        )
        if restart:
            line += "; needs a restart to take effect: " + ", ".join(restart)
        self._log("warning" if restart else "info", line)
        self._wake.set()

    @property
    def running(self) -> dict[int, RunningJob]:
        return dict(self._running)

    # --- workers --------------------------------------------------------------------------------

    async def _worker(self, n: int) -> None:
        owner = f"{self.owner}/w{n}"
        backoff = _QUEUE_BACKOFF_MIN_S
        # n >= the limit: a reload lowered max_concurrent_jobs; exit between jobs.
        while not self._stopping.is_set() and n < self._worker_limit:
            # Cleared before looking for work, not when going idle: a job queued while this
            # worker was claiming (and found nothing yet) must not wait a whole idle poll.
            self._wake.clear()
            if self.refusal is not None:  # the path map does not reach a library: claim nothing
                await self._idle(n)
                continue
            try:
                handled = await self._work_once(owner)
            except asyncio.CancelledError:
                raise
            except QueueUnreachableError as exc:
                # Stop claiming and try again with backoff; running encodes go on while their
                # lease allows (their heartbeats keep trying), and claiming resumes when back.
                self._queue_unreachable(exc)
                await wait_set(self._stopping, backoff)
                backoff = min(backoff * 2, _QUEUE_BACKOFF_MAX_S)
                continue
            except CastuiError as exc:
                self._log("error", f"worker {n}: {exc}")
                handled = False
            backoff = _QUEUE_BACKOFF_MIN_S
            self._queue_reachable()
            if not handled:
                await self._idle(n)

    def _queue_unreachable(self, exc: CastuiError) -> None:
        problem = f"queue unreachable: {exc}"
        if self.queue_problem != problem:
            self.queue_problem = problem
            self._log("error", f"{problem}; not claiming, trying again with backoff")

    def _queue_reachable(self) -> None:
        if self.queue_problem is not None:
            self.queue_problem = None
            self._log("info", "queue reachable again: claiming resumes")

    async def _reachable(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again with backoff while the queue is unreachable: a finished
        job's outcome is recorded once the queue is back (a lease that expired meanwhile
        answers LeaseLostError, so a job another node took over is never recorded twice)."""
        backoff = _QUEUE_BACKOFF_MIN_S
        while True:
            try:
                result = await call()
            except QueueUnreachableError as exc:
                self._queue_unreachable(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _QUEUE_BACKOFF_MAX_S)
                continue
            self._queue_reachable()
            return result

    # --- nodes (castui_core.nodes) --------------------------------------------------------------

    async def _check_path_map(self) -> None:
        """Check each library, through ``node.path_map``, at start and on each reload: its root
        is a readable, writable directory and the files the queue knows there (its newest
        jobs') are found. A node that cannot reach a library refuses to claim (and says why)
        instead of failing its jobs one by one; a reload that fixes the map lifts it."""
        path_map = self.settings.node.path_map
        roots = {lib.name: [str(lib.path)] for lib in self.settings.libraries}
        problems = await asyncio.to_thread(nodes.check_roots, roots, path_map)
        unreachable = {p.library for p in problems}
        expected: dict[str, tuple[str, list[tuple[str, ...]]]] = {}
        # The files are looked for only where a mount can be the wrong one: through a path
        # map, or from a shared queue (another host). On one host the library host itself
        # found them; a file gone since was deleted or renamed by someone, and refusing every
        # job for that stopped the whole node (found in review).
        if path_map or self.queue is not self.store:
            for lib in self.settings.libraries:
                if lib.name in unreachable:
                    continue
                try:
                    jobs = await self.queue.recent_jobs(lib.name, nodes.EXPECTED_SAMPLE)
                except CastuiError as exc:  # the roots are checked; files wait for next time
                    self._log("warning", f"library {lib.name!r}: expected files not checked: {exc}")
                    continue
                samples = [
                    nodes.job_files(j.state.value, j.path, j.result.output_path) for j in jobs
                ]
                expected[lib.name] = (str(lib.path), samples)
            problems += await asyncio.to_thread(nodes.check_files, expected, path_map)
        if problems:
            self.refusal = "; ".join(p.message for p in problems)
            self._log("error", f"node {self.node} claims no jobs: {self.refusal}")
        else:
            self.refusal = None

    async def calibrate(self, library: str | None = None) -> Calibration:
        """The readiness report's calibration with this engine's own NVENC probe result, so
        it measures the backend this engine's jobs use (no second probe that could differ)."""
        from castui_core.calibrate import calibrate_report

        report = await self.readiness_report(library)
        return await calibrate_report(self.settings, report, library=library, nvenc=self._nvenc)

    def _nvenc_missing(self) -> str | None:
        """Why this node must leave NVENC jobs to others (nodes.nvenc_refusal), or None."""
        return nodes.nvenc_refusal(
            self.role,
            self.settings.operational.encoder,
            self._nvenc is not None and self._nvenc.available,
            self._nvenc.reason if self._nvenc is not None else None,
        )

    async def _probe_profiles(self, settings: Settings) -> None:
        """Whether NVENC can run each profile the libraries use (main10, HEVC, B-frames...).

        At start and on every reload: a profile edited to HEVC or 10-bit from the dashboard,
        or a library switched to another profile, is probed before its jobs start, so a GPU
        that cannot run it sends them to the CPU under ``auto`` instead of failing them. The
        probe is remembered per encoder arguments, so a reload probes only what is new.
        """
        converter = getattr(self, "converter", None)  # None before start
        if converter is None or self._nvenc is None or not self._nvenc.available:
            return
        used = {lib.profile for lib in settings.libraries} | {DEFAULT_PROFILE}
        per_profile = await detect_nvenc_for_profiles(
            converter.tools.ffmpeg,
            {n: settings.profiles[n] for n in used if n in settings.profiles},
        )
        before = converter.profile_nvenc
        converter.profile_nvenc = per_profile
        for name, status in sorted(per_profile.items()):
            if not status.available and before.get(name) != status:
                self._log("info", f"profile {name} encodes on the CPU: {status.reason}")

    async def _recheck_node(self) -> None:
        """A reload checks the node again: a fixed ``node.path_map`` (or encoder) lets a
        refused node claim, a broken one stops it claiming with the reason. The node's name
        and role are bound at start (its leases' owner): ``reload`` names them as needing a
        restart. Running jobs keep the paths they were mapped to."""
        was = self.refusal
        if self.forwarder is not None:
            self.forwarder.path_map = self.settings.node.path_map
        await self._check_path_map()
        nvenc_missing = self._nvenc_missing()
        if nvenc_missing is not None:
            self.refusal = "; ".join(r for r in (self.refusal, nvenc_missing) if r)
            if self.refusal == nvenc_missing:
                self._log("error", f"node {self.node} claims no jobs: {nvenc_missing}")
        if was is not None and self.refusal is None:
            self._log("info", f"node {self.node} claims jobs again: every library is reachable")

    def node_status(self) -> NodeStatus:
        """This node's heartbeat (current jobs, encoder, GPU temperature, why it waits)."""
        encoders = sorted({r.encoder for r in self._running.values() if r.encoder})
        temps = [
            r.temperature_c for r in self.guardrails.gpu_readings if r.temperature_c is not None
        ]
        guard = self.refusal or self.queue_problem
        if guard is None and self.guardrails.active:
            guard = "; ".join(self.guardrails.active.values())
        return NodeStatus(
            name=self.node,
            role=self.role,
            pid=os.getpid(),
            started_at=self._started_at,
            version=__version__,
            current_jobs=tuple(sorted(self._running)),
            encoder=", ".join(encoders) or self._default_backend(),
            gpu_temp_c=float(max(temps)) if temps else None,
            guard=guard,
        )

    async def _node_heartbeats(self) -> None:
        """Tell the queue every few seconds that this node is alive and what it does."""
        while not self._closing.is_set():
            try:
                await self.queue.node_heartbeat(self.node_status())
            except QueueUnreachableError as exc:
                self._queue_unreachable(exc)
            except CastuiError as exc:
                self._log("warning", f"node heartbeat not recorded: {exc}")
            beat, self._beat = self._beat, asyncio.Event()
            beat.set()
            await wait_set(self._closing, self._node_heartbeat_s)

    async def wait_heartbeat(self) -> None:
        """Return after this node's next heartbeat was sent (or tried): tests and tools wait
        on it instead of sleeping."""
        await self._beat.wait()

    async def _idle(self, worker: int) -> None:
        self._parked.add(worker)
        changed, self._parked_changed = self._parked_changed, asyncio.Event()
        changed.set()
        try:
            await wait_set(self._wake, self._idle_poll_s)
        finally:
            self._parked.discard(worker)

    async def _work_once(self, owner: str) -> bool:
        """Claim and run one job; False when there was nothing (allowed) to do."""
        waiting = await self.guardrails.can_start(
            JobNeeds(backend=self._default_backend(), destination=None, estimated_bytes=0),
            running_nvenc=self._running_nvenc(),
        )
        if waiting is not None:
            return False
        claimed = await self.queue.claim(owner)
        if claimed is None:
            return False
        self._committed(claimed.job, JobState.QUEUED, reason="claimed", actor=owner)
        needs = self._needs(claimed.job)
        waiting = await self.guardrails.can_start(needs, running_nvenc=self._running_nvenc())
        if waiting is not None:
            # Not the file's fault (e.g. the disk is full): hand it back without using an
            # attempt, and wait for a guardrail change before claiming again.
            job = await self.queue.release(claimed.id, claimed.token, waiting)
            self._committed(job, JobState.RUNNING, reason=waiting, actor=owner)
            await self.guardrails.wait_change(timeout=self.settings.guardrails.sample_interval_s)
            return False
        running = RunningJob(
            claimed, path=self._map_in(claimed.path), path_map=self.settings.node.path_map
        )
        self._running[claimed.id] = running
        self._none_running.clear()
        try:
            await self._run_job(running)
        finally:
            self._running.pop(claimed.id, None)
            if not self._running:
                self._none_running.set()
        if running.released_for_space:
            # The guardrail's estimate (the source size) fitted, the converter's (from the
            # probe) did not: wait for the next sample like a guardrail refusal does, or this
            # worker claims, probes and hands the job back in a hot loop.
            await self.guardrails.wait_change(timeout=self.settings.guardrails.sample_interval_s)
        return True

    def _needs(self, job: Job) -> JobNeeds:
        """What a job needs from the machine, before it is probed: the source size is the
        estimate (the converter checks again with a real estimate once it has probed)."""
        source = Path(self._map_in(job.path))
        try:
            library = self.settings.library_named(job.library)
        except CastuiError:
            library = None
        destination = source.parent
        if library is not None and library.output_dir is not None:
            destination = Path(self._map_in(str(library.output_dir)))
        try:
            size = source.stat().st_size
        except OSError:
            size = 0
        return JobNeeds(
            backend=self._default_backend(), destination=destination, estimated_bytes=size
        )

    def _default_backend(self) -> Literal["cpu", "nvenc"]:
        if self.settings.operational.encoder == "cpu":
            return "cpu"
        return "nvenc" if self._nvenc is not None and self._nvenc.available else "cpu"

    def _running_nvenc(self) -> int:
        return sum(1 for r in self._running.values() if (r.encoder or "").endswith("_nvenc"))

    async def _run_job(self, running: RunningJob) -> None:
        claimed = running.claimed
        job = claimed.job
        try:
            library = self.settings.library_named(job.library)
        except CastuiError:
            library = None
        options = self._mapped_options(options_for(self.settings, library))
        heartbeat = asyncio.create_task(self._heartbeat(running))

        async def before_commit() -> None:
            keeper = self.watch_keeper
            # Bounded and never raises: the swap goes ahead whatever Jellyfin does.
            if (
                keeper is not None
                and library is not None
                and self.settings.notifies_jellyfin(library)
            ):
                await keeper.before_swap(claimed.id, job.path)
            # Fenced: raises LeaseLostError when another worker owns the job now.
            await self._reachable(
                lambda: self.queue.heartbeat(claimed.id, claimed.token, running.progress)
            )

        try:
            outcome = await self.converter.convert(
                Path(running.path), options, before_commit=before_commit
            )
        except asyncio.CancelledError:
            # The worker task itself was cancelled (stop() after its grace): the job must
            # not stay "running" until its lease expires and then cost an attempt.
            with contextlib.suppress(CastuiError):
                released = await self.queue.release(
                    claimed.id, claimed.token, "castui stopped before the job finished"
                )
                self._committed(released, JobState.RUNNING, actor=job.lease_owner or "")
            raise
        finally:
            running.finished = True  # ends the loop even if the cancellation below is lost
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if running.lease_lost or outcome.failure_kind == "lease_lost":
            self._publish_finished(outcome)  # nothing to commit: the store is not ours
            self._log("warning", f"lease lost on {job.path}: another worker has it now")
            return
        await self._record(running, outcome, library.name if library else job.library)
        self._publish_finished(outcome)

    def _publish_finished(self, outcome: ConvertOutcome) -> None:
        """``JobFinished`` for the dashboard and logs, after ``_record`` committed the state."""
        self.bus.publish(outcome.finished_event())

    def _mapped_options(self, options: ConvertOptions) -> ConvertOptions:
        """The library root and output folder as this node sees them (``node.path_map``)."""
        if not self.settings.node.path_map:
            return options
        root, out = options.library_root, options.output_dir
        return dataclasses.replace(
            options,
            library_root=None if root is None else Path(self._map_in(str(root))),
            output_dir=None if out is None else Path(self._map_in(str(out))),
        )

    def _map_in(self, path: str) -> str:
        return nodes.map_in(path, self.settings.node.path_map)

    async def _record(self, running: RunningJob, outcome: ConvertOutcome, library: str) -> None:
        claimed = running.claimed
        # The queue, catalog and Jellyfin speak the library host's paths: map the output back.
        output = outcome.output_path
        output_path = None if output is None else nodes.map_out(output, running.path_map)
        result = JobResult(
            output_path=output_path,
            source_size=outcome.bytes_before,
            output_size=outcome.bytes_after,
            duration_s=outcome.seconds,
            encoder=outcome.encoder,
            command=outcome.command,
            exit_code=outcome.exit_code,
            stderr_tail=outcome.stderr_tail or None,
        )
        owner = claimed.job.lease_owner or ""
        running_state = JobState.RUNNING
        try:
            if outcome.status in ("done", "skipped"):
                entries = await outbox_entries(self.settings, library, claimed.path, output_path)
                if outcome.status == "done":  # Sonarr/Radarr rescan what a swap renamed
                    entries += arr_entries(self.settings, library, output_path)
                job = await self._reachable(
                    lambda: self.queue.complete(claimed.id, claimed.token, result, entries)
                )
                if entries and self.jellyfin is not None:
                    self.jellyfin.poke()  # its own task sends: a job never waits for Jellyfin
                for arr in self.arr if entries else ():
                    arr.poke()
                self._committed(job, running_state, reason=outcome.status, actor=owner)
                if output_path and self.ingest is not None:
                    await self.ingest.note_output(output_path, library)
                self.summary.outcomes.append(outcome)
            elif outcome.status == "cancelled":
                if self._stopping.is_set():
                    why = f"castui stopped before the job finished ({outcome.reason})"
                    job = await self._reachable(
                        lambda: self.queue.release(claimed.id, claimed.token, why)
                    )
                    self._committed(job, running_state, reason=why, actor=owner)
            elif outcome.failure_kind == "source_changed":
                # The file was replaced during its encode: the new content is not at fault
                # and has not been tried. Requeue it (no attempt used); the output was
                # discarded.
                why = outcome.reason or "changed"
                job = await self._reachable(
                    lambda: self.queue.release(claimed.id, claimed.token, why)
                )
                self._committed(job, running_state, reason=why, actor=owner)
                self._log("info", outcome.reason or f"{claimed.path} changed: requeued")
            elif outcome.failure_kind in DISK_WAIT:
                # Not the file's fault: hand it back without using an attempt and wait for
                # space, with the reason shown.
                why = f"waiting for disk space: {outcome.reason or 'disk full'}"
                job = await self._reachable(
                    lambda: self.queue.release(claimed.id, claimed.token, why)
                )
                self._committed(job, running_state, reason=why, actor=owner)
                running.released_for_space = True
                if outcome.failure_kind == "disk_full":
                    # ENOSPC although the pre-check passed: the guard holds until space is
                    # freed there (else the same "fits" answer starts it again at once).
                    destination = self._needs(claimed.job).destination or Path(running.path)
                    await self.guardrails.trip_disk_full(destination, f"waiting: {why}")
                else:
                    reason = f"waiting: {outcome.reason}"
                    self.bus.publish(GuardrailTripped(name="disk", reason=reason))
            else:
                kind = outcome.failure_kind or "rejected"
                job = await self._reachable(
                    lambda: self.queue.fail(
                        claimed.id,
                        claimed.token,
                        outcome.reason or "failed",
                        retryable=kind not in NOT_RETRYABLE and outcome.status != "rejected",
                        result=result,
                    )
                )
                self._committed(job, running_state, actor=owner)
                self.summary.outcomes.append(outcome)
        except LeaseLostError:
            # Cancelled by an operator (or taken over) meanwhile: the store has the final word.
            pass

    async def _heartbeat(self, running: RunningJob) -> None:
        interval = max(1.0, self.queue.lease_seconds / 3)
        while not running.finished:
            await asyncio.sleep(interval)
            if running.finished:
                return
            try:
                await self.queue.heartbeat(
                    running.claimed.id, running.claimed.token, running.progress
                )
            except LeaseLostError:
                running.lease_lost = True
                await self.converter.cancel(running.path, "lease lost")
                return
            except QueueUnreachableError as exc:
                # The encode goes on while the lease allows; the next beat tries again (once
                # the queue is back an expired lease answers LeaseLostError: fenced).
                self._queue_unreachable(exc)

    # --- guardrails: pause and resume running encodes ------------------------------------------

    async def _guardrail_changed(self, name: str, reason: str | None) -> None:
        """Audit-log every trip and clear; wake idle workers when something cleared."""
        kind = "guardrail_tripped" if reason else "guardrail_cleared"
        with contextlib.suppress(CastuiError):
            await self.queue.record_event(kind, actor="guardrails", reason=reason or name)
        self._wake.set()

    async def _enforce_pauses(self) -> None:
        """SIGSTOP running encodes while a guardrail says so (GPU too hot, window closed)."""
        while True:
            reasons = []
            for running in list(self._running.values()):
                path = running.path
                encoder = running.encoder or ""
                backend: Literal["cpu", "nvenc"] = "nvenc" if encoder.endswith("_nvenc") else "cpu"
                reason = self.guardrails.should_pause_running(backend)
                reasons.append(reason)
                if reason is not None and not running.paused:
                    self.converter.pause(path)
                    running.paused = True
                    # Guard reasons already read "paused: ..." (don't say it twice).
                    message = reason if reason.startswith("paused: ") else f"paused: {reason}"
                    self.bus.publish(JobNote(path=path, message=message))
                elif reason is None and running.paused:
                    self.converter.resume(path)
                    running.paused = False
                    self.bus.publish(JobNote(path=path, message="resumed"))
            self._paused_by_guard = next((r for r in reasons if r), None)
            await self.guardrails.wait_change(timeout=1.0)

    async def _watch_events(self) -> None:
        """Keep per-job state (encoder, latest progress) from the bus for heartbeats."""
        sub = self.bus.subscribe()
        try:
            async for event in sub:
                if isinstance(event, JobStarted | JobProgress):
                    for running in self._running.values():
                        if running.path != event.path:
                            continue
                        if isinstance(event, JobStarted):
                            running.encoder = event.encoder
                        else:
                            running.progress = Progress(
                                percent=event.percent,
                                fps=event.fps,
                                speed=event.speed,
                                eta_s=event.eta_s,
                            )
                elif isinstance(event, GuardrailCleared | JobQueued):
                    # Queued work (published once committed) wakes idle workers now: without
                    # this, the start-up scan's jobs waited out a worker's idle poll (2 s).
                    self._wake.set()
        finally:
            sub.close()

    def _log(self, level: str, message: str) -> None:
        self.bus.publish(LogLine(level=level, message=message))

    # --- the rest of EngineAPI (castui_core.api): what front ends read and record ------------

    async def running_ids(self) -> list[int]:
        return sorted(self._running)

    async def initial_events(self) -> list[ev.Event]:
        """Events that describe the engine's state now, for a viewer that joins late."""
        paused = await self.queue.is_paused()
        found: list[ev.Event] = [
            QueueState(paused=paused, reason="paused by an operator" if paused else "")
        ]
        for name, reason in self.guardrails.active.items():
            found.append(GuardrailTripped(name=name, reason=reason))
        for reading in self.guardrails.gpu_readings:
            found.append(
                ev.GpuSample(
                    index=reading.index,
                    name=reading.name,
                    temperature_c=reading.temperature_c,
                    encoder_percent=reading.encoder_percent,
                    encoder_sessions=reading.encoder_sessions,
                )
            )
        if self.ingest is not None:
            found.extend(self.ingest.library_states().values())
        if self.jellyfin is not None and self.settings.jellyfin is not None:
            found.append(await self.jellyfin.current_state())  # a switched-off one: not shown
        return found

    async def restore_original(self, target: int | str, *, actor: str = "operator") -> str:
        """Put a done job's archived original back (``castui_core.originals.restore_job``:
        file work in threads, journaled, recorded and told to Jellyfin in one transaction)."""
        line = await restore_job(
            self.settings,
            self.store,
            self.journal,
            target,
            bus=self.bus,
            actor=actor,
            queue=self.queue,
            path_map=self.settings.node.path_map,
        )
        if self.forwarder is not None:  # a shared queue: its senders read the notices there
            await self.forwarder.forward_now()
        return line

    def _poke_senders(self, targets: set[str]) -> None:
        """Notices reached the queue's outbox: this host's senders look now."""
        if self.jellyfin is not None and JELLYFIN in targets:
            self.jellyfin.poke()
        for arr in self.arr:
            arr.poke()

    async def settings_view(self) -> SettingsView:
        return await read_view(self.settings)

    async def update_settings(
        self, edits: Sequence[Edit], *, actor: str = "dashboard", revision: str | None = None
    ) -> SettingsUpdate:
        """Saved, audited and reloaded here (castui_core/settings_update.py)."""
        return await update_settings(self, edits, actor=actor, revision=revision)

    async def record_event(
        self,
        kind: str,
        *,
        actor: str = "operator",
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        await self.queue.record_event(kind, actor=actor, reason=reason, details=details)
