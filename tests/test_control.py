"""The attach socket: events streamed, commands answered, stale sockets replaced, 0600."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from castui_core.control import ControlServer, RemoteEngine, find_live_socket, socket_path
from castui_core.engine import Engine
from castui_core.errors import CastuiError
from castui_core.events import QueueState, ServiceConnection
from castui_core.guardrails.gpu import NoGpu
from castui_core.settings import Settings, load_settings
from castui_core.settings_update import Edit, SettingsUpdate

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


def write_settings(root: Path) -> Path:
    """A one-library settings file under ``root`` (also used by tests/test_engine_api.py)."""
    (root / "lib").mkdir()
    path = root / "settings.yaml"
    path.write_text(SETTINGS.format(db=root / "data" / "castui.db", lib=root / "lib"))
    return path


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    return write_settings(tmp_path)


def _engine(settings: Settings) -> Engine:
    return Engine(settings, watch=False, scan_at_start=False, gpu=NoGpu("no GPU: tests"))


async def _paused_event(remote: RemoteEngine, reason: str, timeout: float = 5.0) -> QueueState:
    sub = remote.bus.subscribe()
    try:
        async with asyncio.timeout(timeout):
            async for event in sub:
                if isinstance(event, QueueState) and event.paused and event.reason == reason:
                    return event
    finally:
        sub.close()
    raise AssertionError("bus closed")


async def test_remote_commands_and_events(settings_file: Path) -> None:
    settings = load_settings(settings_file)
    async with _engine(settings) as engine, ControlServer(engine) as server:
        mode = stat.S_IMODE(os.stat(server.path).st_mode)
        assert mode == 0o600
        assert find_live_socket(settings.database) == server.path
        await engine.pause_queue()  # the job must stay queued for the commands below
        job = await engine.store.enqueue("/nowhere/a.avi", "media", "transcode", ["test"])
        async with RemoteEngine(settings) as remote:
            waiting = asyncio.create_task(_paused_event(remote, "from the test"))
            await asyncio.sleep(0.05)
            await remote.pause_queue(reason="from the test")
            await waiting
            assert await engine.store.is_paused()
            moved = await remote.set_priority(job.job_id, 50)
            assert moved.priority == 50
            cancelled = await remote.cancel_job(job.job_id)
            assert cancelled.state == "cancelled"
            retried = await remote.retry_job(job.job_id)
            assert retried.state == "queued"
            with pytest.raises(CastuiError):
                await remote.cancel_job(9999)
            await remote.set_priority(job.job_id, 0)
            await remote.cancel_job(job.job_id)
            await remote.resume_queue()
            assert not await engine.store.is_paused()
    assert not server.path.exists()


async def test_stale_socket_replaced_and_live_one_refused(settings_file: Path) -> None:
    settings = load_settings(settings_file)
    path = socket_path(settings.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: what a killed engine leaves behind
    stale.close()
    assert path.exists() and find_live_socket(settings.database) is None
    async with _engine(settings) as engine, ControlServer(engine):
        assert find_live_socket(settings.database) == path
        with pytest.raises(CastuiError, match="already serving"):
            await ControlServer(engine).start()


def start_headless(
    settings_file: Path, *extra: str, config: str | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``castui --no-ui`` in its own process; returns once its socket answers."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "castui",
            "--no-ui",
            "--config",
            config or str(settings_file),
            *list(extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    database = load_settings(settings_file).database
    deadline = time.monotonic() + 20
    while find_live_socket(database) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
            raise AssertionError(f"headless engine did not start: {err[-2000:]}")
        time.sleep(0.1)
    return proc


async def test_attach_to_headless_service(settings_file: Path) -> None:
    proc = start_headless(settings_file)
    try:
        settings = load_settings(settings_file)
        async with RemoteEngine(settings) as remote:
            assert remote.remote_pid == proc.pid
            waiting = asyncio.create_task(_paused_event(remote, "from the test"))
            await asyncio.sleep(0.05)
            await remote.pause_queue(reason="from the test")
            await waiting
            assert await remote.store.is_paused()
        assert proc.poll() is None  # detaching leaves the service running
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not socket_path(load_settings(settings_file).database).exists()


async def test_a_database_on_a_path_too_long_for_a_socket_address_still_serves(
    tmp_path: Path,
) -> None:
    """A socket address holds 107 bytes; a deep database folder used to kill the engine with
    "AF_UNIX path too long". The socket still lies next to the database, and a dashboard
    attaches to it."""
    root = tmp_path / ("deep-folder-" * 5) / ("nested-library-" * 5)
    root.mkdir(parents=True)
    settings_file = write_settings(root)
    database = load_settings(settings_file).database
    assert len(os.fsencode(socket_path(database))) > 107
    proc = start_headless(settings_file)
    try:
        assert stat.S_ISSOCK(os.lstat(socket_path(database)).st_mode)
        async with RemoteEngine(load_settings(settings_file)) as remote:
            assert remote.remote_pid == proc.pid
            await remote.pause_queue(reason="from the test")
            assert await remote.store.is_paused()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not socket_path(database).exists()


async def test_a_socket_or_folder_others_may_write_is_never_connected_to(
    settings_file: Path,
) -> None:
    """Mode checks before connecting (owner checks need a second user: tests/faults)."""
    settings = load_settings(settings_file)
    async with _engine(settings) as engine, ControlServer(engine) as server:
        assert find_live_socket(settings.database) == server.path
        server.path.chmod(0o666)
        with pytest.raises(CastuiError, match="writable by other users"):
            find_live_socket(settings.database)
        with pytest.raises(CastuiError, match="writable by other users"):
            await RemoteEngine(settings).start()
        server.path.chmod(0o600)
        server.path.parent.chmod(0o777)
        with pytest.raises(CastuiError, match="writable by other users"):
            find_live_socket(settings.database)
        server.path.parent.chmod(0o700)
        assert find_live_socket(settings.database) == server.path


async def test_a_call_cancelled_after_sending_leaves_no_reply_for_the_next(
    settings_file: Path,
) -> None:
    """A screen that loads again cancels its settings_view while the request is out; the
    service still answers it, and the next call read that stale answer as its own (a save
    that failed with a pydantic ValidationError). Cancel at every point of the call."""
    settings = load_settings(settings_file)
    async with _engine(settings) as engine, ControlServer(engine), RemoteEngine(settings) as remote:
        for turns in range(16):
            view = asyncio.create_task(remote.settings_view())
            for _ in range(turns):
                await asyncio.sleep(0)
            view.cancel()
            limit = 80 + turns % 10
            edit = Edit(("guardrails", "gpu_max_temp_c"), limit)
            update = await remote.update_settings([edit])
            assert isinstance(update, SettingsUpdate), (turns, update)
            assert engine.settings.guardrails.gpu_max_temp_c == limit, turns


async def test_an_unexpected_error_in_a_command_is_answered_and_logged(
    settings_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job number SQLite cannot hold raises OverflowError, no CastuiError, inside the
    service. It used to kill the dashboard's command connection under a live event stream:
    "attached", yet every later command failed until the service restarted."""
    settings = load_settings(settings_file)
    async with _engine(settings) as engine, ControlServer(engine), RemoteEngine(settings) as remote:
        with pytest.raises(CastuiError, match=r"OverflowError.*log has the details"):
            await remote.restore_original(10**30)
        assert await remote.running_ids() == []  # the same command connection still serves
        assert remote.connected
    logged = [r for r in caplog.records if r.name == "castui.control"]
    assert logged and logged[0].exc_info is not None  # the traceback goes to the service log


async def test_a_broken_command_connection_makes_the_dashboard_reattach(
    settings_file: Path,
) -> None:
    """A request line over the service's limit makes it close the command connection while
    the event stream stays up. The dashboard must drop the link and attach again, not stay
    "attached" with every command failing."""
    settings = load_settings(settings_file)
    async with _engine(settings) as engine, ControlServer(engine):
        remote = RemoteEngine(settings, retry_initial_s=0.05, retry_max_s=0.2)
        async with remote:
            sub = remote.bus.subscribe()
            try:
                with pytest.raises(CastuiError):
                    await remote.record_event("note", reason="x" * (5 * 1024 * 1024))
                states: list[str] = []
                async with asyncio.timeout(10):
                    async for event in sub:
                        if isinstance(event, ServiceConnection):
                            states.append(event.state)
                            if event.state == "attached" and "lost" in states:
                                break
            finally:
                sub.close()
            assert await remote.running_ids() == []


async def test_a_dashboard_save_keeps_the_command_line_and_a_relative_config(
    settings_file: Path,
) -> None:
    """A service started as ``castui --no-ui --config settings.yaml --node n1 --role worker``
    from the file's folder: a save from a dashboard elsewhere used to reload the file alone
    (the node became the file's role "all", announced as "needs a restart: node.role") and
    hand back the relative path, read again from the dashboard's own folder."""
    proc = start_headless(
        settings_file,
        "--node",
        "n1",
        "--role",
        "worker",
        config="settings.yaml",
        cwd=settings_file.parent,
    )
    try:
        settings = load_settings(settings_file)
        async with RemoteEngine(settings) as remote:
            view = await remote.settings_view()
            assert view.file == str(settings_file)  # absolute, whatever the service's folder
            update = await remote.update_settings([Edit(("guardrails", "gpu_max_temp_c"), 77)])
            assert update.file == str(settings_file)
            assert [c.path for c in update.changes] == ["guardrails.gpu_max_temp_c"]
            assert "restart" not in update.message, update.message
            assert remote.settings.guardrails.gpu_max_temp_c == 77  # read from the right file
    finally:
        proc.terminate()
        proc.wait(timeout=30)
