"""Library scan against the catalog: probe only what is new or changed, queue what needs work.

A library of tens of thousands of files is rescanned every few hours and after every observer
hiccup, so an unchanged rescan must cost a walk and one catalog query, never a probe: the walk
(in a thread) stats every media file, the catalog's (size, mtime_ns) fingerprints are diffed in
memory, and only new or changed files go to the probe pool. A file modified within the last
``settle_seconds`` may still be being written; it is handed to the settle tracker instead of
being probed half-copied.

Safety: a root that is missing, unreadable or suddenly empty (an unmounted share looks exactly
like "everything was deleted") makes the scan stop and report the library as paused; the
catalog and the queue are left alone. Files under a directory the walk could not read are not
treated as deleted either.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from castui_core.bus import EventBus
from castui_core.decide import Action, Decision, decide
from castui_core.errors import JobNotFoundError, StoreError
from castui_core.events import (
    FileDecided,
    JobCancelled,
    JobQueued,
    ScanFinished,
    ScanProblem,
    ScanProgress,
    ScanStarted,
)
from castui_core.ingest.settle import FileStat
from castui_core.media import MediaInfo, ProbeFailure
from castui_core.probe import ProbePool, ProbeResult
from castui_core.profiles import Profile
from castui_core.queue.protocol import JobQueue
from castui_core.scan import IgnoreRules, copy_decisions, walk_media
from castui_core.settings import LibrarySettings
from castui_core.store import (
    CatalogEntry,
    EnqueueOutcome,
    EnqueueResult,
    Job,
    JobAction,
    JobState,
    NewJob,
    Store,
)

#: Who castui's own queue changes are attributed to in the audit log.
ACTOR = "ingest"
_PROGRESS_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class WalkedFile:
    path: str
    stat: FileStat


@dataclass
class LibraryWalk:
    """What one walk of a library root found (made in a thread: it blocks on slow disks)."""

    files: list[WalkedFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    root_problem: str | None = None


def root_problem(root: Path) -> str | None:
    """Why ``root`` cannot be scanned now (missing, not a folder, unreadable), or ``None``."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return f"library folder {root} does not exist (missing or not mounted)"
    except OSError as exc:
        return f"library folder {root} cannot be read: {exc.strerror}"
    if not os.path.isdir(root) or st.st_nlink == 0:
        return f"library path {root} is not a folder"
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        return f"library folder {root} cannot be read: {exc.strerror}"
    return None


def root_is_empty(root: Path) -> bool:
    """True when ``root`` holds nothing at all (what an unmounted mount point looks like)."""
    try:
        with os.scandir(root) as it:
            return next(it, None) is None
    except OSError:
        return True


def walk_library(root: Path, rules: IgnoreRules, *, follow_symlinks: bool) -> LibraryWalk:
    """Walk ``root`` and stat every media file in it (blocking)."""
    result = LibraryWalk()
    problem = root_problem(root)
    if problem is not None:
        result.root_problem = problem
        return result

    def on_problem(path: str, reason: str) -> None:
        result.problems.append((path, reason))

    for path in walk_media(root, rules, follow_symlinks=follow_symlinks, on_problem=on_problem):
        try:
            st = os.stat(path)
        except OSError as exc:  # deleted between listing and stat, or unreadable
            if not isinstance(exc, FileNotFoundError):
                on_problem(path, f"cannot read: {exc.strerror}")
            continue
        result.files.append(WalkedFile(path, FileStat.from_stat(st)))
    return result


def walk_subtree(directory: Path, rules: IgnoreRules, *, follow_symlinks: bool) -> list[WalkedFile]:
    """Media files below one folder (a directory moved into the library; blocking)."""
    walk = LibraryWalk()
    for path in walk_media(
        directory,
        rules,
        follow_symlinks=follow_symlinks,
        on_problem=lambda p, r: walk.problems.append((p, r)),
    ):
        try:
            walk.files.append(WalkedFile(path, FileStat.from_stat(os.stat(path))))
        except OSError:
            continue
    return walk.files


def _stat(path: Path) -> FileStat | None:
    try:
        return FileStat.from_stat(os.stat(path))
    except OSError:
        return None


def _under_any(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One probed file as recorded in the catalog (and queued, if it needs work)."""

    path: str
    size: int
    decision: Decision
    queued: EnqueueResult | None


@dataclass
class CatalogScanResult:
    """What one library scan did; ``paused_reason`` set means it changed nothing."""

    library: str
    seen: int = 0
    unchanged: int = 0
    probed: int = 0
    queued: list[Recorded] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    paused_reason: str | None = None
    seconds: float = 0.0


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def catalog_entry(
    library: str, path: str, stat: FileStat, result: ProbeResult, decision: Decision
) -> CatalogEntry:
    """The catalog row for a probed file.

    ``probe`` is ``MediaInfo.to_json()`` for a readable file and ``{"failure": reason}`` for
    an unreadable one: a probe is recorded either way, so an unchanged broken file is not
    re-probed by every rescan (it is once it changes).
    """
    for name, value in (("size", stat.size), ("mtime_ns", stat.mtime_ns), ("inode", stat.inode)):
        # Checked here, before ``record`` queues anything: the catalog is written after the
        # queue, and a job whose row cannot be written would be queued with nothing to say why.
        if value is not None and not _INT64_MIN <= value <= _INT64_MAX:
            raise OverflowError(f"its {name} {value} does not fit SQLite's 64-bit INTEGER")
    probe = result.to_json() if isinstance(result, MediaInfo) else {"failure": result.reason}
    return CatalogEntry(
        path=path,
        library=library,
        size=stat.size,
        mtime_ns=stat.mtime_ns,
        inode=stat.inode,
        probe=probe,
        decision=decision.action.value,
        reasons=decision.reasons,
    )


async def cancel_queued(
    store: JobQueue,
    bus: EventBus,
    matches: Callable[[str], bool],
    reason: str,
    *,
    library: str | None = None,
) -> list[Job]:
    """Cancel queued jobs whose path ``matches`` (the file was deleted or moved away).

    Running jobs are left to their worker: it fails cleanly when its source is gone, and a
    swap in progress must not be interrupted by the events it causes itself.
    """
    cancelled: list[Job] = []
    for job in await store.active_jobs():
        if job.state is not JobState.QUEUED or not matches(job.path):
            continue
        if library is not None and job.library != library:
            continue
        try:
            cancelled.append(await store.cancel(job.id, actor=ACTOR, reason=reason))
        except JobNotFoundError:
            continue  # claimed or finished meanwhile: nothing to cancel any more
        bus.publish(JobCancelled(path=job.path, reason=reason))
    return cancelled


class CatalogScanner:
    """Scans libraries against the catalog and queues what needs work."""

    def __init__(
        self,
        store: Store,
        pool: ProbePool,
        bus: EventBus,
        rules: IgnoreRules,
        *,
        settle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        queue: JobQueue | None = None,
    ) -> None:
        self.store = store
        # Jobs go to the queue (shared by every node); the catalog stays in this host's store.
        self.queue: JobQueue = queue if queue is not None else store
        self.pool = pool
        self.bus = bus
        self.rules = rules
        self.settle_seconds = settle_seconds
        self.clock = clock
        self.wall_ns = wall_ns
        self.probes = 0  # files sent to the probe pool (benchmarks and tests read it)

    async def probe(self, files: Sequence[WalkedFile]) -> list[tuple[WalkedFile, ProbeResult]]:
        """Probe ``files`` on the pool (bounded by its size); results in completion order."""
        by_path = {f.path: f for f in files}
        self.probes += len(by_path)
        out: list[tuple[WalkedFile, ProbeResult]] = []
        if not by_path:
            return out
        async for result in self.pool.probe_many(list(by_path)):
            out.append((by_path[result.path], result))
        return out

    async def record(
        self,
        library: str,
        profile: Profile,
        probed: Iterable[tuple[WalkedFile, ProbeResult]],
        *,
        where: LibrarySettings | None = None,
    ) -> list[Recorded]:
        """Decide probed files, write them to the catalog and queue those that need work.

        One catalog transaction and one queue transaction for the whole batch. Files castui
        wrote itself are never queued, and a source whose output name already holds its
        conversion (castui's or a Cast-ready copy) is ``skip`` (``where``: the library's
        settings, for outputs mirrored to its ``output_dir``).
        """
        entries: list[CatalogEntry] = []
        decided: list[tuple[WalkedFile, Decision]] = []
        fixed: list[tuple[WalkedFile, ProbeResult]] = []
        for walked, result in probed:
            if isinstance(result, ProbeFailure) and result.size == 0 and walked.stat.size:
                result = ProbeFailure(walked.path, walked.stat.size, result.reason, result.extra)
            fixed.append((walked, result))
        overrides = await self._own_work(fixed, profile, where)
        for walked, result in fixed:
            decision = overrides.get(walked.path) or decide(result, profile)
            decided.append((walked, decision))
            entries.append(catalog_entry(library, walked.path, walked.stat, result, decision))
            self.bus.publish(
                FileDecided(
                    library=library,
                    path=walked.path,
                    size=walked.stat.size,
                    action=decision.action.value,
                    reasons=decision.reasons,
                )
            )
        work = [(w, d) for w, d in decided if d.action.needs_work]
        results: dict[str, EnqueueResult] = {}
        if work:
            jobs = [
                NewJob(
                    w.path,
                    library,
                    JobAction(d.action.value),
                    d.reasons,
                    modified_at=w.stat.mtime_ns / 1e9,
                )
                for w, d in work
            ]
            for job, res in zip(jobs, await self.queue.enqueue_many(jobs), strict=True):
                results[job.path] = res
                if res.outcome is EnqueueOutcome.ALREADY_RUNNING:
                    continue  # nothing changed: the running job converts this version
                self.bus.publish(
                    JobQueued(
                        path=job.path,
                        library=library,
                        action=str(job.action),
                        reasons=tuple(job.reasons),
                        outcome=res.outcome.value,
                    )
                )
        # The catalog is written only once the jobs are queued. The other way round, a queue
        # that failed in between (Redis down, a kill -9) left files recorded as decided but
        # never queued, and every later scan skipped them as unchanged. This way such a
        # failure leaves them unrecorded: the next scan probes them again and the queue merges
        # any job that did get in.
        if entries:
            await self.store.upsert_files(entries)
        return [Recorded(w.path, w.stat.size, d, results.get(w.path)) for w, d in decided]

    async def _own_work(
        self,
        probed: Sequence[tuple[WalkedFile, ProbeResult]],
        profile: Profile,
        where: LibrarySettings | None,
    ) -> dict[str, Decision]:
        """Decisions that castui's own work overrides: its outputs, and sources already done."""
        overrides: dict[str, Decision] = {}
        outputs = await self.store.output_paths()
        for walked, _ in probed:
            if walked.path in outputs:
                record = await self.store.get_output(walked.path)
                st = walked.stat
                if record is not None and record.matches(st.size, st.mtime_ns, st.inode):
                    why = f"castui output ({record.written_by}, from {Path(record.source).name})"
                    overrides[walked.path] = Decision(Action.SKIP, (why,))
        stats = {w.path: w.stat for w, _ in probed}

        async def own(source: str, output: Path) -> bool:
            record = await self.store.get_output(str(output))
            if record is None or record.source != source:
                return False
            now = await asyncio.to_thread(_stat, output)
            src = stats.get(source)
            return (
                now is not None
                and record.matches(now.size, now.mtime_ns, now.inode)
                and src is not None
                and record.source_size in (None, src.size)
                and record.source_mtime_ns in (None, src.mtime_ns)
            )

        needing = [
            (r, d)
            for w, r in probed
            if w.path not in overrides
            and isinstance(r, MediaInfo)
            and (d := decide(r, profile)).action.needs_work
        ]
        overrides.update(
            await copy_decisions(
                self.pool,
                needing,
                profile,
                library_root=where.path if where is not None else None,
                output_dir=where.output_dir if where is not None else None,
                own=own,
            )
        )
        return overrides

    async def scan(
        self,
        library: LibrarySettings,
        profile: Profile,
        *,
        on_unsettled: Callable[[WalkedFile], None] | None = None,
    ) -> CatalogScanResult:
        """Scan one library. ``on_unsettled`` receives files modified too recently to probe
        (without it they are probed at once, as a one-off ``castui scan`` wants)."""
        started = self.clock()
        name = library.name
        result = CatalogScanResult(library=name)
        root = library.path
        self.bus.publish(ScanStarted(library=name, root=str(root)))

        walk = await asyncio.to_thread(
            walk_library, root, self.rules, follow_symlinks=library.follow_symlinks
        )
        for path, reason in walk.problems:
            self._problem(result, path, reason)
        known = await self.store.fingerprints(name)

        if walk.root_problem is not None:
            result.paused_reason = walk.root_problem
        elif not walk.files and known:
            result.paused_reason = (
                f"library folder {root} is suddenly empty but the catalog knows {len(known)}"
                " files (unmounted share?); nothing was removed"
            )
        if result.paused_reason is not None:
            self._problem(result, str(root), result.paused_reason)
            return self._finish(result, started, {})

        result.seen = len(walk.files)
        fresh_ns = self.wall_ns() - int(self.settle_seconds * 1e9)
        to_probe: list[WalkedFile] = []
        for walked in walk.files:
            st = walked.stat
            if known.get(walked.path) == (st.size, st.mtime_ns):
                result.unchanged += 1
            elif on_unsettled is not None and st.mtime_ns > fresh_ns:
                result.unsettled.append(walked.path)
                on_unsettled(walked)
            else:
                to_probe.append(walked)
        self.bus.publish(
            ScanProgress(library=name, found=result.seen, decided=result.unchanged, walk_done=True)
        )

        counts: dict[str, int] = {"unchanged": result.unchanged}
        last = self.clock()
        batch: list[tuple[WalkedFile, ProbeResult]] = []
        by_path = {f.path: f for f in to_probe}
        self.probes += len(by_path)
        if by_path:
            async for probed in self.pool.probe_many(list(by_path)):
                batch.append((by_path[probed.path], probed))
                result.probed += 1
                if len(batch) >= 256 or self.clock() - last >= _PROGRESS_INTERVAL_S:
                    await self._record_batch(name, profile, batch, result, counts, library)
                    batch = []
                    last = self.clock()
            await self._record_batch(name, profile, batch, result, counts, library)

        seen = {f.path for f in walk.files}
        problem_paths = [p for p, _ in walk.problems]
        gone = [p for p in known if p not in seen and not _under_any(p, problem_paths)]
        if gone:
            gone_set = set(gone)
            await cancel_queued(
                self.queue,
                self.bus,
                gone_set.__contains__,
                "file no longer in the library (deleted or moved away)",
                library=name,
            )
            await self.store.remove_files(gone)
            result.removed = gone
        return self._finish(result, started, counts)

    async def _record_batch(
        self,
        library: str,
        profile: Profile,
        batch: list[tuple[WalkedFile, ProbeResult]],
        result: CatalogScanResult,
        counts: dict[str, int],
        where: LibrarySettings | None = None,
    ) -> None:
        if not batch:
            return
        recorded = await self.record_each(
            library, profile, batch, where=where, problems=result.problems
        )
        for rec in recorded:
            counts[rec.decision.action.value] = counts.get(rec.decision.action.value, 0) + 1
            if rec.queued is not None:
                result.queued.append(rec)
        self.bus.publish(
            ScanProgress(
                library=library,
                found=result.seen,
                decided=result.unchanged + result.probed,
                walk_done=True,
            )
        )

    async def record_each(
        self,
        library: str,
        profile: Profile,
        batch: list[tuple[WalkedFile, ProbeResult]],
        *,
        where: LibrarySettings | None = None,
        problems: list[ScanProblem] | None = None,
    ) -> list[Recorded]:
        """``record`` the batch; if one file in it cannot be recorded, record the others.

        A problem of one file (a value SQLite cannot store, such as a modification time past
        2262; a probe result decide() chokes on) used to fail the whole batch: a library scan
        then retried forever without naming the file and queued nothing, and a settled file
        was retried forever. Now that file is a ScanProblem naming it (appended to
        ``problems``) and the rest goes on. A StoreError (database busy, disk full) concerns
        every file, so it still fails the batch, which is retried.
        """
        try:
            return await self.record(library, profile, batch, where=where)
        except (StoreError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if len(batch) == 1:
                path = batch[0][0].path
                # record() writes the catalog last, but forget any row all the same: the next
                # scan must see the file as new, never as unchanged and not queued.
                await self.store.remove_files([path])
                event = ScanProblem(
                    library=library,
                    path=path,
                    reason=f"castui cannot record this file ({type(exc).__name__}: {exc});"
                    " it is left alone and tried again at the next scan, the rest of the"
                    " library goes on",
                )
                if problems is not None:
                    problems.append(event)
                self.bus.publish(event)
                return []
        recorded: list[Recorded] = []
        for item in batch:
            recorded += await self.record_each(
                library, profile, [item], where=where, problems=problems
            )
        return recorded

    def _problem(self, result: CatalogScanResult, path: str, reason: str) -> None:
        event = ScanProblem(library=result.library, path=path, reason=reason)
        result.problems.append(event)
        self.bus.publish(event)

    def _finish(
        self, result: CatalogScanResult, started: float, counts: dict[str, int]
    ) -> CatalogScanResult:
        result.seconds = self.clock() - started
        ordered = [(a.value, counts.get(a.value, 0)) for a in Action]
        ordered.append(("unchanged", counts.get("unchanged", 0)))
        self.bus.publish(
            ScanFinished(
                library=result.library,
                files=result.seen,
                counts=tuple(ordered),
                bytes_to_process=sum(r.size for r in result.queued),
                seconds=result.seconds,
            )
        )
        return result
