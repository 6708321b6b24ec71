from __future__ import annotations

import asyncio

from castui_core.bus import EventBus
from castui_core.events import FileDecided, ScanProgress


def _progress(decided: int, library: str = "A") -> ScanProgress:
    return ScanProgress(library=library, found=10, decided=decided, walk_done=False)


async def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    first, second = bus.subscribe(), bus.subscribe()
    events = [FileDecided("A", f"/m/{i}.mkv", 1, "skip", ()) for i in range(3)]
    for event in events:
        bus.publish(event)
    for sub in (first, second):
        assert [await asyncio.wait_for(sub.get(), 1) for _ in events] == events


async def test_progress_coalesces_per_key_for_a_slow_subscriber() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(100):
        bus.publish(_progress(i))
    bus.publish(_progress(5, library="B"))
    got = [sub.get_nowait(), sub.get_nowait(), sub.get_nowait()]
    assert got == [_progress(99), _progress(5, library="B"), None]


async def test_close_ends_iteration_after_draining() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(_progress(1))
    bus.close()
    received = [event async for event in sub]
    assert received == [_progress(1)]
