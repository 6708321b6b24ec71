"""``castui serve`` in a real headless Chromium (Debian's, driven by Playwright).

One end-to-end run: ``castui serve`` as a real subprocess on a free loopback port with a
temp settings file; Chromium loads the page; the dashboard renders in the terminal (xterm.js);
``?`` opens the help; a screenshot is saved; SIGINT stops serve, its service and every
browser session's dashboard. The page's text is read from xterm.js's own screen buffer: the
terminal draws on a canvas, so there is no DOM text to look at. The terminal object is caught
by an init script when textual-serve's client stores it (``this.terminal = new Terminal()``).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from castui.serve import Listen, is_loopback, parse_listen, request_refusal, session_command
from castui_core.control import find_live_socket
from castui_core.errors import ConfigError
from castui_core.settings import load_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SETTINGS = """\
database: {db}
libraries:
  - name: media
    path: {lib}
    watch: off
scan:
  settle_seconds: 0
operational:
  encoder: cpu
"""

# Catch the xterm.js Terminal when textual-serve's client assigns it, and expose its screen.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, "terminal", {
      value, writable: true, configurable: true, enumerable: true,
    });
    if (value && typeof value.write === "function" && value.buffer) {
      window.__castuiTerminal = value;
      delete Object.prototype.terminal;
    }
  },
});
window.__castuiScreen = () => {
  const term = window.__castuiTerminal;
  if (!term) return "";
  const buffer = term.buffer.active;
  const rows = [];
  for (let i = 0; i < term.rows; i++) {
    const line = buffer.getLine(buffer.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
};
"""


def _serve_argv(settings_file: Path, listen: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "castui",
        "serve",
        "--config",
        str(settings_file),
        "--listen",
        listen,
    ]


WS_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def _status(port: int, path: str, headers: dict[str, str]) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Lines:
    """serve's output, read by a daemon thread, waited on line by line with a deadline."""

    def __init__(self, stream: object) -> None:
        self.seen: list[str] = []
        self.ended = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.0))
            except queue.Empty:
                break
            if line is None:
                self.ended = True
                break
            self.seen.append(line)
        if not any(text in line for line in self.seen):
            raise AssertionError(f"serve never said {text!r}; it said:\n{''.join(self.seen)}")

    def rest(self) -> str:
        """Everything serve said, up to its end (called once it has exited)."""
        while not self.ended:
            try:
                line = self._queue.get(timeout=10)
            except queue.Empty:
                break
            if line is None:
                self.ended = True
                break
            self.seen.append(line)
        return "".join(self.seen)


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float) -> None:
    """serve prints its address as aiohttp starts; the socket listens a moment after."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
        threading.Event().wait(0.05)  # retry interval of a condition wait, not a guess


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    (tmp_path / "my lib").mkdir()  # a space in the paths: the session command must quote
    path = tmp_path / "settings 'castui'.yaml"
    path.write_text(SETTINGS.format(db=tmp_path / "data" / "castui.db", lib=tmp_path / "my lib"))
    return path


@pytest.fixture
def serve(settings_file: Path, isolated_home: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = _free_port()
    proc = subprocess.Popen(
        _serve_argv(settings_file, f"127.0.0.1:{port}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C below never reaches pytest
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("ctrl_c", ["serve alone", "process group"])
def test_dashboard_in_headless_chromium(
    serve: tuple[subprocess.Popen[str], int], settings_file: Path, tmp_path: Path, ctrl_c: str
) -> None:
    """``ctrl_c``: SIGINT to serve alone (``kill -INT``: serve must stop its sessions and its
    service itself), or to its whole process group, as a terminal's Ctrl-C does."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: scripts/test installs it (apt-get)")
    from playwright.sync_api import Route, sync_playwright

    proc, port = serve
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    lines.wait_for("started the castui service", timeout=30)
    lines.wait_for(f"castui dashboard on http://127.0.0.1:{port}", timeout=10)
    _wait_listening(port, proc, timeout=10)
    base = f"http://127.0.0.1:{port}"
    settings = load_settings(settings_file)

    def only_loopback(route: Route) -> None:
        # The page asks for a web font; nothing leaves this machine in a test.
        if route.request.url.startswith(base):
            route.continue_()
        else:
            route.abort()

    shot = tmp_path / "castui-serve-help.png"  # the same picture in both runs
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            context.route("**/*", only_loopback)
            context.add_init_script(CATCH_TERMINAL)
            page = context.new_page()
            page.goto(base)
            screen = "window.__castuiScreen()"
            # The dashboard, attached to the service serve started (not an engine of its own).
            page.wait_for_function(
                f"{screen}.includes('Guardrails') && {screen}.includes('Queue: empty')"
                f" && {screen}.includes('attached to the castui service')",
                timeout=30_000,
            )
            assert find_live_socket(settings.database) is not None  # the service serve started
            sessions = list(psutil.Process(proc.pid).children(recursive=True))
            before = page.evaluate(screen)
            assert "keeps every file in the libraries" not in before
            page.locator(".xterm-helper-textarea").focus()
            page.keyboard.type("?")
            page.wait_for_function(
                f"{screen}.includes('keeps every file in the libraries playable')",
                timeout=10_000,
            )
            page.screenshot(path=str(shot))
        finally:
            context.close()

    assert shot.stat().st_size > 10_000  # a rendered page, not an empty one
    artifacts = os.environ.get("CASTUI_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / shot.name)

    # Ctrl-C: serve stops its sessions and its service, and exits 0.
    if ctrl_c == "serve alone":
        proc.send_signal(signal.SIGINT)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0, lines.rest()
    assert "stopping the castui service" in lines.rest()
    assert find_live_socket(settings.database) is None
    assert len(sessions) >= 2  # the service and the browser session's dashboard
    left = [p for p in sessions if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running after serve stopped: {[p.cmdline() for p in left]}"


def test_listen_is_loopback_unless_allowed(settings_file: Path, isolated_home: Path) -> None:
    """A non-loopback address is refused before anything starts, with what to do instead."""
    result = subprocess.run(
        _serve_argv(settings_file, "0.0.0.0:8765"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "ssh -L 8765:127.0.0.1:8765" in result.stderr
    assert "--allow-remote" in result.stderr
    assert "Traceback" not in result.stderr
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert parse_listen("[::1]:9000").url == "http://[::1]:9000"
    with pytest.raises(ConfigError):
        parse_listen("127.0.0.1:99999")


def test_session_command_quotes_the_settings_path(settings_file: Path) -> None:
    """textual-serve runs its command through a shell: the path must stay one word."""
    import shlex

    argv = shlex.split(session_command(load_settings(settings_file)))
    assert argv == [sys.executable, "-m", "castui", "--config", str(settings_file.resolve())]


def _wait_service(settings_file: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    database = load_settings(settings_file).database
    deadline = time.monotonic() + timeout
    while find_live_socket(database) is None:
        assert proc.poll() is None, "the service exited at start"
        assert time.monotonic() < deadline, "the service never listened"
        threading.Event().wait(0.05)  # retry interval of a condition wait


def test_serve_uses_the_running_service_and_leaves_it_running(
    settings_file: Path, isolated_home: Path
) -> None:
    """A service already runs: serve starts none, sessions attach, Ctrl-C leaves it alone."""
    import urllib.request

    service = subprocess.Popen(
        [sys.executable, "-m", "castui", "--no-ui", "--config", str(settings_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    port = _free_port()
    serve: subprocess.Popen[str] | None = None
    try:
        _wait_service(settings_file, service, timeout=30)  # first: serve must find it
        serve = subprocess.Popen(
            _serve_argv(settings_file, f"localhost:{port}"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert serve.stdout is not None
        lines = Lines(serve.stdout)
        lines.wait_for("attaching browser sessions to the running castui service", timeout=30)
        _wait_listening(port, serve, timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            html = page.read().decode()
        assert f"ws://localhost:{port}/ws" in html  # the page's websocket: serve's address
        # Another site's page, or a DNS-rebinding name, gets nothing (real HTTP, real serve).
        assert _status(port, "/", {"Host": f"rebind.example:{port}"}) == 403
        assert _status(port, "/ws", {**WS_UPGRADE, "Origin": "http://evil.example"}) == 403
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0, lines.rest()
        assert "stopping the castui service" not in lines.rest()
        assert service.poll() is None
        assert find_live_socket(load_settings(settings_file).database) is not None
    finally:
        for proc in (serve, service):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)


def test_a_taken_port_is_said_before_a_service_starts(
    settings_file: Path, isolated_home: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            _serve_argv(settings_file, f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "pick another port with --listen" in result.stderr
    assert "started the castui service" not in result.stdout
    assert find_live_socket(load_settings(settings_file).database) is None


def test_serve_stops_when_its_service_dies(settings_file: Path, isolated_home: Path) -> None:
    """The service serve started is killed: serve says so and exits 1 (no zombie web UI that
    could only ever say "service lost")."""
    import re

    port = _free_port()
    proc = subprocess.Popen(
        _serve_argv(settings_file, f"127.0.0.1:{port}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        lines.wait_for("started the castui service", timeout=30)
        found = re.search(r"started the castui service \(pid (\d+)\)", "".join(lines.seen))
        assert found is not None
        os.kill(int(found.group(1)), signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        assert "exited with code -9; stopping" in lines.rest()
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "castui: the castui service that serve started exited (code -9)" in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


LOCAL = Listen("127.0.0.1", 8765)
PROXIED = "https://castui.example.org"


@pytest.mark.parametrize(
    ("host", "origin", "public_url", "listen", "refused"),
    [
        ("127.0.0.1:8765", None, "http://127.0.0.1:8765", LOCAL, None),
        ("127.0.0.1:8765", "http://127.0.0.1:8765", "http://127.0.0.1:8765", LOCAL, None),
        ("localhost:8765", "http://localhost:8765", "http://127.0.0.1:8765", LOCAL, None),
        ("[::1]:8765", "http://[::1]:8765", "http://[::1]:8765", Listen("::1", 8765), None),
        # DNS rebinding: the attacker's name resolves to 127.0.0.1.
        ("rebind.example:8765", None, "http://127.0.0.1:8765", LOCAL, "Host"),
        # Another site's page opening ws://127.0.0.1:8765/ws.
        ("127.0.0.1:8765", "http://evil.example", "http://127.0.0.1:8765", LOCAL, "Origin"),
        ("127.0.0.1:8765", "null", "http://127.0.0.1:8765", LOCAL, "Origin"),
        ("127.0.0.1:8765", "http://127.0.0.1:9999", "http://127.0.0.1:8765", LOCAL, "Origin"),
        (None, None, "http://127.0.0.1:8765", LOCAL, "no Host header"),
        # A reverse proxy on the same host, with or without rewriting Host.
        ("127.0.0.1:8765", PROXIED, PROXIED, LOCAL, None),
        ("castui.example.org", PROXIED, PROXIED, LOCAL, None),
        ("castui.example.org", "https://evil.example", PROXIED, LOCAL, "Origin"),
        # --allow-remote on a LAN address: its own name only.
        ("192.0.2.10:8765", None, "http://192.0.2.10:8765", Listen("192.0.2.10", 8765), None),
        ("127.0.0.1:8765", None, "http://192.0.2.10:8765", Listen("192.0.2.10", 8765), "Host"),
    ],
)
def test_request_refusal(
    host: str | None, origin: str | None, public_url: str, listen: Listen, refused: str | None
) -> None:
    why = request_refusal(
        host, origin, public_url=public_url, listen=listen, loopback=is_loopback(listen.host)
    )
    if refused is None:
        assert why is None
    else:
        assert why is not None and why.startswith(refused)
