"""Backends for the queue conformance suite, and real worker processes that use them.

Why one helper for both backends: the conformance tests only speak the ``JobQueue`` protocol,
so a backend is "how to open a handle", "how to restart the thing that holds the jobs" and
"how a separate process names it" (``sqlite:PATH`` or ``redis:URL:PREFIX``, which
``tests/queue/_worker.py`` parses).
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from redis_server import RedisServer
from worker_process import WorkerProcess

from castui_core.queue.protocol import JobQueue
from castui_core.store import Store

WORKER = Path(__file__).with_name("_worker.py")

#: Queue settings every handle in the suite shares, so two handles agree on the rules. The
#: backoff is short so a retry is due within the test; leases are long unless a test asks
#: for a short one (a loaded CI machine must not expire a lease mid-test by accident).
DEFAULTS: dict[str, Any] = {
    "lease_seconds": 30.0,
    "max_attempts": 3,
    "backoff_base_s": 0.2,
    "backoff_cap_s": 0.5,
}


class Backend(Protocol):
    """How a test opens, restarts and names one backend."""

    name: str

    async def open(self, **overrides: Any) -> JobQueue: ...

    async def restart(self) -> None:
        """Make the backend lose everything but what it made durable."""
        ...

    def spec(self) -> str:
        """The backend as a worker process's argument."""
        ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    async def open(self, **overrides: Any) -> JobQueue:
        kw = {**DEFAULTS, "rng": random.Random(7), "busy_timeout_s": 30.0, **overrides}
        return await Store.connect(self.path, **kw)

    async def restart(self) -> None:
        # Nothing to kill: SQLite lives in the processes using it. Reopening the file (the
        # test closes its handles first) is what a restarted castui does.
        return None

    def spec(self) -> str:
        return f"sqlite:{self.path}"


class RedisBackend:
    name = "redis"

    def __init__(self, server: RedisServer, prefix: str) -> None:
        self.server = server
        self.prefix = prefix
        # Imported here so that a missing module FAILS the redis tests, never skips them.
        self.cls: Any = importlib.import_module("castui_core.queue.redis").RedisQueue

    async def open(self, **overrides: Any) -> JobQueue:
        kw = {**DEFAULTS, "rng": random.Random(7), **overrides}
        q: JobQueue = await self.cls.connect(self.server.url, prefix=self.prefix, **kw)
        return q

    async def restart(self) -> None:
        """SIGKILL the server and start it on its AOF (appendfsync always)."""
        await asyncio.to_thread(self.server.kill9)
        await asyncio.to_thread(self.server.start)

    def spec(self) -> str:
        return f"redis:{self.server.url}:{self.prefix}"


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    Leases and backoff run on the backend's clock (Redis: the server's), so a test cannot move
    time: it waits for the state it needs, bounded, instead of sleeping a guessed amount.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Worker(WorkerProcess):
    """A real OS process running tests/queue/_worker.py; reads wait in a thread, so the
    event loop (and the queue handles on it) keeps running."""

    script = WORKER

    async def readline(self, timeout: float = 30.0) -> str:
        """The next line, without blocking the event loop; fails if the worker goes quiet."""
        return await asyncio.to_thread(self.next_line, timeout)

    async def wait(self, timeout: float = 30.0) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)
