"""Attach to a running engine: a Unix socket in a private folder beside the database.

Why: ``castui --no-ui`` runs as a service for months; an operator who SSHes in and types
``castui`` must see *that* engine's live progress and steer it, not start a second engine on
the same database (two engines would both claim work and fight over the GPU). The engine's
owner (headless mode, or the TUI when it runs the engine in-process) starts a
:class:`ControlServer`; ``castui`` finds the service with :func:`find_service` and uses a
:class:`RemoteEngine`, which implements the same :class:`~castui_core.api.EngineAPI` as
:class:`Engine` (mypy checks both, at the end of this module) and has a local
:class:`EventBus` fed from the socket, so a front end cannot tell the two apart. A
:class:`RemoteEngine` that loses its service says so on the bus (:class:`ServiceConnection`),
keeps trying with backoff and re-subscribes when the service is back.

Where: ``<database dir>/.castui-<uid>/castui.sock``. The folder is created 0700 and must be
owned by the user; the socket is 0600; both are checked before serving *and* before
connecting. Why a folder per user: the database folder may be writable by others (a shared
media disk), and whoever creates a socket file first would otherwise own the name: root's
service refused to start and root's dashboard attached to the impostor, showed its text and
sent it commands. A folder someone else made at our name is moved aside (root, or the owner
of the database folder, may) or refused with its owner's name. A database folder that anyone
may write to without the sticky bit is refused outright: anyone could replace the database.
``castui.lock`` in the same folder is held (``flock``) by the serving process for its whole
life, from before its engine starts: a dashboard opened while an engine starts waits for it
instead of starting a second engine.

Protocol: JSON lines. A connection sends requests ``{"id": n, "op": "...", ...}`` and gets
replies ``{"id": n, "ok": true, "result": ...}`` or ``{"id": n, "ok": false, "error": "..."}``.
Both are the typed models of :mod:`castui_core.control_messages`, shared by server and
client; a line that is not one of them gets an error reply naming what is wrong, and the
connection stays open.
The request ``{"op": "subscribe"}`` turns the connection into an event stream: first the
current state (queue paused, tripped guardrails, library states, GPU readings), then every bus
event as ``{"event": "JobProgress", "fields": {...}}``. The bus already coalesces progress for
a slow reader, so a slow SSH link gets the newest progress, never a growing backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pwd
import socket
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, assert_never

from pydantic import BaseModel, TypeAdapter, ValidationError

from castui_core import control_messages as msg
from castui_core import errors
from castui_core import events as ev
from castui_core.api import (
    EngineAPI,
    StoreReads,
)
from castui_core.bus import EventBus
from castui_core.engine import Engine
from castui_core.errors import CastuiError, ProblemsError, SettingsRejected
from castui_core.events import Event
from castui_core.queue.open import open_queue
from castui_core.queue.protocol import JobQueue
from castui_core.report import Calibration
from castui_core.settings import Settings, load_settings
from castui_core.settings_update import Edit, SettingsUpdate, SettingsView
from castui_core.store import Job, Store

#: Under the service's "castui" logger: its log file gets the tracebacks.
_log = logging.getLogger("castui.control")
_T = TypeVar("_T")

SOCKET_NAME = "castui.sock"
LOCK_NAME = "castui.lock"
_DIR_PREFIX = ".castui-"
_LINE_LIMIT = 4 * 1024 * 1024  # a JobStarted with a long argv, an error with stderr
_CLAIM_RETRY_S = 1.0  # a dashboard's probe holds the lock for microseconds
_CONNECT_TIMEOUT_S = 5.0  # a service that accepts but never answers is not attached

#: Every event class by name, for decoding the stream.
EVENT_TYPES: dict[str, type[Event]] = {
    name: cls
    for name, cls in vars(ev).items()
    if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
}


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


class EngineRunningError(CastuiError):
    """Another castui engine of this user holds the database's control lock."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def user_name(uid: int) -> str:
    """``alice`` for a uid, or ``uid 1234`` when the system does not know it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def private_dir(database: Path) -> Path:
    """The folder only this user may use for the control socket of ``database``."""
    return database.parent / f"{_DIR_PREFIX}{os.geteuid()}"


def socket_path(database: Path) -> Path:
    """Where the control socket of this user's engine on ``database`` lives."""
    return private_dir(database) / SOCKET_NAME


#: Python 3.13+ removes a listening socket's file on close, by the address it was bound
#: to: for a ``/proc/self/fd`` address whose fd is closed by then, that fails with a logged
#: error. ``ControlServer.stop`` removes the file itself (only if it is still its own).
_NO_CLEANUP: dict[str, Any] = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}

#: What a socket address may hold: ``sun_path`` is 108 bytes, the last one a NUL.
_SUN_PATH_MAX = 107


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """An address to bind or connect the socket at ``path``, however long ``path`` is.

    Why: a database on a deep path (a long home folder, a NAS mount) put the control socket
    beyond the 107 bytes a socket address holds, and the engine died with "AF_UNIX path too
    long". Such a path is reached through ``/proc/self/fd/N`` of its folder (opened
    ``O_PATH`` for the call), so the socket file still lies next to the database where
    ``find_service`` looks for it.
    """
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.fsdecode(path.name)}"
    finally:
        os.close(fd)


def check_database_folder(folder: Path) -> None:
    """Refuse a folder anyone may write to without the sticky bit (a shared ``/srv`` made
    0777): there anyone can rename the database, its journal and the socket folder away and
    put their own in place, so no check of ours could be trusted."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return  # created by the store, with the user's umask
    except OSError as exc:
        raise CastuiError(f"cannot read the database folder {folder}: {exc.strerror}") from exc
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        mode = stat.S_IMODE(st.st_mode)
        raise CastuiError(
            f"the database folder {folder} is writable by every user (mode {mode:04o}) "
            "without the sticky bit: anyone could replace castui's database or its control "
            f"socket there; run `chmod o-w {folder}` (or `chmod +t {folder}`), "
            "or move `database:` to a folder of your own"
        )


class ForeignServiceError(CastuiError):
    """A castui service of another user runs on this database: never attached, never run
    beside (this is the whole answer, whatever else is wrong with the folder)."""


def _foreign(path: Path, uid: int) -> ForeignServiceError:
    who = user_name(uid)
    return ForeignServiceError(
        f"a castui service owned by {who} is running on this database ({path}); castui "
        f"attaches only to a service of its own user: run `castui` as {who} "
        f"(`sudo -u {who} castui`), or remove {path} if no castui of {who} runs"
    )


def _check_private(folder: Path, st: os.stat_result) -> None:
    """The socket folder must be ours and closed to others, or nothing in it is trusted."""
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise _foreign(folder, st.st_uid)
    if st.st_mode & 0o022:
        raise CastuiError(
            f"{folder} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"castui keeps its control socket there only when it is private: "
            f"run `chmod 700 {folder}`"
        )


def verify_socket(path: Path) -> None:
    """Before connecting: the socket and its folder belong to this user and nobody else may
    write to them (an impostor's socket is never talked to)."""
    try:
        _check_private(path.parent, os.lstat(path.parent))
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise CastuiError(f"no castui service is listening at {path}") from exc
    except OSError as exc:
        raise CastuiError(f"cannot check the castui socket {path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise _foreign(path, st.st_uid)
    if st.st_mode & 0o022:
        raise CastuiError(
            f"the castui socket {path} is writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); castui does not attach to it: "
            f"stop the service and remove {path}"
        )


def ensure_private_dir(folder: Path) -> Path:
    """Create (or take back) the 0700 socket folder before serving.

    A folder at our name that someone else made is never used: it is moved aside (root, and
    the owner of a sticky database folder, may do that; an impostor then finds its socket
    renamed, and we say where) or refused with its owner's name.
    """
    check_database_folder(folder.parent)
    for _ in range(3):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        st = os.lstat(folder)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(folder, 0o700)  # ours: made with another mode, or a loose umask
            return folder
        aside = folder.with_name(f"{folder.name}.untrusted-{int(time.time())}-{os.getpid()}")
        try:
            os.rename(folder, aside)
        except OSError as exc:
            who = user_name(st.st_uid)
            raise CastuiError(
                f"{folder} belongs to {who}, not to {user_name(os.geteuid())}: someone may be "
                "waiting there for castui's control socket; castui will not use it. "
                f"Remove it (`sudo rm -r {folder}`) and start again"
            ) from exc
    raise CastuiError(f"{folder} keeps being re-created by another user; castui will not use it")


def lock_holder(folder: Path) -> int | None:
    """The pid of the process serving (or starting to serve) from ``folder``, or ``None``."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def is_live(path: Path, timeout_s: float = 0.5) -> bool:
    """Whether something accepts connections on the socket ``path`` (blocking, short)."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            with unix_address(path) as address:
                sock.connect(address)
        except OSError:
            return False
    return True


def find_live_socket(database: Path) -> Path | None:
    """This user's engine's control socket on ``database`` if it answers, else ``None``.

    Raises :class:`CastuiError` when the socket or its folder is not this user's own.
    """
    path = socket_path(database)
    if not path.exists():
        return None
    verify_socket(path)
    return path if is_live(path) else None


def find_service(database: Path) -> Path | None:
    """Where ``castui`` should attach, ``None`` to run the engine in-process, or a
    :class:`CastuiError` saying plainly why it can do neither (blocking: call before the UI).

    An engine of ours that is still starting (it holds the lock but does not listen yet) is
    returned too: the dashboard waits for it rather than start a second engine. A live
    service of another user is never attached to and never run beside.
    """
    check_database_folder(database.parent)
    ours = private_dir(database)
    path = ours / SOCKET_NAME
    try:
        st = os.lstat(ours)
    except FileNotFoundError:
        st = None
    if st is not None:
        try:
            _check_private(ours, st)
        except CastuiError:
            pass  # never talked to; the in-process engine moves it aside or names its owner
        else:
            if path.exists():
                verify_socket(path)
                if is_live(path):
                    return path
            if lock_holder(ours) is not None:
                return path  # starting: the RemoteEngine keeps trying until it listens
    with contextlib.suppress(OSError):
        for entry in database.parent.iterdir():
            if not entry.name.startswith(_DIR_PREFIX) or entry == ours:
                continue
            if not entry.name[len(_DIR_PREFIX) :].isdigit():
                continue  # a folder moved aside
            uid = os.lstat(entry).st_uid
            other = entry / SOCKET_NAME
            try:
                os.lstat(other)
            except FileNotFoundError:
                continue
            except PermissionError:
                raise _foreign(entry, uid) from None  # closed to us: it is there, it is theirs
            if is_live(other):
                raise _foreign(other, uid)
    return None


def _try_lock(path: Path) -> int | None:
    """An fd holding ``path`` locked with our pid written in it, or ``None`` if held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        keep = False
        try:
            owner = os.fstat(fd).st_uid
            if owner != os.geteuid():
                raise _foreign(path, owner)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed it as it stopped: lock the new one
                continue
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            keep = True
            return fd
        finally:
            if not keep:
                os.close(fd)


_SETTINGS_VIEW: TypeAdapter[SettingsView] = TypeAdapter(SettingsView)
_SETTINGS_UPDATE: TypeAdapter[SettingsUpdate] = TypeAdapter(SettingsUpdate)
_JOB_IDS: TypeAdapter[list[int]] = TypeAdapter(list[int])


def error_reply(rid: int | None, exc: CastuiError) -> msg.ErrorReply:
    """The reply for a refused command, with what the client needs to raise the same error."""
    problems: list[str | list[str]] | None = None
    if isinstance(exc, SettingsRejected):
        problems = [[path, why] for path, why in exc.problems]
    elif isinstance(exc, ProblemsError):
        problems = list(exc.problems)
    return msg.ErrorReply(
        id=rid,
        error=str(exc),
        error_type=type(exc).__name__,
        message=exc.message,
        problems=problems,
    )


def error_from_reply(reply: msg.ErrorReply) -> CastuiError:
    """The service's error as the same CastuiError subclass (with its problems) where the
    class can be rebuilt from them; otherwise a CastuiError with the service's text."""
    text = reply.error or "the castui service refused"
    message = reply.message if reply.message is not None else text
    cls = getattr(errors, reply.error_type or "", None)
    if not isinstance(cls, type) or not issubclass(cls, CastuiError):
        return CastuiError(text)
    problems = reply.problems or []
    if cls is SettingsRejected:
        pairs = tuple((p[0], p[1]) for p in problems if isinstance(p, list) and len(p) == 2)
        return SettingsRejected(message, pairs)
    if issubclass(cls, ProblemsError) and cls.__init__ is ProblemsError.__init__:
        return cls(message, tuple(p for p in problems if isinstance(p, str)))
    if cls.__init__ is CastuiError.__init__:
        return cls(message)
    return CastuiError(text)


def _job_result(job: Job) -> dict[str, Any]:
    return msg.JobRef(id=job.id, state=str(job.state), priority=job.priority).model_dump()


class ControlServer:
    """Serves one :class:`Engine` on its control socket while the engine runs.

    :meth:`claim` (also done by :meth:`start`) takes the folder's lock; call it before the
    engine starts, so that nothing else starts an engine on this database meanwhile and a
    dashboard opened meanwhile knows to wait for this one.
    """

    def __init__(self, engine: Engine, path: Path | None = None) -> None:
        self.engine = engine
        self.path = path if path is not None else socket_path(engine.settings.database)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._inode: int | None = None
        self._lock_fd: int | None = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def claim(self) -> None:
        """Make the private folder and hold its lock, or say who holds it."""
        if self._lock_fd is not None:
            return
        folder = self.path.parent
        try:
            folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            await asyncio.to_thread(ensure_private_dir, folder)
        except OSError as exc:
            raise CastuiError(
                f"cannot create castui's socket folder {folder}: {exc.strerror}; "
                "check that the database folder exists and is writable by this user"
            ) from exc
        deadline = time.monotonic() + _CLAIM_RETRY_S
        while True:
            fd = _try_lock(folder / LOCK_NAME)
            if fd is not None:
                self._lock_fd = fd
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)  # a dashboard's probe holds it for microseconds
        pid = lock_holder(folder)
        who = f" (pid {pid})" if pid else ""
        raise EngineRunningError(
            f"another castui engine{who} is already serving {self.path}; "
            "run `castui` to attach to it instead of starting a second engine",
            pid,
        )

    async def start(self) -> None:
        """Listen; a socket file nobody listens on (a crashed engine's) is replaced."""
        await self.claim()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # only we may write in the folder, and we hold its lock
        old_umask = os.umask(0o177)  # the socket is created 0600: no window for others
        try:
            with unix_address(self.path) as address:
                self._server = await asyncio.start_unix_server(
                    self._serve, path=address, limit=_LINE_LIMIT, **_NO_CLEANUP
                )
        except OSError as exc:
            raise CastuiError(
                f"castui cannot listen on its control socket {self.path} ({exc.strerror or exc});"
                " check that the database folder is on a local disk and writable by this user"
            ) from exc
        finally:
            os.umask(old_umask)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        self._inode = self.path.stat().st_ino

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
            # Remove the file only if it is still ours (a newer engine may have replaced it).
            with contextlib.suppress(OSError):
                if self.path.stat().st_ino == self._inode:
                    self.path.unlink()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            # Unlinked while still held: a claimer that opened the old file sees it is gone
            # (see _try_lock) and tries again; then the empty folder goes too.
            with contextlib.suppress(OSError):
                (self.path.parent / LOCK_NAME).unlink()
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                try:
                    request = msg.parse_request(line)
                except msg.BadRequest as exc:  # answered; the connection stays usable
                    await _send(writer, msg.ErrorReply(id=exc.rid, error=str(exc)))
                    continue
                if isinstance(request, msg.Subscribe):
                    await self._stream(reader, writer)
                    return
                await _send(writer, await self._answer(request))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ValueError:  # readline's form of a line over the limit: out of step, close
            _log.warning("control: a request over %d bytes; connection closed", _LINE_LIMIT)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, request: msg.Request) -> msg.OkReply | msg.ErrorReply:
        try:
            result = await self._command(request)
        except CastuiError as exc:
            return error_reply(request.id, exc)
        except Exception as exc:
            # A bug or an untranslated OSError (a reload out of inotify watches or file
            # handles): answered like a refusal, so the dashboard's command connection lives
            # on instead of dying under an event stream that still says "attached".
            _log.exception("control command %s failed", type(request).__name__)
            return error_reply(
                request.id,
                CastuiError(
                    f"the castui service failed on {type(request).__name__}: "
                    f"{type(exc).__name__}: {exc}; its log has the details (castui.log in"
                    " the data folder's logs); try again, or restart the service if it persists"
                ),
            )
        return msg.OkReply(id=request.id, result=result)

    async def _command(self, request: msg.Request) -> Any:
        engine = self.engine
        match request:
            case msg.Ping():
                return msg.PingResult(pid=os.getpid(), owner=engine.owner).model_dump()
            case msg.Pause(actor=actor, reason=reason):
                await engine.pause_queue(actor=actor, reason=reason)
            case msg.Resume(actor=actor, reason=reason):
                await engine.resume_queue(actor=actor, reason=reason)
            case msg.Cancel(job_id=job_id, actor=actor):
                return _job_result(await engine.cancel_job(job_id, actor=actor))
            case msg.Retry(job_id=job_id, actor=actor):
                return _job_result(await engine.retry_job(job_id, actor=actor))
            case msg.SetPriority(job_id=job_id, priority=priority, actor=actor):
                return _job_result(await engine.set_priority(job_id, priority, actor=actor))
            case msg.Scan(library=library):
                # A scan of a big library takes minutes: answer now, report through events.
                task = asyncio.create_task(engine.scan(library))
                task.add_done_callback(self._scan_done)
            case msg.Reload():
                settings = await asyncio.to_thread(load_settings, engine.settings.source)
                await engine.reload(settings)
            case msg.Running():
                return await engine.running_ids()
            case msg.RecordEvent(kind=kind, actor=actor, reason=reason, details=details):
                await engine.record_event(kind, actor=actor, reason=reason, details=details)
            case msg.RestoreOriginal(target=target, actor=actor):
                return await engine.restore_original(target, actor=actor)
            case msg.SettingsViewRequest():
                return _SETTINGS_VIEW.dump_python(await engine.settings_view(), mode="json")
            case msg.UpdateSettings(edits=edits, actor=actor, revision=revision):
                update = await engine.update_settings(
                    [Edit(tuple(e.path), e.value, e.remove, e.append, e.item) for e in edits],
                    actor=actor,
                    revision=revision,
                )
                return _SETTINGS_UPDATE.dump_python(update, mode="json")
            case msg.Calibrate(library=library):
                done = await engine.calibrate(library)
                return msg.CalibrationResult(
                    encoder=done.encoder, speeds=dict(done.speeds), failure=done.failure
                ).model_dump()
            case msg.Subscribe():  # handled by _serve before it gets here
                raise CastuiError("subscribe opens an event stream; send it first on a connection")
            case _:
                assert_never(request)
        return None

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
            for event in await self.engine.initial_events():
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


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the control socket at ``path`` (any length: see ``unix_address``)."""
    with unix_address(path) as address:
        return await asyncio.open_unix_connection(address, limit=_LINE_LIMIT)


async def _send(writer: asyncio.StreamWriter, data: dict[str, Any] | BaseModel) -> None:
    if isinstance(data, BaseModel):
        writer.write(msg.encode(data))
    else:
        writer.write(json.dumps(data, default=str).encode() + b"\n")
    await writer.drain()


class _LinkBroken(CastuiError):
    """The command connection itself failed (closed, reset, out of step): unusable from now
    on, so the dashboard drops the whole link and re-attaches."""


def _reply_as(adapter: TypeAdapter[_T], result: Any, what: str) -> _T:
    """A reply's result as ``T``; one a newer or older service shapes differently is a
    CastuiError saying so, never a pydantic error in a screen's worker."""
    try:
        return adapter.validate_python(result)
    except ValidationError as exc:
        raise CastuiError(
            f"the castui service's answer to {what} was not understood ({msg.describe(exc)});"
            " is it the same castui version? Restart the service or the dashboard after an"
            " upgrade"
        ) from exc


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: msg.Request
) -> Any:
    """One request and its reply on a command connection.

    Replies to other ids are skipped: a call cancelled after its request went out (a screen
    that loads again, a dashboard quitting) leaves its reply on the shared connection, and the
    next call must not read that as its own answer.
    """
    try:
        await _send(writer, request)
        while True:
            line = await reader.readline()
            if not line:
                raise _LinkBroken("the castui service closed the connection")
            try:
                reply = msg.REPLY.validate_json(line)
            except ValidationError as exc:
                raise CastuiError(
                    f"the castui service sent a reply castui cannot read: {msg.describe(exc)}"
                ) from exc
            if reply.id is None or request.id is None or reply.id == request.id:
                break  # else: the answer to a cancelled call; read on
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise _LinkBroken(f"the castui service went away: {exc}") from exc
    except ValueError as exc:  # a reply line over the limit: the stream is out of step
        raise _LinkBroken(f"the castui service sent a reply too long to read: {exc}") from exc
    if isinstance(reply, msg.ErrorReply):
        raise error_from_reply(reply)
    return reply.result


@dataclasses.dataclass
class _Link:
    """The two connections of one attachment: commands, and the event stream."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    events: asyncio.StreamReader
    events_writer: asyncio.StreamWriter
    pid: int

    def close(self) -> None:
        self.writer.close()
        self.events_writer.close()


class RemoteEngine(StoreReads):
    """An engine running in another process, driven through its control socket.

    Same command methods as :class:`Engine`; ``bus`` carries the remote engine's events and
    ``store`` is this process's own read handle on the shared database (history, job details).

    When the service goes away (killed, restarted, upgraded) the loss is published at once
    as :class:`ServiceConnection` ``lost``; the engine keeps trying with exponential backoff
    (``retry_initial_s`` doubling up to ``retry_max_s``) and, once the service answers
    again, re-subscribes (the service sends its current state first) and publishes
    ``attached``. ``wait_for_service``: the first connection may fail too (the service is
    still starting); without it, :meth:`start` raises when nothing answers.
    """

    def __init__(
        self,
        settings: Settings,
        path: Path | None = None,
        *,
        wait_for_service: bool = False,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.path = path if path is not None else socket_path(settings.database)
        self.bus = EventBus()
        self.store: Store
        self.remote_pid: int | None = None
        self.connected = False
        self._wait = wait_for_service
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._link: _Link | None = None
        self._lock = asyncio.Lock()
        self._ids = 0
        self._supervisor: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RemoteEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        link: _Link | None = None
        why = ""
        try:
            link = await self._open()
        except CastuiError as exc:
            if not self._wait:
                raise
            why = str(exc)
        else:  # commands work as soon as start returns
            self._link, self.remote_pid, self.connected = link, link.pid, True
        # Read-only-ish handle: never reclaim leases or prune: the service owns the queue.
        self.store = await Store.connect(
            self.settings.database, reclaim_on_open=False, event_retention_s=None
        )
        # Jobs are read where the service keeps them: this file, or the shared Redis.
        self._queue = await open_queue(self.settings, self.store)
        self._supervisor = asyncio.create_task(self._supervise(link, why))

    @property
    def queue(self) -> JobQueue:
        return getattr(self, "_queue", None) or self.store

    async def stop(self, grace_s: float | None = None) -> None:
        """Disconnect; ``grace_s`` is the service's business (its jobs keep running)."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        self._drop()
        queue = getattr(self, "_queue", None)
        if queue is not None and queue is not getattr(self, "store", None):
            await queue.close()
        if hasattr(self, "store"):
            await self.store.close()
        self.bus.close()

    async def _open(self) -> _Link:
        """Connect twice (commands, events), check who answers, subscribe."""
        try:
            await asyncio.to_thread(verify_socket, self.path)
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                reader, writer = await _connect(self.path)
                try:
                    events, events_writer = await _connect(self.path)
                except BaseException:
                    writer.close()
                    raise
                link = _Link(reader, writer, events, events_writer, pid=0)
                try:
                    info = await _request(reader, writer, msg.Ping(id=0))
                    link.pid = msg.PingResult.model_validate(info).pid
                    await _send(events_writer, msg.Subscribe())
                except BaseException:
                    link.close()
                    raise
        except TimeoutError as exc:
            raise CastuiError(f"the castui service at {self.path} does not answer") from exc
        except ValidationError as exc:
            raise CastuiError(
                f"cannot attach to the castui service at {self.path}: its answer to ping was "
                f"not understood ({msg.describe(exc)}); is it the same castui version?"
            ) from exc
        except (OSError, KeyError, TypeError, ValueError) as exc:
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CastuiError(
                f"cannot attach to the castui service at {self.path}: {text}"
            ) from exc
        return link

    def _drop(self) -> None:
        link, self._link = self._link, None
        self.connected = False
        if link is not None:
            link.close()

    async def _supervise(self, link: _Link | None, why: str) -> None:
        """Attached: forward events until the stream ends. Then say so and try again."""
        state = "waiting"
        attempt = 0
        delay = self._retry_initial_s
        while True:
            if link is not None:
                self._link, self.remote_pid, self.connected = link, link.pid, True
                # Before the service's own state events, so a viewer resets first.
                self.bus.publish(ev.ServiceConnection(state="attached", detail=f"pid {link.pid}"))
                why = await self._forward(link.events)
                self._drop()
                self.bus.publish(
                    ev.LogLine(
                        level="error",
                        message=f"lost the connection to the castui service (pid {link.pid}):"
                        f" {why}; retrying",
                    )
                )
                state, attempt, delay, link = "lost", 0, self._retry_initial_s, None
            attempt += 1
            self.bus.publish(
                ev.ServiceConnection(state=state, detail=why, retry_in_s=delay, attempt=attempt)
            )
            await asyncio.sleep(delay)  # backoff: a restart takes seconds, a reboot minutes
            delay = min(delay * 2, self._retry_max_s)
            try:
                link = await self._open()
            except CastuiError as exc:
                why = str(exc)

    async def _forward(self, reader: asyncio.StreamReader) -> str:
        """Publish every event of the stream; returns why it ended."""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return "the service closed the connection"
                with contextlib.suppress(ValueError):
                    event = decode_event(json.loads(line))
                    if event is not None:
                        self.bus.publish(event)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            return str(exc) or type(exc).__name__

    async def _call(self, request: msg.Request) -> Any:
        async with self._lock:
            link = self._link
            if link is None:
                raise CastuiError(
                    "the castui service is not reachable (castui keeps trying to re-attach); "
                    "try again when the dashboard says it is attached"
                )
            self._ids += 1
            request = request.model_copy(update={"id": self._ids})
            try:
                return await _request(link.reader, link.writer, request)
            except _LinkBroken:
                # The event stream may well still be up (the service lives): without this
                # the dashboard would say "attached" while every command fails. Closing the
                # link ends the stream's reader too, and the supervisor re-attaches.
                if self._link is link:
                    self._drop()
                raise

    # --- EngineAPI: commands go to the service ----------------------------------------------

    async def pause_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self._call(msg.Pause(actor=actor, reason=reason))

    async def resume_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self._call(msg.Resume(actor=actor, reason=reason))

    async def cancel_job(self, job_id: int, *, actor: str = "operator") -> Job:
        await self._call(msg.Cancel(job_id=job_id, actor=actor))
        return await self.store.get_job(job_id)

    async def retry_job(self, job_id: int, *, actor: str = "operator") -> Job:
        await self._call(msg.Retry(job_id=job_id, actor=actor))
        return await self.store.get_job(job_id)

    async def set_priority(self, job_id: int, priority: int, *, actor: str = "operator") -> Job:
        await self._call(msg.SetPriority(job_id=job_id, priority=priority, actor=actor))
        return await self.store.get_job(job_id)

    async def scan(self, library: str | None = None) -> None:
        await self._call(msg.Scan(library=library))

    async def reload(self, settings: Settings) -> None:
        """The service re-reads its own settings file (the one just saved)."""
        self.settings = settings
        await self._call(msg.Reload())

    async def record_event(
        self,
        kind: str,
        *,
        actor: str = "operator",
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Recorded by the service, in the database it owns (never written behind it)."""
        await self._call(
            msg.RecordEvent(
                kind=kind,
                actor=actor,
                reason=reason,
                details=dict(details) if details is not None else None,
            )
        )

    async def restore_original(self, target: int | str, *, actor: str = "operator") -> str:
        """Done by the service (its journal and database), never by this dashboard."""
        return str(await self._call(msg.RestoreOriginal(target=target, actor=actor)))

    async def running_ids(self) -> list[int]:
        return _reply_as(_JOB_IDS, await self._call(msg.Running()), "running")

    async def settings_view(self) -> SettingsView:
        """The service's settings (its file, secrets as ``set``)."""
        view = await self._call(msg.SettingsViewRequest())
        return _reply_as(_SETTINGS_VIEW, view, "settings_view")

    async def update_settings(
        self, edits: Sequence[Edit], *, actor: str = "dashboard", revision: str | None = None
    ) -> SettingsUpdate:
        """Sent to the service, which validates, writes its own file, audits and reloads;
        a refusal arrives as the same :class:`SettingsRejected`. This process's copy of the
        settings is then read again from the file the service wrote."""
        request = msg.UpdateSettings(
            edits=[
                msg.EditItem(
                    path=list(e.path), value=e.value, remove=e.remove, append=e.append, item=e.item
                )
                for e in edits
            ],
            actor=actor,
            revision=revision,
        )
        update = _reply_as(_SETTINGS_UPDATE, await self._call(request), "update_settings")
        if update.changes:
            with contextlib.suppress(CastuiError):
                self.settings = await asyncio.to_thread(load_settings, update.file)
        return update

    async def calibrate(self, library: str | None = None) -> Calibration:
        """Run by the service (its encoder, its NVENC probe, its cache file), asked on a
        connection of its own: it takes seconds per resolution class, and on the shared
        command connection this dashboard's pause or cancel would wait behind it."""
        try:
            await asyncio.to_thread(verify_socket, self.path)
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                reader, writer = await _connect(self.path)
        except (OSError, TimeoutError) as exc:
            raise CastuiError(
                f"the castui service at {self.path} is not reachable: {exc}; calibrate again"
                " when the dashboard says it is attached"
            ) from exc
        try:
            result = await _request(reader, writer, msg.Calibrate(id=1, library=library))
        finally:
            writer.close()
        try:
            done = msg.CalibrationResult.model_validate(result, strict=False)
        except ValidationError as exc:
            raise CastuiError(
                f"the castui service's calibration answer was not understood ({msg.describe(exc)});"
                " is it the same castui version?"
            ) from exc
        return Calibration(done.encoder, done.speeds, done.failure)

    async def initial_events(self) -> list[Event]:
        """Nothing: the service sends its state first on every (re-)subscription."""
        return []

    # --- EngineAPI: reads come from this process's read handle on the shared database ---------


#: mypy checks here that both engines implement every part of the one front-end API.
_IMPLEMENTATIONS: tuple[type[EngineAPI], ...] = (Engine, RemoteEngine)
