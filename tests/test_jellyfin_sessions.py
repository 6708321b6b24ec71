"""Jellyfin sessions guardrail: who is watching, the reason shown, and a real encode paused.

The pure decision is table-tested on Jellyfin's own ``/Sessions`` JSON shape; the end-to-end
test polls the stand-in Jellyfin over real HTTP and watches a real ffmpeg get SIGSTOPped and
continued (psutil), like the GPU and schedule guards in test_engine.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from jellyfin_fixtures import jellyfin  # noqa: F401
from jellyfin_playback import playing_session
from jellyfin_standin import StandinJellyfin
from test_engine import (  # the engine test helpers: real ffmpeg through a realtime shim
    Recorder,
    add_to_library,
    clip,  # noqa: F401
    finished,
    make_engine,
    make_settings,
    note,
    process_status,
    progress_of,
    shim_tools,
    wait_stopped,
)

from castui_core.bus import EventBus
from castui_core.events import (
    GuardrailCleared,
    GuardrailTripped,
    JobFinished,
    JobNote,
    JobProgress,
    LogLine,
)
from castui_core.guardrails import Guardrails, JobNeeds, LoadReading, NoGpu
from castui_core.guardrails.jellyfin_sessions import (
    JELLYFIN_SESSIONS,
    SessionsPoller,
    sessions_reason,
    viewers,
)
from castui_core.integrations.jellyfin.client import JellyfinClient
from castui_core.settings import GuardrailSettings, parse_settings

pytestmark = pytest.mark.timeout(120)


def session(
    user: str | None,
    *,
    playing: str | None = "Movie",
    method: str = "DirectPlay",
    transcoding: bool = False,
    paused: bool = False,
    device: str = "dev",
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "Id": f"s-{user}-{device}",
        "UserId": user,
        "UserName": user,
        "DeviceId": device,
        "DeviceName": device,
        "PlayState": {"PlayMethod": method, "IsPaused": paused} if playing else {},
    }
    if playing:
        s["NowPlayingItem"] = {"Name": playing, "Id": "abc"}
    if transcoding:
        s["TranscodingInfo"] = {"VideoCodec": "h264", "IsVideoDirect": False}
    return s


@pytest.mark.parametrize(
    ("sessions", "mode", "reason"),
    [
        ([], "playing", None),
        ([session("ann", playing=None)], "playing", None),  # signed in, not playing
        ([session("ann")], "playing", "paused: 1 person is watching on Jellyfin"),
        (
            [session("ann"), session("bob", method="Transcode", transcoding=True)],
            "playing",
            "paused: 2 people are watching on Jellyfin",
        ),
        (  # one person on two devices is one person
            [session("ann", device="tv"), session("ann", device="phone")],
            "playing",
            "paused: 1 person is watching on Jellyfin",
        ),
        ([session("ann", paused=True)], "playing", "paused: 1 person is watching on Jellyfin"),
        ([session("ann"), session("bob")], "transcoding", None),  # direct play costs nothing
        (
            [session("ann"), session("bob", method="Transcode", transcoding=True)],
            "transcoding",
            "paused: Jellyfin is transcoding for 1 person",
        ),
        (  # TranscodingInfo alone (a DirectStream remux is still Jellyfin's ffmpeg)
            [session("ann", method="DirectStream", transcoding=True)],
            "transcoding",
            "paused: Jellyfin is transcoding for 1 person",
        ),
        ("not a list", "playing", None),
        ([None, 3, {"NowPlayingItem": "x"}], "playing", None),
    ],
)
def test_sessions_reason(sessions: Any, mode: Any, reason: str | None) -> None:
    assert sessions_reason(viewers(sessions), mode) == reason


def test_viewers_keep_what_the_dashboard_shows() -> None:
    (v,) = viewers([session("ann", method="Transcode", transcoding=True, paused=True)])
    assert (v.user, v.item, v.play_method, v.transcoding, v.paused) == (
        "ann",
        "Movie",
        "Transcode",
        True,
        True,
    )


# --- end to end: the stand-in's /Sessions pauses and resumes a real encode ---------------------


async def test_two_viewers_pause_a_real_encode_until_they_stop(
    jellyfin: StandinJellyfin,  # noqa: F811
    clip: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")  # a 4 s encode that lasts 4 s
    data = yaml.safe_load(yaml.safe_dump(make_settings(tmp_path).model_dump(mode="json")))
    data["jellyfin"] = {
        "url": jellyfin.url,
        "api_key": jellyfin.api_key,
        "user": "castui-test",
        "confirm": False,
        "pause_while": "playing",
        "sessions_poll_s": 1,
    }
    settings = parse_settings(yaml.safe_dump(data))
    source = add_to_library(tmp_path, clip, "busy.avi")
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    engine = make_engine(settings, tools=shim_tools(tmp_path))
    rec = Recorder(engine.bus)
    await engine.start()
    try:
        await rec.wait_for(progress_of(source))
        ann = jellyfin.playback.users[0]
        bob = {"Name": "bob", "Id": "b0b"}
        jellyfin.playback.sessions[:] = [
            playing_session(ann, "Film A"),
            playing_session(bob, "Film B", transcoding=True),
        ]
        tripped = await rec.wait_for(
            lambda e: isinstance(e, GuardrailTripped) and e.name == JELLYFIN_SESSIONS
        )
        assert isinstance(tripped, GuardrailTripped) and tripped.pauses_running
        assert tripped.reason == "paused: 2 people are watching on Jellyfin"
        paused = await rec.wait_for(note(source, "paused: "))
        assert isinstance(paused, JobNote)
        assert paused.message == "paused: 2 people are watching on Jellyfin"
        pid = engine.converter.pid_of(str(source))
        await wait_stopped(pid)
        rec.drain()
        assert [e for e in await rec.during(1.0) if isinstance(e, JobProgress)] == []
        assert process_status(pid) == psutil.STATUS_STOPPED
        asked = jellyfin.requests_to("/Sessions", "GET")
        assert asked and all(r.query.get("activeWithinSeconds") for r in asked)

        jellyfin.playback.sessions.clear()  # both stopped watching
        cleared = await rec.wait_for(
            lambda e: isinstance(e, GuardrailCleared) and e.name == JELLYFIN_SESSIONS
        )
        assert isinstance(cleared, GuardrailCleared)
        assert cleared.reason == "nobody is watching on Jellyfin"
        await rec.wait_for(note(source, "resumed"))
        assert process_status(pid) != psutil.STATUS_STOPPED
        done = await rec.wait_for(finished(source))
        assert isinstance(done, JobFinished) and done.status == "done", done
    finally:
        await engine.stop()


async def test_a_jellyfin_that_cannot_be_asked_clears_the_guard_and_says_so_once(
    jellyfin: StandinJellyfin,  # noqa: F811
) -> None:
    bus = EventBus()
    sub = bus.subscribe()
    guardrails = Guardrails(
        GuardrailSettings(),
        min_free_bytes=0,
        bus=bus,
        gpu=NoGpu("no GPU: test"),
        load=lambda: LoadReading(None, None),
    )
    jellyfin.playback.sessions[:] = [playing_session(jellyfin.playback.users[0], "Film")]
    async with JellyfinClient(jellyfin.url, jellyfin.api_key, timeout_s=2) as client:
        poller = SessionsPoller(
            guardrails, lambda: client.sessions(active_within_s=60), mode="playing", bus=bus
        )
        assert await poller.poll_once() == "paused: 1 person is watching on Jellyfin"
        assert guardrails.should_pause_running("cpu") == "paused: 1 person is watching on Jellyfin"
        assert await guardrails.can_start(JobNeeds("cpu")) is not None  # new encodes wait too
        jellyfin.down()
        assert await poller.poll_once() is None  # nobody can watch on a stopped Jellyfin
        assert await poller.poll_once() is None
        assert guardrails.should_pause_running("cpu") is None
        assert await guardrails.can_start(JobNeeds("cpu")) is None
    lines = []
    while (event := sub.get_nowait()) is not None:
        if isinstance(event, LogLine) and "Jellyfin sessions" in event.message:
            lines.append(event.message)
    assert len(lines) == 1, lines  # said once, not every poll
    assert "could not be read" in lines[0] and jellyfin.api_key not in lines[0]
