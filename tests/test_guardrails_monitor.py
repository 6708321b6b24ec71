"""The guardrail monitor with a fake GPU, injected clock/now/free space, and real psutil.

No sleeps: tests drive samples with ``sample_now()`` or wait on ``wait_change`` with timeouts.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from castui_core.bus import EventBus, Subscription
from castui_core.events import Event, GpuSample, GuardrailCleared, GuardrailTripped, LogLine
from castui_core.fsinfo import filesystem_of
from castui_core.guardrails import (
    FakeGpu,
    FreeSpace,
    Guardrails,
    JobNeeds,
    LoadReading,
    NoGpu,
    PsutilLoad,
    open_gpu_backend,
)
from castui_core.settings import GuardrailSettings

GB = 1_000_000_000
QUIET = 300.0  # sample interval long enough that the timer never fires during a test


def settings(**kw: Any) -> GuardrailSettings:
    kw.setdefault("sample_interval_s", QUIET)
    return GuardrailSettings(**kw)


def drain(sub: Subscription) -> list[Event]:
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    return events


def guard_events(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, GuardrailTripped | GuardrailCleared)]


class Recorder:
    """The engine's on_change hook: what would go to the audit log."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    async def __call__(self, name: str, reason: str | None) -> None:
        self.calls.append((name, reason))


def plenty(path: Path) -> FreeSpace:
    return FreeSpace(1000 * GB, "/media")


def quiet_load() -> LoadReading:
    return LoadReading(10.0, 20.0)


def make(gpu: Any, **kw: Any) -> Guardrails:
    kw.setdefault("min_free_bytes", 20 * GB)
    kw.setdefault("free_space", plenty)
    kw.setdefault("load", quiet_load)
    return Guardrails(kw.pop("settings", settings()), gpu=gpu, **kw)


CPU_JOB = JobNeeds("cpu", Path("/media/a.mkv"), 4 * GB)
NVENC_JOB = JobNeeds("nvenc", Path("/media/a.mkv"), 4 * GB)


# --- GPU temperature -------------------------------------------------------------------------


async def test_temperature_trips_once_pauses_and_clears_once() -> None:
    bus, gpu, audit = EventBus(), FakeGpu(temperature_c=70), Recorder()
    sub = bus.subscribe()
    async with make(gpu, bus=bus, on_change=audit) as guard:
        assert guard.should_pause_running() is None
        assert await guard.can_start(NVENC_JOB) is None
        states = []
        for temp in (86, 88, 80, 76, 74, 74):
            gpu.set_temperature(temp)
            await guard.sample_now()
            states.append(guard.should_pause_running() is not None)
            if temp == 86:
                reason = "paused: GPU 0 at 86 °C ≥ 85 °C (resumes at 75)"
                assert guard.should_pause_running() == reason
                assert guard.should_pause_running("nvenc") == reason
                assert await guard.can_start(NVENC_JOB) == reason
                assert guard.should_pause_running("cpu") is None  # a CPU encode is not paused
                assert await guard.can_start(CPU_JOB) is None
        assert states == [True, True, True, True, False, False]
        assert await guard.can_start(NVENC_JOB) is None
    events = drain(sub)
    assert guard_events(events) == [
        GuardrailTripped(
            "gpu0_temperature", "paused: GPU 0 at 86 °C ≥ 85 °C (resumes at 75)", True
        ),
        GuardrailCleared("gpu0_temperature", "GPU 0 at 74 °C ≤ 75 °C"),
    ]
    assert audit.calls == [
        ("gpu0_temperature", "paused: GPU 0 at 86 °C ≥ 85 °C (resumes at 75)"),
        ("gpu0_temperature", None),
    ]
    assert GpuSample(0, "Fake GPU", 74, 0, 0) in events


async def test_second_gpu_is_guarded_by_its_own_name() -> None:
    bus, gpu = EventBus(), FakeGpu(2, temperature_c=60)
    sub = bus.subscribe()
    async with make(gpu, bus=bus) as guard:
        gpu.set_temperature(90, index=1)
        await guard.sample_now()
        assert guard.active == {
            "gpu1_temperature": "paused: GPU 1 at 90 °C ≥ 85 °C (resumes at 75)"
        }
    [trip] = guard_events(drain(sub))
    assert isinstance(trip, GuardrailTripped) and trip.name == "gpu1_temperature"


async def test_gpu_lost_while_hot_releases_the_pause_and_reports_once() -> None:
    bus, gpu = EventBus(), FakeGpu(temperature_c=90)
    sub = bus.subscribe()
    async with make(gpu, bus=bus) as guard:
        assert guard.should_pause_running() is not None
        gpu.fail("no GPU: the GPU fell off the bus")
        for _ in range(3):
            await guard.sample_now()
        assert guard.should_pause_running() is None
        assert guard.gpu_status == "no GPU: the GPU fell off the bus"
        assert guard.gpu_readings == []
        gpu.fail(None)
        gpu.set_temperature(60)
        await guard.sample_now()
        assert guard.gpu_status is None
    events = drain(sub)
    logs = [e.message for e in events if isinstance(e, LogLine)]
    assert logs == ["no GPU: the GPU fell off the bus", "GPU readings are back"]
    assert [type(e) for e in guard_events(events)] == [GuardrailTripped, GuardrailCleared]


# --- no GPU ----------------------------------------------------------------------------------


async def test_no_gpu_is_reported_once_and_work_goes_on() -> None:
    bus, audit = EventBus(), Recorder()
    sub = bus.subscribe()
    async with make(NoGpu("no GPU: no driver"), bus=bus, on_change=audit) as guard:
        for _ in range(3):
            await guard.sample_now()
        assert guard.gpu_status == "no GPU: no driver"
        assert await guard.can_start(CPU_JOB) is None
        # Temperature cannot be watched, but NVML's absence does not stop NVENC (a container
        # may have the video capability without the utility one): ffmpeg's probe decides.
        assert await guard.can_start(NVENC_JOB) is None
        assert guard.should_pause_running() is None
        assert guard.nvml_encoder_sessions is None
    events = drain(sub)
    assert [e for e in events if isinstance(e, LogLine)] == [LogLine("info", "no GPU: no driver")]
    assert not [e for e in events if isinstance(e, GpuSample)]
    assert guard_events(events) == [] and audit.calls == []


async def test_default_gpu_is_the_real_backend() -> None:
    real = open_gpu_backend()
    if not isinstance(real, NoGpu):
        real.close()
        pytest.skip("an NVIDIA GPU is present")
    async with make(None) as guard:
        assert guard.gpu_status is not None and guard.gpu_status.startswith("no GPU: ")
        assert await guard.can_start(CPU_JOB) is None


# --- NVENC session cap -----------------------------------------------------------------------


async def test_session_cap_counts_castui_and_nvml_sessions() -> None:
    bus, gpu, audit = EventBus(), FakeGpu(encoder_sessions=1), Recorder()
    sub = bus.subscribe()
    async with make(gpu, bus=bus, on_change=audit, settings=settings(nvenc_max_sessions=3)) as g:
        assert await g.can_start(NVENC_JOB, running_nvenc=2) is None
        full = "waiting: 3 NVENC sessions in use ≥ cap 3 (castui 3, all processes 1)"
        assert await g.can_start(NVENC_JOB, running_nvenc=3) == full
        assert await g.can_start(NVENC_JOB, running_nvenc=3) == full  # asked again: no new event
        assert await g.can_start(CPU_JOB, running_nvenc=3) is None  # CPU jobs need no session
        gpu.set(0, encoder_sessions=3)  # e.g. Jellyfin transcoding
        await g.sample_now()
        assert g.nvml_encoder_sessions == 3
        assert await g.can_start(NVENC_JOB, running_nvenc=0) == (
            "waiting: 3 NVENC sessions in use ≥ cap 3 (castui 0, all processes 3)"
        )
        gpu.set(0, encoder_sessions=2)
        await g.sample_now()
        assert await g.can_start(NVENC_JOB, running_nvenc=2) is None
        await g.flush()
    assert guard_events(drain(sub)) == [
        GuardrailTripped("nvenc_sessions", full, False),
        GuardrailCleared("nvenc_sessions", "an NVENC session is free"),
    ]
    assert audit.calls == [("nvenc_sessions", full), ("nvenc_sessions", None)]


async def test_no_cap_configured_means_no_session_limit() -> None:
    async with make(FakeGpu(encoder_sessions=30)) as guard:
        assert await guard.can_start(NVENC_JOB, running_nvenc=20) is None


# --- disk ------------------------------------------------------------------------------------


async def test_disk_guard_with_injected_free_space() -> None:
    free = {"/media": int(3.1 * GB)}
    bus, audit = EventBus(), Recorder()
    sub = bus.subscribe()

    def reader(path: Path) -> FreeSpace:
        return FreeSpace(free["/media"], "/media")

    async with make(FakeGpu(), bus=bus, free_space=reader, on_change=audit) as guard:
        job = JobNeeds("cpu", Path("/media/tv/a.mkv"), int(4.2 * GB))
        waiting = "waiting: 3.1 GB free on /media < 20 GB plus the 4.2 GB estimated output"
        assert await guard.can_start(job) == waiting
        assert await guard.can_start(job) == waiting
        changed = guard.changed
        await guard.sample_now()  # a job waits for space: each sample says "ask again"
        assert changed.is_set()
        free["/media"] = 30 * GB
        assert await guard.can_start(job) is None
        assert await guard.can_start(JobNeeds("cpu", None)) is None  # no destination: not checked
        await guard.flush()
    assert guard_events(drain(sub)) == [
        GuardrailTripped("disk:/media", waiting, False),
        GuardrailCleared("disk:/media", "30 GB free on /media"),
    ]
    assert audit.calls == [("disk:/media", waiting), ("disk:/media", None)]


async def test_temp_dir_on_another_filesystem_needs_the_space_too() -> None:
    mounts = {"/tmp": FreeSpace(2 * GB, "/tmp"), "/media": FreeSpace(100 * GB, "/media")}

    def reader(path: Path) -> FreeSpace:
        return mounts[path.parts[1] and "/" + path.parts[1]]

    async with make(FakeGpu(), free_space=reader, min_free_bytes=1 * GB) as guard:
        job = JobNeeds("cpu", Path("/media/a.mkv"), 4 * GB, temp_dir=Path("/tmp/castui"))
        assert await guard.can_start(job) == (
            "waiting: 2 GB free on /tmp < 1 GB plus the 4 GB estimated output"
        )
        same = JobNeeds("cpu", Path("/media/a.mkv"), 90 * GB, temp_dir=Path("/media/.tmp"))
        assert await guard.can_start(same) is None  # one filesystem: the output counts once


async def test_unreadable_free_space_is_a_reason_not_a_crash() -> None:
    def broken(path: Path) -> FreeSpace:
        raise PermissionError(13, "Permission denied")

    async with make(FakeGpu(), free_space=broken) as guard:
        assert await guard.can_start(CPU_JOB) == (
            "waiting: cannot read free space on /media/a.mkv: Permission denied"
        )


async def test_hung_network_share_blocks_once_then_answers_at_once() -> None:
    release, calls = threading.Event(), []

    def hung(path: Path) -> FreeSpace:
        calls.append(path)
        release.wait(10)
        return FreeSpace(100 * GB, "/media")

    async with make(FakeGpu(), free_space=hung, disk_timeout_s=0.05) as guard:
        try:
            stuck = (
                "waiting: free space on /media/a.mkv could not be read within 0.05 s"
                " (network share not answering?)"
            )
            assert await guard.can_start(CPU_JOB) == stuck
            assert await guard.can_start(CPU_JOB) == stuck
            assert len(calls) == 1  # the stuck read is not started again
        finally:
            release.set()
        await asyncio.sleep(0)  # let the worker thread finish its return
        for _ in range(100):  # the released thread finishes within milliseconds
            if await guard.can_start(CPU_JOB) is None:
                break
            threading.Event().wait(0.01)
        assert await guard.can_start(CPU_JOB) is None
        assert guard.active == {}


async def test_disk_guard_on_the_real_filesystem(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    mount = filesystem_of(tmp_path)
    assert mount is not None
    async with Guardrails(settings(), min_free_bytes=0, gpu=NoGpu("no GPU: test")) as guard:
        destination = tmp_path / "not" / "made" / "yet.mkv"
        assert await guard.can_start(JobNeeds("cpu", destination, 1000)) is None
        reason = await guard.can_start(JobNeeds("cpu", destination, free + 10**15))
        assert reason is not None
        assert reason.startswith("waiting: ")
        assert f" free on {mount.mount_point} < the " in reason
        assert reason.endswith(" estimated output")
        assert guard.active == {f"disk:{mount.mount_point}": reason}


# --- schedule --------------------------------------------------------------------------------


class Now:
    def __init__(self, value: datetime) -> None:
        self.value = value

    def __call__(self) -> datetime:
        return self.value


async def test_outside_the_window_no_job_starts_and_running_ones_finish() -> None:
    now, bus = Now(datetime(2024, 5, 1, 12, 0)), EventBus()
    sub = bus.subscribe()
    s = settings(schedule=("01:00-07:00",))
    async with make(FakeGpu(), settings=s, now=now, bus=bus) as guard:
        waiting = "waiting: outside processing window 01:00–07:00 (next start 01:00)"
        assert await guard.can_start(CPU_JOB) == waiting
        assert guard.should_pause_running() is None  # outside_schedule: finish
        now.value = datetime(2024, 5, 2, 1, 0)
        assert await guard.can_start(CPU_JOB) is None  # asking re-checks the clock
        await guard.sample_now()
    assert guard_events(drain(sub)) == [
        GuardrailTripped("schedule", waiting, False),
        GuardrailCleared("schedule", "inside processing window 01:00–07:00"),
    ]


async def test_outside_the_window_with_pause_pauses_every_encode() -> None:
    now = Now(datetime(2024, 5, 1, 5, 0))
    s = settings(schedule=("22:00-06:00",), outside_schedule="pause")
    async with make(FakeGpu(), settings=s, now=now) as guard:
        assert guard.should_pause_running() is None
        now.value = datetime(2024, 5, 1, 6, 0)
        await guard.sample_now()
        paused = "paused: outside processing window 22:00–06:00 (next start 22:00)"
        assert guard.should_pause_running("cpu") == paused
        assert guard.should_pause_running("nvenc") == paused
        assert await guard.can_start(CPU_JOB) == paused
        now.value = datetime(2024, 5, 1, 22, 0)
        await guard.sample_now()
        assert guard.should_pause_running() is None


# --- load ------------------------------------------------------------------------------------


async def test_load_limit_trips_with_hysteresis() -> None:
    load = {"cpu": 95.0}
    audit = Recorder()

    def reader() -> LoadReading:
        return LoadReading(load["cpu"], 30.0)

    s = settings(max_cpu_percent=80)
    async with make(FakeGpu(), settings=s, load=reader, on_change=audit) as guard:
        assert await guard.can_start(CPU_JOB) == "waiting: CPU load 95% > 80%"
        load["cpu"] = 78.0
        await guard.sample_now()
        not_yet = "waiting: CPU load 78%, not yet below 75% (limit 80%)"
        assert await guard.can_start(CPU_JOB) == not_yet
        load["cpu"] = 70.0
        await guard.sample_now()
        assert await guard.can_start(CPU_JOB) is None
    assert audit.calls == [("load", "waiting: CPU load 95% > 80%"), ("load", None)]


def test_real_psutil_returns_sane_numbers() -> None:
    load = PsutilLoad(min_interval_s=0)
    load.prime()
    reading = load.read()
    assert reading.cpu_percent is not None and 0.0 <= reading.cpu_percent <= 100.0
    assert reading.memory_percent is not None and 0.0 < reading.memory_percent <= 100.0
    assert PsutilLoad().read().cpu_percent is None  # first reading means nothing: not used


async def test_real_psutil_by_default() -> None:
    async with Guardrails(
        settings(max_cpu_percent=100, max_memory_percent=100),
        min_free_bytes=0,
        gpu=NoGpu("no GPU: test"),
    ) as guard:
        await guard.sample_now()
        reading = guard.load_reading
        assert reading is not None and reading.memory_percent is not None
        assert 0.0 < reading.memory_percent <= 100.0
        assert await guard.can_start(CPU_JOB) is None  # nothing is above 100 %


# --- the timer, waiting, hooks ----------------------------------------------------------------


async def test_background_sampling_wakes_waiters() -> None:
    gpu = FakeGpu(temperature_c=60)
    async with make(gpu, settings=settings(sample_interval_s=0.02)) as guard:
        assert await guard.wait_change(timeout=0.01) is False  # nothing changed
        gpu.set_temperature(95)
        assert await guard.wait_change(timeout=5.0) is True  # the timer sampled, unprompted
        assert guard.should_pause_running() is not None
        assert guard.sample_age_s() is not None


async def test_clock_gives_the_sample_age() -> None:
    clock = {"t": 100.0}
    async with make(FakeGpu(), clock=lambda: clock["t"]) as guard:
        clock["t"] = 107.5
        assert guard.sample_age_s() == 7.5
        await guard.sample_now()
        assert guard.sample_age_s() == 0.0


async def test_failing_hook_does_not_stop_the_guardrails() -> None:
    bus, gpu = EventBus(), FakeGpu(temperature_c=90)
    sub = bus.subscribe()

    async def broken(name: str, reason: str | None) -> None:
        raise RuntimeError("database locked")

    async with make(gpu, bus=bus, on_change=broken) as guard:
        gpu.set_temperature(60)
        await guard.sample_now()
        assert guard.should_pause_running() is None
    errors = [e for e in drain(sub) if isinstance(e, LogLine) and e.level == "error"]
    assert len(errors) == 2 and "database locked" in errors[0].message


async def test_owned_backend_is_closed_and_given_one_is_not() -> None:
    gpu = FakeGpu()
    async with make(gpu):
        pass
    assert gpu.closed is False  # the caller opened it, the caller closes it
