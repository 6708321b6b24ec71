"""The engine end to end: real ffmpeg, real SQLite store, fake GPU, injected clock and disk.

Every test drives a real :class:`Engine` and waits on its event bus (timeouts are failures).
Encodes that must be caught in the middle run through ``tests/nvenc_shim.py`` in realtime mode
(``-re``): the clip plays at its native rate, so the encode lasts as long as the clip. The
shim also makes the engine's NVENC command lines run on libx264, so the GPU temperature test
pauses a real encode that castui believes runs on the GPU.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from castui_core.bus import EventBus
from castui_core.decide import Action, decide
from castui_core.engine import Engine
from castui_core.events import (
    Event,
    GpuSample,
    GuardrailCleared,
    GuardrailTripped,
    JobFinished,
    JobNote,
    JobProgress,
    JobQueued,
    JobStarted,
    LogLine,
)
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.guardrails import FakeGpu, FreeSpace
from castui_core.layout import archive_path
from castui_core.probe import probe_pyav
from castui_core.profiles import DEFAULT_PROFILE
from castui_core.settings import Settings, parse_settings
from castui_core.store import Job, JobState, Store
from castui_core.tools import Tools
from castui_core.validate import validate_output

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"
SHIM = Path(__file__).with_name("nvenc_shim.py")
TIMEOUT_S = 30.0

pytestmark = pytest.mark.timeout(90)


# --- helpers -----------------------------------------------------------------------------------


class Recorder:
    """Everything one engine publishes, in order, consumed only by the test."""

    def __init__(self, bus: EventBus) -> None:
        self._sub = bus.subscribe()
        self.events: list[Event] = []

    async def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = TIMEOUT_S
    ) -> Event:
        """The next event matching ``predicate``; fails the test after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self._sub.get()
                    self.events.append(event)
                    if predicate(event):
                        return event
        except TimeoutError:
            shown = [e for e in self.events if not isinstance(e, GpuSample)]
            tail = "\n".join(repr(e) for e in shown[-25:])
            pytest.fail(f"no matching event within {timeout:g} s; last events:\n{tail}")

    async def during(self, seconds: float) -> list[Event]:
        """Every event published in the next ``seconds`` (an observation window)."""
        seen: list[Event] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                async with asyncio.timeout(left):
                    event = await self._sub.get()
            except TimeoutError:
                break
            self.events.append(event)
            seen.append(event)
        return seen

    def drain(self) -> list[Event]:
        """Events already published and not yet consumed."""
        got: list[Event] = []
        while (event := self._sub.get_nowait()) is not None:
            got.append(event)
        self.events.extend(got)
        return got

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def finished(path: Path | str, status: str | None = None) -> Callable[[Event], bool]:
    def match(e: Event) -> bool:
        return (
            isinstance(e, JobFinished)
            and e.path == str(path)
            and (status is None or e.status == status)
        )

    return match


def progress_of(path: Path | str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, JobProgress) and e.path == str(path)


def note(path: Path | str, prefix: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, JobNote) and e.path == str(path) and e.message.startswith(prefix)


def make_settings(
    tmp_path: Path,
    *,
    encoder: str = "cpu",
    min_free_gb: float = 0,
    max_jobs: int = 1,
    lease_seconds: float = 5,
    **guardrails: Any,
) -> Settings:
    data = {
        "database": f"{tmp_path}/state/castui.db",
        "libraries": [{"name": "Test", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"settle_seconds": 0.3, "probe_workers": 2},
        "service": {"lease_seconds": lease_seconds, "shutdown_grace_s": 0},
        "guardrails": {"sample_interval_s": 0.2, **guardrails},
        "operational": {
            "encoder": encoder,
            "min_free_gb": min_free_gb,
            "max_concurrent_jobs": max_jobs,
        },
    }
    return parse_settings(yaml.safe_dump(data))


def add_to_library(tmp_path: Path, source: Path, name: str) -> Path:
    """Copy a sample into the library, dated a minute back (settled: the scan queues it)."""
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    target = lib / name
    shutil.copy(source, target)
    past = time.time() - 60
    os.utime(target, (past, past))
    return target


def shim_tools(tmp_path: Path) -> Tools:
    """ffmpeg = the NVENC shim. Realtime (``CASTUI_SHIM_REALTIME=1``) applies to encodes only
    (they carry ``-progress``): castui's own integrity check of the output runs at full speed."""
    wrapper = tmp_path / "ffmpeg-shim"
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" -progress "*) ;; *) unset CASTUI_SHIM_REALTIME ;; esac\n'
        f'exec {sys.executable} {SHIM} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return Tools(ffmpeg=wrapper, ffprobe=Path(FFPROBE))


def real_tools() -> Tools:
    return Tools(ffmpeg=Path(FFMPEG), ffprobe=Path(FFPROBE))


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    defaults: dict[str, Any] = {
        "gpu": FakeGpu(),
        "nvenc": NvencStatus(available=False, reason="test: CPU only"),
        "tools": real_tools(),
        "watch": False,
        "scan_at_start": True,
        "idle_poll_s": 0.2,
    }
    return Engine(settings, **(defaults | kwargs))


def assert_cast_playable(path: Path, settings: Settings) -> None:
    assert path.is_file(), f"{path} was not written"
    info = probe_pyav(str(path))
    decision = decide(info, settings.profiles[DEFAULT_PROFILE])
    assert decision.action is Action.SKIP, decision.reasons


def castui_temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".castui-" in p.name)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def job_for(engine: Engine, path: Path) -> Job:
    for job in await engine.store.active_jobs():
        if job.path == str(path):
            return job
    for job in await engine.store.history(limit=1000):
        if job.path == str(path):
            return job
    raise AssertionError(f"no job for {path}")


async def wait_samples(gpu: FakeGpu, n: int) -> None:
    """Let the engine go round ``n`` guardrail samples (its clock, not a guessed sleep)."""
    target = gpu.samples + n
    async with asyncio.timeout(TIMEOUT_S):
        while gpu.samples < target:
            await asyncio.sleep(0.05)


def process_status(pid: int | None) -> str:
    assert pid is not None, "no ffmpeg is running for the job"
    return str(psutil.Process(pid).status())


async def wait_stopped(pid: int | None) -> None:
    """Wait until the kernel shows ``pid`` stopped: SIGSTOP takes effect when the process next
    runs, which on a loaded machine is after the engine has said "paused". The event loop
    cannot be told about process state, so it is polled, with a deadline."""
    async with asyncio.timeout(TIMEOUT_S):
        while process_status(pid) != psutil.STATUS_STOPPED:
            await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s MPEG-4/MP3 AVI (needs a transcode): long enough to act on a realtime encode."""
    out = tmp_path_factory.mktemp("clip") / "clip.avi"
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
            "-c:v", "mpeg4", "-c:a", "libmp3lame", str(out),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return out


@dataclass
class Clock:
    """A wall clock the test sets."""

    value: datetime

    def __call__(self) -> datetime:
        return self.value


# --- 1. the basic path -------------------------------------------------------------------------


async def test_transcode_and_remux_run_to_done(samples: dict[str, Path], tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    avi = add_to_library(tmp_path, samples["mpeg4.avi"], "movie.avi")
    mkv = add_to_library(tmp_path, samples["compliant.mkv"], "show.mkv")
    engine = make_engine(settings)
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        await engine.wait_idle()
    finally:
        await engine.stop()
    rec.drain()  # everything it published

    for source in (avi, mkv):
        assert_cast_playable(source.with_suffix(".mp4"), settings)
        # The default replace layout archived the original (delete_source is off).
        assert archive_path(settings.libraries[0].path, source).exists()
    async with Store.open(settings.database) as store:
        done = {j.path: j for j in await store.history(states=[JobState.DONE])}
        assert set(done) == {str(avi), str(mkv)}
        for source in (avi, mkv):
            result = done[str(source)].result
            assert result.output_path == str(source.with_suffix(".mp4"))
            archived = archive_path(settings.libraries[0].path, source)
            assert result.source_size == archived.stat().st_size
            assert result.output_size == source.with_suffix(".mp4").stat().st_size > 0
        assert done[str(avi)].action == "transcode"
        assert done[str(mkv)].action == "remux"
        assert await store.active_jobs() == []

    for kind in (JobQueued, JobStarted, JobProgress, JobFinished):
        assert rec.of(kind), f"no {kind.__name__} published"
    assert {e.path for e in rec.of(JobStarted)} == {str(avi), str(mkv)}
    assert {(e.path, e.status) for e in rec.of(JobFinished)} == {
        (str(avi), "done"),
        (str(mkv), "done"),
    }
    assert castui_temps(tmp_path / "lib") == []


# --- 2. GPU over-temperature pauses and resumes a real (shimmed NVENC) encode ------------------


async def test_hot_gpu_pauses_and_resumes_a_running_nvenc_encode(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")
    settings = make_settings(tmp_path, encoder="auto", gpu_max_temp_c=85, gpu_resume_temp_c=75)
    source = add_to_library(tmp_path, clip, "hot.avi")
    gpu = FakeGpu(temperature_c=60)
    engine = make_engine(
        settings,
        gpu=gpu,
        nvenc=NvencStatus(available=True, reason="test"),
        tools=shim_tools(tmp_path),
    )
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        started = await rec.wait_for(lambda e: isinstance(e, JobStarted) and e.path == str(source))
        assert isinstance(started, JobStarted)
        assert started.encoder == "h264_nvenc", "the job must run the NVENC path"
        await rec.wait_for(progress_of(source))

        gpu.set_temperature(90)
        await engine.guardrails.sample_now()
        tripped = await rec.wait_for(lambda e: isinstance(e, GuardrailTripped))
        assert isinstance(tripped, GuardrailTripped)
        assert tripped.name == "gpu0_temperature" and tripped.pauses_running
        paused = await rec.wait_for(note(source, "paused: "))
        assert isinstance(paused, JobNote)
        assert paused.message == "paused: GPU 0 at 90 °C ≥ 85 °C (resumes at 75)"
        pid = engine.converter.pid_of(str(source))
        await wait_stopped(pid)
        rec.drain()  # progress read from the pipe before the stop
        window = await rec.during(1.0)
        assert [e for e in window if isinstance(e, JobProgress)] == []
        assert process_status(pid) == psutil.STATUS_STOPPED
        assert (await job_for(engine, source)).state is JobState.RUNNING

        gpu.set_temperature(70)
        await engine.guardrails.sample_now()
        cleared = await rec.wait_for(lambda e: isinstance(e, GuardrailCleared))
        assert isinstance(cleared, GuardrailCleared) and cleared.name == "gpu0_temperature"
        await rec.wait_for(note(source, "resumed"))
        assert process_status(pid) != psutil.STATUS_STOPPED
        await rec.wait_for(progress_of(source))
        done = await rec.wait_for(finished(source))
        assert isinstance(done, JobFinished)
        assert done.status == "done", done.reason
        assert done.encoder == "h264_nvenc"
        await engine.wait_idle()
    finally:
        await engine.stop()
    assert_cast_playable(source.with_suffix(".mp4"), settings)
    async with Store.open(settings.database) as store:
        (job,) = await store.history(states=[JobState.DONE])
        assert job.attempts == 1
        kinds = [e.kind for e in await store.list_events(limit=1000)]
        assert "guardrail_tripped" in kinds and "guardrail_cleared" in kinds


# --- 3. disk guard with an injected free-space reader ------------------------------------------


async def test_disk_guard_waits_for_space_without_using_attempts(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    # 1 GB reserve (not 20): the converter re-checks the real disk before it encodes, and
    # that check must pass on a CI runner with little free space.
    settings = make_settings(tmp_path, min_free_gb=1)
    source = add_to_library(tmp_path, samples["mpeg4.avi"], "full.avi")
    free = {"bytes": 300_000_000}

    def free_space(path: Path) -> FreeSpace:
        return FreeSpace(free_bytes=free["bytes"], mount="/media")

    gpu = FakeGpu()
    engine = make_engine(settings, gpu=gpu, free_space=free_space)
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        tripped = await rec.wait_for(
            lambda e: isinstance(e, GuardrailTripped) and e.name.startswith("disk")
        )
        assert isinstance(tripped, GuardrailTripped)
        assert tripped.name == "disk:/media"
        assert tripped.reason.startswith("waiting: 300 MB free on /media < 1 GB"), tripped.reason

        await wait_samples(gpu, 5)  # the workers ask again after every sample
        job = await job_for(engine, source)
        for _ in range(20):  # a worker may hold it for a moment while it re-checks
            if job.state is JobState.QUEUED:
                break
            job = await job_for(engine, source)
        assert job.state is JobState.QUEUED
        assert job.attempts == 0
        rec.drain()
        assert rec.of(JobStarted) == []

        free["bytes"] = 500_000_000_000
        cleared = await rec.wait_for(
            lambda e: isinstance(e, GuardrailCleared) and e.name == "disk:/media"
        )
        assert isinstance(cleared, GuardrailCleared)
        assert "500 GB free on /media" in cleared.reason
        done = await rec.wait_for(finished(source))
        assert isinstance(done, JobFinished) and done.status == "done", done
        await engine.wait_idle()
        job = await job_for(engine, source)
        assert job.state is JobState.DONE and job.attempts == 1
    finally:
        await engine.stop()
    assert_cast_playable(source.with_suffix(".mp4"), settings)


async def test_converter_space_refusal_does_not_spin(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    """The guard says "fits" but the converter's own (real) check refuses: the engine hands
    the job back and waits for a guardrail sample, instead of claiming it again at once."""
    settings = make_settings(tmp_path, min_free_gb=1e9)  # a reserve no real disk has
    source = add_to_library(tmp_path, samples["mpeg4.avi"], "tight.avi")

    def free_space(path: Path) -> FreeSpace:
        return FreeSpace(free_bytes=10**19, mount="/media")

    engine = make_engine(settings, free_space=free_space)
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        first = await rec.wait_for(lambda e: isinstance(e, GuardrailTripped) and e.name == "disk")
        assert isinstance(first, GuardrailTripped) and first.reason.startswith("waiting: need ")
        window = await rec.during(1.0)
        job = await job_for(engine, source)
    finally:
        await engine.stop()
    refusals = [e for e in window if isinstance(e, JobFinished)]
    # One refusal per guardrail sample (0.2 s) at most, not a hot loop.
    assert len(refusals) <= 8, f"{len(refusals)} refusals in 1 s"
    assert job.attempts <= 1 and job.state in (JobState.QUEUED, JobState.RUNNING)
    assert not source.with_suffix(".mp4").exists()


# --- 4. schedule windows with an injected clock ------------------------------------------------


async def test_schedule_window_holds_work_until_it_opens(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, schedule=["01:00-07:00"])
    source = add_to_library(tmp_path, samples["mpeg4.avi"], "night.avi")
    clock = Clock(datetime(2024, 5, 1, 12, 0))
    gpu = FakeGpu()
    engine = make_engine(settings, gpu=gpu, now=clock)
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        tripped = await rec.wait_for(lambda e: isinstance(e, GuardrailTripped))
        assert isinstance(tripped, GuardrailTripped) and tripped.name == "schedule"
        assert "01:00–07:00" in tripped.reason and tripped.reason.startswith("waiting: ")
        assert not tripped.pauses_running
        await rec.wait_for(lambda e: isinstance(e, JobQueued) and e.path == str(source))
        await wait_samples(gpu, 5)
        assert [e for e in rec.drain() if isinstance(e, JobStarted)] == []
        job = await job_for(engine, source)
        assert job.state is JobState.QUEUED and job.attempts == 0

        clock.value = datetime(2024, 5, 2, 2, 0)
        await engine.guardrails.sample_now()
        await rec.wait_for(lambda e: isinstance(e, GuardrailCleared) and e.name == "schedule")
        done = await rec.wait_for(finished(source))
        assert isinstance(done, JobFinished) and done.status == "done", done
        await engine.wait_idle()
    finally:
        await engine.stop()
    assert_cast_playable(source.with_suffix(".mp4"), settings)


async def test_schedule_pause_stops_and_resumes_a_running_cpu_encode(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")
    settings = make_settings(tmp_path, schedule=["01:00-07:00"], outside_schedule="pause")
    source = add_to_library(tmp_path, clip, "window.avi")
    clock = Clock(datetime(2024, 5, 1, 2, 0))
    engine = make_engine(settings, now=clock, tools=shim_tools(tmp_path))
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        started = await rec.wait_for(lambda e: isinstance(e, JobStarted))
        assert isinstance(started, JobStarted) and started.encoder == "libx264"
        await rec.wait_for(progress_of(source))

        clock.value = datetime(2024, 5, 1, 7, 30)
        await engine.guardrails.sample_now()
        tripped = await rec.wait_for(lambda e: isinstance(e, GuardrailTripped))
        assert isinstance(tripped, GuardrailTripped)
        assert tripped.name == "schedule" and tripped.pauses_running
        assert tripped.reason.startswith("paused: outside processing window 01:00–07:00")
        paused = await rec.wait_for(note(source, "paused: "))
        assert isinstance(paused, JobNote)
        assert paused.message == tripped.reason  # "paused: outside ...", said once
        pid = engine.converter.pid_of(str(source))
        await wait_stopped(pid)
        rec.drain()
        window = await rec.during(1.0)
        assert [e for e in window if isinstance(e, JobProgress)] == []
        assert process_status(pid) == psutil.STATUS_STOPPED

        clock.value = datetime(2024, 5, 2, 1, 0)  # the next window opens
        await engine.guardrails.sample_now()
        await rec.wait_for(lambda e: isinstance(e, GuardrailCleared) and e.name == "schedule")
        await rec.wait_for(note(source, "resumed"))
        done = await rec.wait_for(finished(source))
        assert isinstance(done, JobFinished) and done.status == "done", done
        await engine.wait_idle()
    finally:
        await engine.stop()
    assert_cast_playable(source.with_suffix(".mp4"), settings)


# --- 5. two engines on one database ------------------------------------------------------------


async def test_two_engines_on_one_database_never_run_the_same_job(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    # A long lease: on a loaded machine a late heartbeat must not hand a job over (that is
    # correct behaviour, but not what this test is about).
    settings = make_settings(tmp_path, max_jobs=2, lease_seconds=30)
    sources = [add_to_library(tmp_path, samples["mpeg4.avi"], f"avi{i}.avi") for i in range(3)] + [
        add_to_library(tmp_path, samples["compliant.mkv"], f"mkv{i}.mkv") for i in range(3)
    ]
    engines = [make_engine(settings), make_engine(settings)]  # same owner name, too
    recs = [Recorder(e.bus) for e in engines]
    try:
        # One after the other: the second one's scan finds everything catalogued (start-up
        # scans that overlap are the next test). Four workers then race for six jobs.
        await engines[0].start()
        assert engines[0].ingest is not None
        await engines[0].ingest.wait_scans()
        await engines[1].start()
        await asyncio.gather(*(e.wait_idle() for e in engines))
    finally:
        await asyncio.gather(*(e.stop() for e in engines))
    for rec in recs:
        rec.drain()
    starts = [e.path for rec in recs for e in rec.of(JobStarted)]
    counts = {str(s): starts.count(str(s)) for s in sources}
    async with Store.open(settings.database) as store:
        jobs = await store.history(limit=100)
        # Seen once in a full run (a file never started; not reproduced in 46 runs since):
        # what each engine said and what the queue holds, to find out why if it recurs.
        said = [
            f"engine {i}: {e!r}"[:300]
            for i, rec in enumerate(recs)
            for e in rec.events
            if not isinstance(e, GpuSample | JobProgress)
        ]
        queue = [(j.path, j.state, j.attempts, j.reason) for j in jobs + await store.active_jobs()]
        assert counts == {str(s): 1 for s in sources}, "\n".join(
            [str(counts), *map(str, queue), *said]
        )
        assert sorted((j.path, j.state, j.attempts) for j in jobs) == sorted(
            (str(s), JobState.DONE, 1) for s in sources
        )
        assert await store.active_jobs() == []
    for s in sources:
        assert_cast_playable(s.with_suffix(".mp4"), settings)


async def test_overlapping_start_up_scans_do_not_queue_a_running_file_again(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines started at the same moment both read an empty catalog; the second one's
    scan lands while the first one already converts the file (forced here, by chance else)."""
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")
    settings = make_settings(tmp_path)
    source = add_to_library(tmp_path, clip, "both.avi")
    async with Store.open(settings.database):
        pass  # created beforehand: see the report on concurrent first opens
    tools = shim_tools(tmp_path)
    first, second = make_engine(settings, tools=tools), make_engine(settings, tools=tools)
    recs = [Recorder(first.bus), Recorder(second.bus)]
    both_read = asyncio.Barrier(2)
    first_started = asyncio.Event()
    real_fingerprints, real_enqueue = Store.fingerprints, Store.enqueue_many

    async def fingerprints(self: Store, library: str | None = None) -> Any:
        known = await real_fingerprints(self, library)
        await both_read.wait()  # neither scan records anything before both have read
        return known

    async def enqueue_many(self: Store, items: Any) -> Any:
        if self is second.store:
            await first_started.wait()
        return await real_enqueue(self, items)

    monkeypatch.setattr(Store, "fingerprints", fingerprints)
    monkeypatch.setattr(Store, "enqueue_many", enqueue_many)

    async def done_by(rec: Recorder) -> None:
        await rec.wait_for(lambda e: isinstance(e, JobStarted))
        first_started.set()  # either engine may have claimed it
        await rec.wait_for(finished(source, "done"))

    try:
        await asyncio.gather(first.start(), second.start())
        runs = [asyncio.create_task(done_by(rec)) for rec in recs]
        finished_runs, pending = await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in finished_runs:
            task.result()
        await asyncio.gather(*(e.wait_idle() for e in (first, second)))
    finally:
        await asyncio.gather(first.stop(), second.stop())
    async with Store.open(settings.database) as store:
        jobs = await store.history(limit=100)
        assert [(j.path, j.state) for j in jobs] == [(str(source), JobState.DONE)], [
            (j.state, j.reason) for j in jobs
        ]


# --- 6. cancel and retry -----------------------------------------------------------------------


async def test_cancel_a_running_job_then_retry_it(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")
    settings = make_settings(tmp_path)
    source = add_to_library(tmp_path, clip, "cancel.avi")
    before = digest(source)
    engine = make_engine(settings, tools=shim_tools(tmp_path))
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        await rec.wait_for(progress_of(source))
        job = await job_for(engine, source)
        assert job.state is JobState.RUNNING
        pid = engine.converter.pid_of(str(source))
        assert pid is not None
        await engine.cancel_job(job.id)
        cancelled = await rec.wait_for(finished(source))
        assert isinstance(cancelled, JobFinished)
        assert cancelled.status == "cancelled", cancelled
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        job = await job_for(engine, source)
        assert job.state is JobState.CANCELLED
        assert castui_temps(tmp_path / "lib") == []
        assert not source.with_suffix(".mp4").exists()
        assert digest(source) == before

        monkeypatch.delenv("CASTUI_SHIM_REALTIME")  # the retry may run at full speed
        await engine.retry_job(job.id)
        done = await rec.wait_for(finished(source))
        assert isinstance(done, JobFinished) and done.status == "done", done
        await engine.wait_idle()
        job = await job_for(engine, source)
        assert job.state is JobState.DONE
    finally:
        await engine.stop()
    assert_cast_playable(source.with_suffix(".mp4"), settings)
    assert digest(archive_path(settings.libraries[0].path, source)) == before  # archived
    assert castui_temps(tmp_path / "lib") == []


# --- 7. lease fencing --------------------------------------------------------------------------


async def take_over(database: Path, owner: str = "intruder") -> int:
    """Another castui, whose clock says the lease ran out long ago, takes the job over."""
    async with Store.open(database, clock=lambda: time.time() + 3600, lease_seconds=5) as other:
        claimed = await other.claim(owner)
        assert claimed is not None, "the takeover found no job to claim"
        return claimed.id


async def test_lease_lost_while_encoding_never_places_the_output(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")
    settings = make_settings(tmp_path)
    source = add_to_library(tmp_path, clip, "fenced.avi")
    before = digest(source)
    engine = make_engine(settings, tools=shim_tools(tmp_path))
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        await rec.wait_for(progress_of(source))
        job_id = await take_over(settings.database)
        # The heartbeat (every lease/3 s) finds the lease gone and stops ffmpeg mid-encode
        # (the 4 s realtime encode is cancelled, not left to run into the pre-swap check).
        ended = await rec.wait_for(finished(source))
        assert isinstance(ended, JobFinished) and ended.status == "cancelled", ended
        assert ended.seconds < 3.5
        log = await rec.wait_for(lambda e: isinstance(e, LogLine) and "lease lost" in e.message)
        assert isinstance(log, LogLine) and log.level == "warning"
        job = await engine.store.get_job(job_id)
        assert job.state is JobState.RUNNING and job.lease_owner == "intruder"
        assert not engine.running
    finally:
        await engine.stop()
    assert not source.with_suffix(".mp4").exists()
    assert castui_temps(tmp_path / "lib") == []
    assert digest(source) == before
    with sqlite3.connect(settings.database) as db:  # the engine wrote nothing after the loss
        (state, owner) = db.execute(
            "SELECT state, lease_owner FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    assert (state, owner) == ("running", "intruder")


async def test_lease_lost_before_the_swap_never_places_the_output(
    samples: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken over after the encode, while validating: the fenced check right before the swap
    (``before_commit``) stops it, whatever the heartbeat timer did."""
    settings = make_settings(tmp_path)
    source = add_to_library(tmp_path, samples["mpeg4.avi"], "late.avi")
    before = digest(source)
    taken: list[int] = []

    async def validate_then_lose_lease(*args: Any, **kwargs: Any) -> Any:
        report = await validate_output(*args, **kwargs)
        taken.append(await take_over(settings.database))
        return report

    monkeypatch.setattr("castui_core.convert.validate_output", validate_then_lose_lease)
    engine = make_engine(settings)
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        ended = await rec.wait_for(finished(source))
        assert isinstance(ended, JobFinished) and ended.status != "done", ended
        await rec.wait_for(lambda e: isinstance(e, LogLine) and "lease lost" in e.message)
        assert taken
        job = await engine.store.get_job(taken[0])
        assert job.state is JobState.RUNNING and job.lease_owner == "intruder"
    finally:
        await engine.stop()
    assert not source.with_suffix(".mp4").exists()
    assert castui_temps(tmp_path / "lib") == []
    assert digest(source) == before
