"""GPU readings behind a tiny interface: real NVML, a fake for tests, or "no GPU" with a reason.

Why an interface: the guardrail logic (hysteresis, session cap) must be testable on machines
without an NVIDIA driver, with temperatures a test controls; only :class:`NvmlGpu` touches
``pynvml`` (package nvidia-ml-py), and it is imported lazily so castui runs on CPU-only boxes.

Why "no GPU" is a value and not an exception: a missing driver is a normal configuration
(CPU-only server, container without the ``utility`` capability). The caller gets a
:class:`NoGpu` with a sentence to show once, and CPU work carries on.

Every NVML call blocks (it talks to the kernel driver and can stall for a while on a GPU in
trouble), so the monitor calls :meth:`GpuBackend.sample` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from castui_core.errors import CastuiError

# NVML error codes (nvml.h); read from the module when it has them, these are the fallbacks so
# a stub module in tests needs to define only what it uses.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_LIB_RM_VERSION_MISMATCH = 18
_NO_DATA = 21
_TEMPERATURE_GPU = 0

#: The shared library pynvml loads on Linux; named in the "no GPU" reason so the fix is clear.
NVML_LIBRARY = "libnvidia-ml.so.1"


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment. ``None``: this GPU/driver does not report that value."""

    index: int
    name: str
    temperature_c: int | None
    encoder_percent: int | None
    encoder_sessions: int | None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None


@dataclass(frozen=True)
class NoGpu:
    """No GPU readings are possible; ``reason`` starts with ``"no GPU: "`` and says why."""

    reason: str


class GpuUnavailableError(CastuiError):
    """NVML stopped answering (driver unloaded or updated, GPU lost).

    Raised by :meth:`GpuBackend.sample`; the monitor turns it into a "no GPU: ..." state and
    keeps trying on later samples, so a driver update does not need a castui restart.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class GpuBackend(Protocol):
    """Where GPU readings come from. Both methods may block: call them off the event loop."""

    def sample(self) -> list[GpuReading]:
        """Read every GPU now; raises :class:`GpuUnavailableError` when NVML is gone."""
        ...

    def close(self) -> None:
        """Release the driver handle (idempotent)."""
        ...


# --- the real one ----------------------------------------------------------------------------


def _code(nvml: Any, name: str, default: int) -> int:
    value = getattr(nvml, name, default)
    return value if isinstance(value, int) else default


def no_gpu_reason(nvml: Any, exc: BaseException) -> str:
    """Turn an NVML start-up failure into a sentence saying what to check."""
    value = getattr(exc, "value", None)
    if value == _code(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", _LIBRARY_NOT_FOUND):
        return (
            f"no GPU: the NVIDIA driver library {NVML_LIBRARY} was not found ({exc}); "
            "install the NVIDIA driver (in a container: NVIDIA_DRIVER_CAPABILITIES must "
            "include utility)"
        )
    if value == _code(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", _DRIVER_NOT_LOADED):
        return f"no GPU: the NVIDIA driver is not loaded ({exc})"
    if value == _code(nvml, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION):
        return f"no GPU: no permission to query the NVIDIA GPU ({exc})"
    if value == _code(nvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", _LIB_RM_VERSION_MISMATCH):
        return (
            f"no GPU: NVIDIA driver and library versions differ ({exc}); reboot (or reload "
            "the driver) after a driver update"
        )
    if value == _code(nvml, "NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST):
        return f"no GPU: the GPU fell off the bus ({exc}); check dmesg, a reboot is needed"
    return f"no GPU: NVML failed ({type(exc).__name__}: {exc})"


class NvmlGpu:
    """GPU readings from NVML.

    ``nvml`` is the pynvml module (imported on first use when not given); tests pass a small
    stub object with the same functions. :meth:`start` initializes NVML and finds the GPUs;
    use :func:`open_gpu_backend` rather than calling it directly.
    """

    def __init__(self, nvml: ModuleType | Any | None = None) -> None:
        self._nvml: Any = nvml
        self._handles: list[Any] | None = None
        self._names: list[str] = []
        self._started = False
        self._lock = threading.Lock()  # NVML is thread-safe; this keeps our handle list sane

    def _module(self) -> Any:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py; lazily, so CPU-only installs never load it

            self._nvml = pynvml
        return self._nvml

    def start(self) -> None:
        """``nvmlInit`` and enumerate GPUs; raises :class:`GpuUnavailableError` with a reason."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        nvml = self._module()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise GpuUnavailableError(no_gpu_reason(nvml, exc)) from exc
        except OSError as exc:  # a broken library file, not just a missing one
            raise GpuUnavailableError(f"no GPU: cannot load {NVML_LIBRARY} ({exc})") from exc
        self._started = True
        self._enumerate()

    def _enumerate(self) -> None:
        nvml = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            names = [self._name(h, i) for i, h in enumerate(handles)]
        except nvml.NVMLError as exc:
            self._handles = None
            raise GpuUnavailableError(no_gpu_reason(nvml, exc)) from exc
        if not handles:
            self._handles = None
            raise GpuUnavailableError("no GPU: the NVIDIA driver reports no GPUs")
        self._handles, self._names = handles, names

    def _name(self, handle: Any, index: int) -> str:
        name = self._optional(self._nvml.nvmlDeviceGetName, handle)
        if isinstance(name, bytes):  # old pynvml versions returned bytes
            name = name.decode(errors="replace")
        return str(name) if name else f"GPU {index}"

    def _optional(self, fn: Any, *args: Any) -> Any:
        """Call one NVML query; ``None`` where this GPU/driver cannot answer it.

        Why only these codes: NotSupported (e.g. no encoder on an H100), NoPermission,
        FunctionNotFound (older driver) and NoData describe the *query*; anything else
        (GPU lost, driver gone) means the readings as a whole are invalid and is raised.
        """
        nvml = self._nvml
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            soft = {
                _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED),
                _code(nvml, "NVML_ERROR_NO_PERMISSION", _NO_PERMISSION),
                _code(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", _FUNCTION_NOT_FOUND),
                _code(nvml, "NVML_ERROR_NO_DATA", _NO_DATA),
            }
            if getattr(exc, "value", None) in soft:
                return None
            raise

    def _read(self, index: int, handle: Any) -> GpuReading:
        nvml = self._nvml
        sensor = _code(nvml, "NVML_TEMPERATURE_GPU", _TEMPERATURE_GPU)
        temperature = self._optional(nvml.nvmlDeviceGetTemperature, handle, sensor)
        utilization = self._optional(nvml.nvmlDeviceGetEncoderUtilization, handle)
        sessions: int | None = None
        session_list = self._optional(nvml.nvmlDeviceGetEncoderSessions, handle)
        if session_list is not None:
            sessions = len(session_list)
        elif hasattr(nvml, "nvmlDeviceGetEncoderStats"):
            # (sessionCount, averageFps, averageLatency): same count, other drivers allow it
            stats = self._optional(nvml.nvmlDeviceGetEncoderStats, handle)
            if stats is not None:
                sessions = int(stats[0])
        used = total = None
        if hasattr(nvml, "nvmlDeviceGetMemoryInfo"):
            memory = self._optional(nvml.nvmlDeviceGetMemoryInfo, handle)
            if memory is not None:
                used, total = int(memory.used), int(memory.total)
        return GpuReading(
            index=index,
            name=self._names[index],
            temperature_c=None if temperature is None else int(temperature),
            encoder_percent=None if utilization is None else int(utilization[0]),
            encoder_sessions=sessions,
            memory_used_bytes=used,
            memory_total_bytes=total,
        )

    def sample(self) -> list[GpuReading]:
        """Read every GPU. After a failure the next call re-initializes NVML (driver update)."""
        with self._lock:
            nvml = self._module()
            if self._handles is None:
                if self._started:
                    with contextlib.suppress(nvml.NVMLError):
                        nvml.nvmlShutdown()
                    self._started = False
                self._start_locked()
            assert self._handles is not None
            try:
                return [self._read(i, h) for i, h in enumerate(self._handles)]
            except nvml.NVMLError as exc:
                self._handles = None  # re-enumerate (and re-init) next time
                raise GpuUnavailableError(no_gpu_reason(nvml, exc)) from exc

    def close(self) -> None:
        with self._lock:
            if self._started:
                nvml = self._nvml
                with contextlib.suppress(nvml.NVMLError):
                    nvml.nvmlShutdown()
                self._started = False
            self._handles = None


def open_gpu_backend(nvml: ModuleType | Any | None = None) -> NvmlGpu | NoGpu:
    """The real GPU backend, or :class:`NoGpu` saying why not. Never raises.

    Blocks (driver calls): run it in a thread from async code.
    """
    backend = NvmlGpu(nvml)
    try:
        backend.start()
    except ImportError as exc:
        return NoGpu(f"no GPU: nvidia-ml-py is not installed ({exc})")
    except GpuUnavailableError as exc:
        backend.close()
        return NoGpu(exc.reason)
    except Exception as exc:  # monitoring must never stop castui from starting
        backend.close()
        return NoGpu(f"no GPU: NVML could not be started ({type(exc).__name__}: {exc})")
    return backend


# --- the fake one ----------------------------------------------------------------------------


class FakeGpu:
    """A GPU whose readings a test (or ``--fake-gpu`` in development) sets.

    Thread-safe, because the monitor reads it from a worker thread while the test sets it.
    """

    def __init__(
        self,
        count: int = 1,
        *,
        name: str = "Fake GPU",
        temperature_c: int | None = 40,
        encoder_percent: int | None = 0,
        encoder_sessions: int | None = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._readings = [
            GpuReading(i, name, temperature_c, encoder_percent, encoder_sessions)
            for i in range(count)
        ]
        self._failure: str | None = None
        self.samples = 0
        self.closed = False

    def set(self, index: int = 0, **values: Any) -> None:
        """Change readings of one GPU, e.g. ``set(0, temperature_c=86, encoder_sessions=2)``."""
        with self._lock:
            self._readings[index] = replace(self._readings[index], **values)

    def set_temperature(self, temperature_c: int | None, index: int = 0) -> None:
        self.set(index, temperature_c=temperature_c)

    def fail(self, reason: str | None) -> None:
        """Make :meth:`sample` raise :class:`GpuUnavailableError` (``None``: work again)."""
        with self._lock:
            self._failure = reason

    def sample(self) -> list[GpuReading]:
        with self._lock:
            self.samples += 1
            if self._failure is not None:
                raise GpuUnavailableError(self._failure)
            return list(self._readings)

    def close(self) -> None:
        self.closed = True


# --- decisions -------------------------------------------------------------------------------


def temperature_state(
    previous_paused: bool,
    temp_c: int | None,
    max_c: int,
    resume_c: int,
    *,
    index: int = 0,
) -> tuple[bool, str | None]:
    """Whether GPU work is paused now, with hysteresis, and the reason to show.

    Why hysteresis: a GPU hovering at the limit would otherwise stop and start encodes every
    sample. Paused at ``temp_c >= max_c``; once paused it stays paused until ``temp_c <=
    resume_c``. An unreadable temperature (``None``) never pauses: the GPU's own thermal
    slowdown still protects it, and a guard that can never clear would stall castui for good.
    """
    if temp_c is None:
        return False, None
    if temp_c >= max_c:
        return True, f"paused: GPU {index} at {temp_c} °C ≥ {max_c} °C (resumes at {resume_c})"
    if previous_paused and temp_c > resume_c:
        return True, (
            f"paused: GPU {index} at {temp_c} °C, cooling down (limit {max_c} °C, "
            f"resumes at {resume_c})"
        )
    return False, None
