"""Set-up shared by the end-to-end tests that run a real Engine on a CPU-only machine.

The Jellyfin confirmation, watch-history and Sonarr/Radarr tests each convert one real file
through a real engine; they share the way the file is placed and the engine is built here so
that a change to the Engine's constructor or the scanner's settle rule is made once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from castui_core.bus import Subscription
from castui_core.engine import Engine
from castui_core.events import Event
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.guardrails import FakeGpu
from castui_core.settings import Settings


def place_settled(sample: Path, dest: Path) -> Path:
    """Copy ``sample`` to ``dest`` with a modification time a minute old, so the scanner's
    settle window has already passed and the first scan queues it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample, dest)
    past = time.time() - 60
    os.utime(dest, (past, past))
    return dest


def cpu_engine(settings: Settings, *, scan_at_start: bool = True) -> Engine:
    """A real Engine that converts with libx264 (no NVENC, a fake GPU sampler), not watching
    the library, polling its queue quickly so a test sees a job start within a fraction of
    a second."""
    return Engine(
        settings,
        gpu=FakeGpu(),
        nvenc=NvencStatus(available=False, reason="test: CPU only"),
        watch=False,
        scan_at_start=scan_at_start,
        idle_poll_s=0.2,
    )


async def wait_event(
    sub: Subscription, predicate: Callable[[Event], bool], timeout: float = 30
) -> Event:
    """The first event on ``sub`` that ``predicate`` accepts; TimeoutError after ``timeout``
    seconds, so a test waits on what happened rather than on a sleep."""
    async with asyncio.timeout(timeout):
        while True:
            event = await sub.get()
            if predicate(event):
                return event
