"""The stand-in Jellyfin's PlaybackInfo, Users and Sessions answers (framework-free).

The stand-in server routes ``POST /Items/{id}/PlaybackInfo``, ``GET /Users`` and ``GET
/Sessions`` here. PlaybackInfo keeps to the server's rules: 400 for a DeviceProfile without a
UserId, 400 for an unknown enum string, 404 for an unknown item; the item's media comes from
probing the real file, and the verdict from Jellyfin's StreamBuilder rules
(tests/jellyfin_streambuilder.py). A refused direct play carries its reasons only in
``TranscodingUrl``'s ``TranscodeReasons=`` (URL-encoded, comma-joined, as 10.11+/12 do).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jellyfin_streambuilder import media_source, profile_errors, transcode_reasons

from castui_core.probe import probe_pyav

MOVIE_TYPE = "MediaBrowser.Controller.Entities.Movies.Movie"


def item_id(path: str, type_full_name: str = MOVIE_TYPE) -> str:
    """Jellyfin's item id for a path (md5 of type name + path in UTF-16-LE, as a GUID)."""
    digest = hashlib.md5((type_full_name + path).encode("utf-16-le")).digest()
    return uuid.UUID(bytes_le=digest).hex


@dataclass
class PlaybackState:
    """What the stand-in knows beyond the library: users, live sessions, PlaybackInfo log."""

    users: list[dict[str, Any]] = field(
        default_factory=lambda: [{"Name": "castui-test", "Id": uuid.uuid4().hex}]
    )
    sessions: list[dict[str, Any]] = field(default_factory=list)
    asked: list[dict[str, Any]] = field(default_factory=list)  # PlaybackInfo bodies received
    #: Maps a server-side path to the file on this machine (identity unless path_map tests).
    local_path: Callable[[str], str] = lambda p: p

    def user_id(self, name: str) -> str:
        return next(u["Id"] for u in self.users if u["Name"] == name)


def playback_info(
    state: PlaybackState, server_path: str | None, item: str, body: Any, query: dict[str, str]
) -> tuple[int, Any]:
    """``POST /Items/{item}/PlaybackInfo``: ``(status, JSON body)``."""
    if server_path is None:
        return 404, {"message": f"Item not found: {item}"}
    body = body if isinstance(body, dict) else {}
    profile = body.get("DeviceProfile")
    lowered = {k.lower(): v for k, v in query.items()}
    user = body.get("UserId") or lowered.get("userid")
    if profile is not None and not user:
        return 400, {"title": "One or more validation errors occurred.", "status": 400}
    if profile is not None:
        errors = profile_errors(profile)
        if errors:
            return 400, {"title": "The JSON value could not be converted.", "errors": errors}
    if user and not any(
        u["Id"].replace("-", "") == str(user).replace("-", "") for u in state.users
    ):
        return 404, {"message": "User not found"}
    state.asked.append(body)
    info = probe_pyav(state.local_path(server_path))
    source = media_source(info, item)
    source["Path"] = server_path
    reasons = transcode_reasons(profile, source) if profile is not None else []
    source["SupportsDirectPlay"] = not reasons
    source["SupportsDirectStream"] = not reasons
    source["SupportsTranscoding"] = True
    if reasons:
        source["TranscodingUrl"] = (
            f"/videos/{item}/master.m3u8?DeviceId=castui&MediaSourceId={item}"
            f"&VideoCodec=h264&AudioCodec=aac&TranscodeReasons={quote(','.join(reasons), safe='')}"
        )
        source["TranscodingSubProtocol"] = "hls"
        source["TranscodingContainer"] = "ts"
    return 200, {"MediaSources": [source], "PlaySessionId": uuid.uuid4().hex}


def users(state: PlaybackState) -> tuple[int, Any]:
    """``GET /Users`` (an API key may list them)."""
    return 200, [
        {**u, "HasPassword": False, "Policy": {"IsAdministrator": False}} for u in state.users
    ]


def sessions(state: PlaybackState, query: dict[str, str]) -> tuple[int, Any]:
    """``GET /Sessions?activeWithinSeconds=N``: the sessions seen within N seconds."""
    within = query.get("activeWithinSeconds") or query.get("ActiveWithinSeconds")
    now = time.time()
    found = []
    for s in state.sessions:
        last = s.get("_last_activity", now)
        if within is not None and now - last > float(within):
            continue
        found.append({k: v for k, v in s.items() if not k.startswith("_")})
    return 200, found


def playing_session(
    user: dict[str, Any], item_name: str, *, transcoding: bool = False, device: str = "Living room"
) -> dict[str, Any]:
    """A session as Jellyfin lists it while ``user`` plays ``item_name`` on a Chromecast."""
    session: dict[str, Any] = {
        "Id": uuid.uuid4().hex,
        "UserId": user["Id"],
        "UserName": user["Name"],
        "Client": "Chromecast",
        "DeviceId": uuid.uuid4().hex,
        "DeviceName": device,
        "NowPlayingItem": {"Name": item_name, "Id": uuid.uuid4().hex, "Type": "Movie"},
        "PlayState": {
            "PlayMethod": "Transcode" if transcoding else "DirectPlay",
            "IsPaused": False,
            "PositionTicks": 0,
        },
    }
    if transcoding:
        session["TranscodingInfo"] = {
            "VideoCodec": "h264",
            "AudioCodec": "aac",
            "IsVideoDirect": False,
            "TranscodeReasons": ["VideoLevelNotSupported"],
        }
    return session
