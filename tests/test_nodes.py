"""Nodes end to end (issue 13): two engines as two hosts share one queue and convert a library
of real files with the real ffmpeg, each file exactly once.

On SQLite the "hosts" share the queue database file (each keeps its own local store, as two
machines would); the worker sees the library through a symlinked folder and a ``path_map``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from cli_helpers import castui_env, run_castui
from engine_helpers import place_settled, wait_event

from castui_core.engine import Engine
from castui_core.events import JobFinished, JobQueued, JobStateChanged, LogLine
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.guardrails import FakeGpu
from castui_core.metrics import Metrics
from castui_core.nodes import node_of_owner
from castui_core.queue.open import open_queue
from castui_core.settings import Settings, parse_settings
from castui_core.store import JobState, Store
from castui_core.tools import Tools

FFMPEG = Path(shutil.which("ffmpeg") or "ffmpeg")
FFPROBE = Path(shutil.which("ffprobe") or "ffprobe")
SHIM = Path(__file__).with_name("nvenc_shim.py")
FILES = {"a.mkv": "compliant.mkv", "b.avi": "mpeg4.avi", "c.mkv": "high10.mkv"}


def node_settings(
    tmp_path: Path,
    state: str,
    node: dict[str, Any],
    queue: dict[str, Any] | None = None,
    *,
    lease_seconds: float = 5,
    **guardrails: Any,
) -> Settings:
    data = {
        "queue": queue or {"backend": "sqlite"},
        "database": f"{tmp_path}/{state}/castui.db",
        "libraries": [{"name": "Test", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"settle_seconds": 0.3, "probe_workers": 1},
        "service": {"lease_seconds": lease_seconds, "shutdown_grace_s": 0},
        "guardrails": {"sample_interval_s": 0.2, **guardrails},
        "operational": {"encoder": "cpu", "min_free_gb": 0, "max_concurrent_jobs": 1},
        "node": node,
    }
    return parse_settings(yaml.safe_dump(data))


def library(tmp_path: Path, samples: dict[str, Path]) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    past = time.time() - 60
    for name, sample in FILES.items():
        shutil.copy(samples[sample], lib / name)
        os.utime(lib / name, (past, past))
    return lib


def engine(settings: Settings, **kwargs: Any) -> Engine:
    defaults: dict[str, Any] = {
        "gpu": FakeGpu(),
        "nvenc": NvencStatus(available=False, reason="test: CPU only"),
        "tools": Tools(ffmpeg=FFMPEG, ffprobe=FFPROBE),
        "watch": False,
        "idle_poll_s": 0.2,
        "node_heartbeat_s": 0.2,
    }
    return Engine(settings, **(defaults | kwargs))


@asynccontextmanager
async def running(*engines: Engine) -> AsyncIterator[None]:
    started: list[Engine] = []
    try:
        for e in engines:
            await e.start()
            started.append(e)
        yield
    finally:
        for e in reversed(started):
            await e.stop()


async def finished_paths(engines: list[Engine], count: int, timeout: float = 120) -> list[str]:
    """Paths of the first ``count`` JobFinished events across ``engines``' buses."""
    subs = [e.bus.subscribe() for e in engines]
    seen: list[str] = []
    done = asyncio.Event()

    async def watch(sub: Any) -> None:
        async for event in sub:
            if isinstance(event, JobFinished):
                seen.append(event.path)
                if len(seen) >= count:
                    done.set()

    tasks = [asyncio.create_task(watch(s)) for s in subs]
    try:
        async with asyncio.timeout(timeout):
            await done.wait()
    finally:
        for t in tasks:
            t.cancel()
        for s in subs:
            s.close()
    return seen


async def test_worker_node_converts_through_its_path_map_while_the_library_host_is_held(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    lib = library(tmp_path, samples)
    mount = tmp_path / "mnt"
    mount.symlink_to(lib, target_is_directory=True)
    # The library host scans but claims nothing: its schedule window is closed (its clock says
    # noon), a per-node guard: the jobs are left for the worker, whose guards are clear.
    host = engine(
        node_settings(tmp_path, "nas", {"name": "nas"}, schedule=["01:00-07:00"]),
        now=lambda: datetime(2024, 5, 1, 12, 0),
    )
    shared = await Store.connect(tmp_path / "nas" / "castui.db", lease_seconds=5)
    worker = engine(
        node_settings(
            tmp_path, "gpu", {"name": "gpu", "role": "worker", "path_map": {str(lib): str(mount)}}
        ),
        queue=shared,
    )
    try:
        async with running(worker, host):
            assert worker.ingest is None and worker.jellyfin is None  # role worker: no ingest
            paths = await finished_paths([host, worker], len(FILES))
            history = await shared.history()
            nodes = {n.name: n for n in await shared.nodes()}
    finally:
        await shared.close()
    # The worker touched the files through its mount ...
    assert sorted(paths) == sorted(str(mount / n) for n in FILES)
    # ... and the queue speaks the library host's paths: each job once, by the worker.
    assert sorted(j.path for j in history) == sorted(str(lib / n) for n in FILES)
    for job in history:
        assert job.state is JobState.DONE, job
        assert job.attempts == 1
        assert node_of_owner(job.lease_owner) == "gpu", job.lease_owner
        assert job.result.output_path is not None
        assert job.result.output_path.startswith(str(lib) + "/"), job.result.output_path
        assert Path(job.result.output_path).is_file()
    assert nodes["gpu"].role == "worker" and nodes["nas"].role == "all"
    assert nodes["nas"].guard is not None and "01:00" in nodes["nas"].guard


async def test_two_nodes_share_a_library_and_convert_each_file_once(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    lib = library(tmp_path, samples)
    shared = await Store.connect(tmp_path / "one" / "castui.db", lease_seconds=5)
    one = engine(node_settings(tmp_path, "one", {"name": "one"}))
    two = engine(node_settings(tmp_path, "two", {"name": "two", "role": "worker"}), queue=shared)
    try:
        async with running(two, one):
            paths = await finished_paths([one, two], len(FILES))
            await one.wait_idle()
            history = await shared.history()
    finally:
        await shared.close()
    assert sorted(paths) == sorted(str(lib / n) for n in FILES)  # no file finished twice
    assert len(history) == len(FILES)
    assert all(j.state is JobState.DONE and j.attempts == 1 for j in history), history
    assert {node_of_owner(j.lease_owner) for j in history} <= {"one", "two"}


async def test_a_node_whose_path_map_misses_the_library_refuses_to_claim(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    lib = library(tmp_path, samples)
    gone = tmp_path / "not-mounted"
    host = engine(
        node_settings(tmp_path, "nas", {"name": "nas"}, schedule=["01:00-07:00"]),
        now=lambda: datetime(2024, 5, 1, 12, 0),
    )
    shared = await Store.connect(tmp_path / "nas" / "castui.db", lease_seconds=5)
    worker = engine(
        node_settings(
            tmp_path, "gpu", {"name": "gpu", "role": "worker", "path_map": {str(lib): str(gone)}}
        ),
        queue=shared,
    )
    log = worker.bus.subscribe()
    try:
        async with running(host, worker):
            assert host.ingest is not None
            await host.ingest.wait_scans()  # the scan queued the library (nobody claims)
            line = await wait_event(
                log, lambda e: isinstance(e, LogLine) and "claims no jobs" in e.message
            )
            assert isinstance(line, LogLine)
            assert "'Test'" in line.message and str(gone) in line.message
            assert "node.path_map" in line.message
            # A second later (five heartbeats, several idle polls) still nothing is claimed,
            # and the nodes table says why.
            until = time.time() + 1.0
            async with asyncio.timeout(30):
                while not any(
                    n.name == "gpu" and n.last_seen > until for n in await shared.nodes()
                ):
                    await worker.wait_heartbeat()
            jobs = await shared.active_jobs()
            nodes = {n.name: n for n in await shared.nodes()}
    finally:
        log.close()
        await shared.close()
    assert len(jobs) == len(FILES)
    assert all(j.state is JobState.QUEUED and j.attempts == 0 for j in jobs), jobs
    assert nodes["gpu"].guard is not None and str(gone) in nodes["gpu"].guard


async def test_a_map_onto_the_wrong_folder_refuses_and_reloads_recheck_the_node(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    """The worker's map points at a folder that exists (the root check passes) but does not
    hold the library: the files the queue knows are not there, so it refuses with the file and
    the mapping. A reload with the right map lets it claim; a reload with a broken one stops
    it claiming again, with the message."""
    lib = tmp_path / "lib"
    place_settled(samples["compliant.mkv"], lib / "a.mkv")
    mount = tmp_path / "mnt"
    mount.symlink_to(lib, target_is_directory=True)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    host = engine(  # scans; its closed schedule leaves every job to the worker
        node_settings(tmp_path, "nas", {"name": "nas"}, schedule=["01:00-07:00"]),
        now=lambda: datetime(2024, 5, 1, 12, 0),
    )
    shared = await Store.connect(tmp_path / "nas" / "castui.db", lease_seconds=5)

    def worker_settings(target: Path) -> Settings:
        node = {"name": "gpu", "role": "worker", "path_map": {str(lib): str(target)}}
        return node_settings(tmp_path, "gpu", node)

    worker = engine(worker_settings(wrong), queue=shared)
    log = worker.bus.subscribe()
    try:
        async with running(host):
            assert host.ingest is not None
            await host.ingest.wait_scans()  # the queue knows a.mkv now
            async with running(worker):
                assert worker.refusal is not None, "the worker claims through a wrong map"
                assert str(wrong / "a.mkv") in worker.refusal  # the file it looked for
                assert f"{lib} -> {wrong}" in worker.refusal  # and the mapping used
                await wait_event(
                    log, lambda e: isinstance(e, LogLine) and "claims no jobs" in e.message
                )
                assert [j.state for j in await shared.active_jobs()] == [JobState.QUEUED]

                await worker.reload(worker_settings(mount))  # fixed: it claims now
                assert worker.refusal is None
                await wait_event(
                    log, lambda e: isinstance(e, LogLine) and "claims jobs again" in e.message
                )
                await wait_event(
                    log,
                    lambda e: isinstance(e, JobFinished) and e.status == "done",
                    timeout=120,
                )

                await worker.reload(worker_settings(wrong))  # broken again: it stops
                assert worker.refusal is not None and str(wrong / "a.mp4") in worker.refusal
                place_settled(samples["mpeg4.avi"], lib / "b.avi")
                await host.scan("Test")
                (queued,) = await shared.active_jobs()
                # Five heartbeats later (several idle polls) it is still not claimed, and the
                # nodes table says why.
                for _ in range(5):
                    await worker.wait_heartbeat()
                nodes = {n.name: n for n in await shared.nodes()}
                after = await shared.get_job(queued.id)
    finally:
        log.close()
        await shared.close()
    assert after.state is JobState.QUEUED and after.attempts == 0, after
    assert nodes["gpu"].guard is not None and str(wrong) in nodes["gpu"].guard


async def test_metrics_carry_the_node_label_and_every_nodes_last_heartbeat(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    library(tmp_path, samples)
    nas = engine(
        node_settings(tmp_path, "nas", {"name": "nas"}, schedule=["01:00-07:00"]),
        now=lambda: datetime(2024, 5, 1, 12, 0),
    )
    metrics = Metrics(nas.bus, node="nas")
    try:
        async with running(nas):
            await nas.wait_heartbeat()
            metrics.serve("127.0.0.1:0", nas, refresh_s=0.1)
            url = f"http://127.0.0.1:{metrics.port}/metrics"
            async with asyncio.timeout(30):
                while True:
                    text = await asyncio.to_thread(_get, url)
                    if "castui_node_last_seen_seconds{" in text:
                        break
                    await nas.wait_heartbeat()
    finally:
        metrics.close()
    assert 'castui_queue_jobs{node="nas",state="queued"}' in text or (
        'castui_queue_jobs{state="queued",node="nas"}' in text
    ), text
    seen = [line for line in text.splitlines() if line.startswith("castui_node_last_seen_seconds{")]
    assert len(seen) == 1 and 'seen_node="nas"' in seen[0] and 'role="all"' in seen[0], seen
    assert abs(float(seen[0].rsplit(" ", 1)[1]) - time.time()) < 30
    assert 'castui_node_claiming{node="nas"} 1.0' in text


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


async def test_a_worker_without_nvenc_leaves_nvenc_jobs_to_another_node(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    settings = node_settings(tmp_path, "gpu", {"name": "gpu", "role": "worker"})
    settings = settings.model_copy(
        update={"operational": settings.operational.model_copy(update={"encoder": "nvenc"})}
    )
    worker = engine(settings, nvenc=NvencStatus(available=False, reason="no NVIDIA driver"))
    async with running(worker):
        await worker.wait_heartbeat()
        nodes = await worker.queue.nodes()
    assert worker.refusal is not None and "no NVIDIA driver" in worker.refusal
    assert [n.guard for n in nodes] == [worker.refusal]


# --- the same on a shared Redis (tests/redis_server.py: a real redis-server) ------------------


async def test_two_nodes_on_redis_convert_each_file_once_through_a_path_map(
    samples: dict[str, Path], tmp_path: Path, redis_url: str
) -> None:
    lib = library(tmp_path, samples)
    mount = tmp_path / "mnt"
    mount.symlink_to(lib, target_is_directory=True)
    queue = {"backend": "redis", "url": redis_url}
    host = engine(node_settings(tmp_path, "nas", {"name": "nas"}, queue))
    worker = engine(
        node_settings(
            tmp_path,
            "gpu",
            {"name": "gpu", "role": "worker", "path_map": {str(lib): str(mount)}},
            queue,
        )
    )
    async with running(worker, host):
        assert type(host.queue).__name__ == "RedisQueue" and host.queue is not host.store
        paths = await finished_paths([host, worker], len(FILES))
        history = await host.queue.history()
        nodes = {n.name: n for n in await host.queue.nodes()}
    assert len(paths) == len(FILES)  # each file finished once, on one node or the other
    assert sorted(j.path for j in history) == sorted(str(lib / n) for n in FILES)
    assert all(j.state is JobState.DONE and j.attempts == 1 for j in history), history
    for job in history:
        assert job.result.output_path and job.result.output_path.startswith(str(lib) + "/")
    assert set(nodes) == {"nas", "gpu"} and nodes["gpu"].role == "worker"


async def test_redis_stopped_during_a_run_then_started_the_run_completes(
    samples: dict[str, Path], tmp_path: Path, redis_url: str, redis_server: Any
) -> None:
    lib = library(tmp_path, samples)
    queue = {"backend": "redis", "url": redis_url}
    host = engine(node_settings(tmp_path, "nas", {"name": "nas"}, queue))
    worker = engine(node_settings(tmp_path, "gpu", {"name": "gpu", "role": "worker"}, queue))
    subs = [host.bus.subscribe(), worker.bus.subscribe()]
    try:
        async with running(worker, host):
            await wait_event(subs[0], lambda e: isinstance(e, JobQueued))
            await asyncio.to_thread(redis_server.stop)
            down = await wait_event(
                subs[1],
                lambda e: isinstance(e, LogLine) and e.message.startswith("queue unreachable: "),
            )
            assert isinstance(down, LogLine)
            await asyncio.to_thread(redis_server.start)
            await wait_event(
                subs[1], lambda e: isinstance(e, LogLine) and "queue reachable again" in e.message
            )
            async with asyncio.timeout(120):
                while len(history := await host.queue.history()) < len(FILES):
                    await host.wait_heartbeat()
    finally:
        for sub in subs:
            sub.close()
    assert sorted(j.path for j in history) == sorted(str(lib / n) for n in FILES)
    assert all(j.state is JobState.DONE for j in history), history


#: The kill -9 test's lease: short, so the survivor waits little for it, yet three heartbeats
#: (one a second) long, so a loaded machine does not lose it before the kill.
KILL9_LEASE_S = 3


@pytest.mark.timeout(400)  # above the phases' own limits, so a stall fails with their report
async def test_a_node_killed_mid_encode_leaves_the_job_to_another_after_its_lease(
    tmp_path: Path, redis_url: str
) -> None:
    """``castui --no-ui`` (a real process, node "doomed") is SIGKILLed while it encodes; the
    other node reclaims the job once the lease has expired and finishes it.

    Each phase waits on what it needs (a line from doomed, a state in the queue, an event on
    the survivor's bus) with its own limit, and a phase that stalls fails with what each node
    did: doomed's log, the job's audit trail, the nodes table and the survivor's events."""
    lib = tmp_path / "lib"
    lib.mkdir()
    source = lib / "long.avi"
    subprocess.run(
        [
            str(FFMPEG), "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=8",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=8",
            "-c:v", "mpeg4", "-c:a", "libmp3lame", str(source),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    past = time.time() - 60
    os.utime(source, (past, past))
    shim = tmp_path / "ffmpeg-shim"  # realtime encodes: the kill lands mid-encode
    shim.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -progress "*) ;; *) unset CASTUI_SHIM_REALTIME ;; esac\n'
        f'exec {sys.executable} {SHIM} "$@"\n'
    )
    shim.chmod(0o755)
    queue = {"backend": "redis", "url": redis_url}
    doomed = node_settings(
        tmp_path, "doomed", {"name": "doomed"}, queue, lease_seconds=KILL9_LEASE_S
    ).model_dump(mode="json")
    doomed.pop("source", None)
    doomed["ffmpeg"], doomed["ffprobe"] = str(shim), str(FFPROBE)
    doomed["operational"]["encoder"] = "cpu"
    config = tmp_path / "doomed.yaml"
    config.write_text(yaml.safe_dump(_settings_file(doomed, queue)))
    home = tmp_path / "home"
    home.mkdir()
    survivor = engine(
        node_settings(
            tmp_path, "survivor", {"name": "survivor"}, queue, lease_seconds=KILL9_LEASE_S
        )
    )
    doomed_log: list[str] = []
    seen: list[object] = []

    async def report(phase: str) -> str:
        """What each node did, for a failure message."""
        lines = [f"stalled {phase}", "doomed's log (last 40 lines):", *doomed_log[-40:]]
        try:
            q = survivor.queue  # AttributeError before the survivor started
            for job in [*await q.active_jobs(), *await q.history()]:
                lines.append(f"job #{job.id} {job.state.value} owner={job.lease_owner}")
                for e in reversed(await q.list_events(job_id=job.id, limit=50)):
                    lines.append(f"  {e.actor}: {e.from_state}->{e.to_state} {e.reason}")
            for n in await q.nodes():
                lines.append(f"node {n.name}: jobs={n.current_jobs} guard={n.guard}")
        except Exception as exc:  # the report must not hide the stall
            lines.append(f"(queue not readable: {exc})")
        lines.append("survivor's events (last 30):")
        lines += [repr(e) for e in seen[-30:]]
        return "\n".join(lines)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "castui", "--no-ui", "--config", str(config),
        env=castui_env(home, CASTUI_SHIM_REALTIME="1"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    encoders: list[psutil.Process] = []
    commands: list[str] = []
    try:
        assert proc.stderr is not None
        # Phase 1: doomed encodes. Its first progress line comes from ffmpeg itself, so the
        # encoder process exists and is found among doomed's children for the kill.
        try:
            async with asyncio.timeout(120):
                while not any(f"progress {source}" in line for line in doomed_log):
                    raw = await proc.stderr.readline()
                    if not raw:
                        pytest.fail(f"doomed exited:\n{await report('starting doomed')}")
                    doomed_log.append(raw.decode(errors="replace").rstrip("\n"))
        except TimeoutError:
            pytest.fail(await report("waiting for doomed's encode to report progress"))
        encoders = psutil.Process(proc.pid).children(recursive=True)
        commands = [" ".join(_cmdline(c)) for c in encoders]
    finally:
        proc.kill()  # SIGKILL: no hand-back, the lease stays until it expires
        await proc.wait()
    for child in encoders:  # a crashed host's encoder dies with it
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    _gone, alive = await asyncio.to_thread(psutil.wait_procs, encoders, 30)
    assert any(str(source) in c for c in commands), commands  # the encoder was among them
    assert alive == [], alive

    sub = survivor.bus.subscribe()

    async def until(phase: str, predicate: Any, timeout: float) -> object:
        def matches(e: object) -> bool:
            seen.append(e)
            return bool(predicate(e))

        try:
            return await wait_event(sub, matches, timeout=timeout)
        except TimeoutError:
            pytest.fail(await report(phase))

    try:
        async with running(survivor):
            # Phase 2: the survivor claims the job once doomed's lease expired.
            await until(
                "waiting for the survivor to claim the job after doomed's lease",
                lambda e: (
                    isinstance(e, JobStateChanged)
                    and e.new == "running"
                    and e.actor.startswith("survivor:")
                ),
                KILL9_LEASE_S + 60,
            )
            # Phase 3: it finishes it.
            done = await until(
                "waiting for the survivor to finish the job",
                lambda e: isinstance(e, JobFinished) and e.status == "done",
                180,
            )
            history = await survivor.queue.history()
            events = await survivor.queue.list_events(job_id=history[0].id, limit=50)
    finally:
        sub.close()
    assert isinstance(done, JobFinished) and done.path == str(source)
    assert len(history) == 1 and history[0].state is JobState.DONE
    assert node_of_owner(history[0].lease_owner) == "survivor"
    assert any("doomed" in (e.actor or "") for e in events), events  # doomed had claimed it
    assert any("expired" in (e.reason or "") for e in events), events
    assert Path(history[0].result.output_path or "").is_file()


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _settings_file(data: dict[str, Any], queue: dict[str, Any]) -> dict[str, Any]:
    """A settings dict as a file would hold it: the queue as given (the dump hides the URL, a
    secret), unset values left out."""
    out = {k: v for k, v in data.items() if v not in (None, {}, [])}
    out["queue"] = queue
    return out


async def test_castui_queue_and_retry_read_the_shared_redis_queue(
    tmp_path: Path, redis_url: str
) -> None:
    """The CLI views open the queue the settings name: on Redis they show its jobs, not this
    host's (empty) database."""
    config = tmp_path / "castui.yaml"
    settings_data = {
        "database": f"{tmp_path}/state/castui.db",
        "queue": {"backend": "redis", "url": redis_url},
    }
    config.write_text(yaml.safe_dump(settings_data))
    settings = parse_settings(yaml.safe_dump(settings_data))
    (tmp_path / "state").mkdir()
    async with Store.open(settings.database) as store:
        queue = await open_queue(settings, store)
        try:
            await queue.enqueue("/media/x.avi", "Films", "transcode", ("mpeg4",))
        finally:
            await queue.close()
    home = tmp_path / "home"
    home.mkdir()
    shown = await asyncio.to_thread(
        run_castui, "queue", "--json", "--config", str(config), home=home
    )
    assert shown.returncode == 0, shown.stderr
    jobs = json.loads(shown.stdout)
    assert [j["path"] for j in jobs] == ["/media/x.avi"], jobs


async def test_one_host_whose_newest_files_were_deleted_still_claims(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    """On one host (local queue, no path map) the expected-files check must not run: files the
    owner deleted since their jobs ran (a folder removed, an upgrade renamed) stopped the
    whole node from claiming ("mount the library there"), though nothing was mounted wrong."""
    lib = tmp_path / "lib"
    place_settled(samples["compliant.mkv"], lib / "gone.mkv")
    settings = node_settings(tmp_path, "one", {"name": "one"})
    first = engine(settings)
    log = first.bus.subscribe()
    try:
        async with running(first):
            await wait_event(
                log, lambda e: isinstance(e, JobFinished) and e.status == "done", timeout=120
            )
    finally:
        log.close()
    for leftover in list(lib.iterdir()):  # the owner deletes the converted file, its original
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    place_settled(samples["mpeg4.avi"], lib / "new.avi")
    again = engine(settings)
    log = again.bus.subscribe()
    try:
        async with running(again):
            assert again.refusal is None, again.refusal
            await wait_event(
                log, lambda e: isinstance(e, JobFinished) and e.status == "done", timeout=120
            )
    finally:
        log.close()
