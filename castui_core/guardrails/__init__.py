"""Guardrails: conditions under which castui starts no new job or pauses running encodes.

GPU temperature (with hysteresis) and NVENC sessions via NVML, free space on the destination,
optional CPU/memory limits, and processing windows. Decisions are pure functions (table-tested);
:class:`Guardrails` samples in threads, keeps state and reports trips and clears once each.
"""

from __future__ import annotations

from castui_core.guardrails.disk import (
    FreeSpace,
    FreeSpaceReader,
    disk_reason,
    format_gb,
    gb_to_bytes,
    read_free_space,
)
from castui_core.guardrails.gpu import (
    FakeGpu,
    GpuBackend,
    GpuReading,
    GpuUnavailableError,
    NoGpu,
    NvmlGpu,
    open_gpu_backend,
    temperature_state,
)
from castui_core.guardrails.load import LoadLimits, LoadReading, PsutilLoad, load_reason
from castui_core.guardrails.monitor import (
    LOAD,
    NVENC_SESSIONS,
    SCHEDULE,
    Guardrails,
    JobNeeds,
    OnChange,
    disk_guard,
    gpu_temperature_guard,
    session_cap_reason,
)
from castui_core.guardrails.schedule import (
    Window,
    in_window,
    next_window_start,
    parse_window,
    schedule_reason,
)

__all__ = [
    "LOAD",
    "NVENC_SESSIONS",
    "SCHEDULE",
    "FakeGpu",
    "FreeSpace",
    "FreeSpaceReader",
    "GpuBackend",
    "GpuReading",
    "GpuUnavailableError",
    "Guardrails",
    "JobNeeds",
    "LoadLimits",
    "LoadReading",
    "NoGpu",
    "NvmlGpu",
    "OnChange",
    "PsutilLoad",
    "Window",
    "disk_guard",
    "disk_reason",
    "format_gb",
    "gb_to_bytes",
    "gpu_temperature_guard",
    "in_window",
    "load_reason",
    "next_window_start",
    "open_gpu_backend",
    "parse_window",
    "read_free_space",
    "schedule_reason",
    "session_cap_reason",
    "temperature_state",
]
