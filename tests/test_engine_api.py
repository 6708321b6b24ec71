"""One engine API for every front end: the in-process ``Engine`` and a ``RemoteEngine``
attached to a real ``ControlServer`` over a real Unix socket pass the same checks, made only
through :class:`~castui_core.api.EngineAPI`; the control socket answers bad requests with an
error reply and keeps the connection; every dashboard key binding has an id."""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_control import write_settings
from textual.binding import Binding

import castui.tui
from castui_core.api import EngineAPI
from castui_core.bus import Subscription
from castui_core.control import ControlServer, RemoteEngine
from castui_core.engine import Engine
from castui_core.events import Event, JobStarted, JobStateChanged, QueueState
from castui_core.guardrails import NoGpu
from castui_core.settings import Settings, load_settings
from castui_core.store import JobState
from castui_core.tools import Tools

SHIM = Path(__file__).parent / "nvenc_shim.py"


@dataclass
class Attached:
    api: EngineAPI
    engine: Engine  # the engine that owns the queue: checks read its store, never the API's
    settings: Settings
    events: Subscription  # on api.bus, from before the first command


def _settings(tmp_path: Path) -> Settings:
    return load_settings(write_settings(tmp_path))


def _engine(settings: Settings, tmp_path: Path) -> Engine:
    # Real ffmpeg, read at its native rate (the shim adds -re): an encode lasts as long as
    # its clip, so a check can act while it runs.
    wrapper = tmp_path / "ffmpeg-realtime"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SHIM}" "$@"\n')
    wrapper.chmod(0o755)
    ffprobe = Path(shutil.which("ffprobe") or "ffprobe")
    return Engine(
        settings,
        watch=False,
        scan_at_start=False,
        gpu=NoGpu("no GPU: tests"),
        idle_poll_s=0.2,
        tools=Tools(ffmpeg=wrapper, ffprobe=ffprobe),
    )


async def _wait(sub: Subscription, match: Callable[[Event], bool], what: str) -> Event:
    async with asyncio.timeout(30):
        async for event in sub:
            if match(event):
                return event
    raise AssertionError(f"the bus closed before {what}")


@pytest.fixture(params=["local", "remote"])
async def attached(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Attached]:
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")
    settings = _settings(tmp_path)
    engine = _engine(settings, tmp_path)
    await engine.start()
    try:
        if request.param == "local":
            api: EngineAPI = engine
            yield Attached(api, engine, settings, engine.bus.subscribe())
            return
        async with ControlServer(engine):
            remote = RemoteEngine(settings)
            events = remote.bus.subscribe()
            await remote.start()
            try:
                # The service sends its state first: once it is here, nothing is missed.
                await _wait(events, lambda e: isinstance(e, QueueState), "the service's state")
                yield Attached(remote, engine, settings, events)
            finally:
                await remote.stop()
    finally:
        await engine.stop(0.0)


async def test_queue_commands_and_audit(attached: Attached) -> None:
    api, store = attached.api, attached.engine.store
    await api.pause_queue(reason="checking the API")
    await _wait(attached.events, lambda e: isinstance(e, QueueState) and e.paused, "paused")
    assert await store.is_paused()
    await api.resume_queue()
    await _wait(attached.events, lambda e: isinstance(e, QueueState) and not e.paused, "resumed")
    assert not await store.is_paused()
    await api.pause_queue()  # the job below must stay queued

    job = await store.enqueue("/nowhere/a.avi", "media", "transcode", ["test"])
    moved = await api.set_priority(job.job_id, 50)
    assert moved.priority == 50 and (await store.get_job(job.job_id)).priority == 50
    changed = await _wait(
        attached.events,
        lambda e: isinstance(e, JobStateChanged) and e.job_id == job.job_id,
        "the priority change on the bus",
    )
    assert isinstance(changed, JobStateChanged) and changed.priority == 50
    assert [j.id for j in await api.active_jobs()] == [job.job_id]

    cancelled = await api.cancel_job(job.job_id)
    assert cancelled.state is JobState.CANCELLED
    assert (await store.get_job(job.job_id)).state is JobState.CANCELLED
    retried = await api.retry_job(job.job_id)
    assert retried.state is JobState.QUEUED
    assert (await api.get_job(job.job_id)).state is JobState.QUEUED
    kinds = [e.kind for e in await api.job_events(job.job_id)]
    assert kinds and len(kinds) >= 3

    await api.record_event(
        "profile_edit", actor="tester", reason="through the API", details={"after": {"a": "1"}}
    )
    (audit,) = await store.list_events(kind="profile_edit")
    assert (audit.actor, audit.reason) == ("tester", "through the API")
    assert audit.details == {"after": {"a": "1"}}
    assert await api.running_ids() == []
    with pytest.raises(Exception, match="no job"):
        await api.cancel_job(999_999)


async def test_running_ids_and_cancelling_a_running_encode(
    attached: Attached, tmp_path: Path
) -> None:
    api, store = attached.api, attached.engine.store
    source = attached.settings.libraries[0].path / "clip.avi"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=20",
            "-c:v", "mpeg4", str(source),
        ],
        check=True,
    )  # fmt: skip
    await api.pause_queue()
    job = await store.enqueue(str(source), "media", "transcode", ["video codec mpeg4"])
    await api.resume_queue()
    await _wait(
        attached.events,
        lambda e: isinstance(e, JobStarted) and e.path == str(source),
        "the encode to start",
    )
    assert await api.running_ids() == [job.job_id]
    assert [j.id for j in await api.active_jobs() if j.state is JobState.RUNNING] == [job.job_id]
    await api.cancel_job(job.job_id)
    await _wait(
        attached.events,
        lambda e: (
            isinstance(e, JobStateChanged) and e.job_id == job.job_id and e.new == "cancelled"
        ),
        "the cancellation",
    )
    assert (await store.get_job(job.job_id)).state is JobState.CANCELLED


async def test_an_attached_audit_entry_is_written_by_the_service(tmp_path: Path) -> None:
    """The dashboard's own settings name another database: an entry written locally (the
    old ``engine.store.record_event``) would land there, not in the service's."""
    settings = _settings(tmp_path)
    engine = _engine(settings, tmp_path)
    local = settings.model_copy(update={"database": tmp_path / "elsewhere" / "castui.db"})
    server = ControlServer(engine)
    async with engine, server, RemoteEngine(local, server.path) as remote:
        await remote.record_event("profile_edit", reason="edited while attached")
        (audit,) = await engine.store.list_events(kind="profile_edit")
        assert audit.reason == "edited while attached"
        assert await remote.store.list_events(kind="profile_edit") == []


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> Any:
    writer.write(line + b"\n")
    await writer.drain()
    async with asyncio.timeout(5):
        reply = await reader.readline()
    assert reply, f"the service dropped the connection after {line!r}"
    return json.loads(reply)


async def test_malformed_requests_get_an_error_reply_and_the_connection_stays(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    engine = _engine(settings, tmp_path)
    async with engine, ControlServer(engine) as server:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        try:
            bad: list[tuple[bytes, int | None, str]] = [
                (b"this is not json", None, "bad request"),
                (b"[1, 2]", None, "bad request"),
                (b'{"id": 3}', 3, "op"),
                (b'{"id": 4, "op": "format_disk"}', 4, "format_disk"),
                (b'{"id": 5, "op": "set_priority", "job_id": 1}', 5, "priority"),
                (b'{"id": 6, "op": "cancel", "job_id": "1; drop"}', 6, "job_id"),
                (b'{"id": 7, "op": "pause", "actor": "x", "colour": "red"}', 7, "colour"),
            ]
            for line, rid, named in bad:
                reply = await _exchange(reader, writer, line)
                assert reply["ok"] is False, line
                assert reply["id"] == rid, line
                assert named in reply["error"], (line, reply["error"])
                assert "Traceback" not in reply["error"]
            reply = await _exchange(reader, writer, b'{"id": 8, "op": "ping"}')
            assert reply["ok"] is True and reply["id"] == 8
            assert reply["result"]["owner"] == engine.owner
            reply = await _exchange(reader, writer, b'{"id": 9, "op": "pause", "reason": "wire"}')
            assert reply == {"id": 9, "ok": True, "result": None}  # the old wire format
            assert await engine.store.is_paused()
        finally:
            writer.close()


def test_every_dashboard_binding_has_a_unique_id() -> None:
    """Keys can be remapped by id (Textual's keymap); an id-less binding could not be."""
    seen: dict[str, str] = {}
    checked = 0
    for info in pkgutil.walk_packages(castui.tui.__path__, "castui.tui."):
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if not isinstance(cls, type) or cls.__module__ != module.__name__:
                continue
            for binding in vars(cls).get("BINDINGS", []):
                assert isinstance(binding, Binding), (name, binding)
                checked += 1
                assert binding.id, f"{name}: the {binding.key!r} binding has no id"
                owner = f"{name}.{binding.action}"
                assert seen.setdefault(binding.id, owner) == owner, binding.id
    assert checked >= 20
