"""The conformance suite's fixtures: every test runs once per queue backend.

``backend`` is parametrized over ``sqlite`` (a Store on a temp file) and ``redis`` (a
RedisQueue on the real redis-server from tests/redis_server.py, a fresh database per test);
``queue`` is an open handle on it. A backend whose code is missing errors, never skips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from queue_backends import Backend, RedisBackend, SqliteBackend, Worker
from redis_server import RedisServer

from castui_core.queue.protocol import JobQueue

BACKENDS = ("sqlite", "redis")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "castui.sqlite3")
    server: RedisServer = request.getfixturevalue("redis_server")
    request.getfixturevalue("redis_url")  # running, and an empty database
    return RedisBackend(server, prefix="conf")


@pytest.fixture
async def queue(backend: Backend) -> AsyncIterator[JobQueue]:
    q = await backend.open()
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
def spawn() -> Iterator[type[Worker]]:
    """Start worker processes that are killed at the end of the test, whatever happened."""
    started: list[Worker] = []

    class _Tracked(Worker):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield _Tracked
    for w in started:
        w.close()
