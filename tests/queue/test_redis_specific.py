"""What only the Redis queue backend has to get right (the shared behaviour is the
conformance suite's): durability is checked, credentials never leak, leases run on the
server's clock, an unreachable Redis is one clear error and is survived, file names that are
not UTF-8 round-trip, and the Lua scripts come back after SCRIPT FLUSH.

Every test talks to a real ``redis-server`` on a Unix socket in a temp folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castui_core.doctor import check_redis, redis_check
from castui_core.errors import (
    JobNotFoundError,
    LeaseLostError,
    QueueUnreachableError,
    QueueUnsafeError,
    StoreError,
)
from castui_core.queue.open import open_queue
from castui_core.queue.protocol import JobQueue, NodeStatus
from castui_core.queue.redis import RedisQueue, missing_conf_lines, redact_url
from castui_core.settings import Settings
from castui_core.store import Store
from castui_core.store.jobs import NewJob
from castui_core.store.models import ClaimedJob, Job, JobResult, JobState, Progress
from castui_core.store.outbox import OutboxEntry

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


@dataclass
class Server:
    proc: subprocess.Popen[str]
    folder: Path
    args: tuple[str, ...]

    @property
    def socket(self) -> Path:
        return self.folder / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def start(self) -> None:
        """(Re)start on the same folder: an AOF there is loaded, as after a crash."""
        self.proc = _spawn(self.folder, self.args)


def _spawn(folder: Path, args: tuple[str, ...]) -> subprocess.Popen[str]:
    assert REDIS is not None
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            "0",
            "--unixsocket",
            str(folder / "redis.sock"),
            "--dir",
            str(folder),
            "--daemonize",
            "no",
            "--save",
            "",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:  # the server says when it is ready (or why it stopped)
            seen.append(line)
            if "ready to accept connections" in line.lower():
                # Keep reading its log so a full pipe never blocks the server.
                threading.Thread(target=proc.stdout.read, daemon=True).start()
                return proc
    except BaseException:  # a test timeout while waiting: leave no server behind
        proc.kill()
        raise
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError("redis-server did not start:\n" + "".join(seen))


def _start(folder: Path, *args: str) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    return Server(_spawn(folder, args), folder, args)


SAFE = ("--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A short folder name: a Unix socket path must fit in 107 bytes.
    srv = _start(tmp_path_factory.mktemp("rq"), *SAFE)
    yield srv
    srv.stop()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"t{time.monotonic_ns()}"


async def _queue(server: Server, prefix: str, **kw: object) -> RedisQueue:
    return await RedisQueue.connect(server.url, prefix=prefix, **kw)  # type: ignore[arg-type]


def _as_protocol(q: RedisQueue) -> JobQueue:
    return q  # mypy checks that RedisQueue satisfies the protocol


# --- durability ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "missing"),
    [
        (
            {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"},
            [],
        ),
        (
            {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"},
            [],
        ),
        (
            {"appendonly": "no", "appendfsync": "everysec", "maxmemory-policy": "noeviction"},
            ["appendonly yes"],
        ),
        (
            {"appendonly": "yes", "appendfsync": "no", "maxmemory-policy": "allkeys-lru"},
            ["appendfsync everysec", "maxmemory-policy noeviction"],
        ),
        ({}, ["appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"]),
    ],
)
def test_missing_conf_lines(conf: dict[str, str], missing: list[str]) -> None:
    assert missing_conf_lines(conf) == missing


async def test_unsafe_server_is_refused_with_the_lines_to_add(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv = _start(tmp_path / "u", "--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(QueueUnsafeError) as info:
            await RedisQueue.connect(srv.url)
        msg = str(info.value)
        assert "appendonly yes" in msg and "maxmemory-policy noeviction" in msg
        assert "appendfsync" not in msg  # the default (everysec) is fine
        assert "allow_unsafe_persistence" in msg

        with caplog.at_level(logging.WARNING, logger="castui.queue.redis"):
            q = await RedisQueue.connect(srv.url, require_durable=False)
        try:
            assert "appendonly yes" in caplog.text
            assert (await q.enqueue("/m/a.mkv", "films", "remux")).job_id == 1
        finally:
            await q.close()
    finally:
        srv.stop()


async def test_config_disabled_needs_the_explicit_setting(tmp_path: Path) -> None:
    srv = _start(tmp_path / "c", *SAFE, "--rename-command", "CONFIG", "")
    try:
        with pytest.raises(QueueUnsafeError, match="CONFIG is disabled") as info:
            await RedisQueue.connect(srv.url)
        assert "allow_unsafe_persistence: true" in str(info.value)
        q = await RedisQueue.connect(srv.url, require_durable=False)
        await q.close()
    finally:
        srv.stop()


# --- credentials ----------------------------------------------------------------------------


async def test_password_never_in_messages_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv = _start(tmp_path / "p", *SAFE, "--requirepass", "right-horse-battery")
    try:
        caplog.set_level(logging.DEBUG)
        with pytest.raises(QueueUnreachableError) as info:
            await RedisQueue.connect(srv.url, password="wrong-staple-secret")
        assert str(info.value).startswith("queue unreachable:")
        assert "wrong-staple-secret" not in str(info.value)
        with pytest.raises(QueueUnreachableError) as info:
            await RedisQueue.connect(srv.url)  # no password at all
        assert "password" in str(info.value)
        q = await RedisQueue.connect(srv.url, password="right-horse-battery")
        try:
            assert "right-horse-battery" not in repr(q) + q.url
            assert not await q.is_paused()
        finally:
            await q.close()
        assert "wrong-staple-secret" not in caplog.text
        assert "right-horse-battery" not in caplog.text
    finally:
        srv.stop()


async def test_url_credentials_are_stripped_when_unreachable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://admin:hunter2-secret@127.0.0.1:{port}/0"
    with pytest.raises(QueueUnreachableError) as info:
        await RedisQueue.connect(url, socket_timeout_s=5)
    msg = str(info.value)
    assert msg.startswith("queue unreachable: ")
    assert "hunter2-secret" not in msg and "admin" not in msg
    assert f"redis://127.0.0.1:{port}/0" in msg
    assert redact_url(url) == f"redis://127.0.0.1:{port}/0"


# --- clock, outage, names, scripts ----------------------------------------------------------


async def test_leases_run_on_the_servers_clock(
    server: Server, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This host's clock is a day fast; Redis's is right. A lease measured on the host's
    # clock would expire at once (reclaim) or a day late (heartbeat).
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400)
    q = await _queue(server, prefix, lease_seconds=30)
    try:
        await q.enqueue("/m/a.mkv", "films", "remux")
        claimed = await q.claim("host-a:1/w0")
        assert claimed is not None
        direct = aioredis.Redis(unix_socket_path=str(server.socket))
        sec, usec = await direct.time()
        await direct.aclose()
        server_now = sec + usec / 1e6
        assert abs(claimed.lease_expires - (server_now + 30)) < 5
        assert await q.reclaim_expired() == []
        expires = await q.heartbeat(claimed.id, claimed.token)
        assert abs(expires - (server_now + 30)) < 5
    finally:
        await q.close()


async def test_expired_lease_is_reclaimed_and_the_old_token_refused(
    server: Server, prefix: str
) -> None:
    q = await _queue(server, prefix, lease_seconds=0.2)
    try:
        await q.enqueue("/m/a.mkv", "films", "remux")
        first = await q.claim("dead-node:1/w0")
        assert first is not None
        second = None
        deadline = time.monotonic() + 10
        while second is None and time.monotonic() < deadline:
            second = await q.claim("live-node:1/w0")  # reclaims once the lease ran out
        assert second is not None and second.id == first.id and second.token > first.token
        with pytest.raises(LeaseLostError, match="live-node"):
            await q.complete(first.id, first.token, JobResult())
        done = await q.complete(second.id, second.token, JobResult())
        assert done.state is JobState.DONE and done.attempts == 2
        kinds = [(e.actor, e.to_state) for e in await q.list_events(job_id=first.id)]
        assert kinds == [  # newest first, one event per transition
            ("live-node:1/w0", "done"),
            ("live-node:1/w0", "running"),
            ("reaper", "queued"),
            ("dead-node:1/w0", "running"),
            (None, "queued"),
        ]
    finally:
        await q.close()


async def test_redis_down_is_queue_unreachable_and_survived(tmp_path: Path) -> None:
    srv = _start(tmp_path / "d", *SAFE)
    q = await RedisQueue.connect(srv.url, socket_timeout_s=5)
    try:
        created = await q.enqueue("/m/a.mkv", "films", "remux")
        srv.stop()  # SIGKILL: only what the AOF holds survives
        with pytest.raises(QueueUnreachableError, match=r"^queue unreachable: "):
            await q.claim("w")
        srv.start()
        claimed = await q.claim("w")  # the same handle reconnects
        assert claimed is not None and claimed.id == created.job_id
    finally:
        await q.close()
        srv.stop()


async def test_missing_socket_is_queue_unreachable(tmp_path: Path) -> None:
    with pytest.raises(QueueUnreachableError, match=r"^queue unreachable: .*nowhere\.sock"):
        await RedisQueue.connect(f"unix://{tmp_path}/nowhere.sock")


async def test_names_that_are_not_utf8_round_trip(server: Server, prefix: str) -> None:
    name = os.fsdecode(b"/media/films/caf\xe9 \xff\xfe.mkv")  # Latin-1 bytes, not UTF-8
    q = await _queue(server, prefix)
    try:
        created = await q.enqueue(name, "films", "remux", ["audio: dts"])
        assert (await q.enqueue(name, "films", "remux")).job_id == created.job_id
        assert [j.path for j in await q.active_jobs()] == [name]
        claimed = await q.claim("w")
        assert claimed is not None and claimed.path == name
        out = name[:-4] + ".mp4"
        done = await q.complete(
            claimed.id,
            claimed.token,
            JobResult(output_path=out, source_size=10, output_size=5),
            outbox=[OutboxEntry(out, "Modified", "films")],
        )
        assert done.result.output_path == out
        assert [j.path for j in await q.history()] == [name]
        assert (await q.get_job(created.job_id)).path == name
        assert {e.path for e in await q.list_events(path=name)} == {name}
        assert [r.path for r in await q.outbox_rows()] == [out]
        assert os.fsencode((await q.outbox_due(10))[0].folder) == b"/media/films"
    finally:
        await q.close()


def test_replies_are_parsed_by_hiredis() -> None:
    """redis-py parses replies with hiredis's C parser when it is installed (castui depends on
    redis[hiredis]); without it every reply, a claim's whole job hash included, would be parsed
    by redis-py's pure-Python parser on the workers' hot path."""
    from redis.asyncio.connection import DefaultParser
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE, "hiredis is missing: install castui's dependencies (redis[hiredis])"
    assert "Hiredis" in DefaultParser.__name__


async def test_scripts_come_back_after_script_flush(server: Server, prefix: str) -> None:
    q = await _queue(server, prefix)
    try:
        await q.enqueue("/m/a.mkv", "films", "remux")
        direct = aioredis.Redis(unix_socket_path=str(server.socket))
        await direct.script_flush()
        await direct.aclose()
        claimed = await q.claim("w")  # EVALSHA: NOSCRIPT, loaded again, run
        assert claimed is not None
        await q.heartbeat(claimed.id, claimed.token)
    finally:
        await q.close()


async def test_node_heartbeat_is_stamped_by_the_server(
    server: Server, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # this host runs an hour slow
    q = await _queue(server, prefix)
    try:
        sent = NodeStatus("gpu-1", "worker", 4242, real(), "1.0", (7,), "h264_nvenc", 61.0)
        await q.node_heartbeat(sent)
        (node,) = await q.nodes()
        assert node.name == "gpu-1" and node.current_jobs == (7,) and node.gpu_temp_c == 61.0
        assert abs(node.last_seen - real()) < 5
    finally:
        await q.close()


async def test_open_queue_picks_the_backend(server: Server, prefix: str, tmp_path: Path) -> None:
    async with Store.open(tmp_path / "castui.db") as store:
        assert await open_queue(Settings(), store) is store
        settings = Settings.model_validate(
            {"queue": {"backend": "redis", "url": server.url, "prefix": prefix}}
        )
        q = await open_queue(settings, store)
        try:
            assert isinstance(q, RedisQueue)
            await q.enqueue("/m/a.mkv", "films", "remux")
            assert await store.active_jobs() == []  # the jobs went to Redis, not SQLite
        finally:
            await q.close()


# --- castui doctor ----------------------------------------------------------------------------


def test_doctor_redis_line_rules() -> None:
    good = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
    ok = check_redis("unix:///r.sock", "7.0.15", good)
    assert ok.level == "ok" and "7.0.15" in ok.message and "appendfsync always" in ok.message
    bad = check_redis("unix:///r.sock", "7.0.15", {**good, "appendonly": "no"})
    assert bad.level == "error" and "appendonly yes" in bad.message
    allowed = check_redis("unix:///r.sock", "7.0.15", None, allow_unsafe=True)
    assert allowed.level == "warning" and "CONFIG is disabled" in allowed.message
    down = check_redis("unix:///r.sock", None, None, error="queue unreachable: refused")
    assert down.level == "error" and down.message == "queue unreachable: refused"


async def test_doctor_reads_the_real_server(server: Server, tmp_path: Path) -> None:
    settings = Settings.model_validate({"queue": {"backend": "redis", "url": server.url}})
    line = await redis_check(settings)
    assert line.level == "ok", line.message
    assert "appendfsync everysec" in line.message
    gone = Settings.model_validate(
        {"queue": {"backend": "redis", "url": f"unix://{tmp_path}/gone.sock"}}
    )
    down = await redis_check(gone)
    assert down.level == "error" and down.message.startswith("queue unreachable: ")


# --- same answers as the SQLite backend ---------------------------------------------------------


def _job_view(job: Job) -> tuple[object, ...]:
    """A job without its clock readings (the two backends' clocks differ by design)."""
    return (
        job.id,
        job.path,
        job.library,
        str(job.action),
        str(job.state),
        job.reasons,
        job.priority,
        job.attempts,
        job.max_attempts,
        job.lease_owner,
        job.lease_token,
        job.lease_expires is not None,
        job.rerun_requested,
        None if job.progress is None else (job.progress.percent, job.progress.fps),
        job.result,
        job.reason,
        job.started_at is not None,
        job.finished_at is not None,
    )


async def _claim_soon(q: JobQueue, owner: str) -> ClaimedJob:
    """Claim, waiting (bounded) for a job whose 1 ms backoff is still running."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        claimed = await q.claim(owner)
        if claimed is not None:
            return claimed
    raise AssertionError("no job became ready")


async def _scenario(q: JobQueue) -> list[object]:
    """Every kind of transition, recorded without times."""
    out: list[object] = []
    weird = os.fsdecode(b"/m/\xff.mkv")
    out.append(await q.enqueue("/m/a.mkv", "films", "remux", ["audio"]))
    out.append(await q.enqueue("/m/a.mkv", "films", "transcode", ["video"], priority=2))
    out.append(
        await q.enqueue_many(
            [
                NewJob("/m/b.mkv", "tv", "remux"),
                NewJob("/m/b.mkv", "tv", "transcode", ("again",), priority=1),
                NewJob(weird, "tv", "remux"),
                NewJob("/m/later.mkv", "tv", "remux", debounce_s=3600),
            ]
        )
    )
    out.append([_job_view(j) for j in await q.active_jobs()])
    a = await _claim_soon(q, "n1/w0")  # a: priority 2
    out.append(_job_view(a.job))
    await q.heartbeat(a.id, a.token, Progress(percent=50.0, fps=24.0))
    out.append(await q.enqueue("/m/a.mkv", "films", "remux", ["changed"]))  # rerun scheduled
    out.append(
        _job_view(
            await q.complete(
                a.id,
                a.token,
                JobResult(output_path="/m/a.mp4", source_size=100, output_size=60),
                outbox=[OutboxEntry("/m/a.mp4", "Modified", "films")],
            )
        )
    )
    b = await _claim_soon(q, "n1/w1")  # the rerun of a (priority 2) beats b (priority 1)
    out.append(_job_view(b.job))
    try:
        await q.heartbeat(b.id, b.token + 1)
    except LeaseLostError as exc:
        out.append(str(exc))
    out.append(_job_view(await q.fail(b.id, b.token, "ffmpeg exited 1")))  # retry, 1 ms
    b2 = await _claim_soon(q, "n1/w1")
    out.append(_job_view(b2.job))
    out.append(_job_view(await q.fail(b2.id, b2.token, "ffmpeg exited 1")))  # dead now
    c = await _claim_soon(q, "n1/w0")
    out.append(_job_view(await q.release(c.id, c.token)))
    c = await _claim_soon(q, "n1/w0")
    out.append(_job_view(await q.fail(c.id, c.token, "source vanished", retryable=False)))
    d = await _claim_soon(q, "n2/w0")
    out.append(_job_view(await q.cancel(d.id)))
    try:
        await q.complete(d.id, d.token, JobResult())
    except LeaseLostError as exc:
        out.append(str(exc))
    for refused in (q.cancel(d.id), q.set_priority(d.id, 5), q.retry(99)):
        try:
            await refused
        except JobNotFoundError as exc:
            out.append(str(exc))
    out.append(_job_view(await q.retry(d.id)))
    out.append(_job_view(await q.set_priority(d.id, 7)))
    await q.pause(reason="maintenance")
    out.append((await q.is_paused(), await q.claim("n1/w0")))
    await q.resume()
    out.append([_job_view(j) for j in await q.active_jobs()])
    out.append([_job_view(j) for j in await q.history()])
    out.append([_job_view(j) for j in await q.history(states=["dead"], library="tv")])
    out.append([_job_view(j) for j in await q.history(limit=1, offset=1)])
    out.append(await q.totals())
    out.append(await q.totals(library="films"))
    out.append(await q.totals(since=0.0))  # the time-filtered path (a scan in Redis)
    await q.record_event("guardrail", actor="n1", reason="GPU hot", details={"temp": 87})
    out.append(
        [
            (e.kind, e.job_id, e.path, e.actor, e.from_state, e.to_state, e.reason, e.details)
            for e in await q.list_events(limit=200)
        ]
    )
    out.append([e.to_state for e in await q.list_events(job_id=b.id)])
    out.append(len(await q.list_events(kind="operator")))
    out.append([(r.path, r.folder, r.library, r.job_id) for r in await q.outbox_rows()])
    out.append(await q.clear_history(states=[JobState.DONE]))
    out.append([_job_view(j) for j in await q.history()])
    out.append(await q.totals())
    return out


async def test_same_answers_as_sqlite(server: Server, prefix: str, tmp_path: Path) -> None:
    knobs = {"max_attempts": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.001}
    async with Store.open(tmp_path / "q.db", rng=random.Random(7), **knobs) as store:  # type: ignore[arg-type]
        want = await _scenario(store)
    q = await _queue(server, prefix, rng=random.Random(7), **knobs)
    try:
        got = await _scenario(q)
    finally:
        await q.close()
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {i}"


async def _second_attempt(q: JobQueue) -> list[object]:
    """A job whose first attempt left progress, a result and a reason behind, then a second
    attempt that reports less and completes: what each step shows of the job."""
    await q.enqueue("/m/a.mkv", "films", "transcode", ["video"])
    first = await _claim_soon(q, "n1/w0")
    await q.heartbeat(first.id, first.token, Progress(percent=10.0, fps=24.0, speed=1.5))
    failed_result = JobResult(command=("ffmpeg", "-i", "a"), exit_code=1, stderr_tail="boom")
    out: list[object] = [
        _job_view(await q.fail(first.id, first.token, "ffmpeg exited 1", result=failed_result))
    ]
    second = await _claim_soon(q, "n1/w1")
    out.append(_job_view(second.job))
    await q.heartbeat(second.id, second.token, Progress(percent=50.0, fps=30.0))
    await q.heartbeat(second.id, second.token, Progress(percent=90.0))
    out.append(_job_view(await q.get_job(second.id)))
    done = await q.complete(second.id, second.token, JobResult(output_path="/m/a.mp4"))
    out.append(_job_view(done))
    out.append(_job_view(await q.get_job(second.id)))
    out.append(await q.totals())
    return out


async def test_hot_scripts_clear_what_an_earlier_attempt_left(
    server: Server, prefix: str, tmp_path: Path
) -> None:
    """claim, heartbeat and complete read the job once and delete only the fields they find
    (claim: progress, finished_at; heartbeat: progress values now unknown; complete: the
    failed attempt's result and reason): the job must read exactly as on SQLite."""
    knobs = {"backoff_base_s": 0.001, "backoff_cap_s": 0.001}
    async with Store.open(tmp_path / "q.db", **knobs) as store:  # type: ignore[arg-type]
        want = await _second_attempt(store)
    q = await _queue(server, prefix, **knobs)
    try:
        got = await _second_attempt(q)
    finally:
        await q.close()
    assert got == want
    done = got[3]
    assert isinstance(done, tuple)
    assert done[14] == JobResult(output_path="/m/a.mp4")  # nothing of the failed attempt


async def _mixed_batch(q: JobQueue) -> list[object]:
    """One enqueue_many whose items take every branch (new, debounced, re-run requested,
    already running), new paths before and after the others: the job and event ids it
    hands out, and the audit trail, in order."""
    await q.enqueue("/m/queued.mkv", "tv", "remux")
    await q.enqueue("/m/running.mkv", "tv", "remux", priority=5)
    await q.enqueue("/m/old.mkv", "tv", "remux", priority=4)
    running = await q.claim("n1/w0")
    older = await q.claim("n1/w1")
    assert running is not None and older is not None
    started = older.job.started_at
    assert started is not None
    results = await q.enqueue_many(
        [
            NewJob("/m/new1.mkv", "tv", "transcode", ("x",)),
            NewJob("/m/queued.mkv", "tv", "transcode", ("y",), priority=2),
            NewJob("/m/running.mkv", "tv", "transcode", ("z",)),
            NewJob("/m/old.mkv", "tv", "remux", modified_at=started - 3600),
            NewJob("/m/new2.mkv", "films", "remux"),
        ]
    )
    events = await q.list_events(limit=100)
    return [
        [(r.job_id, str(r.outcome)) for r in results],
        [(e.id, e.kind, e.job_id, e.path, e.to_state, e.reason) for e in reversed(events)],
    ]


async def test_mixed_enqueue_batch_hands_out_ids_as_sqlite(
    server: Server, prefix: str, tmp_path: Path
) -> None:
    """enqueue.lua takes the batch's job and event ids as one block each (INCRBY) and writes
    the new jobs' events before the re-run requests: the ids, outcomes and audit trail must be
    exactly SQLite's, and the stream must accept the ids (it refuses one out of order)."""
    async with Store.open(tmp_path / "q.db") as store:
        want = await _mixed_batch(store)
    q = await _queue(server, prefix)
    try:
        got = await _mixed_batch(q)
    finally:
        await q.close()
    assert got == want
    assert [outcome for _, outcome in got[0]] == [
        "created",
        "debounced",
        "rerun_scheduled",
        "already_running",
        "created",
    ]


async def test_concurrent_handles_claim_each_job_once(server: Server, prefix: str) -> None:
    """Four handles (four connection pools, as four hosts have) enqueue the same paths at
    once and drain the queue together: one job per path, each claimed exactly once."""
    handles = [await _queue(server, prefix) for _ in range(4)]
    try:
        paths = [f"/m/{i:03}.mkv" for i in range(150)]
        results = await asyncio.gather(
            *(h.enqueue_many(NewJob(p, "films", "remux") for p in paths) for h in handles)
        )
        ids = {r.job_id for batch in results for r in batch}
        assert len(ids) == len(paths)  # the same path always got the same job

        async def drain(h: RedisQueue, owner: str) -> list[int]:
            got: list[int] = []
            while (c := await h.claim(owner)) is not None:
                got.append(c.id)
                await h.complete(c.id, c.token, JobResult())
            return got

        claimed = await asyncio.gather(*(drain(h, f"n{i}/w0") for i, h in enumerate(handles)))
        flat = [i for got in claimed for i in got]
        assert sorted(flat) == sorted(ids)  # none lost, none twice
        assert (await handles[0].totals()).files_done == len(paths)
        created = await handles[0].list_events(kind="job_state", limit=10_000)
        assert sum(e.to_state == "queued" for e in created) == len(paths)
    finally:
        for h in handles:
            await h.close()


async def test_a_nul_byte_is_refused_and_nothing_queued(server: Server, prefix: str) -> None:
    q = await _queue(server, prefix)
    try:
        with pytest.raises(StoreError, match="NUL byte"):
            await q.enqueue_many(
                [NewJob("/m/ok.mkv", "films", "remux"), NewJob("/m/b.mkv", "fi\0lms", "remux")]
            )
        assert await q.active_jobs() == []
    finally:
        await q.close()


async def test_sigkill_right_after_acknowledged_transitions_loses_none(tmp_path: Path) -> None:
    """Every transition the queue returned from is in the AOF when Redis is killed at once
    (appendfsync everysec writes the AOF before replying; the fsync only guards against the
    machine itself going down)."""
    srv = _start(tmp_path / "k", *SAFE)
    q = await RedisQueue.connect(srv.url, socket_timeout_s=5)
    try:
        await q.enqueue_many(NewJob(f"/m/{i}.mkv", "films", "remux") for i in range(20))
        done = []
        for _ in range(7):
            c = await q.claim("w")
            assert c is not None
            done.append((await q.complete(c.id, c.token, JobResult(output_size=1))).id)
        running = await q.claim("w")
        assert running is not None
        before = (await q.active_jobs(), await q.history(), await q.list_events(limit=1000))
        srv.stop()  # SIGKILL, no chance to flush anything more
        srv.start()
        after = (await q.active_jobs(), await q.history(), await q.list_events(limit=1000))
        assert after == before
        assert sorted(j.id for j in after[1]) == sorted(done)
        with pytest.raises(LeaseLostError):
            await q.heartbeat(running.id, running.token - 1)
        await q.complete(running.id, running.token, JobResult())  # its lease survived too
    finally:
        await q.close()
        srv.stop()


async def test_old_audit_events_are_pruned_with_their_job_lists(
    server: Server, prefix: str
) -> None:
    q = await _queue(server, prefix)
    try:
        first = await q.enqueue("/m/a.mkv", "films", "remux")  # 1 event
        c = await q.claim("w")
        assert c is not None
        await q.complete(c.id, c.token, JobResult())  # 2 more for job a
        for i in range(5):
            await q.record_event("guardrail", reason=f"hot {i}")
        assert len(await q.list_events(limit=100)) == 8
        assert await q.prune_events(older_than=0.0, keep_last=6) == 2  # the oldest two
        assert [e.to_state for e in await q.list_events(job_id=first.job_id)] == ["done"]
        later = (await q.list_events(limit=1))[0].at + 1
        assert await q.prune_events(older_than=later) == 6
        assert await q.list_events(limit=100) == []
        assert await q.list_events(job_id=first.job_id) == []
        again = await q.enqueue("/m/b.mkv", "films", "remux")  # ids go on from where they were
        (event,) = await q.list_events(job_id=again.job_id)
        assert event.id == 9
    finally:
        await q.close()


async def test_a_cancelled_call_ends_cancelled_even_when_redis_py_swallowed_it(
    server: Server, prefix: str
) -> None:
    """On Python 3.11, redis-py's ``asyncio.wait_for`` around a send drops a cancellation
    that lands as the send completes: the call returned normally, the task's loop went on,
    and ``stop()`` waited for ever (engine loops, senders). A call whose task was cancelled
    while it ran must end in CancelledError. Cancel at each point of a call."""
    queue = await _queue(server, prefix)
    try:
        returned_after_cancel: list[int] = []
        for turns in range(80):
            call = asyncio.create_task(queue.is_paused())
            for _ in range(turns):
                await asyncio.sleep(0)
            if not call.cancel():
                continue  # already finished: nothing to cancel
            try:
                await call
            except asyncio.CancelledError:
                continue
            returned_after_cancel.append(turns)
        assert returned_after_cancel == []
    finally:
        await queue.close()
