"""A stand-in Jellyfin HTTP server on 127.0.0.1, keeping to what the real server does.

It is a test fixture (a small server castui talks real HTTP to), not a mock of castui's code.
It keeps to the facts from the Jellyfin server source (10.8 … 12.0) that castui relies on:

* ``POST /Library/Media/Updated`` answers 204 at once, even for a path outside every library
  (that path is then silently dropped: see :attr:`StandinJellyfin.dropped`); 400 when a
  ``Path`` is null. ``UpdateType`` is ignored. After ``LibraryMonitorDelay`` (debounced: every
  new update restarts the wait, as Jellyfin's LibraryMonitor does) the nearest folder is
  "refreshed": files that appeared become items, files that went away stop being items, and a
  changed file gets a new ``DateLastSaved``. Hidden files (``.name``) are ignored.
* Auth: ``Authorization: MediaBrowser Token="KEY"`` on every version; on 10.x also the legacy
  ``X-Emby-Token``/``X-MediaBrowser-Token`` headers, the ``Emby`` scheme and ``?api_key=``;
  on 12.0 only the MediaBrowser header. 401 for a missing/unknown key, 403 when a valid but
  non-admin key calls an administrator's endpoint.
* ``/System/Info/Public`` needs no token, ``/System/Info`` does; ``/System/Configuration``
  carries ``LibraryMonitorDelay``; ``/Library/VirtualFolders`` lists ``Locations``, ``ItemId``
  and ``RefreshStatus``; ``/Items?ParentId&Recursive&Fields=Path&MinDateLastSaved&StartIndex
  &Limit`` pages a library's items (``Path`` only when asked for; no Path filter).
* Item ids are ``uuid.UUID(bytes_le=md5((TypeFullName + path).encode('utf-16-le')).digest())``
  in Jellyfin's "N" form.
* ``PlaybackInfo``, ``/Users`` and ``/Sessions`` answer through tests/jellyfin_playback.py.
* Users' data per item (see the "user data" section): ``GET/POST /UserItems/{id}/UserData
  ?userId=`` from 10.9 on (POST changes only the fields sent, as ``UpdateUserItemDataDto``);
  ``GET /Users/{userId}/Items/{id}`` (the item with its ``UserData``) and the 10.8 routes
  ``POST /Users/{userId}/PlayedItems/{id}`` (played, play count + 1, position reset, as
  ``MarkPlayed``) and ``/FavoriteItems/{id}`` on 10.x. Data is keyed by user and item id, so a
  new path starts empty unless a test says Jellyfin re-attached it (``set_user_data``).

Every request is recorded (method, path, query, headers, body) for assertions, and failure
modes can be switched on: ``fail_next(n, 500)``, ``down()``/``up()`` (connections refused on the
same port), ``slow_s`` (answers after a delay), ``force_status`` (e.g. 401 for every call).
Waiting in tests uses :meth:`StandinJellyfin.wait_for` (a condition variable, no sleeps).
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jellyfin_playback import PlaybackState, item_id, playback_info, sessions, users
from standin_http import Recorded, StandinServer

MOVIE_TYPE = "MediaBrowser.Controller.Entities.Movies.Movie"
EPISODE_TYPE = "MediaBrowser.Controller.Entities.TV.Episode"
VIDEO_TYPE = "MediaBrowser.Controller.Entities.Video"
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".ts", ".wmv"})
_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Library:
    name: str
    locations: list[str]  # server-side paths
    collection_type: str = "movies"
    item_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    refresh_status: str = "Idle"

    @property
    def type_full_name(self) -> str:
        return {"movies": MOVIE_TYPE, "tvshows": EPISODE_TYPE}.get(self.collection_type, VIDEO_TYPE)


@dataclass
class Item:
    id: str
    path: str  # server-side
    library: str  # library item id
    type_full_name: str
    date_last_saved: float
    mtime_ns: int


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def _jellyfin_date(value: str) -> float:
    """Parse ``MinDateLastSaved`` as ASP.NET would (ISO 8601; ``Z`` or an offset)."""
    text = value.strip().replace("Z", "+00:00")
    # .NET sends 7 fractional digits; Python's fromisoformat takes at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class StandinJellyfin(StandinServer):
    """The server. ``start()`` binds 127.0.0.1 on a free port; ``url`` is where it listens."""

    http_methods = ("GET", "POST", "DELETE")

    def __init__(
        self,
        *,
        version: str = "10.10.7",
        api_key: str | None = None,
        limited_keys: Iterable[str] = (),
        monitor_delay_s: float = 0.3,
        path_map: dict[str, str] | None = None,
        server_name: str = "standin",
    ) -> None:
        super().__init__()
        self.version = version
        self.api_key = api_key or uuid.uuid4().hex
        self.keys = {self.api_key}
        self.limited_keys = set(limited_keys)
        self.monitor_delay_s = monitor_delay_s
        #: server-side prefix -> local prefix (identity when empty): where the files really are.
        self.path_map = dict(path_map or {})
        self.server_name = server_name
        self.server_id = uuid.uuid4().hex
        self.libraries: list[Library] = []
        self.items: dict[str, Item] = {}  # server path -> item
        self.requests: list[Recorded] = []
        #: Paths posted to /Library/Media/Updated that no library holds (silently dropped).
        self.dropped: list[str] = []
        #: Every /Library/Media/Updated path, in arrival order (what castui told Jellyfin).
        self.updates: list[dict[str, Any]] = []
        self.refreshes = 0  # POST /Library/Refresh calls (castui must never send one alone)
        self.playback = PlaybackState(local_path=self.local_path)
        #: (user id, item id) -> UserItemDataDto; every change castui made, in order.
        self.user_data: dict[tuple[str, str], dict[str, Any]] = {}
        self.user_data_writes: list[tuple[str, str, dict[str, Any]]] = []
        # failure modes
        self.force_status: int | None = None
        self.slow_s = 0.0
        self._fail: list[int] = []
        self._cond = threading.Condition()
        self._pending: dict[str, None] = {}  # paths awaiting the monitor delay
        self._timer: threading.Timer | None = None

    # --- life cycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        self.down()
        with self._cond:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # --- test controls -------------------------------------------------------------------------

    def add_library(
        self, name: str, locations: Iterable[str], collection_type: str = "movies"
    ) -> Library:
        lib = Library(name, [str(p).rstrip("/") for p in locations], collection_type)
        with self._cond:
            self.libraries.append(lib)
        return lib

    def scan(self) -> None:
        """A full library scan (what Jellyfin does at setup): every file becomes an item."""
        with self._cond:
            for lib in self.libraries:
                for loc in lib.locations:
                    self._refresh_folder(lib, loc)
            self._cond.notify_all()

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next ``n`` authenticated requests with ``status``."""
        with self._cond:
            self._fail.extend([status] * n)

    def local_path(self, server_path: str) -> str:
        for server_prefix, local_prefix in sorted(
            self.path_map.items(), key=lambda kv: -len(kv[0])
        ):
            if _under(server_path, server_prefix):
                return local_prefix.rstrip("/") + server_path[len(server_prefix.rstrip("/")) :]
        return server_path

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` (checked under the lock at every request/refresh)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def requests_to(self, path: str, method: str | None = None) -> list[Recorded]:
        with self._cond:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method)
            ]

    def updated_paths(self) -> list[str]:
        with self._cond:
            return [str(u.get("Path")) for u in self.updates]

    def item_for(self, server_path: str) -> Item | None:
        with self._cond:
            return self.items.get(server_path)

    # --- request handling (called on the server's threads) -------------------------------------

    def handle(self, rec: Recorded) -> tuple[int, Any]:
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        if self.slow_s:
            time.sleep(self.slow_s)
        query = {k.lower(): v[-1] for k, v in rec.query.items()}
        path = rec.path.rstrip("/") or "/"
        lower = path.lower()
        if lower == "/system/info/public" and rec.method == "GET":
            return 200, self._public_info()
        if self.force_status is not None:
            return self.force_status, _problem(self.force_status)
        key = self._token(rec)
        if key is None or key not in self.keys | self.limited_keys:
            return 401, None
        with self._cond:
            if self._fail:
                status = self._fail.pop(0)
                return status, _problem(status)
        admin = key in self.keys
        return self._route(rec, lower, path, query, admin)

    def _route(
        self, rec: Recorded, lower: str, path: str, query: dict[str, str], admin: bool
    ) -> tuple[int, Any]:
        method = rec.method
        if lower == "/system/info" and method == "GET":
            return 200, {
                **self._public_info(),
                "OperatingSystem": "Linux",
                "HasPendingRestart": False,
            }
        if lower == "/system/configuration" and method == "GET":
            delay = self.monitor_delay_s
            return 200, {
                "LibraryMonitorDelay": int(delay) if float(delay).is_integer() else delay,
                "LibraryUpdateDuration": 30,
                "EnableFolderView": False,
            }
        if lower == "/library/virtualfolders" and method == "GET":
            if not admin:
                return 403, None
            with self._cond:
                return 200, [self._folder_dto(lib) for lib in self.libraries]
        if lower == "/library/media/updated" and method == "POST":
            return self._media_updated(rec)
        if lower == "/library/refresh" and method == "POST":
            if not admin:
                return 403, None
            with self._cond:
                self.refreshes += 1
            self.scan()
            return 204, None
        if lower == "/items" and method == "GET":
            return self._items(query)
        m = re.fullmatch(r"/items/([0-9a-fA-F-]{32,36})/playbackinfo", lower)
        if m and method == "POST":
            wanted = m.group(1).replace("-", "")
            with self._cond:
                found = next((i.path for i in self.items.values() if i.id == wanted), None)
            return playback_info(self.playback, found, wanted, rec.json, dict(query))
        if lower == "/users" and method == "GET":
            return users(self.playback)
        if lower == "/sessions" and method == "GET":
            return sessions(self.playback, {k: v[-1] for k, v in rec.query.items()})
        answer = self._user_data_route(rec, lower, query)
        if answer is not None:
            return answer
        return 404, None

    def _token(self, rec: Recorded) -> str | None:
        legacy = not self.version.startswith("12.")
        auth = rec.headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme == "MediaBrowser" or (legacy and scheme == "Emby"):
            params = dict(_PARAM.findall(rest))
            if params.get("Token"):
                return params["Token"]
        if legacy:
            for name in ("x-emby-token", "x-mediabrowser-token"):
                if rec.headers.get(name):
                    return rec.headers[name]
            for name, values in rec.query.items():
                if name.lower() in ("api_key", "apikey") and values:
                    return values[-1]
        return None

    def _public_info(self) -> dict[str, Any]:
        return {
            "LocalAddress": self.url,
            "ServerName": self.server_name,
            "Version": self.version,
            "ProductName": "Jellyfin Server",
            "OperatingSystem": "",
            "Id": self.server_id,
            "StartupWizardCompleted": True,
        }

    def _folder_dto(self, lib: Library) -> dict[str, Any]:
        return {
            "Name": lib.name,
            "Locations": list(lib.locations),
            "CollectionType": lib.collection_type,
            "LibraryOptions": {"Enabled": True, "EnableRealtimeMonitor": False},
            "ItemId": lib.item_id,
            "PrimaryImageItemId": lib.item_id,
            "RefreshProgress": None,
            "RefreshStatus": lib.refresh_status,
        }

    def _media_updated(self, rec: Recorded) -> tuple[int, Any]:
        try:
            body = rec.json
        except ValueError:
            return 400, _problem(400)
        updates = body.get("Updates") if isinstance(body, dict) else None
        if not isinstance(updates, list) or any(
            not isinstance(u, dict) or u.get("Path") is None for u in updates
        ):
            return 400, _problem(400, "The Path field is required.")
        with self._cond:
            self.updates.extend(updates)
            for u in updates:
                self._pending[str(u["Path"])] = None
            # Debounce as LibraryMonitor does: the wait starts over with every change.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.monitor_delay_s, self._after_delay)
            self._timer.daemon = True
            self._timer.start()
            self._cond.notify_all()
        return 204, None

    def _after_delay(self) -> None:
        with self._cond:
            pending, self._pending = list(self._pending), {}
            self._timer = None
            for path in pending:
                lib = self._library_of(path)
                if lib is None:
                    self.dropped.append(path)
                    continue
                self._refresh_folder(lib, self._nearest_folder(lib, path))
            self._cond.notify_all()

    def _library_of(self, path: str) -> Library | None:
        best: tuple[int, Library] | None = None
        for lib in self.libraries:
            for loc in lib.locations:
                if _under(path, loc) and (best is None or len(loc) > best[0]):
                    best = (len(loc), lib)
        return best[1] if best else None

    def _nearest_folder(self, lib: Library, path: str) -> str:
        """The closest existing folder at or above ``path`` inside the library."""
        current = path
        while True:
            local = self.local_path(current)
            if os.path.isdir(local):
                return current
            parent = current.rsplit("/", 1)[0] or "/"
            if parent == current or not any(_under(parent, loc) for loc in lib.locations):
                return next(loc for loc in lib.locations if _under(path, loc))
            current = parent

    def _refresh_folder(self, lib: Library, folder: str) -> None:
        """Jellyfin's refresh of one folder (called with the lock held)."""
        lib.refresh_status = "Active"
        now = time.time()
        seen: set[str] = set()
        local_root = self.local_path(folder)
        for dirpath, dirnames, filenames in os.walk(local_root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if (
                    name.startswith(".")
                    or os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS
                ):
                    continue
                local = os.path.join(dirpath, name)
                server = folder.rstrip("/") + local[len(local_root.rstrip("/")) :]
                try:
                    mtime_ns = os.stat(local).st_mtime_ns
                except OSError:
                    continue
                seen.add(server)
                old = self.items.get(server)
                if old is None:
                    self.items[server] = Item(
                        item_id(server, lib.type_full_name), server, lib.item_id,
                        lib.type_full_name, now, mtime_ns,
                    )  # fmt: skip
                elif old.mtime_ns != mtime_ns:
                    old.date_last_saved, old.mtime_ns = now, mtime_ns
        for server in [p for p in self.items if _under(p, folder) and p not in seen]:
            del self.items[server]
        lib.refresh_status = "Idle"

    def _items(self, query: dict[str, str]) -> tuple[int, Any]:
        parent = (query.get("parentid") or "").replace("-", "")
        recursive = query.get("recursive", "false").lower() == "true"
        fields = {f.strip().lower() for f in query.get("fields", "").split(",")}
        start = int(query.get("startindex") or 0)
        limit = int(query["limit"]) if query.get("limit") else None
        since = _jellyfin_date(query["mindatelastsaved"]) if query.get("mindatelastsaved") else None
        with self._cond:
            lib = next((x for x in self.libraries if x.item_id == parent), None)
            chosen = [
                i
                for i in sorted(self.items.values(), key=lambda i: i.path)
                if lib is not None
                and i.library == lib.item_id
                and (recursive or any(i.path.rsplit("/", 1)[0] == loc for loc in lib.locations))
                and (since is None or i.date_last_saved >= since)
            ]
        page = chosen[start : start + limit if limit is not None else None]
        dtos = []
        for i in page:
            dto: dict[str, Any] = {
                "Name": os.path.splitext(os.path.basename(i.path))[0],
                "ServerId": self.server_id,
                "Id": i.id,
                "Type": i.type_full_name.rsplit(".", 1)[1],
                "IsFolder": False,
                "MediaType": "Video",
                "LocationType": "FileSystem",
            }
            if "path" in fields:
                dto["Path"] = i.path
            dtos.append(dto)
        return 200, {"Items": dtos, "TotalRecordCount": len(chosen), "StartIndex": start}

    # --- user data (watch history: played, play count, position, favourite) ---------------------

    def set_user_data(
        self, user: str, server_path: str, type_full_name: str = "", **fields: Any
    ) -> None:
        """Give ``user`` data for the item at ``server_path`` (it need not exist yet: this is
        how a test says "Jellyfin re-attached this user's state to the new item")."""
        lib = self._library_of(server_path)
        kind = type_full_name or (lib.type_full_name if lib else MOVIE_TYPE)
        key = (self.playback.user_id(user).replace("-", ""), item_id(server_path, kind))
        with self._cond:
            self.user_data.setdefault(key, _empty_user_data(key[1])).update(fields)

    def user_data_for(self, user: str, server_path: str) -> dict[str, Any]:
        """``user``'s data for the item now at ``server_path`` (empty data if none)."""
        item = self.item_for(server_path)
        assert item is not None, f"no item at {server_path}"
        key = (self.playback.user_id(user).replace("-", ""), item.id)
        with self._cond:
            return dict(self.user_data.get(key) or _empty_user_data(item.id))

    def _user_data_route(
        self, rec: Recorded, lower: str, query: dict[str, str]
    ) -> tuple[int, Any] | None:
        modern = _version_at_least(self.version, (10, 9))
        legacy = not self.version.startswith("12.")
        m = re.fullmatch(r"/useritems/([0-9a-f-]{32,36})/userdata", lower)
        if m and modern and rec.method in ("GET", "POST"):
            return self._user_data(rec, query.get("userid", ""), m.group(1))
        m = re.fullmatch(r"/users/([0-9a-f-]{32,36})/items/([0-9a-f-]{32,36})", lower)
        if m and legacy and rec.method == "GET":
            status, data = self._user_data(rec, m.group(1), m.group(2))
            if status != 200:
                return status, data
            return 200, {"Id": m.group(2).replace("-", ""), "UserData": data}
        m = re.fullmatch(
            r"/users/([0-9a-f-]{32,36})/(played|favorite)items/([0-9a-f-]{32,36})", lower
        )
        if m and legacy and rec.method == "POST":
            played = m.group(2) == "played"
            change = (
                {"Played": True, "PlaybackPositionTicks": 0, "LastPlayedDate": _now_iso()}
                if played
                else {"IsFavorite": True}
            )
            return self._user_data(rec, m.group(1), m.group(3), change=change, count=played)
        return None

    def _user_data(
        self,
        rec: Recorded,
        user: str,
        item: str,
        *,
        change: dict[str, Any] | None = None,
        count: bool = False,
    ) -> tuple[int, Any]:
        user, item = user.replace("-", ""), item.replace("-", "")
        if not any(u["Id"].replace("-", "") == user for u in self.playback.users):
            return 404, {"message": "User not found"}
        with self._cond:
            if not any(i.id == item for i in self.items.values()):
                return 404, {"message": f"Item not found: {item}"}
            data = self.user_data.setdefault((user, item), _empty_user_data(item))
            if rec.method == "POST" and change is None:
                body = rec.json if isinstance(rec.json, dict) else {}
                change = {k: v for k, v in body.items() if k in _USER_DATA_FIELDS and v is not None}
            if change:
                data.update(change)
                if count:
                    data["PlayCount"] = int(data.get("PlayCount") or 0) + 1
                self.user_data_writes.append((user, item, dict(change)))
                self._cond.notify_all()
            return 200, dict(data)


_USER_DATA_FIELDS = frozenset(
    {"Played", "PlayCount", "PlaybackPositionTicks", "IsFavorite", "LastPlayedDate", "Rating"}
)


def _empty_user_data(item: str) -> dict[str, Any]:
    """A ``UserItemDataDto`` with nothing in it (what a new item has)."""
    return {
        "Rating": None,
        "PlayedPercentage": None,
        "UnplayedItemCount": None,
        "PlaybackPositionTicks": 0,
        "PlayCount": 0,
        "IsFavorite": False,
        "Likes": None,
        "LastPlayedDate": None,
        "Played": False,
        "Key": item,
        "ItemId": item,
    }


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _version_at_least(version: str, wanted: tuple[int, int]) -> bool:
    major, minor = (int(p) for p in version.split(".")[:2])
    return (major, minor) >= wanted


def _problem(status: int, detail: str | None = None) -> dict[str, Any]:
    titles = {400: "One or more validation errors occurred.", 500: "An error occurred."}
    return {"title": detail or titles.get(status, "Error"), "status": status}
