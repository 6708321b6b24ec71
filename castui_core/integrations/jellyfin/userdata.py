"""Watch history across a swap: read each user's data before, write back what Jellyfin lost.

Why: Jellyfin keys an item by its path, so ``Movie.mkv`` → ``Movie.mp4`` is a new item with
empty user data. Jellyfin often re-attaches watched state itself (provider ids; 10.11 keeps
the data of removed items by key), but not always. So when Jellyfin is configured castui

1. right before the swap (the converter's ``before_commit``), lists ``GET /Users`` and reads
   each user's data for the old item: ``GET /UserItems/{id}/UserData?userId=`` on 10.9+, the
   item's ``UserData`` from ``GET /Users/{userId}/Items/{id}`` on 10.8. The item's id is
   computed from its path as Jellyfin does (:func:`item_id_for`, tried for each video item
   type; a 404 means "not this one"), so a big library is never listed just to find one
   file. Only users with something to lose are kept (played, play count, position, favourite);
2. stores that snapshot durably beside the job (:mod:`castui_core.store.watch_history`);
3. once Jellyfin has listed the new item (the confirmation found its id), reads each user's
   data for the new item and writes back only the fields Jellyfin lost: ``POST
   /UserItems/{id}/UserData?userId=`` with just those fields on 10.9+; on 10.8 ``POST
   /Users/{userId}/PlayedItems/{id}`` and ``/FavoriteItems/{id}``, where a resume position
   (and a play count above one) cannot be set: the result says so.

A user whose state survived is not touched. Reading the snapshot never blocks or fails the
conversion: any error becomes an "unknown" result with the reason. The pure parts
(:func:`lost_fields`, :func:`summarise`, :func:`api_style`) are table-tested.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from castui_core.bus import EventBus, Subscription
from castui_core.errors import (
    CastuiError,
    JellyfinError,
    JellyfinRequestError,
    JellyfinServerError,
    JellyfinUnreachable,
)
from castui_core.events import JellyfinConfirmed, LogLine
from castui_core.integrations.jellyfin.connect import client_for
from castui_core.integrations.jellyfin.paths import to_jellyfin
from castui_core.settings import Settings
from castui_core.tasks import cancel_and_wait

log = logging.getLogger("castui.jellyfin")

Style = Literal["10.9", "10.8"]
Outcome = Literal["pending", "kept", "restored", "lost", "unknown", "nothing"]


class UserDataApi(Protocol):
    """The calls this needs (the Jellyfin client provides them, with auth and timeouts)."""

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any: ...

    async def post_json(
        self, path: str, body: Any, params: Mapping[str, Any] | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class UserState:
    """One user's data for one item: the four things a viewer notices when they are lost."""

    user_id: str
    user_name: str
    played: bool = False
    play_count: int = 0
    position_ticks: int = 0
    favorite: bool = False

    @classmethod
    def from_dto(cls, user_id: str, user_name: str, dto: Any) -> UserState:
        """From a ``UserItemDataDto`` (missing or odd fields read as "nothing")."""
        d = dto if isinstance(dto, dict) else {}
        return cls(
            user_id=user_id,
            user_name=user_name,
            played=d.get("Played") is True,
            play_count=_int(d.get("PlayCount")),
            position_ticks=_int(d.get("PlaybackPositionTicks")),
            favorite=d.get("IsFavorite") is True,
        )

    @property
    def empty(self) -> bool:
        return not (self.played or self.play_count or self.position_ticks or self.favorite)


@dataclass(frozen=True)
class Snapshot:
    """What users had on the old item before the swap (``error``: why it is unknown)."""

    item_id: str | None
    style: Style
    users: tuple[UserState, ...] = ()
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "item_id": self.item_id,
                "style": self.style,
                "users": [asdict(u) for u in self.users],
                "error": self.error,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        data = json.loads(text)
        return cls(
            item_id=data.get("item_id"),
            style="10.8" if data.get("style") == "10.8" else "10.9",
            users=tuple(UserState(**u) for u in data.get("users") or ()),
            error=str(data.get("error") or ""),
        )


@dataclass(frozen=True)
class Result:
    """The outcome for one job, with the line shown in history and job detail."""

    outcome: Outcome
    message: str
    restored: tuple[str, ...] = ()  # user names
    notes: tuple[str, ...] = field(default=())


# --- pure parts ---------------------------------------------------------------------------------


def api_style(version: str) -> Style:
    """Which user-data routes a server version has (10.9 added ``/UserItems/{id}/UserData``;
    anything unparsable is taken as current)."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return "10.9"
    return "10.8" if (major, minor) < (10, 9) else "10.9"


def lost_fields(before: UserState, after: UserState) -> dict[str, Any]:
    """The ``UpdateUserItemDataDto`` fields Jellyfin lost, and only those.

    Anything the new item already has at least as much of is left alone (the user may have
    watched on since): a played flag, a play count as high, any resume position, a favourite.
    """
    lost: dict[str, Any] = {}
    if before.played and not after.played:
        lost["Played"] = True
    if before.play_count > after.play_count:
        lost["PlayCount"] = before.play_count
    if before.position_ticks > 0 and after.position_ticks == 0 and not after.played:
        lost["PlaybackPositionTicks"] = before.position_ticks
    if before.favorite and not after.favorite:
        lost["IsFavorite"] = True
    return lost


def legacy_notes(name: str, lost: Mapping[str, Any]) -> list[str]:
    """What the 10.8 routes cannot put back (they only mark played and favourite)."""
    notes = []
    if "PlaybackPositionTicks" in lost:
        notes.append(f"{name}'s resume position cannot be set on Jellyfin 10.8")
    if int(lost.get("PlayCount", 0)) > 1:
        notes.append(f"{name}'s play count ({lost['PlayCount']}) cannot be set on Jellyfin 10.8")
    return notes


def summarise(restored: Sequence[str], unchanged: int, notes: Sequence[str]) -> Result:
    """The job's line: kept by Jellyfin, restored for N users, or (with notes) what is lost."""
    tail = f" ({'; '.join(notes)})" if notes else ""
    if restored:
        n = len(restored)
        return Result(
            "restored",
            f"watch history: restored for {n} user{'s' if n != 1 else ''}{tail}",
            tuple(restored),
            tuple(notes),
        )
    if notes:
        return Result("lost", f"watch history: lost: {'; '.join(notes)}", (), tuple(notes))
    if unchanged:
        return Result("kept", "watch history: kept by Jellyfin")
    return Result("nothing", "watch history: no user had watched it")


# --- the conversation ---------------------------------------------------------------------------


async def read_user_data(api: UserDataApi, style: Style, item_id: str, user_id: str) -> Any:
    if style == "10.9":
        return await api.get_json(f"/UserItems/{item_id}/UserData", {"userId": user_id})
    item = await api.get_json(f"/Users/{user_id}/Items/{item_id}")
    return item.get("UserData") if isinstance(item, dict) else None


async def _users(api: UserDataApi) -> list[tuple[str, str]]:
    found = await api.get_json("/Users")
    return [
        (str(u["Id"]), str(u.get("Name", "")))
        for u in (found if isinstance(found, list) else [])
        if isinstance(u, dict) and u.get("Id")
    ]


#: The item types a video file becomes (movies, shows, other libraries): Jellyfin's item id is
#: derived from the type's full name and the path.
ITEM_TYPES = (
    "MediaBrowser.Controller.Entities.Movies.Movie",
    "MediaBrowser.Controller.Entities.TV.Episode",
    "MediaBrowser.Controller.Entities.Video",
)


def item_id_for(jellyfin_path: str, type_full_name: str) -> str:
    """Jellyfin's id for the item at a path (``BaseItem.GetNewItemId``: MD5 of the type's full
    name + the path in UTF-16-LE, as a .NET Guid; case-sensitive ids, the default since 10.8).
    """
    digest = hashlib.md5((type_full_name + jellyfin_path).encode("utf-16-le")).digest()
    return uuid.UUID(bytes_le=digest).hex


async def locate(
    api: UserDataApi, style: Style, jellyfin_path: str, user_id: str
) -> tuple[str, Any] | None:
    """``(item id, that user's data)`` for the item at ``jellyfin_path``, trying the id of each
    item type: one to three small requests instead of listing a whole library (a 404 is "not
    this type")."""
    for type_full_name in ITEM_TYPES:
        candidate = item_id_for(jellyfin_path, type_full_name)
        try:
            return candidate, await read_user_data(api, style, candidate, user_id)
        except JellyfinError as exc:
            if exc.status != 404:
                raise
    return None


async def take_snapshot(api: UserDataApi, jellyfin_path: str) -> Snapshot:
    """Each user's data for the item at ``jellyfin_path``; errors are the caller's to record."""
    info = await api.get_json("/System/Info/Public")
    style = api_style(str(info.get("Version", "")) if isinstance(info, dict) else "")
    users = await _users(api)
    if not users:
        return Snapshot(None, style)
    found = await locate(api, style, jellyfin_path, users[0][0])
    if found is None:
        return Snapshot(None, style, error=f"Jellyfin had no item for {jellyfin_path}")
    item_id, first = found
    states = []
    for n, (user_id, name) in enumerate(users):
        raw = first if n == 0 else await read_user_data(api, style, item_id, user_id)
        state = UserState.from_dto(user_id, name, raw)
        if not state.empty:
            states.append(state)
    return Snapshot(item_id, style, tuple(states))


async def restore(api: UserDataApi, snapshot: Snapshot, new_item_id: str) -> Result:
    """Compare each snapshotted user's data with the new item's; write back what was lost."""
    restored: list[str] = []
    notes: list[str] = []
    unchanged = 0
    for before in snapshot.users:
        name = before.user_name or before.user_id
        raw = await read_user_data(api, snapshot.style, new_item_id, before.user_id)
        after = UserState.from_dto(before.user_id, before.user_name, raw)
        lost = lost_fields(before, after)
        if not lost:
            unchanged += 1
            continue
        if snapshot.style == "10.9":
            await api.post_json(
                f"/UserItems/{new_item_id}/UserData", lost, {"userId": before.user_id}
            )
            restored.append(name)
            continue
        wrote = False
        if lost.get("Played"):
            await api.post_json(f"/Users/{before.user_id}/PlayedItems/{new_item_id}", None)
            wrote = True
        if lost.get("IsFavorite"):
            await api.post_json(f"/Users/{before.user_id}/FavoriteItems/{new_item_id}", None)
            wrote = True
        notes.extend(legacy_notes(name, lost))
        if wrote:
            restored.append(name)
    return summarise(restored, unchanged, notes)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


# --- the service: snapshot before each swap, restore after its confirmation ---------------------

UNREACHABLE = "unknown: Jellyfin unreachable before the swap"


class WatchHistoryStore(Protocol):
    """Where snapshots and outcomes are kept (the castui Store)."""

    async def record_watch_history(
        self, *, job_id: int, path: str, status: str, snapshot: str, message: str
    ) -> None: ...

    async def watch_history(self, job_ids: Sequence[int]) -> Mapping[int, Any]: ...

    async def pending_watch_history(self) -> Sequence[Any]: ...

    async def jellyfin_confirmations(self, job_ids: Sequence[int]) -> Mapping[int, Any]: ...


class WatchHistoryKeeper:
    """Takes the snapshot in the converter's ``before_commit`` and settles it once Jellyfin's
    confirmation (:class:`~castui_core.events.JellyfinConfirmed`) has found, or failed to find,
    the new item. Pending snapshots are settled again after a restart."""

    def __init__(
        self,
        api: UserDataApi,
        store: WatchHistoryStore,
        bus: EventBus,
        *,
        to_jellyfin: Callable[[str], str | None],
        snapshot_timeout_s: float = 10.0,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._close = close
        self._api = api
        self._store = store
        self._bus = bus
        self._to_jellyfin = to_jellyfin
        self._timeout_s = snapshot_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._follow: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = self._bus.subscribe()
        self._follow = asyncio.create_task(self._run(sub), name="castui-watch-history")
        for row in await self._store.pending_watch_history():
            confirmed = await self._store.jellyfin_confirmations([row.job_id])
            if row.job_id in confirmed and confirmed[row.job_id].status != "pending":
                self._spawn(row.job_id)

    async def stop(self) -> None:
        follow, self._follow = self._follow, None
        await cancel_and_wait(*self._tasks, follow)
        close, self._close = self._close, None
        if close is not None:
            await close()

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def before_swap(self, job_id: int, source: str) -> None:
        """Read and store every user's data for ``source``'s item. Never raises: a Jellyfin
        that is slow, down or refusing costs at most ``snapshot_timeout_s`` and is recorded
        as "unknown" with the reason; the swap goes ahead either way."""
        mapped = self._to_jellyfin(source)
        try:
            if mapped is None:
                raise JellyfinRequestError(f"{source} is outside every jellyfin.path_map entry")
            async with asyncio.timeout(self._timeout_s):
                snapshot = await take_snapshot(self._api, mapped)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            snapshot = Snapshot(
                None,
                "10.9",
                error=f"unknown: Jellyfin did not answer within {self._timeout_s:g} s before the"
                " swap",
            )
        except (JellyfinUnreachable, JellyfinServerError):
            snapshot = Snapshot(None, "10.9", error=UNREACHABLE)
        except Exception as exc:  # the client's words; any surprise must not stop the swap
            snapshot = Snapshot(None, "10.9", error=f"unknown: reading it failed ({exc})")
        if snapshot.error:
            message = (
                snapshot.error
                if snapshot.error.startswith("unknown:")
                else f"unknown: {snapshot.error}"
            )
            status, message = "unknown", f"watch history: {message}"
        elif not snapshot.users:
            status, message = "nothing", "watch history: no user had watched it"
        else:
            n = len(snapshot.users)
            status = "pending"
            message = f"watch history: saved for {n} user{'s' if n != 1 else ''}, waiting"
        try:
            await self._store.record_watch_history(
                job_id=job_id,
                path=source,
                status=status,
                snapshot=snapshot.to_json(),
                message=message,
            )
        except CastuiError as exc:
            self._log("warning", f"{message}; not stored ({exc})")

    async def _run(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                if isinstance(event, JellyfinConfirmed) and event.status != "pending":
                    self._spawn(event.job_id)
        finally:
            sub.close()

    def _spawn(self, job_id: int) -> None:
        task = asyncio.create_task(self._settle(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, job_id: int) -> None:
        try:
            row = (await self._store.watch_history([job_id])).get(job_id)
            if row is None or row.status != "pending":
                return
            snapshot = Snapshot.from_json(row.snapshot)
            result = await self._result(job_id, snapshot)
            await self._store.record_watch_history(
                job_id=job_id,
                path=row.path,
                status=result.outcome,
                snapshot=row.snapshot,
                message=result.message,
            )
        except CastuiError as exc:
            self._log("warning", f"watch history of job {job_id}: {exc}")
            return
        level = "warning" if result.outcome in ("lost", "unknown") else "info"
        self._log(level, f"{row.path}: {result.message}")

    async def _result(self, job_id: int, snapshot: Snapshot) -> Result:
        confirmed = (await self._store.jellyfin_confirmations([job_id])).get(job_id)
        if confirmed is None:
            return Result("unknown", "watch history: unknown: the job has no confirmation")
        try:
            item_id = confirmed.item_id
            if item_id is None and snapshot.users:  # confirmation gave up: look once more
                mapped = self._to_jellyfin(confirmed.path)
                user = snapshot.users[0].user_id
                found = await locate(self._api, snapshot.style, mapped, user) if mapped else None
                item_id = found[0] if found else None
            if item_id is None:
                return Result(
                    "lost",
                    "watch history: lost: Jellyfin has not listed the new file"
                    f" ({confirmed.message})",
                )
            return await restore(self._api, snapshot, item_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client's words (what to do) end up in the record
            return Result("lost", f"watch history: lost: writing it back failed ({exc})")

    def _log(self, level: str, line: str) -> None:
        getattr(log, level)("%s", line)
        self._bus.publish(LogLine(level, line))


async def start_keeper(
    settings: Settings, store: WatchHistoryStore, bus: EventBus
) -> WatchHistoryKeeper | None:
    """The keeper for an engine: only with Jellyfin and its confirmations on (the new item's
    id comes from the confirmation), with its own client (closed by ``stop``)."""
    jf = settings.jellyfin
    if jf is None or not jf.confirm:
        return None
    try:
        client = client_for(jf)
    except CastuiError as exc:  # no key: the health check says so
        bus.publish(LogLine("warning", f"Jellyfin watch history off: {exc}"))
        return None
    path_map = jf.path_map
    keeper = WatchHistoryKeeper(
        client,
        store,
        bus,
        to_jellyfin=lambda path: to_jellyfin(path, path_map),
        snapshot_timeout_s=jf.timeout_s,
        close=client.aclose,
    )
    await keeper.start()
    return keeper
