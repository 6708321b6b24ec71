"""Confirmation that closes the loop: Jellyfin's own PlaybackInfo verdict on castui's output.

Pure parts are table-tested on Jellyfin's JSON shapes; the end-to-end tests run real HTTP to the
stand-in Jellyfin, whose PlaybackInfo evaluates the DeviceProfile against a probe of the real
file (tests/jellyfin_streambuilder.py), so "direct play" and "would transcode" are both real.
"""

from __future__ import annotations

from typing import Any

import pytest

from castui_core.integrations.jellyfin.confirm import (
    Confirmation,
    item_with_path,
    library_for,
    playback_verdict,
    reasons_from_url,
    user_id_for,
)
from castui_core.integrations.jellyfin.deviceprofile import CastGeneration


@pytest.mark.parametrize(
    ("url", "reasons"),
    [
        (None, ()),
        ("/videos/x/master.m3u8?MediaSourceId=x", ()),
        (
            "/videos/x/master.m3u8?TranscodeReasons=VideoLevelNotSupported%2C%20"
            "AnamorphicVideoNotSupported&api_key=",
            ("VideoLevelNotSupported", "AnamorphicVideoNotSupported"),
        ),  # 10.x: ", "
        (
            "/videos/x/master.m3u8?a=1&TranscodeReasons=ContainerNotSupported%2CAudioCodecNotSupported",
            ("ContainerNotSupported", "AudioCodecNotSupported"),
        ),  # 11+/12: ","
        ("/v?transcodeReasons=VideoProfileNotSupported", ("VideoProfileNotSupported",)),
    ],
)
def test_reasons_from_url(url: str | None, reasons: tuple[str, ...]) -> None:
    assert reasons_from_url(url) == reasons


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ({"MediaSources": [{"SupportsDirectPlay": True}]}, (True, ())),
        (
            {
                "MediaSources": [
                    {
                        "SupportsDirectPlay": False,
                        "TranscodingUrl": "/v?TranscodeReasons=VideoLevelNotSupported",
                    }
                ]
            },
            (False, ("VideoLevelNotSupported",)),
        ),
        ({"MediaSources": [{"SupportsDirectPlay": False}]}, (False, ("DirectPlayError",))),
        ({"MediaSources": [], "ErrorCode": "NoCompatibleStream"}, (False, ("NoCompatibleStream",))),
        ("garbage", (False, ("NoMediaSource",))),
    ],
)
def test_playback_verdict(answer: Any, verdict: tuple[bool, tuple[str, ...]]) -> None:
    assert playback_verdict(answer) == verdict


FOLDERS = [
    {"Name": "Movies", "ItemId": "lib-movies", "Locations": ["/data/movies"]},
    {"Name": "Kids", "ItemId": "lib-kids", "Locations": ["/data/movies/kids", "/other"]},
]


@pytest.mark.parametrize(
    ("path", "library"),
    [
        ("/data/movies/a.mp4", "lib-movies"),
        ("/data/movies/kids/b.mp4", "lib-kids"),  # the longest location wins
        ("/data/movies-old/c.mp4", None),  # component-wise, not a string prefix
        ("/other/d.mp4", "lib-kids"),
        ("/elsewhere/e.mp4", None),
    ],
)
def test_library_for(path: str, library: str | None) -> None:
    assert library_for(FOLDERS, path) == library


def test_item_and_user_lookups() -> None:
    items = {"Items": [{"Id": "1", "Path": "/m/a.mkv"}, {"Id": "2", "Path": "/m/a.mp4"}]}
    assert item_with_path(items, "/m/a.mp4") == "2"
    assert item_with_path(items, "/m/b.mp4") is None
    users = [{"Name": "Ann", "Id": "u1"}, {"Name": "bob", "Id": "u2"}]
    assert user_id_for(users, "ann") == "u1"
    assert user_id_for(users, "carl") is None


def test_messages_say_what_happened() -> None:
    gen = CastGeneration.GEN1AND2
    assert Confirmation("direct_play", gen).message == (
        "Jellyfin: direct play on Chromecast (gen 1/2)"
    )
    transcode = Confirmation("transcode", gen, ("VideoLevelNotSupported",))
    assert transcode.message.startswith("Jellyfin would transcode: VideoLevelNotSupported")
    assert transcode.is_problem
    late = Confirmation("unconfirmed", gen, detail="Jellyfin had not listed /m/a.mp4")
    assert late.message == "Jellyfin: unconfirmed (Jellyfin had not listed /m/a.mp4)"
    assert late.is_problem
