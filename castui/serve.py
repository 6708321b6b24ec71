"""``castui serve``: the dashboard in a web browser, through textual-serve.

How it is put together, and why:

* textual-serve starts one process per browser session (every page load, every reload) and
  pipes the terminal to the page over a websocket. That process is the ``castui`` dashboard
  itself (``python -m castui --config FILE``), so a browser shows exactly what a terminal
  shows, with the same attach logic (:func:`castui.tui.app.dashboard_for`).
* Because a reload is a new process, a session must never own the engine: closing or
  reloading a tab would stop running encodes and requeue them. So ``castui serve`` makes
  sure a service runs before the first page can load: when this user's service already
  runs on the database it is used as is; otherwise ``serve`` starts ``castui --no-ui`` (the
  same headless service systemd runs) and stops it when ``serve`` stops. Every session then
  attaches; none starts an engine of its own. The service is started and its lock taken
  before the port listens, so no session can race it to an in-process engine.
* textual-serve has no authentication: anyone who reaches the port drives the dashboard.
  Only loopback addresses are allowed unless ``--allow-remote`` is given; the message
  recommends an SSH tunnel or a reverse proxy with authentication.
* textual-serve runs its command through a shell (``create_subprocess_shell``): the command
  is built with :func:`shlex.join`, so a settings path with spaces or quotes stays one word.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from castui.cli_args import add_config
from castui_core.datadir import prepare_data_dir
from castui_core.errors import CastuiError, ConfigError
from castui_core.settings import Settings, load_settings

DEFAULT_LISTEN = "127.0.0.1:8765"
#: How long the service started by ``serve`` may take to hold its lock before serve gives up.
SERVICE_START_TIMEOUT_S = 60.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``castui serve`` to the main parser."""
    serve = subparsers.add_parser(
        "serve",
        help="serve the dashboard in a web browser (loopback only unless --allow-remote)",
        description=(
            "Serve the castui dashboard in a web browser (textual-serve). Each browser"
            " session runs the dashboard attached to the castui service on the database;"
            " when none runs, serve starts one (castui --no-ui) and stops it on Ctrl-C."
            " textual-serve has no authentication: keep it on loopback and reach it through"
            " an SSH tunnel (ssh -L 8765:127.0.0.1:8765 HOST) or a reverse proxy with"
            " authentication."
        ),
    )
    add_config(serve)
    serve.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default: {DEFAULT_LISTEN}; IPv6 as [::1]:8765)",
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback address (no authentication: put a proxy with auth before it)",
    )
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="the URL browsers use, when it differs (behind a reverse proxy: https://…)",
    )
    serve.set_defaults(handler=run_serve)


@dataclass(frozen=True)
class Listen:
    """Where to listen: ``host`` as the socket API takes it (no brackets) and ``port``."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """``127.0.0.1:8765``, ``localhost:8765``, ``[::1]:8765``, ``8765`` (loopback) -> Listen."""
    value = text.strip()
    if value.isdigit():
        host, port_text = "127.0.0.1", value
    elif value.startswith("["):
        inner, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"--listen {text!r}: write an IPv6 address as [::1]:8765")
        host, port_text = inner, rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise ConfigError(
                f"--listen {text!r}: write HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765"
            )
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"--listen {text!r}: the port must be a number from 1 to 65535")
    return Listen(host, int(port_text))


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address.

    A name is resolved (``localhost`` usually is 127.0.0.1 and ::1); one that also resolves
    to another address, or not at all, is not loopback: better refused than exposed.
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_listen(listen: Listen, allow_remote: bool) -> None:
    """Refuse a non-loopback address without ``--allow-remote``, saying what to do instead."""
    if allow_remote or is_loopback(listen.host):
        return
    raise ConfigError(
        f"--listen {listen.host}:{listen.port} is not a loopback address, and textual-serve"
        " has no authentication: anyone who reaches the port could drive castui. Keep the"
        f" default ({DEFAULT_LISTEN}) and use an SSH tunnel from your machine"
        f" (ssh -L 8765:127.0.0.1:8765 HOST, then open http://127.0.0.1:8765), or a reverse"
        " proxy with authentication on this host (serve stays on loopback; --public-url gives"
        " the proxy's address). --allow-remote serves on this address anyway"
    )


def check_port_free(listen: Listen) -> None:
    """Bind once before anything starts: a taken port is said before a service is started
    for nothing (aiohttp would only find out after the start-up hooks ran)."""
    try:
        infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CastuiError(
            f"cannot serve on {listen.host}:{listen.port}: {exc.strerror or exc}"
        ) from exc
    for fam, kind, proto, _name, address in infos:
        with socket.socket(fam, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
            try:
                sock.bind(address)
            except OSError as exc:
                raise CastuiError(
                    f"cannot serve on {listen.host}:{listen.port}: {exc.strerror or exc};"
                    " pick another port with --listen"
                ) from exc


def castui_argv(settings: Settings, *extra: str) -> list[str]:
    """``castui`` run by this very interpreter (no PATH lookup), on the same settings file."""
    argv = [sys.executable, "-m", "castui", *extra]
    if settings.source is not None:
        argv += ["--config", str(Path(settings.source).resolve())]
    return argv


def session_command(settings: Settings) -> str:
    """The shell command textual-serve runs per browser session: the castui dashboard.

    textual-serve takes a command string for a shell, so each argument is quoted with
    :func:`shlex.join`; a settings path is never interpolated unquoted.
    """
    return shlex.join(castui_argv(settings))


def _hostname(netloc: str) -> str:
    """``host:port``, ``[::1]:port`` or ``host`` -> the bare host name, lower case."""
    value = netloc.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value


def _is_loopback_name(name: str) -> bool:
    """``localhost`` or a loopback IP literal (no lookup: a name an attacker controls may
    resolve to 127.0.0.1, which is what DNS rebinding relies on)."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def request_refusal(
    host: str | None, origin: str | None, *, public_url: str, listen: Listen, loopback: bool
) -> str | None:
    """Why a request is refused, or ``None`` when it may drive the dashboard.

    textual-serve checks neither header, and any web page the person visits can open a
    websocket to ``ws://127.0.0.1:8765`` (websockets are not bound by the same-origin
    policy) or reach it through DNS rebinding, then type into castui. So:

    * ``Host`` must name this server: the ``--listen`` host, the ``--public-url`` host, or
      (``loopback``: it listens on loopback) ``localhost`` or a loopback IP. A rebinding
      attacker's own name, resolving to 127.0.0.1, is refused;
    * the ``Origin`` a browser sends must be this server's own: the ``Host`` it asked for,
      or the public URL (a reverse proxy may rewrite ``Host``). Another site's page is
      refused.
    """
    from urllib.parse import urlsplit

    public = urlsplit(public_url)
    if not host:
        return "no Host header"
    name = _hostname(host)
    named = name in (_hostname(public.netloc), _hostname(listen.host))
    if not (named or (loopback and _is_loopback_name(name))):
        return f"Host {host!r} is not this server's"
    if origin is not None:
        parts = urlsplit(origin)
        own = parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
        proxied = (parts.scheme, parts.netloc.lower()) == (public.scheme, public.netloc.lower())
        if not (own or proxied):
            return f"Origin {origin!r} is another site"
    return None


def _server_class() -> type[Any]:
    """The textual-serve server with castui's start-up and shutdown (imported late: the
    other subcommands do not need aiohttp)."""
    from aiohttp import web
    from textual_serve.server import Server, log

    class CastuiServer(Server):
        """textual-serve's server, plus the service it needs and a clean stop.

        Sessions are tracked so that a stop (Ctrl-C, SIGTERM) quits each session's dashboard
        at once; aiohttp would otherwise wait up to a minute for open websockets.
        """

        def __init__(self, settings: Settings, listen: Listen, public_url: str | None) -> None:
            super().__init__(
                session_command(settings),
                host=listen.host,
                port=listen.port,
                title="castui",
                public_url=public_url or listen.url,
            )
            self.settings = settings
            self.listen = listen
            self.loopback = is_loopback(listen.host)
            self.service: asyncio.subprocess.Process | None = None
            self.service_lost: int | None = None  # its exit code, when it died under us
            self.sessions: set[asyncio.Task[Any]] = set()
            self._stopping = False
            self._watch: asyncio.Task[None] | None = None

        async def on_startup(self, app: web.Application) -> None:
            self.service = await start_service(self.settings)
            if self.service is None:
                self.console.print("attaching browser sessions to the running castui service")
            else:
                self.console.print(
                    f"started the castui service (pid {self.service.pid}); it stops with serve"
                )
                self._watch = asyncio.create_task(self._watch_service(self.service))
            self.console.print(
                f"castui dashboard on {self.public_url} — Ctrl-C stops it", highlight=False
            )

        def _guard(self, request: web.Request) -> None:
            why = request_refusal(
                request.headers.get("Host"),
                request.headers.get("Origin"),
                public_url=self.public_url,
                listen=self.listen,
                loopback=self.loopback,
            )
            if why is not None:
                log.warning("refused %s %s: %s", request.method, request.path, why)
                raise web.HTTPForbidden(text=f"castui serve: refused: {why}\n")

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            self._guard(request)
            response: web.StreamResponse = await super().handle_index(request)
            return response

        async def handle_download(self, request: web.Request) -> web.StreamResponse:
            self._guard(request)
            response: web.StreamResponse = await super().handle_download(request)
            return response

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            self._guard(request)
            task = asyncio.current_task()
            assert task is not None
            self.sessions.add(task)
            try:
                response: web.WebSocketResponse = await super().handle_websocket(request)
                return response
            finally:
                self.sessions.discard(task)

        async def _watch_service(self, service: asyncio.subprocess.Process) -> None:
            """The service serve started died (killed, crashed): every session would only
            say "service lost" from now on, so serve says why and stops (exit 1)."""
            code = await service.wait()
            if self._stopping:
                return
            self.service_lost = code
            self.console.print(
                f"the castui service (pid {service.pid}) exited with code {code}; stopping",
                highlight=False,
            )
            asyncio.get_running_loop().call_soon(self.request_exit)

        async def on_shutdown(self, app: web.Application) -> None:
            self._stopping = True
            # Cancelling a session makes textual-serve send its dashboard "quit" and wait for
            # it: each dashboard disconnects (an attached one leaves the service's jobs alone).
            sessions = list(self.sessions)
            for task in sessions:
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)
            await asyncio.to_thread(_end_sessions, self.service.pid if self.service else None)
            if self.service is not None:
                self.console.print("stopping the castui service (running jobs get its grace)")
                await stop_service(self.service)
            if self._watch is not None:
                await self._watch  # ends with the service's exit

    return CastuiServer


def _end_sessions(service_pid: int | None, grace_s: float = 10.0) -> None:
    """Every browser session's dashboard has ended when serve stops (runs in a thread).

    The sessions were asked to quit; a cancellation that lands while textual-serve is still
    starting or stopping one can skip that, and a loaded machine can take seconds to let a
    dashboard go. So the session processes (serve's children, except the service, which stops
    next with its own grace) get ``grace_s`` to exit, then SIGTERM, then SIGKILL: no dashboard
    outlives the serve that started it (seen once in CI).
    """
    import psutil

    me = psutil.Process()
    keep = set()
    if service_pid is not None:
        with contextlib.suppress(psutil.Error):
            service = psutil.Process(service_pid)
            keep = {service_pid, *(c.pid for c in service.children(recursive=True))}
    try:
        left = [c for c in me.children(recursive=True) if c.pid not in keep]
    except psutil.Error:
        return
    _, left = psutil.wait_procs(left, timeout=grace_s)
    for signal_name in ("terminate", "kill"):
        if not left:
            return
        for proc in left:
            with contextlib.suppress(psutil.Error):
                getattr(proc, signal_name)()
        _, left = psutil.wait_procs(left, timeout=3)


async def start_service(settings: Settings) -> asyncio.subprocess.Process | None:
    """Start ``castui --no-ui`` unless this user's service already runs on the database.

    Returns once the service holds its lock (``find_service`` sees it), so a dashboard
    started after this attaches; ``None`` when one already ran. Raises when it exits first.
    """
    # Here, not at the top: castui_core.control imports the engine, and every castui
    # command imports this module to register `serve` (0.25 s of start-up for `castui scan`).
    from castui_core.control import find_service

    if await asyncio.to_thread(find_service, settings.database) is not None:
        return None
    argv = castui_argv(settings, "--no-ui")
    process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
    exited = asyncio.create_task(process.wait())
    deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
    try:
        while await asyncio.to_thread(find_service, settings.database) is None:
            if time.monotonic() > deadline:
                await stop_service(process)
                raise CastuiError(
                    f"the castui service did not start within {SERVICE_START_TIMEOUT_S:.0f} s;"
                    " run `castui --no-ui` on its own to see why"
                )
            # Wake on the service's exit at once, else look again in a tenth of a second.
            await asyncio.wait({exited}, timeout=0.1)
            if exited.done():
                raise CastuiError(
                    f"the castui service stopped at start (exit {exited.result()}), see the"
                    " lines above; nothing is served"
                )
    except BaseException:
        exited.cancel()
        raise
    exited.cancel()
    return process


async def stop_service(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the service's own clean stop: no new claims, grace for running jobs), wait."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    await process.wait()


def run_serve(args: argparse.Namespace) -> int:
    """``castui serve``: check the address and settings, then serve until Ctrl-C."""
    listen = parse_listen(args.listen)
    check_listen(listen, args.allow_remote)
    if _is_unspecified(listen.host) and not args.public_url:
        raise ConfigError(
            f"--listen {listen.host}: the page tells the browser where to connect back, and"
            " an any-address is no such place: give --public-url with the URL browsers use"
            " (e.g. https://castui.example.org behind the proxy)"
        )
    check_port_free(listen)
    settings = load_settings(args.config)
    prepare_data_dir(settings.database)  # an unwritable folder: one sentence, before serving
    server = _server_class()(settings, listen, args.public_url)
    try:
        server.serve()
        if server.service_lost is not None:
            raise CastuiError(
                f"the castui service that serve started exited (code {server.service_lost});"
                " see its lines above, or run `castui --no-ui` on its own to see why"
            )
    except OSError as exc:  # the port is taken, the address is not this machine's
        raise CastuiError(
            f"cannot serve on {listen.host}:{listen.port}: {exc.strerror or exc}; pick another"
            " with --listen"
        ) from exc
    return 0
