"""Issue 10 item 11: nobody else can sit on castui's control socket, or read its files.

Before: the socket was ``<database dir>/castui.sock``. With the database in a folder other
users can write to, another user created that name first: root's service refused to start
("already serving") and root's dashboard attached to the impostor. Now the socket lives in
``<database dir>/.castui-<uid>/`` (0700, checked with the socket before serving and before
connecting), a folder made at that name by someone else is moved aside, a folder anyone may
write to without the sticky bit is refused, another user's service is named ("a castui service
owned by nobody is running"), and the database, journal and logs are created owner-only.

The other user is real: ``setpriv`` runs a separate process as ``nobody``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import castui_env, run_castui
from realtime_site import clip

from castui_core import control
from castui_core.control import RemoteEngine, socket_path
from castui_core.errors import CastuiError
from castui_core.settings import load_settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run another user")

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

#: A process of another user that listens on a socket path and answers like castui would.
IMPOSTOR = r"""
import json, os, socket, sys
path, log = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(path), mode=0o777, exist_ok=True)
os.umask(0)
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(8)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    with open(log, "a") as f:
        f.write("connected\n")
    conn.sendall(json.dumps({"id": 1, "ok": True, "result": {"pid": 1}}).encode() + b"\n")
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user may write to (sticky, like /tmp): a shared media disk's data dir."""
    folder = Path(tempfile.mkdtemp(prefix="castui-shared-", dir="/tmp"))
    folder.chmod(0o1777)
    (folder / "lib").mkdir()
    (folder / "lib").chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_settings(folder: Path, database: Path, lib: Path) -> Path:
    path = folder / "settings.yaml"
    path.write_text(
        f"database: {database}\n"
        "libraries:\n"
        "  - name: Movies\n"
        f"    path: {lib}\n"
        "    watch: false\n"
        "operational: {encoder: cpu, min_free_gb: 0}\n"
        "scan: {settle_seconds: 0}\n"
        "service: {shutdown_grace_s: 0}\n"
    )
    path.chmod(0o644)
    return path


def as_nobody(argv: list[str], home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AS_NOBODY, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=castui_env(home),
        cwd="/",
    )


def impostor(path: Path, log: Path, home: Path) -> subprocess.Popen[str]:
    proc = as_nobody([sys.executable, "-c", IMPOSTOR, str(path), str(log)], home)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=10)
    assert path.stat().st_uid != 0
    return proc


def service(settings: Path, home: Path, *, user: str = "root") -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "castui", "--no-ui", "--config", str(settings)]
    if user == "nobody":
        return as_nobody(argv, home)
    return subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=castui_env(home),
    )


def attach_to(settings_file: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Wait until ``proc`` (root's service) answers on root's socket (or fail with its log)."""
    settings = load_settings(settings_file)

    async def attached() -> bool:
        try:
            async with RemoteEngine(settings) as remote:
                return remote.remote_pid == proc.pid
        except CastuiError:
            return False

    deadline = time.monotonic() + timeout
    while not asyncio.run(attached()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"root's service did not start or answer: {err[-2000:]}")
        time.sleep(0.1)  # the socket appearing has no event to wait on


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def dashboard(
    settings: Path, home: Path, *, user: str = "root"
) -> subprocess.CompletedProcess[str]:
    """``castui`` (the dashboard), which must say why it can neither attach nor start."""
    argv = [sys.executable, "-m", "castui", "--config", str(settings)]
    if user == "nobody":
        argv = [*AS_NOBODY, *argv]
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=castui_env(home),
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the dashboard started instead of saying it cannot attach: {exc.stderr!r}")


def test_impostor_sockets_neither_block_nor_fool_root(shared: Path, tmp_path: Path) -> None:
    database = shared / "castui.db"
    settings = write_settings(tmp_path, database, shared / "lib")
    log = shared / "impostor.log"
    log.touch()
    log.chmod(0o666)
    # One at the name castui used to use, one at the name it uses now (created first).
    squatters = [
        impostor(shared / "castui.sock", log, shared),
        impostor(shared / f".castui-{os.geteuid()}" / "castui.sock", log, shared),
    ]
    root = service(settings, tmp_path)
    try:
        attach_to(settings, root)
        # The dashboard finds root's own service, never the impostors'.
        found = control.find_service(database)
        assert found == socket_path(database)
        folder = found.parent
        st = folder.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
        assert stat.S_IMODE(found.stat().st_mode) == 0o600
        moved = [p for p in shared.iterdir() if p.name.startswith(f"{folder.name}.untrusted-")]
        assert len(moved) == 1 and moved[0].stat().st_uid != 0  # set aside, not used
        assert log.read_text() == ""  # no castui process ever talked to an impostor
    finally:
        code, err = stop(root)
        for proc in squatters:
            proc.kill()
            proc.wait()
    assert code == 0, err
    assert not socket_path(database).parent.exists()  # a clean stop leaves nothing behind


def test_world_writable_folder_without_sticky_bit_is_refused(shared: Path, tmp_path: Path) -> None:
    shared.chmod(0o777)  # anyone may rename anything in it
    database = shared / "castui.db"
    settings = write_settings(tmp_path, database, shared / "lib")
    result = run_castui("--no-ui", "--once", "--config", str(settings), home=tmp_path, timeout=60)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "writable by every user" in result.stderr
    assert "sticky" in result.stderr and str(shared) in result.stderr
    assert "Traceback" not in result.stderr
    assert not database.exists()


def test_another_users_service_is_named_not_attached(shared: Path) -> None:
    """Both ways: root's dashboard beside nobody's service, nobody's beside root's."""
    home = shared / "home"
    home.mkdir()
    home.chmod(0o777)
    # nobody's service, on a database in the shared folder.
    theirs = write_settings(shared, shared / "castui.db", shared / "lib")
    other = service(theirs, home, user="nobody")
    try:
        sockets = [shared / ".castui-65534" / "castui.sock", shared / "castui.sock"]
        deadline = time.monotonic() + 30
        while not any(p.exists() for p in sockets):  # root may look into its folder
            if other.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nobody's service did not start: {stop(other)[1][-2000:]}")
            time.sleep(0.1)
        result = dashboard(theirs, home)
        assert result.returncode != 0
        assert "a castui service owned by nobody is running" in result.stderr, result.stderr
        assert "engine in-process" not in result.stdout + result.stderr
        assert not (shared / ".castui-0").exists()  # no engine of root's was started
    finally:
        code, err = stop(other)
    assert code == 0, err

    # root's service on its own database in the shared folder; nobody opens the dashboard.
    mine = shared / "root"
    mine.mkdir()
    mine.chmod(0o1777)
    settings = write_settings(mine, mine / "castui.db", shared / "lib")
    root = service(settings, home)
    try:
        attach_to(settings, root)
        result = dashboard(settings, home, user="nobody")  # EACCES on root's 0700 folder
        assert result.returncode != 0
        assert "a castui service owned by root is running" in result.stderr, result.stderr
        assert root.poll() is None
    finally:
        code, err = stop(root)
    assert code == 0, err


def test_database_journal_and_logs_are_private_whatever_the_umask(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    clip(lib / "movie.avi", 1)
    database = tmp_path / "state" / "castui.db"
    settings = write_settings(tmp_path, database, lib)
    result = subprocess.run(
        [sys.executable, "-m", "castui", "--no-ui", "--once", "--config", str(settings)],
        capture_output=True,
        text=True,
        env=castui_env(tmp_path),
        timeout=180,
        check=False,
        preexec_fn=lambda: os.umask(0),  # the point: a careless umask
    )
    assert result.returncode == 0, result.stderr
    assert "1 done" in result.stdout
    state = database.parent
    modes = {
        p.relative_to(state).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in [state, *state.rglob("*")]
        if not p.name.startswith(".castui-write-test")
    }
    assert {".", "castui.db", "logs", "logs/castui.log", "journal"} <= set(modes), modes
    for name, mode in modes.items():
        assert mode & 0o077 == 0, f"{name} is {mode:04o}: other users may read it"
        if (state / name).is_dir():
            assert mode == 0o700, f"{name}: {mode:04o}"
    with socket.socket(socket.AF_UNIX) as probe:  # the service is gone: nothing listens
        assert probe.connect_ex(str(socket_path(database))) != 0
