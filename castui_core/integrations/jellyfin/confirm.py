"""Closing the loop: after a swap, ask Jellyfin whether it will direct-play the new file.

Why: castui's own check says the output fits the profile; what the viewer gets is decided by
Jellyfin's StreamBuilder with the Cast receiver's DeviceProfile. So after Jellyfin has had time
to see the file (its ``LibraryMonitorDelay``, read from ``/System/Configuration``), castui

1. finds the new item by listing the library's recently saved items
   (``/Items?ParentId=LIB&Recursive=true&Fields=Path&MinDateLastSaved=…``, paged), matching
   the item's server-side ``Path`` against the output path mapped through ``path_map`` (there is
   no Path filter in Jellyfin's API, and guessing the item id is fragile);
2. asks ``POST /Items/{id}/PlaybackInfo`` with the configured user's id and the DeviceProfile
   of the Cast generation the library's profile targets;
3. reads ``SupportsDirectPlay`` and, when false, the reasons from ``TranscodingUrl``'s
   ``TranscodeReasons=`` value.

The answer is a :class:`Confirmation`: direct play, would transcode (with Jellyfin's reasons,
a failure to look at), or unconfirmed after a bounded time (with why): never dropped silently.
Everything here is async HTTP through the Jellyfin client; nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

from castui_core.integrations.jellyfin.client import jellyfin_time
from castui_core.integrations.jellyfin.deviceprofile import CastGeneration
from castui_core.integrations.jellyfin.paths import location_for

Status = Literal["direct_play", "transcode", "unconfirmed"]


class JellyfinApi(Protocol):
    """The two calls confirmation needs (the Jellyfin client provides them, with timeouts,
    auth and error translation)."""

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any: ...

    async def post_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class Confirmation:
    """What Jellyfin answered for one output file."""

    status: Status
    generation: CastGeneration
    reasons: tuple[str, ...] = ()
    item_id: str | None = None
    detail: str = ""

    @property
    def message(self) -> str:
        """The line shown in history and job detail."""
        if self.status == "direct_play":
            return f"Jellyfin: direct play on {self.generation.label}"
        if self.status == "transcode":
            why = ", ".join(self.reasons) or "no reason given"
            return f"Jellyfin would transcode: {why} ({self.generation.label})"
        return f"Jellyfin: unconfirmed ({self.detail})"

    @property
    def is_problem(self) -> bool:
        """A transcode means castui's output does not do its job: a failure to look at."""
        return self.status != "direct_play"


# --- pure parts (table-tested) -----------------------------------------------------------------


def reasons_from_url(url: str | None) -> tuple[str, ...]:
    """Jellyfin's TranscodeReasons from a ``TranscodingUrl``.

    10.x joins them with ", " and 11+/12 with ","; either way URL-decode, split, trim.
    """
    if not url:
        return ()
    values = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for key, found in values.items():
        if key.lower() == "transcodereasons":
            return tuple(r.strip() for v in found for r in v.split(",") if r.strip())
    return ()


def playback_verdict(answer: Any) -> tuple[bool, tuple[str, ...]]:
    """``(direct play?, reasons)`` from a PlaybackInfo answer (its first media source)."""
    sources = answer.get("MediaSources") if isinstance(answer, dict) else None
    if not sources or not isinstance(sources[0], dict):
        error = answer.get("ErrorCode") if isinstance(answer, dict) else None
        return False, (str(error) if error else "NoMediaSource",)
    source = sources[0]
    if source.get("SupportsDirectPlay"):
        return True, ()
    reasons = reasons_from_url(source.get("TranscodingUrl"))
    return False, reasons or ("DirectPlayError",)


def library_for(virtual_folders: Any, jellyfin_path: str) -> str | None:
    """The ``ItemId`` of the Jellyfin library whose location holds ``jellyfin_path``
    (component-wise, the deepest location wins)."""
    owner: dict[str, str] = {}
    for folder in virtual_folders if isinstance(virtual_folders, list) else []:
        if isinstance(folder, dict) and folder.get("ItemId"):
            for location in folder.get("Locations") or []:
                owner.setdefault(str(location), str(folder["ItemId"]))
    found = location_for(jellyfin_path, owner)
    return owner[found] if found is not None else None


def item_with_path(items: Any, jellyfin_path: str) -> str | None:
    """The id of the item whose ``Path`` is ``jellyfin_path`` in an ``/Items`` answer."""
    listed = items.get("Items") if isinstance(items, dict) else None
    for item in listed or []:
        if isinstance(item, dict) and item.get("Path") == jellyfin_path and item.get("Id"):
            return str(item["Id"])
    return None


def user_id_for(users: Any, name: str) -> str | None:
    """The id of the Jellyfin user called ``name`` (case-insensitive, as Jellyfin logs in)."""
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict) and str(user.get("Name", "")).casefold() == name.casefold():
            return str(user.get("Id"))
    return None


# --- the conversation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmTimes:
    """How long to wait: Jellyfin's monitor delay plus ``settle_s``, then poll every ``poll_s``
    until ``give_up_s`` after the swap. ``delay_override_s`` replaces the server's delay."""

    settle_s: float = 5.0
    poll_s: float = 10.0
    give_up_s: float = 600.0
    delay_override_s: float | None = None


async def confirm(
    api: JellyfinApi,
    *,
    jellyfin_path: str,
    generation: CastGeneration,
    device_profile: dict[str, Any],
    user: str,
    swapped_at: float,
    times: ConfirmTimes = ConfirmTimes(),
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Confirmation:
    """Ask Jellyfin about one output (``jellyfin_path``: already mapped through path_map).

    Errors talking to Jellyfin end as ``unconfirmed`` with the error's words: confirmation is
    a report, it never fails or delays a conversion.
    """

    def unconfirmed(detail: str, item_id: str | None = None) -> Confirmation:
        return Confirmation("unconfirmed", generation, item_id=item_id, detail=detail)

    if not user:
        return unconfirmed("set jellyfin.user: PlaybackInfo asks as a Jellyfin user")
    deadline = swapped_at + times.give_up_s
    try:
        if times.delay_override_s is not None:
            delay = times.delay_override_s
        else:
            config = await api.get_json("/System/Configuration")
            raw = config.get("LibraryMonitorDelay", 60) if isinstance(config, dict) else 60
            delay = float(raw) if isinstance(raw, int | float) else 60.0
        folders = await api.get_json("/Library/VirtualFolders")
        library = library_for(folders, jellyfin_path)
        if library is None:
            return unconfirmed(f"{jellyfin_path} is in no Jellyfin library; check path_map")
        user_id = user_id_for(await api.get_json("/Users"), user)
        if user_id is None:
            return unconfirmed(f"Jellyfin has no user {user!r}; set jellyfin.user")
        wait = swapped_at + delay + times.settle_s - clock()
        if wait > 0:
            await sleep(min(wait, max(0.0, deadline - clock())))
        item_id = None
        while item_id is None:
            item_id = await _find(api, library, jellyfin_path, swapped_at)
            if item_id is not None:
                break
            if clock() + times.poll_s > deadline:
                return unconfirmed(
                    f"Jellyfin had not listed {jellyfin_path} {times.give_up_s:g} s after the swap"
                )
            await sleep(times.poll_s)
        answer = await api.post_json(
            f"/Items/{item_id}/PlaybackInfo",
            {"UserId": user_id, "DeviceProfile": device_profile},
            {"userId": user_id},
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the client translates HTTP errors into CastuiError words
        return unconfirmed(f"asking Jellyfin failed: {exc}")
    direct, reasons = playback_verdict(answer)
    if direct:
        return Confirmation("direct_play", generation, item_id=item_id)
    return Confirmation("transcode", generation, reasons, item_id=item_id)


async def _find(api: JellyfinApi, library: str, jellyfin_path: str, since: float) -> str | None:
    """Page through the library's items saved since the swap (minus a minute for clocks)."""
    start, page = 0, 200
    while True:
        items = await api.get_json(
            "/Items",
            {
                "ParentId": library,
                "Recursive": "true",
                "Fields": "Path",
                "MinDateLastSaved": jellyfin_time(since - 60),
                "StartIndex": start,
                "Limit": page,
            },
        )
        found = item_with_path(items, jellyfin_path)
        if found is not None:
            return found
        listed = items.get("Items") if isinstance(items, dict) else None
        total = items.get("TotalRecordCount", 0) if isinstance(items, dict) else 0
        start += page
        if not listed or start >= int(total or 0):
            return None
