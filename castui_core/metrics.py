"""Optional Prometheus metrics for the headless service (``metrics: {enabled: true}``).

Fed from the event bus plus a periodic count of the queue by state, served by
prometheus-client's own HTTP server on the configured address (loopback by default: the
endpoint has no authentication).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from castui_core.bus import EventBus
from castui_core.errors import ConfigError
from castui_core.events import (
    GpuSample,
    GuardrailCleared,
    GuardrailTripped,
    JellyfinConfirmed,
    JellyfinState,
    JobFinished,
)

if TYPE_CHECKING:
    from castui_core.engine import Engine


class Metrics:
    """Collectors on a private registry, updated from the bus."""

    def __init__(self, bus: EventBus, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("castui_queue_jobs", "Jobs by state", ["state"], registry=r)
        self.finished = Counter(
            "castui_jobs_finished", "Jobs finished, by result", ["result"], registry=r
        )
        self.duration = Histogram(
            "castui_job_duration_seconds",
            "Wall time of finished jobs",
            buckets=(10, 30, 60, 300, 600, 1800, 3600, 7200, 14400),
            registry=r,
        )
        self.bytes_saved = Counter("castui_bytes_saved", "Source minus output bytes", registry=r)
        self.gpu_temp = Gauge(
            "castui_gpu_temperature_celsius", "GPU temperature", ["gpu"], registry=r
        )
        self.gpu_encoder = Gauge(
            "castui_gpu_encoder_utilization_percent", "NVENC utilization", ["gpu"], registry=r
        )
        self.guardrail = Gauge(
            "castui_guardrail_tripped", "1 while a guardrail holds work back", ["name"], registry=r
        )
        self.jellyfin_sent = Counter(
            "castui_jellyfin_notifications_sent", "Changes Jellyfin accepted", registry=r
        )
        self.jellyfin_failed = Counter(
            "castui_jellyfin_notifications_failed",
            "Changes in batches Jellyfin did not accept (each try counts)",
            registry=r,
        )
        self.jellyfin_pending = Gauge(
            "castui_jellyfin_notifications_pending",
            "Changes waiting in the outbox (stopped: refused, waiting for a settings fix)",
            ["state"],
            registry=r,
        )
        self.jellyfin_connected = Gauge(
            "castui_jellyfin_connected", "1 while Jellyfin answers", registry=r
        )
        self.jellyfin_problems = Gauge(
            "castui_jellyfin_check_problems", "Problems the last health check found", registry=r
        )
        self.jellyfin_confirmations = Counter(
            "castui_jellyfin_confirmations",
            "Jellyfin's verdict on outputs: direct_play, transcode (look at it), unconfirmed",
            ["result"],
            registry=r,
        )
        self._jellyfin_seen = (0, 0)  # the sender's sent/failed totals already counted
        self._sub = bus.subscribe()
        self._tasks: list[asyncio.Task[None]] = [asyncio.create_task(self._follow())]
        self._server: Any = None

    def serve(self, listen: str, engine: Engine, *, refresh_s: float = 15.0) -> None:
        host, _, port = listen.rpartition(":")
        try:
            self._server, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"metrics: cannot listen on {listen}: {exc.strerror}; change metrics.listen"
            ) from exc
        self._tasks.append(asyncio.create_task(self._count_queue(engine, refresh_s)))

    async def _count_queue(self, engine: Engine, refresh_s: float) -> None:
        while True:
            counts: dict[str, int] = {"queued": 0, "running": 0}
            for job in await engine.store.active_jobs():
                counts[job.state.value] = counts.get(job.state.value, 0) + 1
            for state, n in counts.items():
                self.queue_depth.labels(state=state).set(n)
            await asyncio.sleep(refresh_s)

    async def _follow(self) -> None:
        async for event in self._sub:
            if isinstance(event, JobFinished):
                self.finished.labels(result=event.status).inc()
                if event.status == "done":
                    self.duration.observe(event.seconds)
                    if event.bytes_after is not None and event.bytes_before > event.bytes_after:
                        self.bytes_saved.inc(event.bytes_before - event.bytes_after)
            elif isinstance(event, GpuSample):
                if event.temperature_c is not None:
                    self.gpu_temp.labels(gpu=str(event.index)).set(event.temperature_c)
                if event.encoder_percent is not None:
                    self.gpu_encoder.labels(gpu=str(event.index)).set(event.encoder_percent)
            elif isinstance(event, GuardrailTripped):
                self.guardrail.labels(name=event.name).set(1)
            elif isinstance(event, GuardrailCleared):
                self.guardrail.labels(name=event.name).set(0)
            elif isinstance(event, JellyfinState):
                self._jellyfin(event)
            elif isinstance(event, JellyfinConfirmed):
                self.jellyfin_confirmations.labels(result=event.status).inc()

    def _jellyfin(self, event: JellyfinState) -> None:
        sent, failed = self._jellyfin_seen
        self.jellyfin_sent.inc(max(0, event.sent - sent))
        self.jellyfin_failed.inc(max(0, event.failed - failed))
        self._jellyfin_seen = (max(sent, event.sent), max(failed, event.failed))
        self.jellyfin_pending.labels(state="pending").set(event.outbox_pending)
        self.jellyfin_pending.labels(state="stopped").set(event.outbox_stopped)
        self.jellyfin_connected.set(1 if event.connected else 0)
        self.jellyfin_problems.set(len(event.problems))

    def close(self) -> None:
        self._sub.close()
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
