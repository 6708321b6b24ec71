"""Sonarr and Radarr: after a committed swap, ask them to rescan the series or movie.

Why: a file that changed name (``Show - S01E01.mkv`` → ``.mp4``) looks missing to Sonarr/
Radarr until their next disk scan, and a missing episode can be searched for and downloaded
again. So each committed swap also puts a row in the outbox for every ``arr:`` entry (target
``arr:<name>``, same table and same transaction as Jellyfin's rows: nothing is lost to a crash
or a service that is down), and an :class:`ArrSender` per entry delivers them:

* finds the series/movie holding the file by listing ``GET /api/v3/series`` (Sonarr) or
  ``GET /api/v3/movie`` (Radarr) and matching each one's ``path`` component-wise against the
  file mapped through ``path_map`` (neither API filters by file path);
* ``POST /api/v3/command`` with ``{"name": "RescanSeries", "seriesId": N}`` or
  ``{"name": "RescanMovie", "movieId": N}``, once per series/movie per batch;
* retries no answer, timeouts and 5xx with the Jellyfin sender's backoff (exponential, full
  jitter, up to an hour); a key refused (401/403) or a URL that is not the API (404) stops
  that entry's rows until a restart, with what to do said once.

The API key goes only in the ``X-Api-Key`` header: never in a URL, a message or ``repr``.
``castui arr check`` (and every start) runs :func:`check` for each entry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from castui_core.bus import EventBus
from castui_core.errors import ArrConfigError, ArrError, ArrUnreachable, CastuiError
from castui_core.events import LogLine
from castui_core.integrations.jellyfin.client import safe_url
from castui_core.integrations.jellyfin.paths import to_jellyfin, under
from castui_core.integrations.jellyfin.sender import BACKOFF_BASE_S, backoff_s
from castui_core.settings import ArrSettings, Settings
from castui_core.store.outbox import OutboxEntry, OutboxRow, arr_target
from castui_core.tasks import cancel_and_wait, wait_set

if TYPE_CHECKING:
    import httpx

    from castui_core.queue.protocol import JobQueue

log = logging.getLogger("castui.arr")

BATCH_LIMIT = 200
IDLE_POLL_S = 30.0


# --- pure parts ---------------------------------------------------------------------------------


def listing_path(kind: str) -> str:
    return "/api/v3/series" if kind == "sonarr" else "/api/v3/movie"


def rescan_command(kind: str, item_id: int) -> dict[str, Any]:
    """The command body Sonarr v3/v4 and Radarr v3+ accept."""
    if kind == "sonarr":
        return {"name": "RescanSeries", "seriesId": item_id}
    return {"name": "RescanMovie", "movieId": item_id}


def owner_of(listing: Any, path: str) -> tuple[int, str] | None:
    """``(id, title)`` of the series/movie whose folder holds ``path`` (the deepest one)."""
    best: tuple[int, int, str] | None = None
    for entry in listing if isinstance(listing, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            continue
        folder = str(entry.get("path") or "")
        if folder and under(path, folder):
            depth = folder.rstrip("/").count("/")
            if best is None or depth > best[0]:
                best = (depth, int(entry["id"]), str(entry.get("title", "")))
    return None if best is None else (best[1], best[2])


def arr_entries(settings: Settings, library: str, output: str | None) -> list[OutboxEntry]:
    """The outbox rows for a committed swap: one per ``arr:`` entry that hears this library."""
    if output is None:
        return []
    return [
        OutboxEntry(output, "Modified", library, arr_target(a.name))
        for a in settings.arr
        if a.notifies(library)
    ]


# --- the client ---------------------------------------------------------------------------------


class ArrClient:
    """One connection pool to one Sonarr/Radarr. Use as ``async with`` or call ``aclose``."""

    def __init__(
        self,
        settings: ArrSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx

        self.kind = settings.kind
        self.name = settings.name
        self.base_url = safe_url(settings.url).rstrip("/")
        self.timeout_s = settings.timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5.0)),
            verify=settings.verify_tls,
            transport=transport,
            follow_redirects=False,  # a redirect could carry the key to another host
            headers={"X-Api-Key": settings.api_key_value(), "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"ArrClient({self.kind}, {self.base_url!r})"

    __str__ = __repr__

    async def __aenter__(self) -> ArrClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One request; any failure comes back as an :class:`ArrError` with what to do."""
        import httpx

        who = f"{self.kind.title()} at {self.base_url}"
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise ArrUnreachable(
                f"{who} did not answer {method} {path} within {self.timeout_s:g} s; check that"
                " it is running"
            ) from exc
        except httpx.HTTPError as exc:
            raise ArrUnreachable(
                f"cannot reach {who} ({type(exc).__name__}); check that it is running and that"
                f" arr {self.name}'s url is right"
            ) from exc
        status = response.status_code
        where = f"{who} answered {status} to {method} {path}"
        if status in (401, 403):
            raise ArrConfigError(
                f"{where}: the API key was refused; copy it from {self.kind.title()}'s Settings >"
                f" General > Security into arr {self.name}'s api_key_file",
                status=status,
            )
        if status >= 500:
            raise ArrUnreachable(f"{where}: its own error; castui retries", status=status)
        if status >= 400:
            raise ArrConfigError(
                f"{where}: check that the url includes its URL base (e.g. /sonarr) and that it"
                " is Sonarr/Radarr v3 or later",
                status=status,
            )
        try:
            return response.json() if response.content else None
        except ValueError as exc:
            raise ArrConfigError(
                f"{where} with something that is not JSON; check that the url is"
                f" {self.kind.title()}'s, not a login page or proxy",
                status=status,
            ) from exc

    async def status(self) -> dict[str, Any]:
        data = await self.request("GET", "/api/v3/system/status")
        return data if isinstance(data, dict) else {}

    async def listing(self) -> list[dict[str, Any]]:
        data = await self.request("GET", listing_path(self.kind))
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    async def root_folders(self) -> list[str]:
        data = await self.request("GET", "/api/v3/rootfolder")
        return [str(d["path"]) for d in data or [] if isinstance(d, dict) and d.get("path")]

    async def rescan(self, item_id: int) -> None:
        await self.request("POST", "/api/v3/command", rescan_command(self.kind, item_id))


# --- health check -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrHealth:
    name: str
    ok: bool
    lines: tuple[str, ...]
    exit_code: int  # 0 fine, 1 a warning, 2 unreachable / refused / not configured


async def check(
    entry: ArrSettings, settings: Settings, client: ArrClient | None = None
) -> ArrHealth:
    """Who answers, whether the key works, and whether each castui library it hears about
    lies under one of its root folders (else no rescan can ever find a file there)."""
    lines: list[str] = []
    try:
        own = client is None
        client = client or ArrClient(entry)
    except CastuiError as exc:
        return ArrHealth(entry.name, False, (str(exc),), 2)
    try:
        info = await client.status()
        app = str(info.get("appName", ""))
        if app.lower() != entry.kind:
            return ArrHealth(
                entry.name,
                False,
                (f"{client.base_url} answered as {app or 'something else'}, not {entry.kind}",),
                2,
            )
        lines.append(f"{app} {info.get('version', '?')} at {client.base_url}: key accepted")
        roots = await client.root_folders()
        warn = False
        for lib in settings.libraries:
            if not entry.notifies(lib.name):
                continue
            mapped = to_jellyfin(str(lib.path), entry.path_map)
            if any(under(mapped, r) or under(r, mapped) for r in roots):
                lines.append(f"library {lib.name}: {mapped} is under its root folders")
            else:
                warn = True
                lines.append(
                    f"library {lib.name}: {mapped} is under none of its root folders"
                    f" ({', '.join(roots) or 'none'}); set arr {entry.name}'s path_map or"
                    " its libraries"
                )
        return ArrHealth(entry.name, not warn, tuple(lines), 1 if warn else 0)
    except ArrError as exc:
        return ArrHealth(entry.name, False, (*lines, str(exc)), 2)
    finally:
        if own:
            await client.aclose()


# --- the sender ---------------------------------------------------------------------------------


class ArrSender:
    """Delivers one entry's outbox rows: a rescan per series/movie, retried until answered."""

    def __init__(
        self,
        store: JobQueue,
        settings: Settings,
        entry: ArrSettings,
        bus: EventBus,
        *,
        client_factory: Callable[[ArrSettings], ArrClient] = ArrClient,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        backoff_base_s: float = BACKOFF_BASE_S,
    ) -> None:
        self._store = store
        self._settings = settings
        self.entry = entry
        self._bus = bus
        self._factory = client_factory
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff_base_s = backoff_base_s
        self._target = arr_target(entry.name)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: ArrClient | None = None
        self._held: str | None = None
        self.rescanned: list[int] = []
        self.last_error = ""

    async def start(self) -> None:
        await self._store.outbox_resume(self._target)  # a restart is "try again"
        self._task = asyncio.create_task(self._run(), name=f"castui-{self._target}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def poke(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        health = await check(self.entry, self._settings)
        for line in health.lines:
            self._say(
                "info" if health.exit_code == 0 else "warning", f"arr {self.entry.name}: {line}"
            )
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except CastuiError as exc:  # the store: say so, look again a little later
                self._say("warning", f"arr {self.entry.name} outbox: {exc}")
                await self._wait(5.0)
            except Exception as exc:  # a bug must not end every rescan silently
                log.exception("arr sender failed; restarting it in 5 s")
                self._say("warning", f"arr {self.entry.name} sender failed ({exc}); retrying")
                await self._wait(5.0)

    async def _step(self) -> None:
        if self._held is not None:
            await self._wait(None)
            return
        rows = await self._store.outbox_due(BATCH_LIMIT, self._target)
        if not rows:
            nxt = await self._store.outbox_next_due(self._target)
            wait = IDLE_POLL_S if nxt is None else min(IDLE_POLL_S, max(0.0, nxt - self._clock()))
            await self._wait(wait)
            return
        await self._send(rows)

    async def _send(self, rows: Sequence[OutboxRow]) -> None:
        ids = [r.id for r in rows]
        try:
            if self._client is None:
                self._client = self._factory(self.entry)
            listing = await self._client.listing()
            owners: dict[int, str] = {}
            for row in rows:
                found = owner_of(listing, to_jellyfin(row.path, self.entry.path_map))
                if found is None:
                    self._say(
                        "warning",
                        f"arr {self.entry.name}: no {self._noun()} holds {row.path}; nothing to"
                        " rescan (check its path_map)",
                    )
                else:
                    owners[found[0]] = found[1]
            for item_id, title in owners.items():
                await self._client.rescan(item_id)
                self.rescanned.append(item_id)
                self._say("info", f"arr {self.entry.name}: rescan of {title!r} requested")
        except ArrConfigError as exc:
            await self._store.outbox_stop(ids, str(exc))
            self._held = str(exc)
            self._say("warning", f"arr {self.entry.name} stopped: {exc}; fix it and restart")
        except CastuiError as exc:  # unreachable, 5xx, a key that cannot be read yet
            attempts = max(r.attempts for r in rows)
            delay = backoff_s(attempts, self._rng, base_s=self._backoff_base_s)
            await self._store.outbox_retry_later(ids, self._clock() + delay, str(exc))
            self._say("warning", f"{exc}; {len(rows)} rescan(s) retried in {delay:.0f} s")
        else:
            await self._store.outbox_delivered(ids)
            self.last_error = ""

    def _noun(self) -> str:
        return "series" if self.entry.kind == "sonarr" else "movie"

    async def _wait(self, wait_s: float | None) -> None:
        self._wake.clear()
        await wait_set(self._wake, wait_s)

    def _say(self, level: str, line: str) -> None:
        if level == "warning":
            self.last_error = line
        getattr(log, level)("%s", line)
        self._bus.publish(LogLine(level, line))


async def start_arr_senders(settings: Settings, store: JobQueue, bus: EventBus) -> list[ArrSender]:
    """One sender per ``arr:`` entry (none when there are none)."""
    senders = []
    for entry in settings.arr:
        sender = ArrSender(store, settings, entry, bus)
        await sender.start()
        senders.append(sender)
    return senders


def health_json(h: ArrHealth) -> Mapping[str, Any]:
    return {"name": h.name, "ok": h.ok, "exit_code": h.exit_code, "lines": list(h.lines)}
