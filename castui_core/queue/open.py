"""Open the job queue the settings name: the SQLite store itself, or a shared Redis.

Why one function: the engine, the control socket and the CLI should not each know how to read
``queue:`` (the password file, the environment variable, the persistence override); they ask
for "the queue" and get a :class:`~castui_core.queue.protocol.JobQueue`.
"""

from __future__ import annotations

from castui_core.queue.protocol import JobQueue
from castui_core.settings import Settings
from castui_core.store.store import Store


async def open_queue(
    settings: Settings, store: Store, *, lease_seconds: float | None = None
) -> JobQueue:
    """The queue for ``settings``: ``store`` for ``backend: sqlite`` (the caller keeps
    owning and closing it), a connected :class:`~castui_core.queue.redis.RedisQueue` for
    ``backend: redis`` (the caller closes it).

    ``lease_seconds`` defaults to ``service.lease_seconds``. Raises
    :class:`~castui_core.errors.QueueUnreachableError` /
    :class:`~castui_core.errors.QueueUnsafeError` when Redis is down or unsafe.
    """
    q = settings.queue
    if q.backend == "sqlite":
        return store
    # Imported here so a SQLite-only install never loads the Redis client.
    from castui_core.queue.redis import RedisQueue

    assert q.url is not None  # the settings validator requires it for backend redis
    return await RedisQueue.connect(
        q.url.get_secret_value(),
        password=q.password_value(),
        prefix=q.prefix,
        lease_seconds=lease_seconds or settings.service.lease_seconds,
        require_durable=not q.allow_unsafe_persistence,
    )
