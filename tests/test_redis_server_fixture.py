"""The real-Redis fixture itself: it answers on its socket, keeps acknowledged writes across
``kill -9`` (AOF, fsync always), and hands each test an empty database."""

from __future__ import annotations

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
