"""An async Jellyfin API client: explicit timeouts, one auth form, errors castui can explain.

Why this shape:

* **Auth** goes only in ``Authorization: MediaBrowser Token="KEY"``, the one form every
  Jellyfin from 10.8 to 12.0 accepts (12.0 turns ``X-Emby-Token`` and ``?api_key=`` off by
  default, which broke Sonarr/Radarr). The key is never put in a URL (URLs end up in proxy and
  server logs), never in a message, and never in ``repr``: httpx prints the Authorization
  header as ``[secure]`` and :class:`JellyfinClient` shows only its base URL.
* **Timeouts** are explicit (connect, read, write, pool) so a hung server costs a bounded wait
  and a sender or health check never stalls the event loop's other work.
* **Errors** are translated where they enter: transport problems and timeouts become
  :class:`JellyfinUnreachable`, 5xx :class:`JellyfinServerError` (both retryable), 401/403
  :class:`JellyfinAuthError` and other 4xx :class:`JellyfinRequestError` (a settings problem,
  not retried), each with what to do.

``get_json``/``post_json`` are the generic calls the confirmation and sessions code use; the
named methods cover the endpoints castui relies on, with the shapes of Jellyfin 10.8 … 12.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from castui_core import __version__
from castui_core.errors import (
    JellyfinAuthError,
    JellyfinError,
    JellyfinRequestError,
    JellyfinServerError,
    JellyfinUnreachable,
)

if TYPE_CHECKING:
    # Imported where used at run time: ``import httpx`` also imports its command-line tool
    # (rich, click), which castui_core must not load just by being imported (headless mode
    # and users without Jellyfin never need any of it).
    import httpx

UpdateType = Literal["Created", "Modified", "Deleted"]


def auth_header(api_key: str) -> str:
    """The Authorization header value Jellyfin 10.8 … 12.0 all accept for an API key.

    Quotes and backslashes cannot be escaped in Jellyfin's header parser, so a key holding one
    is refused here rather than sent mangled (real keys are 32 hex digits).
    """
    if not api_key or any(c in api_key for c in '"\\\r\n'):
        raise JellyfinAuthError(
            "the Jellyfin API key is empty or contains a quote, backslash or newline; create a"
            " key in Jellyfin's Dashboard > API Keys and put it in jellyfin.api_key_file"
        )
    return f'MediaBrowser Client="castui", Version="{__version__}", Token="{api_key}"'


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment: what castui may print or log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def jellyfin_time(when: float | datetime) -> str:
    """An ISO 8601 UTC timestamp as Jellyfin parses ``MinDateLastSaved``."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ServerInfo:
    """``/System/Info/Public``: who answers at the configured URL."""

    name: str
    version: str
    product: str
    id: str


@dataclass(frozen=True)
class VirtualFolder:
    """One Jellyfin library (``/Library/VirtualFolders``)."""

    name: str
    item_id: str
    locations: tuple[str, ...]
    collection_type: str | None
    refresh_status: str | None  # "Idle" | "Active" | … (None on servers that omit it)


@dataclass(frozen=True)
class ItemsPage:
    """One page of ``/Items``: the items (raw DTOs) and the server's total count."""

    items: tuple[dict[str, Any], ...]
    total: int
    start: int


class JellyfinClient:
    """One connection pool to one Jellyfin server. Use as ``async with`` or call ``aclose``."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        verify_tls: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise JellyfinRequestError(
                f"jellyfin.url {safe_url(url)!r} is not an http(s) URL; set it to the address"
                " you open Jellyfin at, e.g. http://127.0.0.1:8096"
            )
        import httpx

        self.base_url = safe_url(url).rstrip("/")
        self.timeout_s = timeout_s
        # Connect gets a shorter bound than reads: a refused or black-holed host should be
        # reported quickly; a busy server may legitimately take a while to answer.
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            verify=verify_tls,
            transport=transport,
            follow_redirects=False,  # a redirect could carry the header to another host
            headers={
                "Authorization": auth_header(api_key),
                "Accept": "application/json",
                "User-Agent": f"castui/{__version__}",
            },
        )

    def __repr__(self) -> str:
        return f"JellyfinClient({self.base_url!r})"

    __str__ = __repr__

    async def __aenter__(self) -> JellyfinClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- transport ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        auth: bool = True,
    ) -> httpx.Response:
        """One request; any failure comes back as a :class:`JellyfinError` subclass."""
        import httpx

        try:
            request = self._http.build_request(method, path, params=_params(params), json=json)
            if not auth:  # /System/Info/Public: show that the server answers without the key
                del request.headers["Authorization"]
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise JellyfinUnreachable(
                f"Jellyfin at {self.base_url} did not answer {method} {path} within"
                f" {self.timeout_s:g} s; check that it is running and not overloaded, or raise"
                " jellyfin.timeout_s"
            ) from exc
        except httpx.HTTPError as exc:
            raise JellyfinUnreachable(
                f"cannot reach Jellyfin at {self.base_url} ({type(exc).__name__}: {exc}); check"
                " that it is running and that jellyfin.url is right"
            ) from exc
        _raise_for_status(response, method, path, self.base_url)
        return response

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return _json(await self.request("GET", path, params=params), path)

    async def post_json(self, path: str, body: Any, params: Mapping[str, Any] | None = None) -> Any:
        response = await self.request("POST", path, params=params, json=body)
        return None if response.status_code == 204 else _json(response, path)

    # --- endpoints ---------------------------------------------------------------------------

    async def public_info(self) -> ServerInfo:
        """Who is there (no key needed: tells "unreachable" apart from "key refused")."""
        data = _json(await self.request("GET", "/System/Info/Public", auth=False), "info")
        if not isinstance(data, dict) or "Version" not in data:
            raise JellyfinRequestError(
                f"{self.base_url}/System/Info/Public did not answer like Jellyfin; check that"
                " jellyfin.url is Jellyfin's address (including any base path such as /jellyfin)"
            )
        return ServerInfo(
            name=str(data.get("ServerName", "")),
            version=str(data.get("Version", "")),
            product=str(data.get("ProductName", "")),
            id=str(data.get("Id", "")),
        )

    async def system_info(self) -> dict[str, Any]:
        """``/System/Info`` (needs a valid key: the cheapest check that the key works)."""
        return _dict(await self.get_json("/System/Info"), "/System/Info")

    async def system_configuration(self) -> dict[str, Any]:
        return _dict(await self.get_json("/System/Configuration"), "/System/Configuration")

    async def library_monitor_delay(self) -> float:
        """Seconds Jellyfin waits after a change before refreshing (default 60)."""
        raw = (await self.system_configuration()).get("LibraryMonitorDelay", 60)
        return float(raw) if isinstance(raw, int | float) and raw >= 0 else 60.0

    async def virtual_folders(self) -> list[VirtualFolder]:
        data = await self.get_json("/Library/VirtualFolders")
        if not isinstance(data, list):
            raise JellyfinRequestError(f"{self.base_url}/Library/VirtualFolders: not a list")
        return [
            VirtualFolder(
                name=str(f.get("Name", "")),
                item_id=str(f.get("ItemId", "")),
                locations=tuple(str(p) for p in f.get("Locations") or ()),
                collection_type=f.get("CollectionType"),
                refresh_status=f.get("RefreshStatus"),
            )
            for f in data
            if isinstance(f, dict)
        ]

    async def media_updated(self, updates: Iterable[tuple[str, UpdateType | str]]) -> None:
        """Tell Jellyfin these paths changed (it answers 204 at once and refreshes the nearest
        folder it knows after its LibraryMonitorDelay; a path outside every library is silently
        dropped, which is why the health check maps every castui library first)."""
        body = {"Updates": [{"Path": p, "UpdateType": str(kind)} for p, kind in updates]}
        if not body["Updates"]:
            return
        await self.request("POST", "/Library/Media/Updated", json=body)

    async def items(
        self,
        parent_id: str,
        *,
        min_date_last_saved: float | datetime | None = None,
        start: int = 0,
        limit: int = 200,
        recursive: bool = True,
    ) -> ItemsPage:
        """One page of a library's items with their server-side ``Path`` (no Path filter
        exists in Jellyfin's API: list recently saved items and match)."""
        params: dict[str, Any] = {
            "ParentId": parent_id,
            "Recursive": recursive,
            "Fields": "Path",
            "StartIndex": start,
            "Limit": limit,
        }
        if min_date_last_saved is not None:
            params["MinDateLastSaved"] = jellyfin_time(min_date_last_saved)
        data = _dict(await self.get_json("/Items", params), "/Items")
        items = tuple(i for i in data.get("Items") or () if isinstance(i, dict))
        return ItemsPage(items, int(data.get("TotalRecordCount") or 0), start)

    async def playback_info(
        self, item_id: str, user_id: str, device_profile: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``POST /Items/{id}/PlaybackInfo`` with a DeviceProfile (a UserId is required with
        a profile, or Jellyfin answers 400)."""
        body = {"UserId": user_id, "DeviceProfile": dict(device_profile)}
        path = f"/Items/{item_id}/PlaybackInfo"
        return _dict(await self.post_json(path, body, {"userId": user_id}), path)

    async def sessions(self, active_within_s: float | None = None) -> list[dict[str, Any]]:
        params = {} if active_within_s is None else {"activeWithinSeconds": int(active_within_s)}
        data = await self.get_json("/Sessions", params)
        return [s for s in data if isinstance(s, dict)] if isinstance(data, list) else []

    async def users(self) -> list[dict[str, Any]]:
        data = await self.get_json("/Users")
        return [u for u in data if isinstance(u, dict)] if isinstance(data, list) else []


def _params(params: Mapping[str, Any] | None) -> dict[str, str | int | float] | None:
    if params is None:
        return None
    out: dict[str, str | int | float] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


def _raise_for_status(response: httpx.Response, method: str, path: str, base: str) -> None:
    status = response.status_code
    if status < 400:
        return
    where = f"Jellyfin at {base} answered {status} to {method} {path}"
    if status == 401:
        raise JellyfinAuthError(
            f"{where}: the API key is missing or not valid; create one in Jellyfin's Dashboard >"
            " API Keys and set jellyfin.api_key_file (or $CASTUI_JELLYFIN_API_KEY)",
            status=status,
        )
    if status == 403:
        raise JellyfinAuthError(
            f"{where}: the key is not allowed to do this; use an API key from Dashboard > API"
            " Keys (an administrator's), not a user's token",
            status=status,
        )
    if status >= 500:
        raise JellyfinServerError(
            f"{where}: Jellyfin had an internal error; castui retries, see Jellyfin's log",
            status=status,
        )
    if status == 404:
        raise JellyfinRequestError(
            f"{where}: not found; check that jellyfin.url includes Jellyfin's base path (for"
            " example http://host:8096/jellyfin) and that the item still exists",
            status=status,
        )
    raise JellyfinRequestError(
        f"{where}: {_brief(response)}; this castui and this Jellyfin disagree about the request,"
        " please report it with Jellyfin's version",
        status=status,
    )


def _brief(response: httpx.Response) -> str:
    """A short, printable reason from an error body (Jellyfin sends ProblemDetails JSON)."""
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase or "refused"
    if isinstance(data, dict):
        for key in ("title", "message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])[:200]
    return response.reason_phrase or "refused"


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise JellyfinRequestError(
            f"{what}: Jellyfin's answer was not JSON ({response.headers.get('content-type')});"
            " check that jellyfin.url points at Jellyfin, not a login page or proxy",
            status=response.status_code,
        ) from exc


def _dict(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise JellyfinRequestError(f"{what}: Jellyfin's answer was not a JSON object")
    return data


def is_retryable(exc: BaseException) -> bool:
    """Whether waiting and trying again can fix ``exc`` (timeouts, connection errors, 5xx)."""
    return isinstance(exc, JellyfinError) and exc.retryable


__all__: Sequence[str] = (
    "ItemsPage",
    "JellyfinClient",
    "ServerInfo",
    "VirtualFolder",
    "auth_header",
    "is_retryable",
    "jellyfin_time",
    "safe_url",
)
