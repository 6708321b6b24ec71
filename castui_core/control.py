"""Attach to a running engine: a Unix socket next to the database, and its client.

Why: ``castui --no-ui`` runs as a service for months; an operator who SSHes in and types
``castui`` must see *that* engine's live progress and steer it, not start a second engine on
the same database (two engines would both claim work and fight over the GPU). The engine's
owner (headless mode, or the TUI when it runs the engine in-process) starts a
:class:`ControlServer`; ``castui`` finds the socket with :func:`find_live_socket` and uses a
:class:`RemoteEngine`, which has the same command methods as :class:`Engine` and a local
:class:`EventBus` fed from the socket, so a front end cannot tell the two apart.

Protocol: JSON lines over ``<database dir>/castui.sock`` (mode 0600: only the service's user
may steer it). A connection sends requests ``{"id": n, "op": "...", ...}`` and gets replies
``{"id": n, "ok": true, "result": ...}`` or ``{"id": n, "ok": false, "error": "..."}``. The
request ``{"op": "subscribe"}`` turns the connection into an event stream: first the current
state (queue paused, tripped guardrails, library states, GPU readings), then every bus event
as ``{"event": "JobProgress", "fields": {...}}``. The bus already coalesces progress for a slow
reader, so a slow SSH link gets the newest progress, never a growing backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from castui_core import events as ev
from castui_core.bus import EventBus
from castui_core.engine import Engine
from castui_core.errors import CastuiError
from castui_core.events import Event
from castui_core.settings import Settings, load_settings
from castui_core.store import Job, Store

SOCKET_NAME = "castui.sock"
_LINE_LIMIT = 4 * 1024 * 1024  # a JobStarted with a long argv, an error with stderr

#: Every event class by name, for decoding the stream.
EVENT_TYPES: dict[str, type[Event]] = {
    name: cls
    for name, cls in vars(ev).items()
    if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
}


def socket_path(database: Path) -> Path:
    """Where the control socket of the engine using ``database`` lives."""
    return database.parent / SOCKET_NAME


def encode_event(event: Event) -> dict[str, Any]:
    return {"event": type(event).__name__, "fields": dataclasses.asdict(event)}


def _tuples(value: Any) -> Any:
    """JSON arrays back to tuples: every sequence field of an event is a tuple."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def decode_event(data: dict[str, Any]) -> Event | None:
    """The event a stream line describes; ``None`` for a kind this version does not know."""
    cls = EVENT_TYPES.get(str(data.get("event")))
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls)}
    fields = {k: _tuples(v) for k, v in dict(data.get("fields") or {}).items() if k in known}
    try:
        return cls(**fields)
    except TypeError:
        return None


def is_live(path: Path, timeout_s: float = 0.5) -> bool:
    """Whether something accepts connections on the socket ``path`` (blocking, short)."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def find_live_socket(database: Path) -> Path | None:
    """The control socket of a running engine on ``database``, or ``None``."""
    path = socket_path(database)
    return path if is_live(path) else None


async def current_state_events(engine: Engine) -> list[Event]:
    """Events that describe the engine's state now, for a viewer that joins late."""
    paused = await engine.store.is_paused()
    found: list[Event] = [
        ev.QueueState(paused=paused, reason="paused by an operator" if paused else "")
    ]
    for name, reason in engine.guardrails.active.items():
        found.append(ev.GuardrailTripped(name=name, reason=reason))
    for reading in engine.guardrails.gpu_readings:
        found.append(
            ev.GpuSample(
                index=reading.index,
                name=reading.name,
                temperature_c=reading.temperature_c,
                encoder_percent=reading.encoder_percent,
                encoder_sessions=reading.encoder_sessions,
            )
        )
    if engine.ingest is not None:
        found.extend(engine.ingest.library_states().values())
    return found


def _job_result(job: Job) -> dict[str, Any]:
    return {"id": job.id, "state": str(job.state), "priority": job.priority}


class ControlServer:
    """Serves one :class:`Engine` on its control socket while the engine runs."""

    def __init__(self, engine: Engine, path: Path | None = None) -> None:
        self.engine = engine
        self.path = path if path is not None else socket_path(engine.settings.database)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._inode: int | None = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen; a socket file nobody listens on (a crashed engine's) is replaced."""
        if await asyncio.to_thread(is_live, self.path):
            raise CastuiError(
                f"another castui engine is already serving {self.path}; "
                "run `castui` to attach to it instead of starting a second engine"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)  # the socket is created 0600: no window for others
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=_LINE_LIMIT
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        self._inode = self.path.stat().st_ino

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        # Remove the file only if it is still ours (a newer engine may have replaced it).
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                except ValueError as exc:
                    await _send(writer, {"id": None, "ok": False, "error": f"bad request: {exc}"})
                    continue
                if request.get("op") == "subscribe":
                    await self._stream(reader, writer)
                    return
                await _send(writer, await self._answer(request))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        rid = request.get("id")
        try:
            result = await self._command(str(request.get("op")), request)
        except CastuiError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"id": rid, "ok": False, "error": f"bad request: {exc!r}"}
        return {"id": rid, "ok": True, "result": result}

    async def _command(self, op: str, req: dict[str, Any]) -> Any:
        engine = self.engine
        actor = str(req.get("actor") or "operator")
        if op == "ping":
            return {"pid": os.getpid(), "owner": engine.owner}
        if op == "pause":
            await engine.pause_queue(actor=actor, reason=req.get("reason"))
            return None
        if op == "resume":
            await engine.resume_queue(actor=actor, reason=req.get("reason"))
            return None
        if op == "cancel":
            return _job_result(await engine.cancel_job(int(req["job_id"]), actor=actor))
        if op == "retry":
            return _job_result(await engine.retry_job(int(req["job_id"]), actor=actor))
        if op == "set_priority":
            job = await engine.store.set_priority(
                int(req["job_id"]), int(req["priority"]), actor=actor
            )
            return _job_result(job)
        if op == "scan":
            library = req.get("library")
            # A scan of a big library takes minutes: answer now, report through events.
            task = asyncio.create_task(engine.scan(str(library) if library else None))
            task.add_done_callback(self._scan_done)
            return None
        if op == "reload":
            settings = await asyncio.to_thread(load_settings, engine.settings.source)
            await engine.reload(settings)
            return None
        if op == "running":
            return sorted(engine.running)
        raise ValueError(f"unknown op {op!r}")

    def _scan_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.engine.bus.publish(ev.LogLine(level="error", message=f"scan failed: {exc}"))

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sub = self.engine.bus.subscribe()  # before the snapshot: nothing falls in between
        closed = asyncio.create_task(reader.read())  # EOF: the viewer went away

        async def pump() -> None:
            for event in await current_state_events(self.engine):
                await _send(writer, encode_event(event))
            async for event in sub:
                await _send(writer, encode_event(event))

        streaming = asyncio.create_task(pump())
        try:
            await asyncio.wait({closed, streaming}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sub.close()
            for task in (closed, streaming):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _send(writer: asyncio.StreamWriter, data: dict[str, Any]) -> None:
    writer.write(json.dumps(data, default=str).encode() + b"\n")
    await writer.drain()


class RemoteEngine:
    """An engine running in another process, driven through its control socket.

    Same command methods as :class:`Engine`; ``bus`` carries the remote engine's events and
    ``store`` is this process's own read handle on the shared database (history, job details).
    """

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        self.settings = settings
        self.path = path if path is not None else socket_path(settings.database)
        self.bus = EventBus()
        self.store: Store
        self.remote_pid: int | None = None
        self.connected = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._events_writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._ids = 0
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RemoteEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                str(self.path), limit=_LINE_LIMIT
            )
            events_reader, self._events_writer = await asyncio.open_unix_connection(
                str(self.path), limit=_LINE_LIMIT
            )
        except OSError as exc:
            raise CastuiError(f"cannot attach to the castui service at {self.path}: {exc}") from exc
        info = await self._call("ping")
        self.remote_pid = int(info["pid"])
        # Read-only-ish handle: never reclaim leases or prune: the service owns the queue.
        self.store = await Store.connect(
            self.settings.database, reclaim_on_open=False, event_retention_s=None
        )
        await _send(self._events_writer, {"op": "subscribe"})
        self.connected = True
        self._pump = asyncio.create_task(self._read_events(events_reader))

    async def stop(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        for writer in (self._writer, self._events_writer):
            if writer is not None:
                writer.close()
        self._writer = self._events_writer = None
        if hasattr(self, "store"):
            await self.store.close()
        self.bus.close()

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                with contextlib.suppress(ValueError):
                    event = decode_event(json.loads(line))
                    if event is not None:
                        self.bus.publish(event)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        self.connected = False
        self.bus.publish(
            ev.LogLine(level="error", message="lost the connection to the castui service")
        )

    async def _call(self, op: str, **args: Any) -> Any:
        async with self._lock:
            if self._reader is None or self._writer is None:
                raise CastuiError("not attached to a castui service")
            self._ids += 1
            try:
                await _send(self._writer, {"id": self._ids, "op": op, **args})
                line = await self._reader.readline()
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                raise CastuiError(f"the castui service went away: {exc}") from exc
            if not line:
                raise CastuiError("the castui service closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise CastuiError(str(reply.get("error") or "the castui service refused"))
        return reply.get("result")

    # --- the Engine command surface ---------------------------------------------------------

    async def pause_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self._call("pause", actor=actor, reason=reason)

    async def resume_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self._call("resume", actor=actor, reason=reason)

    async def cancel_job(self, job_id: int, *, actor: str = "operator") -> Job:
        await self._call("cancel", job_id=job_id, actor=actor)
        return await self.store.get_job(job_id)

    async def retry_job(self, job_id: int, *, actor: str = "operator") -> Job:
        await self._call("retry", job_id=job_id, actor=actor)
        return await self.store.get_job(job_id)

    async def set_priority(self, job_id: int, priority: int, *, actor: str = "operator") -> Job:
        await self._call("set_priority", job_id=job_id, priority=priority, actor=actor)
        return await self.store.get_job(job_id)

    async def scan(self, library: str | None = None) -> None:
        await self._call("scan", library=library)

    async def reload(self, settings: Settings) -> None:
        """The service re-reads its own settings file (the one just saved)."""
        self.settings = settings
        await self._call("reload")

    async def running_ids(self) -> list[int]:
        return [int(i) for i in await self._call("running")]
