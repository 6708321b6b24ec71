"""``Ingest``: scans at start and on demand, watchers, settle tracking and reconciliation.

The engine runs one::

    async with Ingest(settings, store, pool, bus) as ingest:
        ...  # new files are queued within seconds of their last write
        await ingest.scan_library("Movies")  # on demand
        await ingest.note_output(path, "Movies")  # after each swap

Everything happens on the event loop except what blocks (walks, stats, starting inotify
watches), which goes to threads. Watch events only nominate paths to the settle tracker; a path
is probed and queued once it stopped changing. Anything that might mean "events were missed"
(an observer died, the inotify queue overflowed, a library came back after a pause) triggers a
reconciliation scan, and a periodic one (``rescan_interval_s``) catches the rest. A library
whose root is missing, unreadable or suddenly empty is paused: reported, audited, and left
untouched until its root is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from castui_core.bus import EventBus
from castui_core.decide import Action, Decision
from castui_core.events import LibraryState, LogLine
from castui_core.fsinfo import Mount, filesystem_of
from castui_core.ingest.catalog_scan import (
    ACTOR,
    CatalogScanner,
    CatalogScanResult,
    WalkedFile,
    cancel_queued,
    catalog_entry,
    root_is_empty,
    root_problem,
    walk_subtree,
)
from castui_core.ingest.settle import (
    FileStat,
    Observation,
    Settled,
    SettleTracker,
    Verdict,
    stat_file,
    stat_many,
)
from castui_core.ingest.watcher import (
    DirAppeared,
    LibraryWatcher,
    Nominated,
    ObserverFactory,
    OverflowLogHandler,
    Vanished,
    WatchEvent,
    WatchKind,
    choose_kind,
    default_observer_factory,
    is_watch_limit,
    watch_limit_message,
)
from castui_core.media import ProbeFailure
from castui_core.probe import ProbePool
from castui_core.queue.protocol import JobQueue
from castui_core.scan import IgnoreRules
from castui_core.settings import LibrarySettings, Settings, WatchMode
from castui_core.store import Store

#: castui's own hidden temp outputs (``.<stem>.castui-<token>.tmp<suffix>``) and backups.
_TEMP_NAME = re.compile(r"^\..*\.castui-[^/]*\.tmp(\.[^/]*)?$")
_BACKUP_NAME = re.compile(r"\.original\.[^./]+$")

#: Audit-log kinds written by ingest.
EVENT_LIBRARY_PAUSED = "library_paused"
EVENT_LIBRARY_RESUMED = "library_resumed"
EVENT_WATCH_FALLBACK = "watch_fallback"

_RETRY_BASE_S = 5.0
_RETRY_CAP_S = 300.0


@dataclass
class _Library:
    settings: LibrarySettings
    state: LibraryState
    watcher: LibraryWatcher | None = None
    paused: bool = False
    scan_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reconcile: asyncio.Task[None] | None = None
    reconcile_again: str | None = None
    forced_poll: str | None = None  # why inotify was given up for this library

    @property
    def name(self) -> str:
        return self.settings.name


def _starts_with(prefix: str) -> Callable[[str], bool]:
    return lambda path: path.startswith(prefix)


class Ingest:
    """Library scans + watchers + settle tracking for the engine (one per process)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        pool: ProbePool,
        bus: EventBus,
        *,
        observer_factory: ObserverFactory = default_observer_factory,
        mount_of: Callable[[Path], Mount | None] = filesystem_of,
        watch: bool = True,
        scan_at_start: bool = True,
        health_interval_s: float | None = None,
        max_probe_retries: int = 2,
        clock: Callable[[], float] = time.monotonic,
        queue: JobQueue | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # Jobs and their audit go to the queue (shared by every node); the catalog stays local.
        self.queue: JobQueue = queue if queue is not None else store
        self.pool = pool
        self.bus = bus
        scan = settings.scan
        self.rules = IgnoreRules(scan.extensions, scan.ignore)
        self.tracker = SettleTracker(scan.settle_seconds, clock=clock)
        self.scanner = CatalogScanner(
            store,
            pool,
            bus,
            self.rules,
            settle_seconds=scan.settle_seconds,
            clock=clock,
            queue=self.queue,
        )
        self.clock = clock
        self.poll_interval_s = scan.poll_interval_s
        self.rescan_interval_s = scan.rescan_interval_s
        self._health_interval_given = health_interval_s
        self.health_interval_s = (
            health_interval_s if health_interval_s is not None else min(scan.poll_interval_s, 30)
        )
        self.max_probe_retries = max_probe_retries
        self.scan_at_start = scan_at_start
        self.watch = watch
        self._observer_factory = observer_factory
        self._mount_of = mount_of
        self._libs: dict[str, _Library] = {
            lib.name: _Library(lib, LibraryState(lib.name, "off", "not started"))
            for lib in settings.libraries
        }
        self._outputs: dict[str, FileStat] = {}
        self._wake = asyncio.Event()
        self._fs_wake = asyncio.Event()
        self._fs_events: list[tuple[str, WatchEvent]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._overflow = OverflowLogHandler(self._overflow_from_thread)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._handling = 0  # settled files being probed/queued (out of the tracker already)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Ingest:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start watchers, then the scans at start, settle handling and the periodic timers."""
        if self._running:
            return
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._overflow.install()
        for lib in self._libs.values():
            await self._start_watching(lib)
        self._spawn(self._settle_loop())
        self._spawn(self._fs_event_loop())
        self._spawn(self._health_loop())
        self._spawn(self._rescan_loop())
        if self.scan_at_start:
            for lib in self._libs.values():
                self.request_reconcile(lib.name, "scan at start")

    async def stop(self) -> None:
        """Stop every task and observer (idempotent)."""
        if not self._running:
            return
        self._running = False
        self._overflow.remove()
        tasks = list(self._tasks)
        for lib in self._libs.values():
            if lib.reconcile is not None:
                tasks.append(lib.reconcile)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for lib in self._libs.values():
            lib.reconcile = None
            await self._stop_watcher(lib)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log("error", f"ingest task failed: {task.exception()!r}")

    # --- public API -----------------------------------------------------------------------

    def library_states(self) -> dict[str, LibraryState]:
        """How each library is watched now (the last ``LibraryState`` published for it)."""
        return {name: lib.state for name, lib in self._libs.items()}

    def watcher(self, name: str) -> LibraryWatcher | None:
        """The running watcher of a library (diagnostics and tests)."""
        return self._library(name).watcher

    async def scan_library(self, name: str) -> CatalogScanResult:
        """Scan one library now (serialised with other scans of it) and apply pause/resume."""
        lib = self._library(name)
        async with lib.scan_lock:
            result = await self.scanner.scan(
                lib.settings,
                self.settings.profile_for(lib.settings),
                on_unsettled=lambda walked: self._nominate(name, walked.path, walked.stat),
            )
            if result.paused_reason is not None:
                await self._pause(lib, result.paused_reason)
            elif lib.paused:
                await self._resume(lib)
        return result

    async def wait_scans(self, *, poll_s: float = 0.1) -> None:
        """Return once no scan is running or due and no nominated file is still settling."""
        while True:
            tasks = [lib.reconcile for lib in self._libs.values() if lib.reconcile is not None]
            pending = [t for t in tasks if not t.done()]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                continue
            if len(self.tracker) == 0 and self._handling == 0:
                return
            await asyncio.sleep(poll_s)

    async def reload(self, settings: Settings) -> None:
        """Apply new settings: libraries (added, removed, changed), ignore rules, settle time,
        intervals; watchers restart and every library is reconciled.

        Updates this object in place rather than re-running ``__init__``: files still
        settling, the outputs castui wrote (``note_output``) and a library's pause or forced
        polling survive a reload (re-initialising dropped them, so a half-copied file was
        forgotten and castui's own outputs looked like new media).

        When nothing ingest reads changed (libraries, scan settings, profiles: a guardrail or
        a Jellyfin edit from the settings screen), nothing restarts: restarting every watcher
        and rescanning every library for a temperature limit cost seconds on a big library and
        could miss events while the watchers were down.
        """
        old = self.settings
        if (settings.libraries, settings.scan, settings.profiles) == (
            old.libraries,
            old.scan,
            old.profiles,
        ):
            self.settings = settings
            return
        was_running = self._running
        await self.stop()
        self.settings = settings
        scan = settings.scan
        self.rules = IgnoreRules(scan.extensions, scan.ignore)
        self.tracker.settle_seconds = scan.settle_seconds
        self.scanner.rules = self.rules
        self.scanner.settle_seconds = scan.settle_seconds
        self.poll_interval_s = scan.poll_interval_s
        self.rescan_interval_s = scan.rescan_interval_s
        if self._health_interval_given is None:
            self.health_interval_s = min(scan.poll_interval_s, 30)
        libs: dict[str, _Library] = {}
        for lib_settings in settings.libraries:
            lib = self._libs.get(lib_settings.name)
            if lib is None or lib.settings.path != lib_settings.path:
                lib = _Library(lib_settings, LibraryState(lib_settings.name, "off", "not started"))
            else:
                lib.settings = lib_settings  # keeps its pause and forced polling
            libs[lib_settings.name] = lib
        self._libs = libs
        if was_running:
            await self.start()
            for lib in self._libs.values():
                self.request_reconcile(lib.name, "settings reloaded")

    def request_reconcile(self, name: str, why: str) -> None:
        """Run a reconciliation scan of a library soon (coalesced; retried with backoff)."""
        lib = self._library(name)
        if not self._running:
            return
        if lib.reconcile is not None and not lib.reconcile.done():
            lib.reconcile_again = why
            return
        lib.reconcile = asyncio.create_task(self._reconcile(lib, why))

    def is_own_output(self, path: str, seen: Observation | None = None) -> bool:
        """True for castui's temp files, backups and outputs noted with ``note_output``.

        An output counts only while it is unchanged: a user who overwrites it makes it a
        library file like any other. ``seen`` avoids a stat when the caller has one.
        """
        name = Path(path).name
        if _TEMP_NAME.match(name) or _BACKUP_NAME.search(name):
            return True
        noted = self._outputs.get(path)
        if noted is None:
            return False
        current = seen if seen is not None else stat_file(path)
        return current == noted

    async def note_output(self, path: str | Path, library: str) -> None:
        """The engine placed an output at ``path``: catalog it as done (decision skip).

        Called after each swap, so the watch events the swap causes (and later scans) find a
        catalog entry with the same (size, mtime_ns) and queue nothing.
        """
        text = str(path)
        seen = await asyncio.to_thread(stat_file, text)
        if seen is None:
            return
        probed = await self.scanner.probe([WalkedFile(text, seen)])
        decision = Decision(Action.SKIP, ("castui output",))
        entry = catalog_entry(library, text, seen, probed[0][1], decision)
        await self.store.upsert_file(entry)
        self._outputs[text] = seen
        self.tracker.forget(text)

    # --- watching -------------------------------------------------------------------------

    def _library(self, name: str) -> _Library:
        try:
            return self._libs[name]
        except KeyError:
            known = ", ".join(self._libs) or "none"
            raise KeyError(f"no library named {name!r} (configured: {known})") from None

    def _set_state(self, lib: _Library, state: str, reason: str = "") -> None:
        if lib.state.state == state and lib.state.reason == reason:
            return
        lib.state = LibraryState(lib.name, state, reason)
        self.bus.publish(lib.state)

    def _log(self, level: str, message: str) -> None:
        self.bus.publish(LogLine(level=level, message=message))

    async def _start_watching(self, lib: _Library) -> None:
        """Start (or restart) the library's observer as its ``watch`` mode says."""
        await self._stop_watcher(lib)
        root = lib.settings.path
        if lib.settings.watch is WatchMode.OFF or not self.watch:
            why = "watching is off for this library (watch: off)"
            self._set_state(lib, "off", why if self.watch else "this run does not watch")
            return
        problem = await asyncio.to_thread(root_problem, root)
        if problem is not None:
            await self._pause(lib, problem)
            return
        if lib.forced_poll is not None:
            kind: WatchKind | None = WatchKind.POLL
            why = lib.forced_poll
        else:
            kind, why = await asyncio.to_thread(
                choose_kind, lib.settings.watch, root, self.poll_interval_s, mount_of=self._mount_of
            )
        assert kind is not None
        try:
            lib.watcher = await self._run_watcher(lib, kind)
        except OSError as exc:
            if kind is not WatchKind.EVENTS or not is_watch_limit(exc):
                await self._pause(lib, f"cannot watch {root}: {exc.strerror or exc}")
                return
            message = watch_limit_message(lib.name, root, exc, self.poll_interval_s)
            lib.forced_poll = why = message
            self._log("warning", message)
            await self.queue.record_event(
                EVENT_WATCH_FALLBACK, actor=ACTOR, reason=message, details={"library": lib.name}
            )
            kind = WatchKind.POLL
            try:
                lib.watcher = await self._run_watcher(lib, kind)
            except OSError as again:
                await self._pause(lib, f"cannot watch {root}: {again.strerror or again}")
                return
        self._set_state(lib, "watching" if kind is WatchKind.EVENTS else "polling", why)

    async def _run_watcher(self, lib: _Library, kind: WatchKind) -> LibraryWatcher:
        assert self._loop is not None
        watcher = LibraryWatcher(
            lib.settings,
            self.rules,
            kind,
            loop=self._loop,
            sink=self._on_watch_event,
            poll_interval_s=self.poll_interval_s,
            observer_factory=self._observer_factory,
        )
        await asyncio.to_thread(watcher.start)
        return watcher

    async def _stop_watcher(self, lib: _Library) -> None:
        watcher, lib.watcher = lib.watcher, None
        if watcher is not None:
            await asyncio.to_thread(watcher.stop)

    async def _pause(self, lib: _Library, reason: str) -> None:
        """Report the library as paused; touch neither its catalog rows nor its jobs."""
        if lib.paused and lib.state.reason == reason:
            return
        lib.paused = True
        await self._stop_watcher(lib)
        self._set_state(lib, "paused", reason)
        self._log("warning", f"library {lib.name!r} paused: {reason}")
        await self.queue.record_event(
            EVENT_LIBRARY_PAUSED,
            actor=ACTOR,
            reason=reason,
            details={"library": lib.name, "root": str(lib.settings.path)},
        )

    async def _resume(self, lib: _Library) -> None:
        lib.paused = False
        await self.queue.record_event(
            EVENT_LIBRARY_RESUMED,
            actor=ACTOR,
            reason="library folder is back",
            details={"library": lib.name, "root": str(lib.settings.path)},
        )
        self._log("info", f"library {lib.name!r} resumed: its folder is back")
        await self._start_watching(lib)

    def _on_watch_event(self, library: str, event: WatchEvent) -> None:
        """Runs on the loop (posted from watchdog's thread)."""
        if not self._running:
            return
        if isinstance(event, Nominated):
            self._nominate(library, event.path, event.seen)
        else:
            self._fs_events.append((library, event))
            self._fs_wake.set()

    def _nominate(self, library: str, path: str, seen: Observation) -> None:
        lib = self._libs.get(library)
        if lib is None or lib.paused:
            return
        if seen is not None and self.is_own_output(path, seen):
            return
        self.tracker.nominate(path, library, seen)
        self._wake.set()

    def _overflow_from_thread(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_overflow)

    def _on_overflow(self) -> None:
        for lib in self._libs.values():
            watcher = lib.watcher
            if watcher is not None and watcher.kind is WatchKind.EVENTS:
                self.request_reconcile(lib.name, "the inotify event queue overflowed")

    # --- loops ----------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        """Look at nominated paths when their settle window ends; queue the settled ones."""
        while True:
            deadline = self.tracker.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            due = self.tracker.due()
            if not due:
                continue
            seen = await asyncio.to_thread(stat_many, due)
            settled: list[Settled] = []
            for path, observation in zip(due, seen, strict=True):
                verdict, item = self.tracker.observe(path, observation)
                if verdict is Verdict.SETTLED and item is not None:
                    settled.append(item)
            if settled:
                self._handling += 1
                try:
                    await self._handle_settled(settled)
                except Exception as exc:  # the store is busy, a probe worker broke, ...
                    self._log("error", f"could not queue {len(settled)} settled files: {exc}")
                    for item in settled:
                        self.tracker.retry_later(item, self._backoff(item.retries))
                finally:
                    self._handling -= 1

    def _backoff(self, retries: int) -> float:
        base = max(self.tracker.settle_seconds, 1.0)
        return float(min(_RETRY_CAP_S, base * 2**retries))

    async def _handle_settled(self, settled: list[Settled]) -> None:
        by_library: dict[str, list[Settled]] = {}
        for item in settled:
            lib = self._libs.get(item.library)
            if lib is None or lib.paused or self.is_own_output(item.path, item.stat):
                continue
            entry = await self.store.get_file(item.path)
            if (
                entry is not None
                and entry.probe is not None
                and (entry.size, entry.mtime_ns) == (item.stat.size, item.stat.mtime_ns)
            ):
                continue  # already known as is (our own output, or a touch that changed nothing)
            by_library.setdefault(item.library, []).append(item)
        for name, items in by_library.items():
            lib = self._libs[name]
            probed = await self.scanner.probe([WalkedFile(i.path, i.stat) for i in items])
            retries = {i.path: i for i in items}
            keep = []
            for walked, result in probed:
                item = retries[walked.path]
                if isinstance(result, ProbeFailure) and item.retries < self.max_probe_retries:
                    # Maybe not finished after all (a paused download): look again later.
                    self.tracker.retry_later(item, self._backoff(item.retries))
                    continue
                keep.append((walked, result))
            if keep:
                profile = self.settings.profile_for(lib.settings)
                await self.scanner.record_each(name, profile, keep, where=lib.settings)

    async def _fs_event_loop(self) -> None:
        """Handle deletions, moves away and folders moving in (batched)."""
        while True:
            await self._fs_wake.wait()
            self._fs_wake.clear()
            batch, self._fs_events = self._fs_events, []
            by_library: dict[str, list[Vanished | DirAppeared]] = {}
            for library, event in batch:
                if not isinstance(event, Nominated):
                    by_library.setdefault(library, []).append(event)
            for name, events in by_library.items():
                try:
                    await self._handle_fs_events(self._libs[name], events)
                except Exception as exc:
                    self._log("error", f"library {name!r}: could not apply file events: {exc}")
                    self.request_reconcile(name, "file events could not be applied")

    async def _handle_fs_events(self, lib: _Library, events: list[Vanished | DirAppeared]) -> None:
        if lib.paused:
            return
        root = lib.settings.path
        vanished = [e for e in events if isinstance(e, Vanished)]
        if vanished:
            problem = await asyncio.to_thread(root_problem, root)
            # inotify reports real deletions only (an unmount is not a stream of deletes), but
            # a polling observer sees a dropped mount as "every file deleted": for it, an
            # empty root means "paused", not "cancel everything".
            polled = lib.watcher is None or lib.watcher.kind is WatchKind.POLL
            if problem is None and polled and await asyncio.to_thread(root_is_empty, root):
                known = await self.store.fingerprints(lib.name)
                if known:
                    problem = (
                        f"library folder {root} is suddenly empty but the catalog knows"
                        f" {len(known)} files (unmounted share?); nothing was removed"
                    )
            if problem is not None:
                await self._pause(lib, problem)
                return
            # A path replaced in place (os.replace onto it) reports "moved away" but exists.
            exists = await asyncio.to_thread(stat_many, [e.path for e in vanished])
            known_paths: list[str] | None = None
            for event, seen in zip(vanished, exists, strict=True):
                if seen is not None and not event.is_dir:
                    self._nominate(lib.name, event.path, seen)
                    continue
                if event.is_dir:
                    prefix = event.path.rstrip("/") + "/"
                    self.tracker.forget_under(event.path)
                    if known_paths is None:
                        known_paths = list(await self.store.fingerprints(lib.name))
                    paths = [p for p in known_paths if p.startswith(prefix)]
                    reason = f"folder {event.reason}"
                    await cancel_queued(self.queue, self.bus, _starts_with(prefix), reason)
                else:
                    self.tracker.forget(event.path)
                    paths = [event.path]
                    reason = f"file {event.reason}"
                    target = event.path
                    await cancel_queued(self.queue, self.bus, target.__eq__, reason)
                if paths:
                    await self.store.remove_files(paths)
        for appeared in events:
            if isinstance(appeared, DirAppeared):
                files = await asyncio.to_thread(
                    walk_subtree,
                    Path(appeared.path),
                    self.rules,
                    follow_symlinks=lib.settings.follow_symlinks,
                )
                for walked in files:
                    self._nominate(lib.name, walked.path, walked.stat)

    async def _health_loop(self) -> None:
        """Resume paused libraries whose root is back; restart observers that died."""
        while True:
            await asyncio.sleep(self.health_interval_s)
            for lib in self._libs.values():
                try:
                    await self._check_health(lib)
                except Exception as exc:
                    self._log("error", f"library {lib.name!r}: health check failed: {exc}")

    async def _check_health(self, lib: _Library) -> None:
        root = lib.settings.path
        if lib.settings.watch is WatchMode.OFF and not lib.paused:
            return
        problem = await asyncio.to_thread(root_problem, root)
        if lib.paused:
            if problem is None and not await asyncio.to_thread(root_is_empty, root):
                self.request_reconcile(lib.name, "library folder is back")
            return
        if problem is not None:
            await self._pause(lib, problem)
            return
        watcher = lib.watcher
        if watcher is not None and not watcher.is_alive():
            self._log(
                "warning",
                f"library {lib.name!r}: the file watcher stopped unexpectedly; restarting it"
                " and rescanning",
            )
            await self._start_watching(lib)
            self.request_reconcile(lib.name, "the file watcher stopped")

    async def _rescan_loop(self) -> None:
        """Periodic reconciliation of every watched library (catches anything missed)."""
        while True:
            await asyncio.sleep(self.rescan_interval_s)
            for lib in self._libs.values():
                if lib.settings.watch is not WatchMode.OFF and not lib.paused:
                    self.request_reconcile(lib.name, "periodic reconciliation scan")

    async def _reconcile(self, lib: _Library, why: str) -> None:
        """Scan until it succeeds (backoff between failures), then again if asked meanwhile."""
        attempt = 0
        while True:
            try:
                self._log("info", f"scanning library {lib.name!r}: {why}")
                await self.scan_library(lib.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                delay = min(_RETRY_CAP_S, _RETRY_BASE_S * 2 ** (attempt - 1))
                self._log(
                    "error",
                    f"scan of library {lib.name!r} failed ({exc}); retrying in {delay:g} s",
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            if lib.reconcile_again is None:
                return
            why, lib.reconcile_again = lib.reconcile_again, None
