"""watchdog observers per library: which kind, what their events mean, and what can go wrong.

Events only *nominate* paths; the service decides what to do with them on the event loop. The
handler runs on watchdog's thread, so it may block a little: it filters names, takes the stat
the settle tracker needs and hands the result to the loop with ``call_soon_threadsafe``.

Choosing the observer (``watch:``): ``auto`` uses inotify on local disks and a polling observer
on network shares (NFS/SMB/SSHFS deliver no inotify events for writes made by other machines);
``events`` and ``poll`` force one; ``off`` watches nothing. Starting an inotify observer on a big
tree can hit the kernel's watch limit: that is recognised (ENOSPC / EMFILE) and turned into a
message naming the sysctl, and the caller falls back to polling.

watchdog 7.x notes: an inotify queue overflow is only logged (the watches are rebuilt but no
event reaches the handler), so :class:`OverflowLogHandler` listens to that log line to trigger
a reconciliation scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from castui_core.fsinfo import Mount, filesystem_of
from castui_core.ingest.settle import Observation, stat_file
from castui_core.layout import CASTUI_DIR
from castui_core.scan import IgnoreRules
from castui_core.settings import LibrarySettings, WatchMode


class WatchKind(StrEnum):
    EVENTS = "events"  # inotify
    POLL = "poll"  # watchdog's PollingObserver (periodic directory snapshots)


#: Builds an (unstarted) observer of a kind; tests inject one that fails or records.
ObserverFactory = Callable[[WatchKind, float], BaseObserver]


def default_observer_factory(kind: WatchKind, poll_interval_s: float) -> BaseObserver:
    if kind is WatchKind.EVENTS:
        return Observer()
    return PollingObserver(timeout=poll_interval_s)


def choose_kind(
    mode: WatchMode,
    root: Path,
    poll_interval_s: float,
    *,
    mount_of: Callable[[Path], Mount | None] = filesystem_of,
) -> tuple[WatchKind | None, str]:
    """The observer kind for a library (``None``: not watched) and why, in plain words."""
    if mode is WatchMode.OFF:
        return None, "watching is off for this library (watch: off)"
    if mode is WatchMode.EVENTS:
        return WatchKind.EVENTS, "inotify events (watch: events)"
    if mode is WatchMode.POLL:
        return WatchKind.POLL, f"polling every {poll_interval_s:g} s (watch: poll)"
    mount = mount_of(root)
    if mount is not None and mount.is_network:
        return WatchKind.POLL, (
            f"{root} is on a network share ({mount.fs_type}), where inotify misses remote"
            f" writes: polling every {poll_interval_s:g} s"
        )
    return WatchKind.EVENTS, "inotify events"


def is_watch_limit(exc: BaseException) -> bool:
    """An inotify resource limit: watches (ENOSPC) or instances (EMFILE)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EMFILE)


def watch_limit_message(library: str, root: Path, exc: OSError, poll_interval_s: float) -> str:
    """What to tell a person whose inotify limit is too low (and what castui does meanwhile)."""
    if exc.errno == errno.EMFILE:
        what = "the inotify instance limit (fs.inotify.max_user_instances) is reached"
        fix = "sudo sysctl fs.inotify.max_user_instances=1024"
    else:
        what = "the inotify watch limit (fs.inotify.max_user_watches) is reached"
        fix = "sudo sysctl fs.inotify.max_user_watches=524288"
    return (
        f"library {library!r}: cannot watch {root} with inotify: {what}. Raise it with `{fix}`"
        " (persist it in /etc/sysctl.d/) and restart castui; meanwhile this library is polled"
        f" every {poll_interval_s:g} s. Other limits also count: fs.inotify.max_user_watches"
        " is shared by every program of this user."
    )


# --- what the handler hands to the loop --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Nominated:
    """A media file was created, written, closed or moved in: maybe it needs work."""

    path: str
    seen: Observation


@dataclass(frozen=True, slots=True)
class Vanished:
    """A file or folder was deleted or moved away (``reason`` says which, for the audit)."""

    path: str
    reason: str
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class DirAppeared:
    """A folder appeared (moved in from outside: its files get no events of their own)."""

    path: str


WatchEvent = Nominated | Vanished | DirAppeared
Sink = Callable[[str, WatchEvent], None]


def wanted_path(root: str, path: str, rules: IgnoreRules, *, is_dir: bool) -> bool:
    """Whether ``path`` under ``root`` is a media file (or folder) the library would walk."""
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return False
    parts = rel.split(os.sep)
    if parts[0] == CASTUI_DIR:  # the archive of originals: never new media, whatever the rules
        return False
    dirs = parts if is_dir else parts[:-1]
    if any(rules.ignores_dir(d) for d in dirs):
        return False
    return is_dir or rules.wants(parts[-1])


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: LibraryWatcher) -> None:
        super().__init__()
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher.handle(event)


class LibraryWatcher:
    """One watchdog observer for one library root."""

    def __init__(
        self,
        library: LibrarySettings,
        rules: IgnoreRules,
        kind: WatchKind,
        *,
        loop: asyncio.AbstractEventLoop,
        sink: Sink,
        poll_interval_s: float,
        observer_factory: ObserverFactory = default_observer_factory,
    ) -> None:
        self.library = library
        self.root = str(library.path)
        self.rules = rules
        self.kind = kind
        self._loop = loop
        self._sink = sink
        self._poll_interval_s = poll_interval_s
        self._factory = observer_factory
        self.observer: BaseObserver | None = None
        self._stopping = False

    def start(self) -> None:
        """Create, schedule and start the observer (blocking: inotify adds a watch per folder).

        Raises ``OSError`` (e.g. ENOSPC for the watch limit); nothing is left running then.
        """
        observer = self._factory(self.kind, self._poll_interval_s)
        try:
            observer.schedule(
                _Handler(self),
                self.root,
                recursive=True,
                follow_symlink=self.library.follow_symlinks,
            )
            observer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                observer.stop()
            raise
        self.observer = observer

    def stop(self) -> None:
        """Stop and join the observer (blocking; idempotent)."""
        self._stopping = True
        observer, self.observer = self.observer, None
        if observer is None:
            return
        with contextlib.suppress(Exception):
            observer.stop()
        if observer.is_alive():
            observer.join(timeout=10)

    def is_alive(self) -> bool:
        """True while the observer and all its emitters run (a dead one misses everything)."""
        observer = self.observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in observer.emitters)

    # --- watchdog thread ------------------------------------------------------------------

    def _emit(self, item: WatchEvent) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: castui is shutting down
            self._loop.call_soon_threadsafe(self._sink, self.library.name, item)

    def handle(self, event: FileSystemEvent) -> None:
        """Translate one watchdog event (runs on watchdog's thread)."""
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return  # reads (Jellyfin, our own probes) change nothing
        src = _text(event.src_path)
        is_dir = event.is_directory
        if kind == "moved":
            dest = _text(event.dest_path)
            if src == self.root or wanted_path(self.root, src, self.rules, is_dir=is_dir):
                self._emit(Vanished(src, f"moved to {dest}", is_dir=is_dir))
            self._appeared(dest, is_dir)
        elif kind == "deleted":
            if src == self.root or wanted_path(self.root, src, self.rules, is_dir=is_dir):
                self._emit(Vanished(src, "deleted", is_dir=is_dir))
        elif kind in ("created", "modified", "closed"):
            if is_dir:
                if kind == "created":
                    self._appeared(src, True)
            elif wanted_path(self.root, src, self.rules, is_dir=False):
                self._emit(Nominated(src, stat_file(src)))

    def _appeared(self, path: str, is_dir: bool) -> None:
        if not wanted_path(self.root, path, self.rules, is_dir=is_dir):
            return
        self._emit(DirAppeared(path) if is_dir else Nominated(path, stat_file(path)))


class OverflowLogHandler(logging.Handler):
    """Calls ``on_overflow`` when watchdog logs an inotify queue overflow (any thread)."""

    LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            return
        if "overflow" in message.lower():
            self._on_overflow()

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)
