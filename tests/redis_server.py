"""A real ``redis-server`` for the tests: Debian's binary on a Unix socket in a temp folder.

Why a real server and not a fake: the queue's guarantees (one script at a time, the server's
clock, the AOF surviving ``kill -9``) are the server's, and a fake would only test the fake.
Why these options: the same ones castui asks of a production Redis (AOF on, nothing evicted),
with ``appendfsync always`` so "a change the call returned from survives ``kill -9``" holds
exactly and a restart test cannot pass or fail by chance; ``--port 0`` so no TCP port is
opened (parallel test processes never collide); ``--save ""`` so no RDB snapshot mixes in.

``redis_server`` (session) starts one per test process; ``redis_url`` (function) gives each
test an empty database on it, restarting the server first when an earlier test stopped it.
If ``redis-server`` is missing the fixture FAILS (never skips): ``scripts/test`` installs it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

START_TIMEOUT_S = 20.0
MISSING = (
    "redis-server is not installed: scripts/test installs it (apt-get install redis-server);"
    " the queue tests need a real server and must not be skipped"
)
OPTIONS = (
    "--port",
    "0",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--maxmemory-policy",
    "noeviction",
    "--save",
    "",
    "--daemonize",
    "no",
)


class RedisServer:
    """One ``redis-server`` process bound to ``folder/redis.sock``, its AOF in ``folder``."""

    def __init__(self, folder: Path, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError(MISSING)
        self.binary = found
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket = folder / "redis.sock"
        if len(str(self.socket).encode()) > 100:  # sun_path holds 107 bytes
            raise ValueError(f"socket path too long for a Unix socket: {self.socket}")
        self.proc: subprocess.Popen[str] | None = None
        self._log: list[str] = []

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (or restart on the same folder, so its AOF is loaded, as after a crash) and
        return once the server answers PING."""
        if self.running:
            return
        self._log = []
        ready = threading.Event()
        proc = subprocess.Popen(
            [
                self.binary,
                *OPTIONS,
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.proc = proc

        def pump() -> None:
            # Always drain the log: a full pipe would block the server mid-write.
            assert proc.stdout is not None
            for line in proc.stdout:
                self._log.append(line)
                if "ready to accept connections" in line.lower():
                    ready.set()
            ready.set()  # EOF: it exited; the PING below says so

        threading.Thread(target=pump, name="redis-server-log", daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or not self._ping():
            self.kill9()
            raise AssertionError(
                f"redis-server did not start within {START_TIMEOUT_S:.0f} s:\n"
                + "".join(self._log[-30:])
            )

    def _ping(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        """A plain synchronous client, for fixtures only (tests talk through the queue)."""
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=10)

    def flush(self) -> None:
        """Empty every database (the AOF records it too, so a restart stays empty)."""
        with self.client() as c:
            c.flushall()

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no final fsync, like a power cut for the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waited for."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return "".join(self._log)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server per test process (xdist workers each get their own)."""
    if shutil.which("redis-server") is None:
        pytest.fail(MISSING)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The server's URL with an empty database (FLUSHALL), running again if a test stopped
    or killed it."""
    redis_server.start()
    redis_server.flush()
    return redis_server.url
