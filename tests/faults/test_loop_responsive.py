"""Issue 10 item 17: asking the guardrails whether a job may start never blocks the loop.

``Guardrails.can_start`` used to wait for the free-space read with a synchronous
``future.result(timeout=disk_timeout_s)``: a slow disk (a network share that takes a second
to answer statvfs) froze the whole event loop - the bus, the dashboard, every heartbeat - for
that long, on every claim. A ticker task measures the loop's latency while a real thread
reads "free space" slowly; the bus must keep delivering meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from pathlib import Path

from castui_core.bus import EventBus
from castui_core.events import LogLine
from castui_core.guardrails import FakeGpu, FreeSpace, Guardrails, JobNeeds, LoadReading
from castui_core.settings import GuardrailSettings

GB = 1_000_000_000
SLOW_READ_S = 1.0
TICK_S = 0.01


async def _ask(guard: Guardrails, job: JobNeeds) -> str | None:
    """``can_start`` as the engine calls it (the original was synchronous)."""
    answer = guard.can_start(job)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


async def test_slow_free_space_read_does_not_stall_the_loop_or_the_bus() -> None:
    reading = threading.Event()
    slow_calls = 0

    def slow_disk(path: Path) -> FreeSpace:
        nonlocal slow_calls
        slow_calls += 1
        reading.set()
        time.sleep(SLOW_READ_S)  # a real blocking read in the guard's thread
        return FreeSpace(1000 * GB, "/media")

    bus = EventBus()
    sub = bus.subscribe()
    guard = Guardrails(
        GuardrailSettings(sample_interval_s=300.0),
        min_free_bytes=0,
        bus=bus,
        gpu=FakeGpu(),
        free_space=slow_disk,
        load=lambda: LoadReading(10.0, 20.0),
        disk_timeout_s=5.0,
    )
    gaps: list[float] = []
    delivered = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        # Publishes on the bus like a running job's progress would, and measures how late
        # each tick comes: the loop's latency.
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            gaps.append(now - last - TICK_S)
            last = now
            bus.publish(LogLine("debug", "tick"))

    async def reader() -> None:
        nonlocal delivered
        async for event in sub:
            if isinstance(event, LogLine) and event.message == "tick":
                delivered += 1

    async with guard:
        tick_task = asyncio.create_task(ticker())
        read_task = asyncio.create_task(reader())
        await asyncio.sleep(0.05)  # let the ticker take its first measurements
        gaps.clear()
        delivered_before = delivered
        started = time.monotonic()
        answer = await _ask(guard, JobNeeds("cpu", Path("/media/a.mkv"), GB))
        took = time.monotonic() - started
        stop.set()
        await tick_task
        sub.close()
        read_task.cancel()
        await asyncio.gather(read_task, return_exceptions=True)

    assert reading.is_set() and slow_calls == 1
    assert answer is None  # the slow read did answer: plenty of space
    assert took >= SLOW_READ_S * 0.9  # the question really waited for the slow disk
    worst = max(gaps)
    assert worst < 0.25, f"the event loop stalled for {worst:.2f} s while free space was read"
    # The bus kept moving: ticks every ~10 ms for a second reached the subscriber.
    assert delivered - delivered_before >= 20, delivered - delivered_before
