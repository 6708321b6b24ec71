"""Optional Prometheus metrics for the headless service (``metrics: {enabled: true}``).

Fed from the event bus plus a periodic count of the queue by state, served on the configured
address (loopback by default: the endpoint has no authentication) by one threaded WSGI
listener that also answers ``/healthz`` and ``/readyz`` (castui_core/health.py), so a
supervisor needs one port, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

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
from castui_core.health import Health

if TYPE_CHECKING:
    from castui_core.engine import Engine


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request: a slow /readyz never holds up a scrape."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every 15 s would flood stderr; the service logs what matters itself."""


_App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _routes(metrics_app: _App, health: Health) -> _App:
    """/healthz and /readyz from ``health``, everything else from prometheus-client."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            status, body = health.live() if path == "/healthz" else health.ready()
            phrase = "200 OK" if status == 200 else "503 Service Unavailable"
            start_response(
                phrase,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return metrics_app(environ, start_response)

    return app


class _NodeLabelled(Collector):
    """The registry's families with ``node="<this node>"`` added to every sample at scrape
    time: the collectors keep their own labels (tests and code read them unchanged) while
    Prometheus gets one label to tell the nodes sharing a queue apart."""

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self._registry = registry
        self._node = node

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if not self._node:
                yield family
                continue
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                s._replace(labels={**s.labels, "node": self._node}) for s in family.samples
            ]
            yield labelled


class Metrics:
    """Collectors on a private registry, updated from the bus."""

    def __init__(
        self, bus: EventBus, *, registry: CollectorRegistry | None = None, node: str = ""
    ) -> None:
        self.registry = registry or CollectorRegistry()
        #: This castui's node name: a scrape gives every series a ``node`` label (see
        #: :class:`_NodeLabelled`), so nodes sharing a queue are told apart by node.
        self.node = node
        r = self.registry
        self.queue_depth = Gauge(
            "castui_queue_jobs",
            "Jobs by state (queued, running; failed and dead wait for castui retry)",
            ["state"],
            registry=r,
        )
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
        self.node_last_seen = Gauge(
            "castui_node_last_seen_seconds",
            "When each node sharing the queue last sent its heartbeat (epoch seconds, the"
            " queue's clock); label seen_node is that node",
            ["seen_node", "role"],
            registry=r,
        )
        self.node_claiming = Gauge(
            "castui_node_claiming",
            "1 while this node claims jobs; 0 while its path map misses a library or the queue"
            " is unreachable",
            registry=r,
        )
        self._jellyfin_seen = (0, 0)  # the sender's sent/failed totals already counted
        self._sub = bus.subscribe()
        self._tasks: list[asyncio.Task[None]] = [asyncio.create_task(self._follow())]
        self._server: WSGIServer | None = None
        self.health: Health | None = None

    @property
    def port(self) -> int:
        """The bound port (``listen: 127.0.0.1:0`` picks a free one)."""
        assert self._server is not None, "serve() first"
        return int(self._server.server_port)

    def serve(
        self, listen: str, engine: Engine, *, refresh_s: float = 15.0, stall_s: float = 10.0
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.health = Health(engine, stall_s=stall_s)
        scraped = CollectorRegistry(auto_describe=False)
        scraped.register(_NodeLabelled(self.registry, self.node))
        app = _routes(make_wsgi_app(scraped), self.health)
        try:
            server = make_server(
                host, int(port), app, _ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(
                f"metrics: cannot listen on {listen}: {exc.strerror}; change metrics.listen"
            ) from exc
        self._server = server
        threading.Thread(target=server.serve_forever, name="castui-http", daemon=True).start()
        self._tasks.append(asyncio.create_task(self._count_queue(engine, refresh_s)))

    async def _count_queue(self, engine: Engine, refresh_s: float) -> None:
        while True:
            counts: dict[str, int] = {"queued": 0, "running": 0}
            for job in await engine.queue.active_jobs():
                counts[job.state.value] = counts.get(job.state.value, 0) + 1
            # Failed and dead jobs wait for an operator (castui retry): counted so an alert can
            # say "a job went dead" without reading the database.
            totals = await engine.queue.totals()
            counts["failed"], counts["dead"] = totals.failed, totals.dead
            for state, n in counts.items():
                self.queue_depth.labels(state=state).set(n)
            for status in await engine.queue.nodes():
                self.node_last_seen.labels(seen_node=status.name, role=status.role).set(
                    status.last_seen
                )
            claiming = engine.refusal is None and engine.queue_problem is None
            self.node_claiming.set(1 if claiming else 0)
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
        if self.health is not None:
            self.health.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
