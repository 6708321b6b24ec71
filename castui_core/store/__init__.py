"""Durable job queue, file catalog and audit log in one SQLite file.

Nothing is lost on restart, crash or a second worker: claims are atomic, leases are fenced by
tokens, expired leases are reclaimed, failures back off and poison files end ``dead``.
See :class:`Store` for the API; records are frozen dataclasses from :mod:`.models`.
"""

from castui_core.store.db import SCHEMA_VERSION
from castui_core.store.jobs import NewJob
from castui_core.store.models import (
    ACTIVE_STATES,
    FINISHED_STATES,
    CatalogEntry,
    ClaimedJob,
    EnqueueOutcome,
    EnqueueResult,
    Event,
    EventKind,
    HistoryTotals,
    Job,
    JobAction,
    JobResult,
    JobState,
    OutputRecord,
    Progress,
    backoff_delay,
)
from castui_core.store.store import DEFAULT_EVENT_RETENTION_S, Clock, Store

__all__ = [
    "ACTIVE_STATES",
    "DEFAULT_EVENT_RETENTION_S",
    "FINISHED_STATES",
    "SCHEMA_VERSION",
    "CatalogEntry",
    "ClaimedJob",
    "Clock",
    "EnqueueOutcome",
    "EnqueueResult",
    "Event",
    "EventKind",
    "HistoryTotals",
    "Job",
    "JobAction",
    "JobResult",
    "JobState",
    "NewJob",
    "OutputRecord",
    "Progress",
    "Store",
    "backoff_delay",
]
