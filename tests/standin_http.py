"""The HTTP plumbing the stand-in servers share (tests/jellyfin_standin.py, tests/arr_standin.py).

Each stand-in is a real HTTP server on 127.0.0.1 that castui talks to; what differs is only
how it answers (:meth:`StandinServer.handle`). Listening, stopping and restarting on the same
port (``down()``/``up()``, for "the service went away and came back") and turning a request
into a :class:`Recorded` live here once.
"""

from __future__ import annotations

import abc
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def raw(self) -> str:
        """Everything sent, as text: for "the key appears nowhere else" checks."""
        head = "".join(f"{k}: {v}\n" for k, v in self.headers.items())
        return f"{self.method} {self.path}?{self.query}\n{head}\n{self.body.decode('latin-1')}"


class StandinServer(abc.ABC):
    """A server that answers each request with :meth:`handle`; ``url`` is where it listens.

    ``http_methods``: the methods it serves (any other is answered 501 by the standard
    library, as a server without that route would).
    """

    http_methods: tuple[str, ...] = ("GET", "POST")

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.up()
        return self

    def up(self) -> None:
        """Listen (again, on the same port after :meth:`down`)."""
        if self._server is not None:
            return
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: new connections are refused (like a stopped service)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> None:
        """The end of a test: stop listening (a subclass also cancels its own timers)."""
        self.down()

    @abc.abstractmethod
    def handle(self, rec: Recorded) -> tuple[int, Any]:
        """The status and JSON payload (None: no body) to answer ``rec`` with."""


def _handler_for(standin: StandinServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so down() really refuses the next request
        # instead of a kept-alive connection still being served.
        protocol_version = "HTTP/1.0"

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec = Recorded(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.time(),
            )
            status, payload = standin.handle(rec)
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout); nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    for method in standin.http_methods:
        setattr(Handler, f"do_{method}", Handler._serve)
    return Handler
