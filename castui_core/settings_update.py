"""Change settings through the engine API: validated, saved round-trip, audited, applied live.

Why one path for every front end: the settings screen, in-process or attached to a service,
must never write the file behind the engine's back. ``EngineAPI.update_settings`` takes
:class:`Edit` s; the process that owns the engine (the service, when attached) applies them
here to the round-trip YAML document of *its* settings file, validates the result with the
settings model (a refusal is :class:`SettingsRejected`, naming each field with the model's
own message, and nothing is written), saves it with :mod:`castui_core.settings_file`
(atomic, backup, verify-and-rollback, comments kept), writes one audit event per changed
field with its before/after, and reloads the engine so all that ``Engine.reload`` applies
takes effect now. Fields read only at start are saved and reported ``needs_restart``
(:data:`RESTART_RULES`, decided from what ``Engine.reload`` and headless mode really do).

Secrets (``jellyfin.api_key``, ``notify.urls``, ``arr[].api_key``, ``queue.url``: every
``SecretStr`` of the model, found by :func:`secret_paths`) are written to the file only: the
view, the returned changes, the audit and the logs show ``set`` / ``not set``.

A save names the file's revision it was made on (:attr:`SettingsView.revision`) and is
refused when the file changed since; list items are added with ``Edit.append`` (never over
another) and named with ``Edit.item``: a screen's list indexes are only good for the text it
read. Write, audit and reload run as one task a cancelled caller cannot cut in half.

A text value for a field that is now a number or a boolean (what a text input gives) is
read as YAML (``"90"`` -> ``90``, ``"true"`` -> ``true``), so the file holds a number, not a
quoted string.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import threading
import types
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

import yaml
from pydantic import BaseModel, SecretStr

from castui_core.errors import CastuiError, ConfigError, SettingsRejected
from castui_core.settings import Settings, parse_settings, user_config_file
from castui_core.settings_file import (
    KeyPath,
    SaveResult,
    dump_document,
    load_document,
    plain,
    read_text,
    save_text,
)

if TYPE_CHECKING:
    from ruamel.yaml.comments import CommentedMap


@dataclass(frozen=True)
class Edit:
    """One change. `remove=True` deletes a list item or an optional key/section (value ignored).
    A list index equal to the list's length appends (how a library is added: value = a dict).

    Why ``append`` and ``item``: a screen takes list indexes from the settings it showed, and
    the file may have changed since. ``append=True`` adds a new item at exactly that index
    and never overwrites one (refused when the list has another length now); ``item`` is the
    name the list item the path goes through (``libraries.1...``) had on screen, refused when
    another item sits there now (removing library b must never remove c)."""

    path: KeyPath
    value: Any = None  # plain JSON-able data, as YAML would hold it
    remove: bool = False
    append: bool = False
    item: str | None = None


@dataclass(frozen=True)
class FieldChange:
    path: str  # dotted: "guardrails.gpu_max_temp_c", "libraries.1.watch"
    before: str  # display text; a secret shows "set" / "not set", never its value
    after: str
    needs_restart: bool


@dataclass(frozen=True)
class SettingsUpdate:
    file: str  # the settings file written (the service's own when attached)
    changes: tuple[FieldChange, ...]
    applied_live: bool  # the engine's reload took (False: nothing live changed or refused)
    message: str  # one line for a toast


@dataclass(frozen=True)
class SettingsView:
    """What the settings screen shows. ``file`` is where a save goes; ``None``: the engine
    runs on the built-in defaults and a save creates the user's file (``user_config_file``)."""

    file: str | None
    data: dict[str, Any]  # Settings.model_dump(mode="json"), every SecretStr as "set"/None
    #: The settings file's text as read with the view (:func:`file_revision`): sent back with
    #: a save, which is refused when the file changed meanwhile. ``""``: there is no file.
    revision: str = ""


#: The problem path of a refusal because the file changed since the view was read (a
#: :class:`SettingsRejected` crosses the control socket as message and problems only).
STALE = "revision"
_STALE_WHY = (
    "the settings file changed since the screen read it; it has been read again, "
    "make the change again"
)


def file_revision(text: str | None) -> str:
    """A settings file's revision: a hash of its text; ``""`` when there is no file."""
    if text is None:
        return ""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def is_stale(exc: SettingsRejected) -> bool:
    """Whether ``exc`` refused a save made on settings read before the file last changed."""
    return any(where == STALE for where, _why in exc.problems)


def _stale() -> SettingsRejected:
    return SettingsRejected(f"not saved: {_STALE_WHY}", ((STALE, _STALE_WHY),))


# --- what needs a restart -------------------------------------------------------------------

#: ``(key prefix, needs a restart, why)``; the longest matching prefix wins, no match: live.
#: ``*`` matches any list index or mapping key. Read from ``Engine.start``/``Engine.reload``
#: and ``castui/headless.py``: what reload re-applies is live, what start binds is not.
RESTART_RULES: tuple[tuple[tuple[str, ...], bool, str], ...] = (
    (("database",), True, "the store is opened at start"),
    (("ffmpeg",), True, "tools are found at start"),
    (("ffprobe",), True, "tools are found at start"),
    (("metrics",), True, "the metrics listener is bound at start"),
    (("operational", "encoder"), True, "NVENC is probed at start, and only when not cpu"),
    (("scan", "probe_workers"), True, "the probe pool is made at start"),
    (("scan", "probe_timeout_s"), True, "the probe pool is made at start"),
    (("scan", "probe_idle_s"), True, "the probe pool is made at start"),
    (("node", "name"), True, "the node's name is its lease owner, set at start"),
    (("node", "role"), True, "a worker-only node starts no senders and no ingest"),
    (("service", "lease_seconds"), True, "the store's lease length is set at start"),
    (("service", "log_retention_days"), True, "the log handler is made at start"),
    (("queue",), True, "the queue backend is opened at start"),
    (("notify",), True, "the notifier is started by headless mode at start"),
    (("jellyfin",), True, "confirmations and the sessions guard keep their client from start"),
    (("jellyfin", "batch_window_s"), False, "read by the sender, which reload restarts"),
    (("keymap",), True, "the dashboard applies its keys when it opens"),
)


def _parts(path: KeyPath | str) -> tuple[str, ...]:
    """Key names of a path, list indexes as ``*``."""
    if isinstance(path, str):
        items: list[str | int] = list(path.split(".")) if path else []
    else:
        items = list(path)
    return tuple(
        "*" if isinstance(p, int) or (isinstance(p, str) and p.isdigit()) else p for p in items
    )


def _prefix_matches(rule: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if len(rule) > len(parts):
        return False
    return all(r == "*" or r == p for r, p in zip(rule, parts, strict=False))


def needs_restart(path: KeyPath | str) -> bool:
    """Whether a change at ``path`` takes effect only after castui restarts."""
    parts = _parts(path)
    best: tuple[int, bool] = (0, False)
    for rule, restart, _why in RESTART_RULES:
        if _prefix_matches(rule, parts) and len(rule) > best[0]:
            best = (len(rule), restart)
    return best[1]


# --- secrets ------------------------------------------------------------------------------


def _walk_type(annotation: Any, path: tuple[str, ...]) -> set[tuple[str, ...]]:
    if annotation is SecretStr:
        return {path}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return secret_paths(annotation, path)
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin is typing.Annotated:
        return _walk_type(args[0], path)
    if origin in (Union, types.UnionType):
        return set().union(*(_walk_type(a, path) for a in args))
    if origin in (tuple, list):
        if SecretStr in args:  # a list of secrets is one secret (notify.urls)
            return {path}
        return set().union(set(), *(_walk_type(a, (*path, "*")) for a in args))
    if origin is dict and len(args) == 2:
        return _walk_type(args[1], (*path, "*"))
    return set()


def secret_paths(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> set[tuple[str, ...]]:
    """Every path of ``model`` that holds a ``SecretStr`` (``*``: any index or key)."""
    found: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        found |= _walk_type(field.annotation, (*prefix, name))
    return found


SECRETS: frozenset[tuple[str, ...]] = frozenset(secret_paths())


def _is_secret(parts: tuple[str, ...]) -> bool:
    return any(len(s) == len(parts) and _prefix_matches(s, parts) for s in SECRETS)


@dataclass(frozen=True)
class _Secret:
    """A secret's value in a comparison tree: equal when the values are, never shown."""

    value: str

    def __repr__(self) -> str:
        return "_Secret('***')"


_MISSING: Any = object()


def _has_value(value: Any) -> bool:
    if value is None or value is _MISSING:
        return False
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    if isinstance(value, _Secret):
        return bool(value.value)
    return not (isinstance(value, str | list | tuple | dict) and len(value) == 0)


def _scrub(parts: tuple[str, ...], value: Any) -> Any:
    """``value`` with each secret inside it as ``"set"`` / ``"not set"``."""
    if _is_secret(parts) or isinstance(value, SecretStr | _Secret):
        return "set" if _has_value(value) else "not set"
    if isinstance(value, Mapping):
        return {str(k): _scrub((*parts, str(k)), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub((*parts, "*"), v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def redact(path: KeyPath | str, value: Any) -> str:
    """Display text for ``value`` at ``path``: a secret is ``set`` / ``not set``; ``None``
    is ``not set``; lists and mappings as compact JSON with their secrets scrubbed."""
    shown = _scrub(_parts(path), value)
    if shown is None or shown is _MISSING:
        return "not set"
    if isinstance(shown, bool):
        return "true" if shown else "false"
    if isinstance(shown, str):
        return shown
    if isinstance(shown, int | float):
        return str(shown)
    return json.dumps(shown, ensure_ascii=False, separators=(", ", ": "), default=str)


# --- views and diffs -----------------------------------------------------------------------


def _merge(raw: Any, dumped: Any, secret: Any) -> Any:
    """``dumped`` (the JSON dump) with each SecretStr of ``raw`` replaced by ``secret(it)``."""
    if isinstance(raw, SecretStr):
        return secret(raw)
    if isinstance(raw, Mapping) and isinstance(dumped, Mapping):
        return {k: _merge(raw.get(k), v, secret) for k, v in dumped.items()}
    if isinstance(raw, list | tuple) and isinstance(dumped, list):
        return [_merge(r, d, secret) for r, d in zip(raw, dumped, strict=True)]
    return dumped


def view_data(settings: Settings) -> dict[str, Any]:
    """``settings`` as JSON data with every secret as ``"set"`` (``None`` stays ``None``)."""
    data = _merge(settings.model_dump(), settings.model_dump(mode="json"), lambda _s: "set")
    assert isinstance(data, dict)
    return data


def _comparable(settings: Settings) -> dict[str, Any]:
    data = _merge(
        settings.model_dump(),
        settings.model_dump(mode="json"),
        lambda s: _Secret(s.get_secret_value()),
    )
    assert isinstance(data, dict)
    return data


def settings_view(settings: Settings, revision: str = "") -> SettingsView:
    return SettingsView(
        file=str(settings.source) if settings.source is not None else None,
        data=view_data(settings),
        revision=revision,
    )


def _file_view(settings: Settings) -> SettingsView:
    file = settings.source or user_config_file()
    if not file.exists():
        return settings_view(settings, "")
    text = read_text(file)
    shown = settings
    if text.strip():
        with contextlib.suppress(ConfigError):  # invalid: a save says so; show what runs
            shown = parse_settings(text, source=file)
    return SettingsView(
        file=str(settings.source) if settings.source is not None else None,
        data=view_data(shown),
        revision=file_revision(text),
    )


async def read_view(settings: Settings) -> SettingsView:
    """The view of the file a save goes to, with its revision (read in a thread).

    Why the file's values rather than the engine's (``settings``): a save edits the file,
    and its list indexes must be the file's. A hand edit not reloaded yet (a library added)
    would otherwise shift them for good: every add or removal on that screen refused as
    stale, or worse, aimed at the wrong item. They differ only until the next reload; a
    missing or invalid file shows what the engine runs."""
    return await asyncio.to_thread(_file_view, settings)


def _name(item: Any) -> Any:
    return item.get("name") if isinstance(item, Mapping) else None


def _diff(path: tuple[str | int, ...], before: Any, after: Any, out: list[FieldChange]) -> None:
    """One :class:`FieldChange` per changed leaf; a list item added or removed is one change,
    and list items with names are paired by name (removing library 1 of 3 is one removal,
    not every field of library 2 changed)."""
    if before == after:
        return
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        keys = list(after) + [k for k in before if k not in after]
        for key in keys:
            _diff((*path, key), before.get(key, _MISSING), after.get(key, _MISSING), out)
        return
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and all(isinstance(v, Mapping) for v in [*before, *after])
    ):
        pair: dict[int, int] = {}  # after index -> before index
        names = {_name(b): i for i, b in enumerate(before) if _name(b) is not None}
        for j, item in enumerate(after):
            i = names.get(_name(item)) if _name(item) is not None else None
            if i is not None and i not in pair.values():
                pair[j] = i
        for j in range(len(after)):
            if j not in pair and j < len(before) and j not in pair.values():
                pair[j] = j  # same place, renamed
        for j, item in enumerate(after):
            _diff((*path, j), before[pair[j]] if j in pair else _MISSING, item, out)
        for i, item in enumerate(before):
            if i not in pair.values():
                _diff((*path, i), item, _MISSING, out)
        return
    dotted = ".".join(str(p) for p in path)
    out.append(
        FieldChange(
            path=dotted,
            before=redact(path, before),
            after=redact(path, after),
            needs_restart=needs_restart(path),
        )
    )


def _secret_values(tree: Any) -> set[str]:
    if isinstance(tree, _Secret):
        return {tree.value} if tree.value else set()
    if isinstance(tree, Mapping):
        return set().union(set(), *(_secret_values(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(set(), *(_secret_values(v) for v in tree))
    return set()


def new_secret(before: Settings, after: Settings) -> bool:
    """Whether ``after`` holds a secret value ``before`` did not (a key just typed)."""
    return bool(_secret_values(_comparable(after)) - _secret_values(_comparable(before)))


def changes_between(before: Settings, after: Settings) -> tuple[FieldChange, ...]:
    out: list[FieldChange] = []
    _diff((), _comparable(before), _comparable(after), out)
    return tuple(out)


# --- applying edits to the document --------------------------------------------------------


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path) or "settings"


def _model_at(data: Any, path: Sequence[str | int]) -> Any:
    for key in path:
        if isinstance(data, Mapping) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _coerce(value: Any, current: Any) -> Any:
    """A text value for a field that now holds a number or boolean, read as YAML."""
    if not isinstance(value, str) or isinstance(current, str) or current is None:
        return value
    if not isinstance(current, bool | int | float):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, bool | int | float) else value


def _child(node: Any, key: str | int, path: tuple[str | int, ...]) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq  # only a save needs ruamel

    if isinstance(node, CommentedMap):
        if not isinstance(key, str):
            raise SettingsRejected(
                "not saved", ((_dotted(path), "is a mapping: use a key name, not an index"),)
            )
        return node.get(key)
    if isinstance(node, CommentedSeq):
        if not isinstance(key, int):
            raise SettingsRejected(
                "not saved", ((_dotted(path), "is a list: use an item's index"),)
            )
        if not 0 <= key < len(node):
            raise SettingsRejected(
                "not saved", ((_dotted(path), f"has {len(node)} item(s), no item {key}"),)
            )
        return node[key]
    raise SettingsRejected("not saved", ((_dotted(path), "holds a single value"),))


def _set(node: Any, key: str | int, value: Any) -> None:
    node[key] = value


def apply_edit(doc: CommentedMap, model: dict[str, Any], edit: Edit) -> None:
    """Apply ``edit`` to ``doc`` (the file's round-trip document). ``model`` is the file's
    settings as JSON (defaults included): a list the file leaves at its default (no
    ``libraries:`` key) is written out from it before an item of it is changed."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq  # only a save needs ruamel

    path = tuple(edit.path)
    if not path:
        raise SettingsRejected("not saved", (("settings", "an edit needs a key path"),))
    _check_item(model, edit)
    node: Any = doc
    for depth, key in enumerate(path[:-1]):
        child = _child(node, key, path[: depth + 1])
        if child is None:
            next_key = path[depth + 1]
            seed = _model_at(model, path[: depth + 1])
            if isinstance(next_key, int):
                child = plain(seed) if isinstance(seed, list) else CommentedSeq()
            else:
                child = CommentedMap()
            _set(node, key, child)
        node = child
    last = path[-1]
    if edit.remove:
        if isinstance(node, CommentedMap) and isinstance(last, str):
            node.pop(last, None)
            return
        if isinstance(node, CommentedSeq) and isinstance(last, int) and 0 <= last < len(node):
            del node[last]
            return
        _child(node, last, path)  # raises, saying why
        return
    value = plain(_coerce(edit.value, _model_at(model, path)))
    if edit.append:
        if not isinstance(node, CommentedSeq) or not isinstance(last, int):
            _child(node, last, path)  # raises, saying why
            raise SettingsRejected("not saved", ((_dotted(path), "append needs a list index"),))
        if last != len(node):
            raise _stale()  # the list changed since the screen counted it: never overwrite
        node.append(value)
        return
    if isinstance(node, CommentedSeq) and last == len(node):
        node.append(value)
        return
    if isinstance(node, CommentedSeq):
        _child(node, last, path)  # raises when out of range or not an index
    elif not isinstance(node, CommentedMap) or not isinstance(last, str):
        _child(node, last, path)
    _set(node, last, value)


def _check_item(model: dict[str, Any], edit: Edit) -> None:
    """Refuse ``edit`` when the list item its path goes through has another name now."""
    if edit.item is None:
        return
    at = next((i for i, key in enumerate(edit.path) if isinstance(key, int)), None)
    if at is None:
        raise SettingsRejected(
            "not saved", ((_dotted(edit.path), "names an item but has no list index"),)
        )
    # The file's settings as read (defaults filled in: an arr entry's name comes from its
    # kind), which is what the screen's view showed.
    if _name(_model_at(model, edit.path[: at + 1])) != edit.item:
        raise _stale()


def _rejected(file: Path, exc: ConfigError) -> SettingsRejected:
    problems: list[tuple[str, str]] = []
    for line in exc.problems:
        where, sep, why = line.partition(": ")
        problems.append((where, why) if sep and " " not in where else ("settings", line))
    if not problems:
        problems.append(("settings", exc.message))
    return SettingsRejected(f"not saved: the change would make {file} invalid", tuple(problems))


@dataclass(frozen=True)
class _Written:
    result: SaveResult | None  # None: no value changed, nothing written
    changes: tuple[FieldChange, ...]


_file_lock = threading.Lock()  # one read-modify-write of a settings file at a time


def _gone(file: Path) -> SettingsRejected:
    why = (
        f"{file} is gone (moved or deleted since castui read it); put it back, or restart "
        "castui with the settings file it should use, then make the change again"
    )
    return SettingsRejected(f"not saved: {file} is gone", (("settings", why),))


def write_edits(
    file: Path,
    edits: Sequence[Edit],
    *,
    running: Settings | None = None,
    must_exist: bool = False,
    revision: str | None = None,
    overrides: Callable[[Settings], Settings] | None = None,
) -> _Written:
    """Apply, validate and save (blocking: call in a thread). Raises SettingsRejected.

    ``must_exist``: the engine was started from ``file``; if it is gone, refuse rather than
    start again from the built-in defaults (that would drop every library and turn on the
    default one). ``running``: the engine's settings; the changes reported (audited, shown)
    are against them, since that is what the reload will change (the file may differ by a
    hand edit not yet reloaded). ``revision``: the file's revision the edits were made on
    (:attr:`SettingsView.revision`); refused (nothing written) when the file changed since.
    ``overrides``: what the engine's reload lays over the file (``--node``/``--role``), so
    the changes against ``running`` are not the command line's own values undone."""
    from ruamel.yaml.error import YAMLError  # here: `castui --no-ui` imports this module

    with _file_lock:
        exists = file.exists()
        if must_exist and not exists:
            raise _gone(file)
        text = read_text(file)
        if revision is not None and revision != file_revision(text if exists else None):
            raise _stale()
        base = parse_settings(text, source=file) if text.strip() else Settings()
        doc = load_document(text)
        model = base.model_dump(mode="json")
        for edit in edits:
            apply_edit(doc, model, edit)
        try:
            new_text = dump_document(doc)
        except YAMLError as exc:  # a value that is not plain data (an object, a set)
            why = f"a value cannot be written as YAML ({exc}); send text, numbers, lists, maps"
            raise SettingsRejected("not saved", (("settings", why),)) from exc
        try:
            new = parse_settings(new_text, source=file)
        except ConfigError as exc:
            raise _rejected(file, exc) from exc
        if not changes_between(base, new):
            return _Written(None, ())
        after = overrides(new) if overrides is not None and running is not None else new
        changes = changes_between(running if running is not None else base, after)
        try:
            result = save_text(file, new_text, private=new_secret(base, new))
        except ConfigError as exc:
            if exc.problems:
                raise _rejected(file, exc) from exc
            raise
        return _Written(result, changes)


# --- the engine side -------------------------------------------------------------------------


class _Target(Protocol):
    """What :func:`update_settings` needs of an engine (``Engine`` in the owning process)."""

    settings: Settings

    async def record_event(
        self,
        kind: str,
        *,
        actor: str = ...,
        reason: str | None = ...,
        details: Mapping[str, Any] | None = ...,
    ) -> None: ...

    async def reload(self, settings: Settings) -> None: ...


_locks: weakref.WeakKeyDictionary[object, asyncio.Lock] = weakref.WeakKeyDictionary()


def _changes(n: int) -> str:
    return f"{n} change" if n == 1 else f"{n} changes"


def _shown_path(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


#: Saves in flight, held so a save whose caller was cancelled is not garbage-collected.
_saving: set[asyncio.Task[SettingsUpdate]] = set()


async def update_settings(
    engine: _Target,
    edits: Sequence[Edit],
    *,
    actor: str = "dashboard",
    revision: str | None = None,
) -> SettingsUpdate:
    """Apply ``edits`` to the engine's settings file, audit each change and reload the
    engine (see the module docstring). One update at a time per engine.

    Why a task of its own, shielded: write, audit and reload are one step. A caller
    cancelled half-way (a second ctrl+s in an exclusive worker, a closing screen, a dropped
    control connection) used to leave the file written but neither audited nor applied, and
    the next save found "nothing changed". The save now runs to its end; a cancelled caller
    waits for it (so what it saw is what the disk and engine hold) and is then cancelled.
    A save still waiting its turn (another one holds the engine's lock) is dropped instead.
    """
    started = asyncio.Event()
    task = asyncio.create_task(_update(engine, list(edits), actor, revision, started))
    _saving.add(task)
    task.add_done_callback(_saving.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not started.is_set():
            task.cancel()  # nothing read or written yet
        elif not task.done():
            # Cancelled again while waiting: the save still ends on its own (held above).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)
        raise


async def _update(
    engine: _Target, edits: list[Edit], actor: str, revision: str | None, started: asyncio.Event
) -> SettingsUpdate:
    lock = _locks.setdefault(engine, asyncio.Lock())
    async with lock:
        started.set()
        running = engine.settings
        file = running.source or user_config_file()
        written = await asyncio.to_thread(
            functools.partial(
                write_edits,
                file,
                edits,
                running=running,
                must_exist=running.source is not None,
                revision=revision,
                overrides=getattr(engine, "settings_overrides", None),
            )
        )
        if written.result is None:
            return SettingsUpdate(
                str(file), (), False, f"nothing changed: {_shown_path(file)} left as it was"
            )
        result = written.result
        problems: list[str] = []
        for change in written.changes:
            try:
                await engine.record_event(
                    "settings_edit",
                    actor=actor,
                    reason=f"{change.path} changed from the {actor}",
                    details={
                        "file": str(result.path),
                        "backup": str(result.backup) if result.backup else None,
                        "path": change.path,
                        "before": change.before,
                        "after": change.after,
                        "needs_restart": change.needs_restart,
                    },
                )
            except CastuiError as exc:
                problems.append(f"audit not written: {exc}")
                break
        live = [c for c in written.changes if not c.needs_restart]
        applied = False
        try:
            await engine.reload(result.settings)
            applied = bool(live)
        except CastuiError as exc:
            problems.append(f"not applied live ({exc}); restart castui to use it")
        restart = [c.path for c in written.changes if c.needs_restart]
        parts = [f"saved {_shown_path(result.path)}"]
        if applied:
            parts.append(f"{_changes(len(live))} applied live")
        if restart:
            need = "needs" if len(restart) == 1 else "need"
            parts.append(f"{_changes(len(restart))} {need} a restart: " + ", ".join(restart))
        if result.tightened_from is not None:
            parts.append(
                f"{_shown_path(result.path)} was readable by others "
                f"({result.tightened_from:04o}) and now holds a key: made 0600"
            )
        parts.extend(problems)
        return SettingsUpdate(str(result.path), written.changes, applied, "; ".join(parts))


__all__ = [
    "RESTART_RULES",
    "SECRETS",
    "STALE",
    "Edit",
    "FieldChange",
    "KeyPath",
    "SettingsRejected",
    "SettingsUpdate",
    "SettingsView",
    "changes_between",
    "file_revision",
    "is_stale",
    "needs_restart",
    "read_view",
    "redact",
    "secret_paths",
    "settings_view",
    "update_settings",
    "view_data",
    "write_edits",
]
