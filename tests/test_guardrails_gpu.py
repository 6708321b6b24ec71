"""GPU backends: the real NVML path (no driver here), NVML → reading translation, FakeGpu."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import pytest

from castui_core.guardrails import (
    FakeGpu,
    GpuBackend,
    GpuReading,
    GpuUnavailableError,
    NoGpu,
    NvmlGpu,
    open_gpu_backend,
)


def _nvml_library_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_nvml_library_loads(), reason="an NVIDIA driver is installed here")
def test_real_nvml_without_driver_is_no_gpu_with_a_reason() -> None:
    """No mocking: the real pynvml on a machine without the NVIDIA driver library."""
    backend = open_gpu_backend()
    assert isinstance(backend, NoGpu)
    assert backend.reason.startswith("no GPU: ")
    assert "libnvidia-ml.so.1" in backend.reason
    assert "driver" in backend.reason
    assert "NVML Shared Library Not Found" in backend.reason  # pynvml's own words kept


@pytest.mark.skipif(not _nvml_library_loads(), reason="no NVIDIA driver here")
def test_real_nvml_with_driver_reads_every_gpu() -> None:
    backend = open_gpu_backend()
    if isinstance(backend, NoGpu):
        pytest.skip(backend.reason)  # library present, but e.g. no device visible
    try:
        readings = backend.sample()
    finally:
        backend.close()
    assert readings and all(r.name for r in readings)
    assert all(r.temperature_c is None or 0 < r.temperature_c < 120 for r in readings)


# --- a stub of the pynvml module ----------------------------------------------------------------

NOT_SUPPORTED, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, GPU_IS_LOST = 3, 9, 12, 15


class StubNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {
            3: "Not Supported",
            9: "Driver Not Loaded",
            12: "NVML Shared Library Not Found",
        }.get(self.value, f"code {self.value}")


@dataclass
class Memory:
    used: int
    total: int


@dataclass
class StubNvml:
    """Just the functions and constants NvmlGpu uses, with per-query failures."""

    temps: list[int] = field(default_factory=lambda: [67, 45])
    names: list[Any] = field(default_factory=lambda: ["NVIDIA GeForce RTX 3060", b"Tesla T4"])
    fail: dict[str, int] = field(default_factory=dict)  # function name -> error code
    sessions: list[int] = field(default_factory=lambda: [2, 0])
    calls: list[str] = field(default_factory=list)

    NVMLError = StubNVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
    NVML_ERROR_DRIVER_NOT_LOADED = DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = LIBRARY_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = GPU_IS_LOST

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise StubNVMLError(self.fail[name])

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.temps)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> tuple[str, int]:
        self._call("nvmlDeviceGetHandleByIndex")
        return ("handle", i)

    def nvmlDeviceGetName(self, h: tuple[str, int]) -> Any:
        self._call("nvmlDeviceGetName")
        return self.names[h[1]]

    def nvmlDeviceGetTemperature(self, h: tuple[str, int], sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        self._call("nvmlDeviceGetTemperature")
        return self.temps[h[1]]

    def nvmlDeviceGetEncoderUtilization(self, h: tuple[str, int]) -> list[int]:
        self._call("nvmlDeviceGetEncoderUtilization")
        return [31 + h[1], 167000]

    def nvmlDeviceGetEncoderSessions(self, h: tuple[str, int]) -> list[object]:
        self._call("nvmlDeviceGetEncoderSessions")
        return [object()] * self.sessions[h[1]]

    def nvmlDeviceGetEncoderStats(self, h: tuple[str, int]) -> tuple[int, int, int]:
        self._call("nvmlDeviceGetEncoderStats")
        return (self.sessions[h[1]], 120, 900)

    def nvmlDeviceGetMemoryInfo(self, h: tuple[str, int]) -> Memory:
        self._call("nvmlDeviceGetMemoryInfo")
        return Memory(used=1_000_000 * (h[1] + 1), total=12_000_000_000)


def _started(stub: StubNvml) -> NvmlGpu:
    backend = open_gpu_backend(stub)
    assert isinstance(backend, NvmlGpu), backend
    return backend


def test_nvml_readings_are_translated() -> None:
    stub = StubNvml()
    backend = _started(stub)
    assert isinstance(backend, GpuBackend)
    assert backend.sample() == [
        GpuReading(0, "NVIDIA GeForce RTX 3060", 67, 31, 2, 1_000_000, 12_000_000_000),
        GpuReading(1, "Tesla T4", 45, 32, 0, 2_000_000, 12_000_000_000),  # bytes name decoded
    ]
    assert stub.calls.count("nvmlInit") == 1
    backend.close()
    backend.close()  # idempotent
    assert stub.calls.count("nvmlShutdown") == 1


def test_not_supported_query_gives_none_for_that_field_only() -> None:
    """An H100 has no NVENC: encoder queries are NotSupported, the temperature still counts."""
    stub = StubNvml(
        fail={
            "nvmlDeviceGetEncoderUtilization": NOT_SUPPORTED,
            "nvmlDeviceGetEncoderSessions": NOT_SUPPORTED,
            "nvmlDeviceGetEncoderStats": NOT_SUPPORTED,
        }
    )
    [first, _] = _started(stub).sample()
    assert first.temperature_c == 67
    assert first.encoder_percent is None
    assert first.encoder_sessions is None
    assert first.memory_total_bytes == 12_000_000_000


def test_session_count_falls_back_to_encoder_stats() -> None:
    stub = StubNvml(fail={"nvmlDeviceGetEncoderSessions": NOT_SUPPORTED})
    [first, second] = _started(stub).sample()
    assert (first.encoder_sessions, second.encoder_sessions) == (2, 0)
    assert "nvmlDeviceGetEncoderStats" in stub.calls


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (LIBRARY_NOT_FOUND, "libnvidia-ml.so.1 was not found"),
        (DRIVER_NOT_LOADED, "driver is not loaded"),
        (999, "NVML failed"),
    ],
)
def test_init_failure_is_no_gpu_not_an_exception(code: int, words: str) -> None:
    backend = open_gpu_backend(StubNvml(fail={"nvmlInit": code}))
    assert isinstance(backend, NoGpu)
    assert backend.reason.startswith("no GPU: ")
    assert words in backend.reason


def test_no_devices_is_no_gpu() -> None:
    backend = open_gpu_backend(StubNvml(temps=[], names=[]))
    assert backend == NoGpu("no GPU: the NVIDIA driver reports no GPUs")


def test_gpu_lost_raises_then_reinitializes_on_the_next_sample() -> None:
    stub = StubNvml()
    backend = _started(stub)
    stub.fail["nvmlDeviceGetTemperature"] = GPU_IS_LOST
    with pytest.raises(GpuUnavailableError, match="no GPU: the GPU fell off the bus"):
        backend.sample()
    del stub.fail["nvmlDeviceGetTemperature"]
    assert [r.temperature_c for r in backend.sample()] == [67, 45]
    assert stub.calls.count("nvmlInit") == 2  # shut down and re-initialized (driver update)
    assert stub.calls.count("nvmlShutdown") == 1


def test_unexpected_error_at_start_is_still_no_gpu() -> None:
    class Broken(StubNvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("boom")

    backend = open_gpu_backend(Broken())
    assert isinstance(backend, NoGpu)
    assert "RuntimeError: boom" in backend.reason


def test_fake_gpu_is_controlled_by_the_test() -> None:
    gpu = FakeGpu(2, temperature_c=50)
    assert isinstance(gpu, GpuBackend)
    gpu.set_temperature(86, index=1)
    gpu.set(0, encoder_sessions=3)
    readings = gpu.sample()
    assert [(r.temperature_c, r.encoder_sessions) for r in readings] == [(50, 3), (86, 0)]
    gpu.fail("no GPU: unplugged")
    with pytest.raises(GpuUnavailableError):
        gpu.sample()
    gpu.fail(None)
    assert len(gpu.sample()) == 2
    assert gpu.samples == 3
