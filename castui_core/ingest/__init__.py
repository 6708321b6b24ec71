"""Ingest: keep the queue in step with the libraries (scans, watch events, settling).

:class:`Ingest` is what the engine runs; :class:`CatalogScanner` is the catalog-aware scan it
(and ``castui scan``-like tools) use; :class:`SettleTracker` is the pure "has this file stopped
changing" state machine; :mod:`.watcher` holds the watchdog side.
"""

from castui_core.ingest.catalog_scan import (
    CatalogScanner,
    CatalogScanResult,
    LibraryWalk,
    WalkedFile,
    cancel_queued,
    root_problem,
    walk_library,
)
from castui_core.ingest.service import (
    EVENT_LIBRARY_PAUSED,
    EVENT_LIBRARY_RESUMED,
    EVENT_WATCH_FALLBACK,
    Ingest,
)
from castui_core.ingest.settle import FileStat, Settled, SettleTracker, Verdict, stat_file
from castui_core.ingest.watcher import (
    LibraryWatcher,
    ObserverFactory,
    WatchKind,
    choose_kind,
    default_observer_factory,
    is_watch_limit,
    watch_limit_message,
)

__all__ = [
    "EVENT_LIBRARY_PAUSED",
    "EVENT_LIBRARY_RESUMED",
    "EVENT_WATCH_FALLBACK",
    "CatalogScanResult",
    "CatalogScanner",
    "FileStat",
    "Ingest",
    "LibraryWalk",
    "LibraryWatcher",
    "ObserverFactory",
    "SettleTracker",
    "Settled",
    "Verdict",
    "WalkedFile",
    "WatchKind",
    "cancel_queued",
    "choose_kind",
    "default_observer_factory",
    "is_watch_limit",
    "root_problem",
    "stat_file",
    "walk_library",
    "watch_limit_message",
]
