"""A stand-in Sonarr or Radarr on 127.0.0.1, keeping to the v3 API castui uses.

A test fixture castui talks real HTTP to (not a mock of castui's code). Facts it keeps to
(Sonarr v3/v4 and Radarr v3+ API docs):

* Auth: ``X-Api-Key`` header (or ``?apikey=``); 401 without a valid key, for every ``/api``
  route.
* ``GET /api/v3/system/status``: ``appName`` ("Sonarr"/"Radarr") and ``version``.
* ``GET /api/v3/series`` (Sonarr) / ``GET /api/v3/movie`` (Radarr): every series/movie with
  its ``id``, ``title`` and folder ``path``; no filter by file path exists.
* ``GET /api/v3/rootfolder``: the root folders (``path``).
* ``POST /api/v3/command`` with ``{"name": "RescanSeries", "seriesId": N}`` (Sonarr) or
  ``{"name": "RescanMovie", "movieId": N}`` (Radarr) answers 201 with the queued command;
  an unknown command name is 400.

Every request is recorded; ``down()``/``up()`` refuse connections on the same port and
``fail_next(n, status)`` answers the next ``n`` API calls with ``status``. Waits use
:meth:`StandinArr.wait_for` (a condition variable, no sleeps).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from standin_http import Recorded, StandinServer

ArrRequest = Recorded  # the name the Sonarr/Radarr tests know


class StandinArr(StandinServer):
    """``kind`` is "sonarr" or "radarr"; add series/movies with :meth:`add`."""

    def __init__(self, kind: str, *, version: str = "4.0.10.2544") -> None:
        super().__init__()
        self.kind = kind
        self.version = version
        self.api_key = uuid.uuid4().hex
        self.entries: list[dict[str, Any]] = []
        self.root_folders: list[str] = []
        self.requests: list[ArrRequest] = []
        self.commands: list[dict[str, Any]] = []
        self._fail: list[int] = []
        self._cond = threading.Condition()

    def add(self, title: str, path: str) -> int:
        with self._cond:
            item_id = len(self.entries) + 1
            self.entries.append({"id": item_id, "title": title, "path": path, "monitored": True})
            return item_id

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._cond:
            self._fail.extend([status] * n)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def handle(self, rec: ArrRequest) -> tuple[int, Any]:
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        key = rec.headers.get("x-api-key") or (rec.query.get("apikey") or [""])[-1]
        if key != self.api_key:
            return 401, None
        with self._cond:
            if self._fail:
                return self._fail.pop(0), {"message": "failure"}
        path = rec.path.rstrip("/").lower()
        listing = "/api/v3/series" if self.kind == "sonarr" else "/api/v3/movie"
        if path == "/api/v3/system/status" and rec.method == "GET":
            return 200, {"appName": self.kind.title(), "version": self.version}
        if path == listing and rec.method == "GET":
            with self._cond:
                return 200, [dict(e) for e in self.entries]
        if path == "/api/v3/rootfolder" and rec.method == "GET":
            return 200, [{"id": i + 1, "path": p} for i, p in enumerate(self.root_folders)]
        if path == "/api/v3/command" and rec.method == "POST":
            body = rec.json if isinstance(rec.json, dict) else {}
            wanted = "RescanSeries" if self.kind == "sonarr" else "RescanMovie"
            if body.get("name") != wanted:
                return 400, {"message": f"Unknown command {body.get('name')!r}"}
            with self._cond:
                self.commands.append(body)
                self._cond.notify_all()
                command_id = len(self.commands)
            return 201, {"id": command_id, "name": wanted, "status": "queued", "body": body}
        return 404, None
