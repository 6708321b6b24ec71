"""Jellyfin's verdict on *source* files, beside castui's (``castui scan --jellyfin``).

Why: castui's reasons are its own reading of the Cast limits; the reasons that matter to a
viewer are the ones Jellyfin's StreamBuilder gives for the Cast receiver's DeviceProfile. For
every scanned file Jellyfin knows, castui asks PlaybackInfo and shows Jellyfin's reasons next
to its own, and says where the two disagree (castui would leave a file Jellyfin transcodes, or
convert a file Jellyfin would direct-play).

Items are found by listing each Jellyfin library once with ``Fields=Path`` (paged; Jellyfin has
no Path filter), never one request per guessed id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from castui_core.decide import Action
from castui_core.integrations.jellyfin.confirm import JellyfinApi, playback_verdict, user_id_for
from castui_core.integrations.jellyfin.deviceprofile import CastGeneration

PAGE = 500


@dataclass(frozen=True)
class SourceVerdict:
    """What Jellyfin says about one file castui scanned."""

    item_id: str | None  # None: Jellyfin does not know the file (yet)
    direct_play: bool = False
    reasons: tuple[str, ...] = ()
    generation: CastGeneration | None = None
    error: str = ""

    @property
    def text(self) -> str:
        if self.error:
            return f"Jellyfin: {self.error}"
        if self.item_id is None:
            return "Jellyfin: not in its library"
        if self.direct_play:
            label = self.generation.label if self.generation else "Chromecast"
            return f"Jellyfin: direct play on {label}"
        return "Jellyfin: " + ", ".join(self.reasons)


def disagreement(action: Action, verdict: SourceVerdict) -> str | None:
    """Where castui's decision and Jellyfin's disagree, in words (``None``: they agree or
    Jellyfin gave no verdict)."""
    if verdict.item_id is None or verdict.error or action is Action.REJECT:
        return None
    if action is Action.SKIP and not verdict.direct_play:
        return "castui leaves it, but Jellyfin would transcode it: " + ", ".join(verdict.reasons)
    if action.needs_work and verdict.direct_play:
        return f"castui would {action.value} it, but Jellyfin would direct-play it"
    return None


async def items_by_path(api: JellyfinApi) -> dict[str, str]:
    """Every item Jellyfin knows with a Path: server-side path → item id."""
    found: dict[str, str] = {}
    folders = await api.get_json("/Library/VirtualFolders")
    for folder in folders if isinstance(folders, list) else []:
        library = folder.get("ItemId") if isinstance(folder, dict) else None
        if not library:
            continue
        start = 0
        while True:
            page = await api.get_json(
                "/Items",
                {
                    "ParentId": library,
                    "Recursive": "true",
                    "Fields": "Path",
                    "IsFolder": "false",
                    "StartIndex": start,
                    "Limit": PAGE,
                },
            )
            items = page.get("Items") if isinstance(page, dict) else None
            for item in items or []:
                if isinstance(item, dict) and item.get("Path") and item.get("Id"):
                    found[str(item["Path"])] = str(item["Id"])
            start += PAGE
            total = page.get("TotalRecordCount", 0) if isinstance(page, dict) else 0
            if not items or start >= int(total or 0):
                break
    return found


@dataclass(frozen=True)
class SourceQuestion:
    """One scanned file to ask about: its castui path and the profile it is judged for."""

    path: str
    generation: CastGeneration
    device_profile: Mapping[str, Any]


async def source_verdicts(
    api: JellyfinApi,
    questions: Iterable[SourceQuestion],
    *,
    to_jellyfin: Callable[[str], str | None],
    user: str,
) -> dict[str, SourceVerdict]:
    """Jellyfin's verdict per castui path. A failure for one file is that file's ``error``;
    a failure to list the libraries or find the user raises (the client's CastuiError)."""
    known = await items_by_path(api)
    user_id = user_id_for(await api.get_json("/Users"), user)
    verdicts: dict[str, SourceVerdict] = {}
    for q in questions:
        mapped = to_jellyfin(q.path)
        item_id = known.get(mapped) if mapped is not None else None
        if item_id is None:
            verdicts[q.path] = SourceVerdict(None, generation=q.generation)
            continue
        if user_id is None:
            verdicts[q.path] = SourceVerdict(
                item_id, generation=q.generation, error=f"no Jellyfin user {user!r}"
            )
            continue
        try:
            answer = await api.post_json(
                f"/Items/{item_id}/PlaybackInfo",
                {"UserId": user_id, "DeviceProfile": dict(q.device_profile)},
                {"userId": user_id},
            )
        except Exception as exc:  # one file's failure is reported beside that file
            verdicts[q.path] = SourceVerdict(item_id, generation=q.generation, error=str(exc))
            continue
        direct, reasons = playback_verdict(answer)
        verdicts[q.path] = SourceVerdict(item_id, direct, reasons, q.generation)
    return verdicts
