"""Liveness and readiness for the headless service (``/healthz`` and ``/readyz``).

Served next to ``/metrics`` by the same HTTP listener (a thread, not the event loop): a
supervisor (systemd watchdog script, Kubernetes probes, a load balancer) asks these instead
of guessing from the process table.

* ``/healthz``: the process answers and its event loop is responsive. Measured, not assumed:
  a ticker on the loop stamps the time every ``tick_s``; the HTTP thread compares that stamp
  with the clock, so a loop stuck in a blocking call shows as a growing lag and a 503.
* ``/readyz``: the service can do its work now: the database answers a query through the
  engine's own store (on the loop, with a timeout), every library root is there and mounted,
  and ffmpeg is an executable file. Each check has a state and a reason; any failing check
  gives 503 with the reason, so the operator reads what to fix from the probe's body.

The checks are plain functions of the filesystem (table-testable); only the database check
needs the running loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from castui_core.errors import CastuiError
from castui_core.tools import find_tool

if TYPE_CHECKING:
    from castui_core.engine import Engine
    from castui_core.settings import Settings

FSTAB = Path("/etc/fstab")


@dataclass(frozen=True)
class Probe:
    """One check's verdict: ``ok`` and a sentence saying what was seen (and what to do)."""

    name: str
    ok: bool
    reason: str


def fstab_mount_points(text: str) -> set[str]:
    """Mount points named in an fstab (comments and swap skipped; octal escapes decoded)."""
    points: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#") or fields[1] in ("none", "swap"):
            continue
        points.add(fields[1].replace("\\040", " ").rstrip("/") or "/")
    return points


def check_library_root(
    name: str, path: Path, *, fstab_points: set[str], is_mount: Callable[[Path], bool]
) -> Probe:
    """A library root must exist, be a folder, and be mounted if fstab says it is a mount.

    An unmounted share leaves an empty folder behind: castui would see every file as gone.
    The fstab tells a mount point that is not mounted from a library that is just empty.
    """
    label = f"library {name}"
    if not path.exists():
        return Probe(label, False, f"{path} is missing (renamed, or its share is not mounted)")
    if not path.is_dir():
        return Probe(label, False, f"{path} is not a folder: fix the library's path")
    if str(path).rstrip("/") in fstab_points and not is_mount(path):
        return Probe(
            label, False, f"{path} is in /etc/fstab but not mounted: mount it (sudo mount {path})"
        )
    if not os.access(path, os.R_OK | os.X_OK):
        return Probe(label, False, f"{path} is not readable by this user")
    return Probe(label, True, f"{path} is there")


def check_ffmpeg(configured: Path | None) -> Probe:
    try:
        found = find_tool("ffmpeg", configured)
    except CastuiError as exc:
        return Probe("ffmpeg", False, str(exc))
    return Probe("ffmpeg", True, f"{found} is executable")


def verdict(probes: Sequence[Probe]) -> tuple[int, bytes]:
    """HTTP status and JSON body: 200 when every check passes, else 503."""
    ok = all(p.ok for p in probes)
    body = {"status": "ok" if ok else "fail", "checks": [asdict(p) for p in probes]}
    return (200 if ok else 503), json.dumps(body, indent=1).encode()


class Health:
    """The ticker (on the loop) and the two endpoints' answers (from the HTTP thread)."""

    def __init__(
        self,
        engine: Engine,
        *,
        tick_s: float = 1.0,
        stall_s: float = 10.0,
        db_timeout_s: float = 5.0,
        fstab: Path = FSTAB,
    ) -> None:
        self._engine = engine
        self._tick_s = tick_s
        self._stall_s = stall_s
        self._db_timeout_s = db_timeout_s
        self._fstab = fstab
        self._loop = asyncio.get_running_loop()
        self._last_tick = time.monotonic()
        self._lock = threading.Lock()
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            with self._lock:
                self._last_tick = time.monotonic()
            await asyncio.sleep(self._tick_s)

    def _loop_probe(self) -> Probe:
        with self._lock:
            lag = time.monotonic() - self._last_tick
        if lag > self._stall_s:
            return Probe(
                "event loop", False, f"no tick for {lag:.1f}s (limit {self._stall_s:g}s): stuck"
            )
        return Probe("event loop", True, f"last tick {lag:.1f}s ago")

    def live(self) -> tuple[int, bytes]:
        """Called from the HTTP thread."""
        return verdict([self._loop_probe()])

    def ready(self) -> tuple[int, bytes]:
        """Called from the HTTP thread (never blocks the loop; waits on it with a timeout)."""
        settings: Settings = self._engine.settings
        probes = [self._loop_probe(), self._database()]
        try:
            fstab_text = self._fstab.read_text(encoding="utf-8", errors="replace")
        except OSError:
            fstab_text = ""
        points = fstab_mount_points(fstab_text)
        for library in settings.libraries:
            probes.append(
                check_library_root(
                    library.name, library.path, fstab_points=points, is_mount=os.path.ismount
                )
            )
        probes.append(check_ffmpeg(settings.ffmpeg))
        return verdict(probes)

    def _database(self) -> Probe:
        # The queue (the store, or a shared Redis): the engine cannot work without it.
        # getattr: before start() the engine has neither, and its queue property raises.
        queue = getattr(self._engine, "queue", None)
        if queue is None:
            return Probe("database", False, "the engine has not opened the database yet")
        future = asyncio.run_coroutine_threadsafe(queue.is_paused(), self._loop)
        try:
            paused = future.result(timeout=self._db_timeout_s)
        except FutureTimeout:
            future.cancel()
            return Probe(
                "database", False, f"no answer in {self._db_timeout_s:g}s (locked, or loop stuck)"
            )
        except CastuiError as exc:
            return Probe("database", False, str(exc))
        except Exception as exc:  # the probe reports every failure as a reason, never a 500
            return Probe("database", False, f"{type(exc).__name__}: {exc}")
        return Probe("database", True, "queue answers" + (" (paused)" if paused else ""))

    def close(self) -> None:
        self._task.cancel()
