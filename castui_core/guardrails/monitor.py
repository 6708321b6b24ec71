"""The guardrail monitor: samples GPU and load off the event loop and answers the engine.

The engine asks two questions: :meth:`Guardrails.can_start` before starting a job (``None``
or the reason it waits) and :meth:`Guardrails.should_pause_running` for running encodes
(``None`` or the reason they are paused, e.g. SIGSTOP while the GPU is too hot). It awaits
:meth:`Guardrails.wait_change` to know when asking again may give another answer.

Why a monitor with state rather than checks at call time: the GPU temperature needs hysteresis
(state), NVML and psutil calls block (they run in threads, on a timer), and a guardrail that
trips must be *reported once* - ``GuardrailTripped`` when it trips, ``GuardrailCleared`` when
it clears, never the same reason every five seconds for months. The ``on_change`` hook lets
the engine write those same transitions to the audit log.

Guard names (``GuardrailTripped.name``): ``schedule``, ``load``, ``gpu<N>_temperature``,
``nvenc_sessions`` and ``disk:<mount>``. The last two depend on the job and trip or clear when
:meth:`Guardrails.can_start` is asked; the others follow the samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

from castui_core.bus import EventBus
from castui_core.events import Event, GpuSample, GuardrailCleared, GuardrailTripped, LogLine
from castui_core.guardrails.disk import (
    FreeSpace,
    FreeSpaceReader,
    disk_reason,
    format_gb,
    read_free_space,
)
from castui_core.guardrails.gpu import (
    GpuBackend,
    GpuReading,
    GpuUnavailableError,
    NoGpu,
    open_gpu_backend,
    temperature_state,
)
from castui_core.guardrails.load import LoadLimits, LoadReading, PsutilLoad, load_reason
from castui_core.guardrails.schedule import Window, in_window, parse_window, schedule_reason
from castui_core.settings import GuardrailSettings
from castui_core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Backend = Literal["cpu", "nvenc"]
#: Called with ``(guard name, reason)`` when a guard trips and ``(guard name, None)`` when it
#: clears, so the engine can write audit-log entries.
OnChange = Callable[[str, str | None], Awaitable[None]]

SCHEDULE = "schedule"
LOAD = "load"
NVENC_SESSIONS = "nvenc_sessions"
_ALL: frozenset[str] = frozenset({"cpu", "nvenc"})
_NVENC: frozenset[str] = frozenset({"nvenc"})


def gpu_temperature_guard(index: int) -> str:
    return f"gpu{index}_temperature"


def disk_guard(where: str) -> str:
    return f"disk:{where}"


@dataclass(frozen=True)
class JobNeeds:
    """What the guardrails need to know about a job before it starts.

    ``temp_dir``: where the output is written first, when that is not next to the destination;
    a different filesystem must hold the whole output too.
    """

    backend: Backend
    destination: Path | None = None
    estimated_bytes: int = 0
    temp_dir: Path | None = None


@dataclass(frozen=True)
class ActiveGuard:
    """A tripped guard: its current reason, whether running work pauses, and for which jobs."""

    reason: str
    pauses_running: bool
    backends: frozenset[str]


def session_cap_reason(
    cap: int | None, running_nvenc: int, nvml_sessions: int | None
) -> str | None:
    """Why an NVENC job waits for a session, or ``None``.

    NVML counts every process's sessions (Jellyfin transcodes too; consumer GPUs cap the whole
    system), castui counts its own jobs, which NVML may not show yet; the larger one counts.
    """
    if cap is None:
        return None
    in_use = max(running_nvenc, nvml_sessions or 0)
    if in_use < cap:
        return None
    detail = f"castui {running_nvenc}"
    if nvml_sessions is not None:
        detail += f", all processes {nvml_sessions}"
    return f"waiting: {in_use} NVENC sessions in use ≥ cap {cap} ({detail})"


class Guardrails:
    """Samples the guardrails every ``settings.sample_interval_s`` and answers the engine.

    ``gpu``: a backend (:class:`~castui_core.guardrails.gpu.NvmlGpu`,
    :class:`~castui_core.guardrails.gpu.FakeGpu`), a :class:`NoGpu`, or ``None`` to open the
    real one on start (and close it on exit). ``clock`` (monotonic) and ``now`` (local wall
    time) are injectable so tests control them; ``free_space`` and ``load`` likewise.
    """

    def __init__(
        self,
        settings: GuardrailSettings,
        *,
        min_free_bytes: int,
        bus: EventBus | None = None,
        gpu: GpuBackend | NoGpu | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = datetime.now,
        on_change: OnChange | None = None,
        free_space: FreeSpaceReader = read_free_space,
        load: Callable[[], LoadReading] | None = None,
        disk_timeout_s: float = 2.0,
    ) -> None:
        self._settings = settings
        self._min_free_bytes = min_free_bytes
        self._bus = bus
        self._gpu: GpuBackend | NoGpu | None = gpu
        self._owns_gpu = gpu is None
        self._clock = clock
        self._now = now
        self.on_change = on_change
        self._free_space = free_space
        self._psutil: PsutilLoad | None = None
        if load is None:
            self._psutil = PsutilLoad()
            load = self._psutil.read
        self._load = load
        self._disk_timeout_s = disk_timeout_s
        self._windows: list[Window] = [parse_window(w) for w in settings.schedule]
        self._limits = LoadLimits(settings.max_cpu_percent, settings.max_memory_percent)

        self._active: dict[str, ActiveGuard] = {}
        self._external: set[str] = set()  # guards fed from outside (Jellyfin sessions)
        self._changed = asyncio.Event()
        self._sample_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._hooks: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue()
        self._hook_task: asyncio.Task[None] | None = None
        self._disk_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="castui-disk")
        self._stuck_disk: dict[Path, Future[FreeSpace]] = {}
        #: Mounts where a write hit ENOSPC (see :meth:`trip_disk_full`): reason, and the free
        #: bytes then (the guard clears only once more than that is free).
        self._disk_full: dict[str, str] = {}
        self._full_free_bytes: dict[str, int] = {}
        self._gpu_status: str | None = None
        self._readings: list[GpuReading] = []
        self._load_reading: LoadReading | None = None
        self._last_cpu: float | None = None
        self._sampled_at: float | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Guardrails:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the GPU (if not given), take a first sample, then sample on a timer."""
        self._hook_task = asyncio.create_task(self._run_hooks(), name="castui-guardrail-hooks")
        try:
            if self._gpu is None:
                self._gpu = await asyncio.to_thread(open_gpu_backend)
            if isinstance(self._gpu, NoGpu):
                self._set_gpu_status(self._gpu.reason, level="info")
            if self._psutil is not None:
                await asyncio.to_thread(self._psutil.prime)
            await self.sample_now()
        except BaseException:
            await self.stop()  # __aexit__ does not run when __aenter__ fails
            raise
        self._task = asyncio.create_task(self._run(), name="castui-guardrails")

    async def stop(self) -> None:
        """Stop sampling, let queued ``on_change`` calls finish, close a GPU opened here."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.flush()
        hooks, self._hook_task = self._hook_task, None
        if hooks is not None:
            hooks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hooks
        self._disk_pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_gpu and self._gpu is not None and not isinstance(self._gpu, NoGpu):
            await asyncio.to_thread(self._gpu.close)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sample_interval_s)
            try:
                await self.sample_now()
            except Exception as exc:  # a service runs for months: log, keep sampling
                log.exception("guardrail sample failed")
                self._publish(LogLine("error", f"guardrail sample failed: {exc!r}"))

    # --- sampling ----------------------------------------------------------------------------

    async def sample_now(self) -> None:
        """Sample GPU, load and schedule now (the timer calls this; so do tests)."""
        async with self._sample_lock:
            await self._sample_gpu()
            await self._sample_load()
            self._update_schedule()
            self._sampled_at = self._clock()
            if any(n == NVENC_SESSIONS or n.startswith("disk:") for n in self._active):
                # Job-dependent refusals (free space, sessions) are re-evaluated only when the
                # engine asks again: tell it that a fresh sample is there.
                self._notify()
        await self.flush()  # hooks of this sample's transitions have run when this returns

    async def _sample_gpu(self) -> None:
        backend = self._gpu
        if backend is None or isinstance(backend, NoGpu):
            return
        try:
            readings = await asyncio.to_thread(backend.sample)
        except GpuUnavailableError as exc:
            self._gpu_lost(exc.reason)
            return
        except Exception as exc:
            self._gpu_lost(f"no GPU: reading the GPU failed ({type(exc).__name__}: {exc})")
            return
        if self._gpu_status is not None:
            self._set_gpu_status(None, level="info")
        self._readings = readings
        for r in readings:
            self._publish(
                GpuSample(r.index, r.name, r.temperature_c, r.encoder_percent, r.encoder_sessions)
            )
        s = self._settings
        seen: set[str] = set()
        for r in readings:
            name = gpu_temperature_guard(r.index)
            seen.add(name)
            paused, reason = temperature_state(
                name in self._active,
                r.temperature_c,
                s.gpu_max_temp_c,
                s.gpu_resume_temp_c,
                index=r.index,
            )
            cleared = (
                f"GPU {r.index} at {r.temperature_c} °C ≤ {s.gpu_resume_temp_c} °C"
                if r.temperature_c is not None
                else f"GPU {r.index} does not report its temperature"
            )
            self._transition(
                name,
                reason if paused else None,
                pauses_running=True,
                backends=_NVENC,
                cleared=cleared,
            )
        for name in [n for n in self._active if n.endswith("_temperature") and n not in seen]:
            self._transition(name, None, cleared="GPU no longer present")

    def _gpu_lost(self, reason: str) -> None:
        self._readings = []
        self._set_gpu_status(reason, level="warning")
        for name in [n for n in self._active if n.endswith("_temperature")]:
            self._transition(name, None, cleared=f"temperature unknown ({reason})")

    def _set_gpu_status(self, reason: str | None, *, level: str) -> None:
        """Report GPU availability once per change (a missing driver is not news every 5 s)."""
        if reason == self._gpu_status:
            return
        self._gpu_status = reason
        self._publish(LogLine(level, reason if reason is not None else "GPU readings are back"))
        self._notify()

    async def _sample_load(self) -> None:
        try:
            reading = await asyncio.to_thread(self._load)
        except Exception as exc:
            log.warning("reading system load failed: %r", exc)
            return
        self._load_reading = reading
        if reading.cpu_percent is not None:
            self._last_cpu = reading.cpu_percent
        limits = self._limits
        if limits.max_cpu_percent is None and limits.max_memory_percent is None:
            return
        reason = load_reason(
            self._last_cpu, reading.memory_percent, limits, tripped=LOAD in self._active
        )
        parts = []
        if self._last_cpu is not None:
            parts.append(f"CPU {self._last_cpu:.0f}%")
        if reading.memory_percent is not None:
            parts.append(f"memory {reading.memory_percent:.0f}%")
        self._transition(LOAD, reason, cleared=f"load below the limits ({', '.join(parts)})")

    def _update_schedule(self) -> None:
        if not self._windows:
            return
        now = self._now()
        reason = schedule_reason(now, self._windows)
        pause = self._settings.outside_schedule == "pause"
        if reason is not None:
            reason = ("paused: " if pause else "waiting: ") + reason
        open_now = next((w for w in self._windows if in_window(now.time(), [w])), None)
        self._transition(
            SCHEDULE,
            reason,
            pauses_running=pause,
            cleared=f"inside processing window {open_now}" if open_now else "",
        )

    # --- state changes -----------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        if self._bus is not None:
            self._bus.publish(event)

    def _notify(self) -> None:
        """Wake every :meth:`wait_change` waiter (the next waiter gets a fresh event)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _transition(
        self,
        name: str,
        reason: str | None,
        *,
        pauses_running: bool = False,
        backends: frozenset[str] = _ALL,
        cleared: str = "",
    ) -> None:
        """Record a guard's new state; events and the hook fire only on trip and on clear.

        Synchronous so :meth:`can_start` can be; the (async) hook calls are queued and run in
        order by one task, so audit entries keep the order of the events.
        """
        previous = self._active.get(name)
        if reason is None:
            if previous is None:
                return
            del self._active[name]
            self._publish(GuardrailCleared(name, cleared))
        else:
            self._active[name] = ActiveGuard(reason, pauses_running, backends)
            if previous is not None:
                return
            self._publish(GuardrailTripped(name, reason, pauses_running))
        self._notify()
        if self.on_change is not None:
            self._hooks.put_nowait((name, reason))

    async def _run_hooks(self) -> None:
        while True:
            name, reason = await self._hooks.get()
            try:
                if self.on_change is not None:
                    await self.on_change(name, reason)
            except Exception as exc:  # the audit hook failing must not stop the guardrails
                log.exception("guardrail on_change hook failed")
                self._publish(LogLine("error", f"recording guardrail {name} failed: {exc!r}"))
            finally:
                self._hooks.task_done()

    async def flush(self, limit_s: float = 5.0) -> None:
        """Wait until every queued ``on_change`` call has run (bounded: a stuck hook must not
        stop shutdown)."""
        if self._hook_task is None:
            return
        # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation that
        # arrives as the inner await finishes, and stop() would then wait on the timer forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                await self._hooks.join()

    def reconfigure(self, settings: GuardrailSettings, *, min_free_bytes: int) -> None:
        """Use new thresholds, schedule and reserve from now on (a settings reload).

        State that is not configuration stays: a hot GPU stays paused until it cools below
        the (new) resume temperature, the load hysteresis keeps its last reading. The
        schedule is re-evaluated at once, so a window that now excludes this hour stops new
        work (and pauses running encodes with ``outside_schedule: pause``) without waiting
        for the next sample; the timer picks up a new ``sample_interval_s`` at its next tick.
        """
        self._settings = settings
        self._min_free_bytes = min_free_bytes
        self._windows = [parse_window(w) for w in settings.schedule]
        self._limits = LoadLimits(settings.max_cpu_percent, settings.max_memory_percent)
        if not self._windows:
            self._transition(SCHEDULE, None, cleared="no processing window configured")
        if self._limits.max_cpu_percent is None and self._limits.max_memory_percent is None:
            self._transition(LOAD, None, cleared="no load limit configured")
        self._update_schedule()
        self._notify()

    # --- questions the engine asks ----------------------------------------------------------

    async def can_start(self, job: JobNeeds, *, running_nvenc: int = 0) -> str | None:
        """``None`` if ``job`` may start now, else the reason it waits (shown as is).

        ``running_nvenc``: castui's own NVENC encodes running now (for the session cap).
        Checked in order: schedule, load, GPU temperature and NVENC sessions (NVENC jobs only:
        a CPU encode neither heats the GPU nor uses a session), then free space where the job
        names a destination (``destination=None``: not checked).

        Async because free space is read in a worker thread (statvfs on a dead network share
        hangs): the event loop keeps serving the bus, the dashboard and heartbeats while the
        read runs. It waits ``disk_timeout_s`` at most and then answers "could not be read";
        while that read stays stuck, later calls answer the same at once.
        """
        self._update_schedule()
        for name in (SCHEDULE, LOAD):
            if name in self._active:
                return self._active[name].reason
        for name in sorted(self._external):
            if name in self._active:
                return self._active[name].reason
        if job.backend == "nvenc":
            hot = [
                g.reason
                for n, g in self._active.items()
                if n.endswith("_temperature") and "nvenc" in g.backends
            ]
            if hot:
                return "; ".join(hot)
            reason = session_cap_reason(
                self._settings.nvenc_max_sessions, running_nvenc, self.nvml_encoder_sessions
            )
            self._transition(
                NVENC_SESSIONS, reason, backends=_NVENC, cleared="an NVENC session is free"
            )
            if reason is not None:
                return reason
        if job.destination is None:
            return None
        return await self._check_disk(job, job.destination)

    async def _read_free(self, path: Path) -> FreeSpace | str:
        not_answering = (
            f"waiting: free space on {path} could not be read within "
            f"{self._disk_timeout_s:g} s (network share not answering?)"
        )
        try:
            # A read that timed out before and is still stuck is not started again (and not
            # waited for again): the answer stays "not answering" without waiting.
            future = self._stuck_disk.pop(path, None)
            if future is not None and not future.done():
                self._stuck_disk[path] = future
                return not_answering
            if future is None:
                future = self._disk_pool.submit(self._free_space, path)
            # asyncio.wait, not wait_for: a timeout must not cancel the read (it stays in
            # _stuck_disk and its result is used once it arrives).
            waiter = asyncio.wrap_future(future)
            done, _ = await asyncio.wait({waiter}, timeout=self._disk_timeout_s)
            if not done:
                self._stuck_disk[path] = future
                return not_answering
            return waiter.result()
        except OSError as exc:
            return f"waiting: cannot read free space on {path}: {exc.strerror or exc}"
        except RuntimeError as exc:  # pool shut down: used after stop()
            return f"waiting: free space on {path} not checked ({exc})"

    async def trip_disk_full(self, where: Path, reason: str) -> None:
        """A write on ``where`` failed with ENOSPC although the pre-check passed (another
        program filled the disk meanwhile): hold new work on that filesystem, with ``reason``,
        until :meth:`can_start` finds more free space there than now. Without this the
        engine would get the same "fits" answer and start the job again at once, into the
        same full disk."""
        got = await self._read_free(where)
        mount = str(where) if isinstance(got, str) else got.mount
        self._disk_full[mount] = reason
        self._full_free_bytes[mount] = 0 if isinstance(got, str) else got.free_bytes
        self._transition(disk_guard(mount), reason)

    async def _check_disk(self, job: JobNeeds, destination: Path) -> str | None:
        paths = [destination] if job.temp_dir is None else [job.temp_dir, destination]
        by_mount: dict[str, FreeSpace] = {}
        first: str | None = None
        for path in paths:
            got = await self._read_free(path)
            if isinstance(got, str):
                self._transition(disk_guard(str(path)), got)
                first = first or got
                continue
            self._transition(disk_guard(str(path)), None, cleared="free space readable")
            by_mount.setdefault(got.mount, got)
        # On one filesystem the temp output is renamed into place: it needs the space once.
        for mount, fs in by_mount.items():
            reason = disk_reason(fs.free_bytes, job.estimated_bytes, self._min_free_bytes, mount)
            full = self._disk_full.get(mount)
            if full is not None:
                if reason is None and fs.free_bytes > self._full_free_bytes.get(mount, 0):
                    del self._disk_full[mount]  # space came back: the next job may try
                else:
                    reason = reason or full
            self._transition(
                disk_guard(mount), reason, cleared=f"{format_gb(fs.free_bytes)} free on {mount}"
            )
            first = first or reason
        return first

    def set_external(
        self, name: str, reason: str | None, *, pauses_running: bool, cleared: str = ""
    ) -> None:
        """Trip (``reason``) or clear (``None``) a guard sampled outside the monitor.

        Why: some conditions come from another service on its own schedule (Jellyfin's
        sessions, polled over HTTP); they hold new jobs and, with ``pauses_running``, pause
        running encodes exactly like the built-in guards, with the same events and audit hook.
        """
        self._external.add(name)
        self._transition(name, reason, pauses_running=pauses_running, cleared=cleared)

    def should_pause_running(self, backend: Backend | None = None) -> str | None:
        """The reason running encodes must pause now, or ``None`` (they may run / resume).

        Pass the job's ``backend``: a hot GPU pauses NVENC encodes only. Without it the answer
        is for an NVENC encode (the strictest).
        """
        wanted = backend or "nvenc"
        reasons = [
            g.reason for g in self._active.values() if g.pauses_running and wanted in g.backends
        ]
        return "; ".join(reasons) or None

    @property
    def changed(self) -> asyncio.Event:
        """The event the next change sets. Take it *before* asking :meth:`can_start`, then
        await it, and a change between the two is not missed."""
        return self._changed

    async def wait_change(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until a guard trips or clears, the GPU comes or goes, or - while a job waits
        for space or an NVENC session - the next sample. ``False`` on timeout."""
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True

    # --- state for status lines and tests -----------------------------------------------------

    @property
    def active(self) -> dict[str, str]:
        """Tripped guards now: name → reason."""
        return {name: g.reason for name, g in self._active.items()}

    @property
    def gpu_status(self) -> str | None:
        """``"no GPU: ..."`` while there are no GPU readings, else ``None``."""
        return self._gpu_status

    @property
    def gpu_readings(self) -> list[GpuReading]:
        return list(self._readings)

    @property
    def load_reading(self) -> LoadReading | None:
        return self._load_reading

    @property
    def nvml_encoder_sessions(self) -> int | None:
        """NVENC sessions of all processes on all GPUs, from the last sample (``None``:
        unknown)."""
        counts = [r.encoder_sessions for r in self._readings if r.encoder_sessions is not None]
        return sum(counts) if counts else None

    def sample_age_s(self) -> float | None:
        """Seconds since the last complete sample (a large value means sampling is stuck)."""
        return None if self._sampled_at is None else self._clock() - self._sampled_at
