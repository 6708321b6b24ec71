"""The real-Redis fixture itself: it answers on its socket, keeps acknowledged writes across
``kill -9`` (AOF, fsync always), and hands each test an empty database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from redis_server import RedisServer


def test_kill9_then_start_keeps_acknowledged_writes(
    redis_server: RedisServer, redis_url: str
) -> None:
    assert redis_url.startswith("unix://") and redis_url.endswith("/redis.sock")
    with redis_server.client() as c:
        c.set("k", "v")
        assert c.config_get("appendfsync") == {"appendfsync": "always"}
        assert c.config_get("port") == {"port": "0"}
    pid = redis_server.proc.pid if redis_server.proc else None
    redis_server.kill9()
    assert not redis_server.running
    redis_server.start()
    assert redis_server.proc is not None and redis_server.proc.pid != pid
    with redis_server.client() as c:
        assert c.get("k") == b"v"


def test_each_test_starts_empty(redis_server: RedisServer, redis_url: str) -> None:
    with redis_server.client() as c:
        assert c.dbsize() == 0
        c.set("left-behind", "x")


def test_a_stopped_server_is_started_again_for_the_next_test(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert not redis_server.running


def test_after_stop(redis_server: RedisServer, redis_url: str) -> None:
    with redis_server.client() as c:
        assert c.ping() and c.dbsize() == 0


def test_missing_redis_server_fails_instead_of_skipping(tmp_path: Path) -> None:
    """CI must never go green by silently skipping every Redis test."""
    (tmp_path / "conftest.py").write_text("from redis_server import redis_server, redis_url\n")
    (tmp_path / "test_needs_redis.py").write_text("def test_x(redis_url):\n    pass\n")
    env = dict(
        os.environ,
        PATH=str(Path(sys.executable).parent),  # no redis-server on it
        PYTHONPATH=str(Path(__file__).parent),
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    summary = out.strip().splitlines()[-1]
    assert "1 error" in summary and "skipped" not in summary, out
    assert "scripts/test installs it" in out
