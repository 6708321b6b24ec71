"""The control socket's messages as typed models: one definition for server and client.

Why: the server's if-chain over ``request["op"]`` and the client's ``_call("op", **args)``
were two hand-written mirrors of each other; a field renamed on one side failed only at
run time, as a ``KeyError`` the viewer saw as "bad request: KeyError('job_id')". Here each
request is a pydantic model, all of them one union discriminated on ``op``: the server gets
a checked object (or a clean error reply naming the bad field), the client builds the same
objects, and mypy sees both sides.

The wire format is unchanged JSON lines: a request ``{"id": n, "op": "...", ...fields}``,
a reply ``{"id": n, "ok": true, "result": ...}`` or ``{"id": n, "ok": false, "error": "..."}``.
Unknown fields are refused (a misspelt field would otherwise be silently ignored and its
default used, e.g. a priority change to the default).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Request(_Message):
    id: int | None = None


class Ping(_Request):
    """Who serves (the first request of every connection)."""

    op: Literal["ping"] = "ping"


class Subscribe(_Request):
    """Turn this connection into the event stream (see ``control.py``)."""

    op: Literal["subscribe"] = "subscribe"


class Pause(_Request):
    op: Literal["pause"] = "pause"
    actor: str = "operator"
    reason: str | None = None


class Resume(_Request):
    op: Literal["resume"] = "resume"
    actor: str = "operator"
    reason: str | None = None


class Cancel(_Request):
    op: Literal["cancel"] = "cancel"
    job_id: int
    actor: str = "operator"


class Retry(_Request):
    op: Literal["retry"] = "retry"
    job_id: int
    actor: str = "operator"


class SetPriority(_Request):
    op: Literal["set_priority"] = "set_priority"
    job_id: int
    priority: int
    actor: str = "operator"


class Scan(_Request):
    """Answered at once; the scan reports through events (a big library takes minutes)."""

    op: Literal["scan"] = "scan"
    library: str | None = None


class Reload(_Request):
    """The service re-reads its own settings file."""

    op: Literal["reload"] = "reload"


class Running(_Request):
    op: Literal["running"] = "running"


class RecordEvent(_Request):
    """An operator's action for the service's audit log (a profile edited in an attached
    dashboard is recorded by the service, in its database, not behind its back)."""

    op: Literal["record_event"] = "record_event"
    kind: str
    actor: str = "operator"
    reason: str | None = None
    details: dict[str, Any] | None = None


class RestoreOriginal(_Request):
    """Put a done job's archived original back; the service does it (its journal, its
    database) and answers the line saying what happened."""

    op: Literal["restore_original"] = "restore_original"
    target: int | str
    actor: str = "operator"


class EditItem(_Message):
    """One :class:`~castui_core.settings_update.Edit` on the wire."""

    path: list[str | int]
    value: Any = None
    remove: bool = False
    append: bool = False
    item: str | None = None


class SettingsViewRequest(_Request):
    """The service's settings as its settings screen shows them (secrets as ``set``)."""

    op: Literal["settings_view"] = "settings_view"


class UpdateSettings(_Request):
    """Settings edits: the service validates them, writes its own file, audits each change
    and reloads (castui_core/settings_update.py); an attached dashboard never writes it."""

    op: Literal["update_settings"] = "update_settings"
    edits: list[EditItem]
    actor: str = "dashboard"
    #: The settings view's revision: refused when the service's file changed since.
    revision: str | None = None


class Calibrate(_Request):
    """Calibration encodes for the readiness report, run by the service: its encoder is the
    one that will do the work. Answered when they finish (seconds per resolution class)."""

    op: Literal["calibrate"] = "calibrate"
    library: str | None = None


class CalibrationResult(_Message):
    """What :class:`Calibrate` answers (a :class:`castui_core.report.Calibration`)."""

    encoder: str
    speeds: dict[str, float]
    failure: str | None = None


Request = Annotated[
    Ping
    | Subscribe
    | Pause
    | Resume
    | Cancel
    | Retry
    | SetPriority
    | Scan
    | Reload
    | Running
    | RecordEvent
    | RestoreOriginal
    | SettingsViewRequest
    | UpdateSettings
    | Calibrate,
    Field(discriminator="op"),
]
REQUEST: TypeAdapter[Request] = TypeAdapter(Request)


# --- replies -----------------------------------------------------------------------------


class PingResult(_Message):
    pid: int
    owner: str


class JobRef(_Message):
    """What a job command answers; the client reads the whole job from the database."""

    id: int
    state: str
    priority: int


class OkReply(_Message):
    id: int | None
    ok: Literal[True] = True
    result: Any = None


class ErrorReply(_Message):
    """``error`` is the text a person reads; ``error_type``, ``message`` and ``problems``
    let the client raise the same :class:`~castui_core.errors.CastuiError` subclass with
    its problems (a refused settings edit names its fields on the attached dashboard too)."""

    id: int | None
    ok: Literal[False] = False
    error: str
    error_type: str | None = None
    message: str | None = None
    problems: list[str | list[str]] | None = None


REPLY: TypeAdapter[OkReply | ErrorReply] = TypeAdapter(OkReply | ErrorReply)


class BadRequest(ValueError):
    """A request line that is not one of :data:`Request`; ``id`` when it could be read."""

    def __init__(self, message: str, rid: int | None) -> None:
        super().__init__(message)
        self.rid = rid


def _request_id(line: bytes) -> int | None:
    """The id of a request that failed validation, so the error reply can name it."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    rid = data.get("id") if isinstance(data, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None


def describe(exc: ValidationError) -> str:
    """``set_priority.job_id: Field required; …`` rather than pydantic's multi-line text."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)


def parse_request(line: bytes) -> Request:
    """The request on ``line``, or :class:`BadRequest` saying what is wrong with it."""
    try:
        return REQUEST.validate_json(line)
    except ValidationError as exc:
        raise BadRequest(f"bad request: {describe(exc)}", _request_id(line)) from exc


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode() + b"\n"
