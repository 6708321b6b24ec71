"""Optional CPU and memory limits: no new job while the machine is busy with other things.

Why only for *new* jobs: pausing an encode because the system got busy would keep its
temporary output and memory around for longer; stopping new work is enough to let the
machine recover. Why a small hysteresis: a load hovering at the limit would otherwise trip
and clear every sample, filling the audit log over months of service.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

#: Once tripped, a limit clears only this many percentage points below it (at most half of it).
LOAD_HYSTERESIS_PCT = 5.0


@dataclass(frozen=True)
class LoadLimits:
    """``None``: no limit (the default; castui's own encodes are expected to load the CPU)."""

    max_cpu_percent: float | None = None
    max_memory_percent: float | None = None


@dataclass(frozen=True)
class LoadReading:
    """System-wide use in percent; ``cpu_percent`` is ``None`` until it means something."""

    cpu_percent: float | None
    memory_percent: float | None


def _resume_at(limit: float) -> float:
    return limit - min(LOAD_HYSTERESIS_PCT, limit / 2)


def _pct(value: float) -> str:
    return f"{value:.0f}%"


def _one(what: str, value: float | None, limit: float | None, tripped: bool) -> str | None:
    if value is None or limit is None:
        return None
    if value > limit:
        return f"{what} {_pct(value)} > {_pct(limit)}"
    resume = _resume_at(limit)
    if tripped and value > resume:
        return f"{what} {_pct(value)}, not yet below {_pct(resume)} (limit {_pct(limit)})"
    return None


def load_reason(
    cpu_percent: float | None,
    mem_percent: float | None,
    limits: LoadLimits,
    *,
    tripped: bool = False,
) -> str | None:
    """Why no new job may start because of load, or ``None``.

    ``tripped``: the guard refused at the previous sample; then each limit clears only once
    its value is at or below the resume point (the limit minus :data:`LOAD_HYSTERESIS_PCT`).
    """
    parts = [
        part
        for part in (
            _one("CPU load", cpu_percent, limits.max_cpu_percent, tripped),
            _one("memory use", mem_percent, limits.max_memory_percent, tripped),
        )
        if part is not None
    ]
    if not parts:
        return None
    return "waiting: " + "; ".join(parts)


class PsutilLoad:
    """Real system load from psutil.

    ``psutil.cpu_percent(interval=None)`` averages since the previous call without blocking,
    which is what a periodic sampler wants; but the first call (and a call right after the
    previous one) is meaningless, so such readings report ``cpu_percent=None`` instead of a
    spurious 0 % or 100 %.
    """

    def __init__(self, min_interval_s: float = 0.5) -> None:
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last: float | None = None

    def prime(self) -> None:
        """Start the CPU measurement interval (blocks briefly: call it off the event loop)."""
        with self._lock:
            psutil.cpu_percent(interval=None)
            self._last = time.monotonic()

    def read(self) -> LoadReading:
        """Current load (blocks briefly: call it off the event loop)."""
        with self._lock:
            now = time.monotonic()
            cpu: float | None = psutil.cpu_percent(interval=None)
            if self._last is None or now - self._last < self._min_interval_s:
                cpu = None
            self._last = now
            memory = psutil.virtual_memory().percent
        return LoadReading(cpu, float(memory))
