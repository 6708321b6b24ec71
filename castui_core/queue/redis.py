"""The Redis queue backend: one queue shared by castui engines on several hosts (issue 13).

Why Redis: SQLite must never live on a network share, so it cannot coordinate hosts; Redis is
one small service (Debian ships ``redis-server``) that every node can reach.

How it keeps the :class:`~castui_core.queue.protocol.JobQueue` contract:

* every state change is ONE Lua script (``lua/*.lua``, prefixed with ``lua/base.lua`` and,
  for those that move jobs, ``lua/common.lua``)
  that checks the fencing token, reads the server's clock (``TIME``) for leases and run-after,
  keeps the indexes and appends the audit event in the same atomic step;
* decisions that need the policy (what a failure or an expired lease leads to) are computed in
  Python from a read of the job and the server's time, then applied by a script that re-checks
  the token and state (compare-and-set), so a stale read changes nothing;
* durability is checked at connect (AOF on, fsync every second or always, no eviction), not
  assumed; a server that could lose acknowledged changes is refused unless the operator
  explicitly allows it;
* a Redis that is down is a :class:`QueueUnreachableError` ("queue unreachable: …"); redis-py
  reconnects on the next call, so workers resume when it is back. No message or log line ever
  carries a password or a URL's credentials.

Cost (``bench/bench_queue.py``, 2-core development machine): a worker's claim, heartbeat and
complete are three round trips. Each costs the client ~250-350 us of CPU in redis-py's asyncio
client (hiredis parses the replies; castui's own decoding is ~20-40 us of it), most of a job's
~1.4 ms of CPU, and Redis ~55-145 us of script time. Inside a script each ``redis.call`` costs
more than its command, so the hot scripts (claim, complete, enqueue) read a job once, write it
once and take ids in blocks. Redis Functions (``FCALL``, prelude defined once) saved only
5-14 % of script time here over ``EVALSHA``: not worth requiring Redis 7 and a library that
nodes of different castui versions would share. The audit stream is never capped with
``XADD MAXLEN``: events leave only through :meth:`RedisQueue.prune_events`, so none is
dropped unseen.

Layout (``<prefix>`` defaults to ``castui``): ``job:<id>`` hashes with the SQLite ``jobs`` row's
fields (absent field = NULL), ``active`` (path → active job id), ``delayed``/``ready``/
``running``/``finished`` sorted sets, the ``events`` stream (entry id ``<event id>-0``) with
``jobev:<id>`` lists, running ``totals``/``reasons`` of finished jobs (and ``…:lib:<name>``),
the outbox (``ob:*``), ``paused``, ``nodes``/``nodes_seen``. Paths are stored as the file
system's bytes, so names that are not UTF-8 round-trip exactly. Keys are built inside the
scripts from the prefix, so one Redis (or a primary with replicas) is supported, not Cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from castui_core.errors import (
    JobNotFoundError,
    LeaseLostError,
    QueueUnreachableError,
    QueueUnsafeError,
    StoreError,
)
from castui_core.queue import policy as rules
from castui_core.queue.policy import MergedFields, NewJob, Outcome, QueuePolicy
from castui_core.queue.protocol import RECENT_SCAN, NodeStatus
from castui_core.store.models import (
    FINISHED_STATES,
    ClaimedJob,
    EnqueueOutcome,
    EnqueueResult,
    Event,
    HistoryTotals,
    Job,
    JobAction,
    JobResult,
    JobState,
    Progress,
)
from castui_core.store.outbox import JELLYFIN, OutboxEntry, OutboxRow
from castui_core.store.store import DEFAULT_EVENT_RETENTION_S

log = logging.getLogger("castui.queue.redis")

#: The three redis.conf lines castui needs; shown by the refusal, the README and doctor.
REDIS_CONF_LINES = ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction")

_SCRIPTS = (
    "claim",
    "heartbeat",
    "complete",
    "leave",
    "expired",
    "enqueue",
    "cancel",
    "retry",
    "set_priority",
    "pause",
    "record_event",
    "clear_history",
    "history",
    "totals",
    "list_events",
    "outbox",
    "node_heartbeat",
    "jobs",
    "prune_events",
    "recent",
)

#: Scripts that need only lua/base.lua, not the job-index helpers of lua/common.lua.
_BASE_ONLY = frozenset(
    {
        "heartbeat",
        "expired",
        "node_heartbeat",
        "record_event",
        "pause",
        "history",
        "totals",
        "list_events",
        "jobs",
        "prune_events",
        "recent",
    }
)

#: Job ids one ``recent`` script looks at (~4 us each on the development machine).
_RECENT_SLICE = 2500

#: Items per enqueue script call: big enough to amortise the round trip, small enough that one
#: script does not hold the server for long (Redis runs one script at a time).
_ENQUEUE_CHUNK = 2000


def _lua(name: str) -> str:
    return (resources.files("castui_core.queue") / "lua" / f"{name}.lua").read_text("utf-8")


def _b(text: str) -> bytes:
    """A str as the bytes Redis stores: UTF-8, with a file name's undecodable bytes
    (surrogate escapes, see :mod:`castui_core.store.db`) turned back into themselves."""
    return text.encode("utf-8", "surrogateescape")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _num(value: float) -> bytes:
    return repr(float(value)).encode()


# --- credentials never leave this module ---------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without its user/password (what logs, errors and doctor may show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable queue URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _url_secrets(url: str, password: str | None) -> tuple[str, ...]:
    found: list[str] = [password or ""]
    with suppress(ValueError):
        parts = urlsplit(url)
        found += [parts.password or "", parts.username or ""]
        found += [re.sub(r"%[0-9A-Fa-f]{2}", "", parts.password or "")]
    found.append(url)
    # Longest first, so a password inside the URL is not half-replaced.
    return tuple(sorted({s for s in found if len(s) >= 3}, key=len, reverse=True))


# --- records ----------------------------------------------------------------------------------


def _opt_f(h: Mapping[bytes, bytes], key: bytes) -> float | None:
    v = h.get(key)
    return None if v is None else float(v)


def _opt_i(h: Mapping[bytes, bytes], key: bytes) -> int | None:
    v = h.get(key)
    return None if v is None else int(v)


def _opt_s(h: Mapping[bytes, bytes], key: bytes) -> str | None:
    v = h.get(key)
    return None if v is None else _s(v)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A flat HGETALL/field list as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


_STATES = {s.value.encode(): s for s in JobState}
_ACTIONS = {a.value.encode(): a for a in JobAction}
_NO_RESULT = JobResult()
_RESULT_KEYS = (
    b"output_path",
    b"source_size",
    b"output_size",
    b"duration_s",
    b"encoder",
    b"command",
    b"exit_code",
    b"stderr_tail",
)


def _reasons(raw: bytes | None) -> tuple[str, ...]:
    if raw is None or raw == b"[]":  # the common case, without the JSON parser
        return ()
    return tuple(str(v) for v in json.loads(raw))


def job_from_hash(h: Mapping[bytes, bytes]) -> Job:
    """A ``job:<id>`` hash as a :class:`Job` (the fields are the SQLite row's columns).

    Written for speed (the dashboard lists every active job: 100k of them after a first
    scan): enum lookups by bytes, and no result object built for a job that has none."""
    get = h.get
    progress: Progress | None = None
    if b"progress_at" in h:
        progress = Progress(
            percent=_opt_f(h, b"progress_percent"),
            fps=_opt_f(h, b"progress_fps"),
            speed=_opt_f(h, b"progress_speed"),
            eta_s=_opt_f(h, b"progress_eta_s"),
            at=_opt_f(h, b"progress_at"),
        )
    result = _NO_RESULT
    if any(k in h for k in _RESULT_KEYS):
        result = JobResult(
            output_path=_opt_s(h, b"output_path"),
            source_size=_opt_i(h, b"source_size"),
            output_size=_opt_i(h, b"output_size"),
            duration_s=_opt_f(h, b"duration_s"),
            encoder=_opt_s(h, b"encoder"),
            command=_reasons(get(b"command")),
            exit_code=_opt_i(h, b"exit_code"),
            stderr_tail=_opt_s(h, b"stderr_tail"),
        )
    owner = get(b"lease_owner")
    expires = get(b"lease_expires")
    reason = get(b"reason")
    started = get(b"started_at")
    finished = get(b"finished_at")
    return Job(
        id=int(h[b"id"]),
        path=h[b"path"].decode("utf-8", "surrogateescape"),
        library=h[b"library"].decode("utf-8", "surrogateescape"),
        action=_ACTIONS[h[b"action"]],
        state=_STATES[h[b"state"]],
        reasons=_reasons(get(b"reasons")),
        priority=int(h[b"priority"]),
        attempts=int(h[b"attempts"]),
        max_attempts=int(h[b"max_attempts"]),
        run_after=float(h[b"run_after"]),
        lease_owner=None if owner is None else owner.decode("utf-8", "surrogateescape"),
        lease_token=int(h[b"lease_token"]),
        lease_expires=None if expires is None else float(expires),
        rerun_requested=b"rerun_action" in h,
        progress=progress,
        result=result,
        reason=None if reason is None else reason.decode("utf-8", "surrogateescape"),
        created_at=float(h[b"created_at"]),
        updated_at=float(h[b"updated_at"]),
        started_at=None if started is None else float(started),
        finished_at=None if finished is None else float(finished),
    )


def _event_from_entry(entry: Sequence[Any]) -> Event:
    eid = int(bytes(entry[0]).split(b"-", 1)[0])
    f = _pairs(entry[1])
    details = f.get(b"details")
    return Event(
        id=eid,
        at=float(f[b"at"]),
        kind=_s(f[b"kind"]),
        job_id=_opt_i(f, b"job_id"),
        path=_opt_s(f, b"path"),
        actor=_opt_s(f, b"actor"),
        from_state=_opt_s(f, b"from_state"),
        to_state=_opt_s(f, b"to_state"),
        reason=_opt_s(f, b"reason"),
        details=json.loads(details) if details else {},
    )


def _outbox_row(h: Mapping[bytes, bytes]) -> OutboxRow:
    update_type: Any = _s(h[b"update_type"])
    return OutboxRow(
        id=int(h[b"id"]),
        path=_s(h[b"path"]),
        folder=_s(h[b"folder"]),
        update_type=update_type,
        library=_s(h[b"library"]),
        job_id=_opt_i(h, b"job_id"),
        attempts=int(h[b"attempts"]),
        next_at=float(h[b"next_at"]),
        last_error=_opt_s(h, b"last_error"),
        created_at=float(h[b"created_at"]),
        target=_s(h[b"target"]),
    )


def _result_args(result: JobResult | None) -> list[bytes]:
    """A result's non-NULL fields as name/value pairs (the script clears the rest)."""
    r = result or JobResult()
    values: list[tuple[str, bytes | None]] = [
        ("output_path", None if r.output_path is None else _b(r.output_path)),
        ("source_size", None if r.source_size is None else str(r.source_size).encode()),
        ("output_size", None if r.output_size is None else str(r.output_size).encode()),
        ("duration_s", None if r.duration_s is None else _num(r.duration_s)),
        ("encoder", None if r.encoder is None else _b(r.encoder)),
        ("command", _b(json.dumps(list(r.command))) if r.command else None),
        ("exit_code", None if r.exit_code is None else str(r.exit_code).encode()),
        ("stderr_tail", None if r.stderr_tail is None else _b(r.stderr_tail)),
    ]
    out: list[bytes] = []
    for name, value in values:
        if value is not None:
            out += [name.encode(), value]
    return out


def _outbox_args(entries: Sequence[OutboxEntry]) -> list[bytes]:
    out: list[bytes] = []
    for e in entries:
        folder = e.message if e.message is not None else os.path.dirname(e.path)
        out += [_b(e.path), _b(folder), _b(e.update_type), _b(e.library), _b(e.target)]
    return out


def _opt_arg(value: float | None) -> bytes:
    return b"" if value is None else _num(value)


# --- enqueue batches -------------------------------------------------------------------------


def _merge(items: Sequence[NewJob]) -> dict[str, tuple[MergedFields, NewJob]]:
    """Duplicates in one batch merge with the policy's debounce merge, exactly like repeated
    enqueues. ``run_after`` here is the wait *relative* to the server's clock (merged at
    ``now = 0``): the script adds the server's ``TIME``, and max(now + a, now + b) is
    now + max(a, b), so the result is the one the policy would give at that time."""
    merged: dict[str, tuple[MergedFields, NewJob]] = {}
    for item in items:
        fresh = rules.new_fields(item, 0.0)
        seen = merged.get(item.path)
        merged[item.path] = (fresh if seen is None else rules.merge_fields(seen[0], fresh), item)
    return merged


def _o(value: str | float | None) -> bytes:
    """An optional value for leave.lua: ``b""`` is NULL, anything else starts with ``=``."""
    if value is None:
        return b""
    return b"=" + (_num(value) if isinstance(value, float) else _b(value))


# --- the backend ------------------------------------------------------------------------------


class RedisQueue:
    """A :class:`~castui_core.queue.protocol.JobQueue` kept in Redis (see the module doc).

    Open with :meth:`connect`; one instance per process, safe for its async tasks (redis-py's
    pool gives each call its own connection).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        reader: aioredis.Redis,
        *,
        shown_url: str,
        secrets: tuple[str, ...],
        prefix: str,
        lease_seconds: float,
        max_attempts: int,
        backoff_base_s: float,
        backoff_cap_s: float,
        rng: random.Random,
    ) -> None:
        self._r: aioredis.Redis | None = client
        self._ro: aioredis.Redis | None = reader
        self.url = shown_url
        self._secrets = secrets
        self.prefix = prefix
        self._policy = QueuePolicy(
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            rng=rng,
        )
        base, common = _lua("base"), _lua("common")
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(
                "\n".join((base, "" if name in _BASE_ONLY else common, _lua(name)))
            )
            for name in _SCRIPTS
        }
        self._p = _b(prefix)

    # --- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        password: str | None = None,
        prefix: str = "castui",
        lease_seconds: float = 60.0,
        max_attempts: int = 3,
        backoff_base_s: float = 30.0,
        backoff_cap_s: float = 3600.0,
        rng: random.Random | None = None,
        require_durable: bool | None = True,
        socket_timeout_s: float = 10.0,
        event_retention_s: float | None = DEFAULT_EVENT_RETENTION_S,
    ) -> RedisQueue:
        """Connect to ``url`` (``redis://host:port/db``, ``rediss://…``, ``unix:///path``),
        check that the server keeps what it acknowledges, and return the queue.

        Raises :class:`QueueUnreachableError` when Redis does not answer (or refuses the
        password) and :class:`QueueUnsafeError` when its persistence could lose changes and
        ``require_durable`` is true (``False``: a logged warning; ``None``: not checked, for
        ``castui doctor``, which reports it itself). ``event_retention_s`` prunes older audit
        events (``None``: keep all), as :meth:`Store.connect <castui_core.store.Store.connect>`.
        """
        if lease_seconds <= 0 or max_attempts < 1:
            raise ValueError("lease_seconds must be > 0 and max_attempts >= 1")
        if not prefix or any(c in prefix for c in " \t\r\n"):
            raise StoreError(f"queue prefix {prefix!r} must be a non-empty word; fix queue.prefix.")
        secrets = _url_secrets(url, password)
        shown = redact_url(url)
        # Two pools. Scripts are never retried by the driver: a reply lost after Redis ran
        # one must not run it twice (a claim taken twice, a 'done' answered with LeaseLost);
        # _run resends only what never left. Reads are idempotent: one retry on a fresh
        # connection hides the pooled connections a Redis restart left dead.
        try:
            client, reader = (
                aioredis.Redis.from_url(
                    url,
                    password=password,
                    decode_responses=False,
                    socket_timeout=socket_timeout_s,
                    socket_connect_timeout=socket_timeout_s,
                    retry=Retry(NoBackoff(), retries),
                )
                for retries in (0, 1)
            )
        except (ValueError, rx.RedisError) as exc:
            msg = _scrub(str(exc), secrets)
            raise StoreError(
                f"queue URL {shown} is not usable ({msg}); use redis://host:port/db, "
                "rediss://host:port/db or unix:///path/to/redis.sock."
            ) from None
        queue = cls(
            client,
            reader,
            shown_url=shown,
            secrets=secrets,
            prefix=prefix,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            rng=rng or random.Random(),
        )
        try:
            async with queue._talk("connecting"):
                await reader.ping()
            if require_durable is not None:
                await queue.check_durability(require=require_durable)
            if event_retention_s is not None:
                # As the SQLite store does at open: the audit stream must not grow forever
                # in a server that may not evict.
                now = await queue._server_time()
                await queue.prune_events(older_than=now - event_retention_s)
        except BaseException:
            await queue.close()
            raise
        return queue

    async def close(self) -> None:
        clients = (self._r, self._ro)
        self._r = self._ro = None
        for client in clients:
            if client is not None:
                with suppress(rx.RedisError, OSError):
                    await client.aclose()

    @property
    def lease_seconds(self) -> float:
        return self._policy.lease_seconds

    def _client(self) -> aioredis.Redis:
        """The pool for scripts (no driver retries)."""
        if self._r is None:
            raise StoreError(f"the queue at {self.url} is closed; open it again.")
        return self._r

    def _reader(self) -> aioredis.Redis:
        """The pool for reads (one retry on a fresh connection)."""
        if self._ro is None:
            raise StoreError(f"the queue at {self.url} is closed; open it again.")
        return self._ro

    @asynccontextmanager
    async def _talk(self, doing: str) -> AsyncIterator[None]:
        """Translate redis-py's errors where they enter castui, without any credential.

        ``from None`` on purpose: a driver exception chained as ``__cause__`` would print the
        connection's details in any traceback a log handler writes; the message keeps the
        driver's words (scrubbed), which is what the operator needs.

        It also gives back a cancellation the driver swallowed: on Python 3.11 redis-py's
        ``asyncio.wait_for`` around a send drops a cancel that lands as the send completes,
        so the call returned normally and a stopping loop went on for ever. A call whose
        task was cancelled while it ran ends in CancelledError, as on Python 3.12; what
        Redis did stays done (the same as a cancel landing just after the call).
        """
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            yield
        except (rx.AuthenticationError, rx.AuthorizationError) as exc:
            why = _scrub(str(exc), self._secrets)
            raise QueueUnreachableError(
                f"queue unreachable: Redis at {self.url} refused castui's credentials ({why}); "
                "check queue.password_file / queue.password_env."
            ) from None
        except (TimeoutError, rx.ConnectionError, rx.TimeoutError, OSError) as exc:
            why = _scrub(str(exc) or type(exc).__name__, self._secrets)
            raise QueueUnreachableError(
                f"queue unreachable: {why} (Redis at {self.url}, while {doing}); castui "
                "retries on its next call: start Redis or fix queue.url."
            ) from None
        except rx.ResponseError as exc:
            why = _scrub(str(exc), self._secrets)
            if why.startswith(("NOAUTH", "WRONGPASS")):
                raise QueueUnreachableError(
                    f"queue unreachable: Redis at {self.url} needs a valid password ({why}); "
                    "set queue.password_file or queue.password_env."
                ) from None
            raise StoreError(f"the queue at {self.url} failed while {doing}: {why}") from None
        except rx.RedisError as exc:
            why = _scrub(str(exc), self._secrets)
            raise StoreError(f"the queue at {self.url} failed while {doing}: {why}") from None
        if task is not None and task.cancelling() > cancels:
            raise asyncio.CancelledError

    async def _run(self, name: str, doing: str, *args: bytes | str | int | float) -> Any:
        """Run one script (EVALSHA; redis-py loads it again after a SCRIPT FLUSH/restart)."""
        client = self._client()
        script = self._scripts[name]
        async with self._talk(doing):
            try:
                return await script(args=[self._p, *args], client=client)
            except rx.ConnectionError as exc:
                if "while writing to socket" not in str(exc):
                    raise  # it may have run: the caller hears "unreachable", nothing is redone
                # The request never reached Redis (a pooled connection that died with a
                # restarted server): sending it again cannot apply it twice.
                return await script(args=[self._p, *args], client=client)

    async def persistence_settings(self) -> dict[str, str] | None:
        """``appendonly``, ``appendfsync`` and ``maxmemory-policy`` as the server reports
        them, or ``None`` when it does not let castui read them (CONFIG disabled)."""
        client = self._reader()
        try:
            async with self._talk("reading the server's persistence settings"):
                conf: dict[Any, Any] = {}
                for name in ("appendonly", "appendfsync", "maxmemory-policy"):
                    conf.update(await client.config_get(name))
        except QueueUnreachableError:
            raise
        except StoreError:
            return None
        return {
            _s(k) if isinstance(k, bytes) else str(k): _s(v) if isinstance(v, bytes) else str(v)
            for k, v in conf.items()
        }

    async def check_durability(self, *, require: bool = True) -> list[str]:
        """The redis.conf lines still needed for acknowledged changes to survive a crash
        (``[]`` when none). Refuses (:class:`QueueUnsafeError`) when some are missing (or
        cannot be checked) and ``require``; otherwise logs a warning."""
        conf = await self.persistence_settings()
        if conf is None:
            msg = config_disabled_message(self.url)
            if require:
                raise QueueUnsafeError(msg)
            log.warning("%s", msg)
            return list(REDIS_CONF_LINES)
        missing = missing_conf_lines(conf)
        if missing:
            lines = "\n".join(f"    {line}" for line in missing)
            msg = (
                f"Redis at {self.url} could lose acknowledged queue changes (a job converted "
                f"twice or lost). Add to its redis.conf and restart it:\n{lines}\n"
                "(or set queue.allow_unsafe_persistence: true to run anyway)."
            )
            if require:
                raise QueueUnsafeError(msg)
            log.warning("%s", msg)
        return missing

    async def server_info(self) -> dict[str, str]:
        """``redis_version`` and friends (for ``castui doctor``)."""
        client = self._reader()
        async with self._talk("reading the server's version"):
            info = await client.info("server")
        return {str(k): str(v) for k, v in info.items()}

    # --- workers ------------------------------------------------------------------------

    async def enqueue(
        self,
        path: str,
        library: str,
        action: JobAction | str,
        reasons: Sequence[str] = (),
        *,
        priority: int = 0,
        debounce_s: float = 0.0,
    ) -> EnqueueResult:
        """Queue ``path``; see :class:`EnqueueOutcome` for what happens if it is already active."""
        item = NewJob(path, library, action, tuple(reasons), priority, debounce_s)
        return (await self.enqueue_many((item,)))[0]

    async def enqueue_many(self, items: Iterable[NewJob]) -> list[EnqueueResult]:
        """Queue many paths (merged like SQLite's ``enqueue_many``), a few thousand per script.

        What happens to a path that already has a job (:func:`~castui_core.queue.policy.
        decide_enqueue`) is decided inside the script, where the active job is read
        atomically; enqueue.lua states the same rule."""
        batch = list(items)
        merged = _merge(batch)
        outcome: dict[str, tuple[int, EnqueueOutcome]] = {}
        paths = list(merged)
        chunks: list[tuple[list[str], bytes]] = []
        for start in range(0, len(paths), _ENQUEUE_CHUNK):
            chunk = paths[start : start + _ENQUEUE_CHUNK]
            fields: list[bytes] = []
            for path in chunk:
                m, last = merged[path]
                fields += [
                    _b(path),
                    _b(m.library),
                    _b(str(m.action)),
                    _b(json.dumps(list(m.reasons))),
                    b"%d" % m.priority,
                    _num(m.run_after),  # the wait; the script adds the server's clock
                    b"" if last.modified_at is None else _num(last.modified_at),
                    _b(rules.created_reason(m.action, m.reasons)),
                ]
            blob = b"\0".join(fields) + b"\0"  # every field ends with a NUL
            if blob.count(b"\0") != len(fields):
                raise StoreError(
                    "a path, library name or reason holds a NUL byte, which no file name can; "
                    "nothing was queued from this batch."
                )
            chunks.append((chunk, blob))
        # Checked in full first, so a refused batch queues nothing.
        for chunk, blob in chunks:
            flat = await self._run(
                "enqueue", "queueing jobs", str(self._policy.max_attempts), str(len(chunk)), blob
            )
            for i, path in enumerate(chunk):
                outcome[path] = (int(flat[2 * i]), EnqueueOutcome(_s(flat[2 * i + 1])))
        results: list[EnqueueResult] = []
        seen: set[str] = set()
        for item in batch:
            job_id, first = outcome[item.path]
            if item.path in seen and first is EnqueueOutcome.CREATED:
                results.append(EnqueueResult(job_id, EnqueueOutcome.DEBOUNCED))
            else:
                results.append(EnqueueResult(job_id, first))
            seen.add(item.path)
        return results

    async def claim(self, owner: str) -> ClaimedJob | None:
        """The best ready job (priority desc, run_after, id), or ``None`` (none ready or
        paused). Expired leases are reclaimed first (with the shared policy)."""
        for _ in range(100):
            reply = await self._run(
                "claim", "claiming a job", _b(owner), _num(self._policy.lease_seconds)
            )
            if reply[0] == 1:
                job = job_from_hash(_pairs(reply[1]))
                return ClaimedJob(job=job, token=job.lease_token)
            if reply[0] == 0:
                return None
            await self.reclaim_expired()
        raise StoreError(
            "claiming a job kept finding expired leases it could not reclaim; "
            "check the Redis server's clock and `castui doctor`."
        )

    async def heartbeat(self, job_id: int, token: int, progress: Progress | None = None) -> float:
        """Extend the lease (server clock) and record progress; returns the new expiry."""
        p = progress or Progress()
        reply = await self._run(
            "heartbeat",
            "recording progress",
            str(job_id),
            str(token),
            _num(self._policy.lease_seconds),
            _opt_arg(p.percent),
            _opt_arg(p.fps),
            _opt_arg(p.speed),
            _opt_arg(p.eta_s),
        )
        if reply[0] != 1:
            raise await self._lease_lost(job_id, token)
        return float(reply[1])

    async def complete(
        self,
        job_id: int,
        token: int,
        result: JobResult,
        outbox: Sequence[OutboxEntry] = (),
    ) -> Job:
        """Mark the job done; its outbox rows are written by the same script."""
        reason = rules.completed_reason(result)
        res = _result_args(result)
        reply = await self._run(
            "complete",
            "recording a finished job",
            str(job_id),
            str(token),
            str(len(res) // 2),
            str(len(outbox)),
            reason,
            *res,
            *_outbox_args(outbox),
        )
        if reply[0] != 1:
            raise await self._lease_lost(job_id, token)
        return job_from_hash(_pairs(reply[1]))

    async def fail(
        self,
        job_id: int,
        token: int,
        reason: str,
        *,
        retryable: bool = True,
        result: JobResult | None = None,
    ) -> Job:
        """Record a failed attempt: the policy decides (retry after backoff, dead, failed)."""
        job, now = await self._running_job(job_id, token)
        outcome = rules.after_failure(
            job, reason, retryable=retryable, now=now, policy=self._policy
        )
        details = (
            json.dumps({"exit_code": result.exit_code})
            if result and result.exit_code is not None
            else None
        )
        left = await self._leave(
            job,
            now,
            outcome,
            "recording a failed job",
            result=result,
            write_result=True,
            details=details,
        )
        if left is None:
            raise await self._lease_lost(job_id, token)
        return left

    async def release(self, job_id: int, token: int, reason: str = "worker shutting down") -> Job:
        """Hand a running job back without using up an attempt (clean shutdown)."""
        job, now = await self._running_job(job_id, token)
        outcome = rules.after_release(job, reason, now=now)
        left = await self._leave(job, now, outcome, "handing a job back")
        if left is None:
            raise await self._lease_lost(job_id, token)
        return left

    async def reclaim_expired(self) -> list[Job]:
        """Requeue (or bury, if out of attempts) jobs whose lease expired on the server's
        clock; each with its own fenced script, so a late heartbeat wins or loses cleanly."""
        reply = await self._run("expired", "looking for expired leases")
        now = float(reply[0])
        reclaimed: list[Job] = []
        for raw_id in reply[1:]:
            job, _ = await self._read_job_and_time(int(raw_id))
            if job is None or job.state is not JobState.RUNNING:
                continue
            outcome = rules.after_lease_expiry(job, now=now)
            left = await self._leave(
                job, now, outcome, "reclaiming an expired lease", actor="reaper", expired=True
            )
            if left is not None:
                reclaimed.append(left)
        return reclaimed

    async def _running_job(self, job_id: int, token: int) -> tuple[Job, float]:
        """The job ``token`` holds, and the server's time; LeaseLost if it holds none."""
        job, now = await self._read_job_and_time(job_id)
        if job is None or job.state is not JobState.RUNNING or job.lease_token != token:
            raise rules.lease_lost_error(job_id, token, job)
        return job, now

    async def _leave(
        self,
        job: Job,
        now: float,
        outcome: Outcome,
        doing: str,
        *,
        result: JobResult | None = None,
        write_result: bool = False,
        details: str | None = None,
        actor: str = "",
        expired: bool = False,
    ) -> Job | None:
        """Apply a policy outcome compare-and-set on the job's token (leave.lua); ``None``
        when the job moved since it was read."""
        res = _result_args(result) if write_result else []
        reply = await self._run(
            "leave",
            doing,
            str(job.id),
            str(job.lease_token),
            _num(now),
            str(outcome.state),
            str(outcome.attempts),
            _num(outcome.run_after),
            _o(outcome.finished_at),
            _o(outcome.reason),
            _b(outcome.audit_reason),
            _o(details),
            "1" if outcome.revoke_lease else "0",
            "1" if outcome.clear_progress else "0",
            _b(actor),
            "1" if expired else "0",
            str(len(res) // 2) if write_result else "-1",
            *res,
        )
        return job_from_hash(_pairs(reply[1])) if reply[0] == 1 else None

    async def _read_job_and_time(self, job_id: int) -> tuple[Job | None, float]:
        client = self._reader()
        async with self._talk("reading a job"), client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._key("job", job_id))
            pipe.time()
            raw, (sec, usec) = await pipe.execute()
        now = int(sec) + int(usec) / 1_000_000
        return (job_from_hash(raw) if raw else None), now

    async def _lease_lost(self, job_id: int, token: int) -> LeaseLostError:
        """Why a fenced call matched nothing (the policy's words, as SQLite says them)."""
        job, _ = await self._read_job_and_time(job_id)
        return rules.lease_lost_error(job_id, token, job)

    def _key(self, *parts: str | int) -> bytes:
        return b":".join([self._p, *(str(p).encode() for p in parts)])

    # --- operator -----------------------------------------------------------------------

    async def pause(self, *, actor: str = "operator", reason: str | None = None) -> None:
        """Stop handing out jobs (kept in Redis, so every node stops); running jobs go on."""
        await self._run("pause", "pausing the queue", "1", _b(actor), _b(reason or ""))

    async def resume(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self._run("pause", "resuming the queue", "0", _b(actor), _b(reason or ""))

    async def is_paused(self) -> bool:
        client = self._reader()
        async with self._talk("reading the queue state"):
            return bool(await client.get(self._key("paused")) == b"1")

    @staticmethod
    def _no_job(job_id: int) -> JobNotFoundError:
        return JobNotFoundError(
            f"there is no job #{job_id}; list jobs with `castui queue` or `castui history`."
        )

    async def cancel(
        self, job_id: int, *, actor: str = "operator", reason: str = "cancelled by operator"
    ) -> Job:
        """Cancel a queued or running job; a running worker gets LeaseLost on its next call."""
        reply = await self._run("cancel", "cancelling a job", str(job_id), _b(actor), _b(reason))
        if reply[0] == -1:
            raise self._no_job(job_id)
        if reply[0] == -2:
            raise rules.cancel_refusal(job_from_hash(_pairs(reply[1])))
        return job_from_hash(_pairs(reply[1]))

    async def retry(self, job_id: int, *, actor: str = "operator") -> Job:
        """Put a failed/dead/cancelled job back in the queue with a fresh attempt budget."""
        reply = await self._run("retry", "retrying a job", str(job_id), _b(actor))
        if reply[0] == -1:
            raise self._no_job(job_id)
        if reply[0] == -2:
            raise rules.retry_refusal(job_from_hash(_pairs(reply[1])))
        if reply[0] == -3:
            raise rules.retry_conflict(job_from_hash(_pairs(reply[1])), int(reply[2]))
        return job_from_hash(_pairs(reply[1]))

    async def set_priority(self, job_id: int, priority: int, *, actor: str = "operator") -> Job:
        reply = await self._run(
            "set_priority", "changing a job's priority", str(job_id), str(int(priority)), _b(actor)
        )
        if reply[0] == -1:
            raise self._no_job(job_id)
        if reply[0] == -2:
            refusal = rules.priority_refusal(job_from_hash(_pairs(reply[1])))
            assert refusal is not None  # the script refuses exactly the finished jobs
            raise refusal
        return job_from_hash(_pairs(reply[1]))

    async def clear_history(
        self,
        *,
        older_than: float | None = None,
        states: Sequence[JobState] | None = None,
        actor: str = "operator",
    ) -> int:
        """Delete finished jobs (optionally only older ones / some states); the audit log
        keeps their events."""
        chosen = tuple(states) if states else FINISHED_STATES
        bad = [s for s in chosen if s not in FINISHED_STATES]
        if bad:
            raise StoreError(
                f"clear_history only removes finished jobs, not {bad}; cancel them first."
            )
        details = json.dumps(
            {
                "action": "clear_history",
                "older_than": older_than,
                "states": [str(s) for s in chosen],
            },
            sort_keys=True,
        )
        count = await self._run(
            "clear_history",
            "clearing history",
            _opt_arg(older_than),
            details,
            _b(actor),
            *(str(s) for s in chosen),
        )
        return int(count)

    # --- queries ------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        client = self._reader()
        async with self._talk("reading a job"):
            raw: dict[bytes, bytes] = await client.hgetall(self._key("job", job_id))  # type: ignore[assignment]
        if not raw:
            raise self._no_job(job_id)
        return job_from_hash(raw)

    async def active_jobs(self) -> list[Job]:
        """Running jobs first, then queued ones in the order they will be claimed."""
        client = self._reader()
        async with self._talk("listing active jobs"):
            ids = await client.hvals(self._key("active"))
        found: list[Job] = []
        for start in range(0, len(ids), 5000):  # each script holds the server ~10 ms
            reply = await self._run("jobs", "listing active jobs", *ids[start : start + 5000])
            found += [job_from_hash(_pairs(flat)) for flat in reply]
        jobs = [j for j in found if j.is_active]
        jobs.sort(key=lambda j: (j.state is JobState.QUEUED, -j.priority, j.run_after, j.id))
        return jobs

    async def history(
        self,
        *,
        states: Sequence[JobState | str] | None = None,
        library: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Finished jobs, newest first; ``since``/``until`` filter on ``finished_at``."""
        chosen = [JobState(s) for s in states] if states else list(FINISHED_STATES)
        bad = [str(s) for s in chosen if s not in FINISHED_STATES]
        if bad:
            raise ValueError(f"history only holds finished jobs; use active_jobs() for {bad}")
        if limit <= 0:
            return []
        reply = await self._run(
            "history",
            "reading history",
            _opt_arg(since),
            _opt_arg(until),
            "1" if library is not None else "0",
            _b(library or ""),
            str(int(limit)),
            str(max(0, int(offset))),
            *(str(s) for s in chosen),
        )
        return [job_from_hash(_pairs(flat)) for flat in reply]

    async def recent_jobs(self, library: str, limit: int = 5) -> list[Job]:
        """``library``'s newest jobs, any state, among the newest RECENT_SCAN ids, read in
        slices of _RECENT_SLICE ids (one script each, ~10 ms of server time at most)."""
        found: list[Job] = []
        start, looked = "0", 0
        while len(found) < limit and looked < RECENT_SCAN:
            reply = await self._run(
                "recent",
                "reading recent jobs",
                _b(library),
                str(int(limit - len(found))),
                start,
                str(_RECENT_SLICE),
            )
            found += [job_from_hash(_pairs(flat)) for flat in reply[1:]]
            start, looked = _s(reply[0]), looked + _RECENT_SLICE
            if start == "0":
                break
        return found

    async def totals(
        self,
        *,
        library: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> HistoryTotals:
        reply = await self._run(
            "totals",
            "summing history",
            _opt_arg(since),
            _opt_arg(until),
            "1" if library is not None else "0",
            _b(library or ""),
        )
        counts = [int(v) for v in reply[:6]]
        reasons = [(_s(reply[i]), int(reply[i + 1])) for i in range(6, len(reply), 2)]
        # SQLite's ORDER BY n DESC, reason (byte order of the UTF-8 text).
        reasons.sort(key=lambda r: (-r[1], _b(r[0])))
        return HistoryTotals(
            files_done=counts[0],
            bytes_before=counts[1],
            bytes_after=counts[2],
            failed=counts[3],
            dead=counts[4],
            cancelled=counts[5],
            failures_by_reason=tuple(reasons),
        )

    # --- audit ----------------------------------------------------------------------------

    async def record_event(
        self,
        kind: str,
        *,
        job_id: int | None = None,
        path: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Log an operator action, profile edit or guardrail trip (server clock)."""
        raw = json.dumps(dict(details), sort_keys=True, default=str) if details is not None else ""
        eid = await self._run(
            "record_event",
            "writing the audit log",
            _b(kind),
            "" if job_id is None else str(job_id),
            _b(path or ""),
            _b(actor or ""),
            _b(reason or ""),
            raw,
        )
        return int(eid)

    async def prune_events(self, *, older_than: float, keep_last: int | None = None) -> int:
        """Delete audit events before ``older_than`` (server clock, epoch s); ``keep_last``
        also caps their number. Returns how many went."""
        removed = 0
        while True:
            n = int(
                await self._run(
                    "prune_events",
                    "pruning the audit log",
                    _num(older_than),
                    str(-1 if keep_last is None else max(0, keep_last)),
                    "2000",
                )
            )
            removed += n
            if n < 2000:
                return removed

    async def _server_time(self) -> float:
        client = self._reader()
        async with self._talk("reading the server's clock"):
            sec, usec = await client.time()
        return int(sec) + int(usec) / 1_000_000

    async def list_events(
        self,
        *,
        kind: str | None = None,
        job_id: int | None = None,
        path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Newest first."""
        if limit <= 0:
            return []
        reply = await self._run(
            "list_events",
            "reading the audit log",
            _b(kind or ""),
            "" if job_id is None else str(job_id),
            _b(path or ""),
            _opt_arg(since),
            _opt_arg(until),
            str(int(limit)),
        )
        return [_event_from_entry(e) for e in reply]

    # --- notification outbox ------------------------------------------------------------

    async def outbox_add(self, entries: Sequence[OutboxEntry], job_id: int | None = None) -> None:
        if not entries:
            return
        await self._run(
            "outbox",
            "queueing notifications",
            "add",
            "" if job_id is None else str(job_id),
            str(len(entries)),
            *_outbox_args(entries),
        )

    async def outbox_due(self, limit: int, target: str = JELLYFIN) -> list[OutboxRow]:
        """Pending entries due now (server clock), grouped by folder, oldest first."""
        reply = await self._run("outbox", "reading notifications", "due", _b(target))
        rows = [_outbox_row(_pairs(flat)) for flat in reply]
        rows.sort(key=lambda r: (_b(r.folder), r.id))
        return rows[: max(0, limit)]

    async def outbox_next_due(self, target: str = JELLYFIN) -> float | None:
        reply = await self._run("outbox", "reading notifications", "next_due", _b(target))
        return None if reply is None else float(reply)

    async def outbox_delivered(self, ids: Sequence[int]) -> None:
        if ids:
            await self._run(
                "outbox", "removing delivered notifications", "delivered", *map(str, ids)
            )

    async def outbox_retry_later(self, ids: Sequence[int], next_at: float, error: str) -> None:
        if ids:
            await self._run(
                "outbox",
                "rescheduling notifications",
                "retry_later",
                _num(next_at),
                _b(error),
                *map(str, ids),
            )

    async def outbox_stop(self, ids: Sequence[int], error: str) -> None:
        if ids:
            await self._run("outbox", "stopping notifications", "stop", _b(error), *map(str, ids))

    async def outbox_resume(self, target: str = JELLYFIN) -> int:
        return int(await self._run("outbox", "resuming notifications", "resume", _b(target)))

    async def outbox_counts(self, target: str = JELLYFIN) -> dict[str, int]:
        pending, stopped = await self._run("outbox", "counting notifications", "counts", _b(target))
        return {"pending": int(pending), "stopped": int(stopped)}

    async def outbox_rows(self, limit: int = 1000, target: str = JELLYFIN) -> list[OutboxRow]:
        if limit <= 0:
            return []
        reply = await self._run(
            "outbox", "reading notifications", "rows", _b(target), str(int(limit))
        )
        return [_outbox_row(_pairs(flat)) for flat in reply]

    # --- nodes ----------------------------------------------------------------------------

    async def node_heartbeat(self, node: NodeStatus) -> None:
        """Store a node's status; ``last_seen`` is the Redis server's clock, not the node's."""
        body = {
            "name": node.name,
            "role": node.role,
            "pid": node.pid,
            "started_at": node.started_at,
            "version": node.version,
            "current_jobs": list(node.current_jobs),
            "encoder": node.encoder,
            "gpu_temp_c": node.gpu_temp_c,
            "guard": node.guard,
        }
        await self._run(
            "node_heartbeat", "recording a node's heartbeat", _b(node.name), json.dumps(body)
        )

    async def nodes(self) -> list[NodeStatus]:
        """Every node that ever sent a heartbeat, by name; judge "offline" by ``last_seen``."""
        client = self._reader()
        async with self._talk("listing nodes"), client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._key("nodes"))
            pipe.hgetall(self._key("nodes_seen"))
            bodies, seen = await pipe.execute()
        out: list[NodeStatus] = []
        for name, raw in bodies.items():
            d = json.loads(raw)
            temp = d.get("gpu_temp_c")
            out.append(
                NodeStatus(
                    name=str(d["name"]),
                    role=str(d["role"]),
                    pid=int(d["pid"]),
                    started_at=float(d["started_at"]),
                    version=str(d["version"]),
                    current_jobs=tuple(int(j) for j in d.get("current_jobs", ())),
                    encoder=d.get("encoder"),
                    gpu_temp_c=None if temp is None or math.isnan(temp) else float(temp),
                    guard=d.get("guard"),
                    last_seen=float(seen.get(name, 0.0)),
                )
            )
        out.sort(key=lambda n: n.name)
        return out


def missing_conf_lines(conf: Mapping[bytes, bytes] | Mapping[str, str]) -> list[str]:
    """Which of :data:`REDIS_CONF_LINES` a server's ``CONFIG GET`` answer lacks (pure, so the
    rule is table-tested without a server)."""
    values = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in conf.items()
    }
    missing: list[str] = []
    if values.get("appendonly", "no").lower() != "yes":
        missing.append("appendonly yes")
    if values.get("appendfsync", "no").lower() not in ("everysec", "always"):
        missing.append("appendfsync everysec")
    if values.get("maxmemory-policy", "").lower() != "noeviction":
        missing.append("maxmemory-policy noeviction")
    return missing


def config_disabled_message(url: str) -> str:
    """What to say when the server hides its persistence settings (managed Redis)."""
    return (
        f"Redis at {url} does not let castui read its persistence settings "
        "(CONFIG is disabled, as on many managed services), so castui cannot check "
        "that it keeps acknowledged changes. Make sure the server has "
        + ", ".join(f"'{line}'" for line in REDIS_CONF_LINES)
        + ", then set queue.allow_unsafe_persistence: true to go on."
    )
