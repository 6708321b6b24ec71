"""The settings screen's model: every editable setting, generated from the settings model.

Why generated and not a hand-written list of widgets: a field added to
:mod:`castui_core.settings` appears on the screen with its type, its bounds, its choices and
its description without anyone remembering to add it, and the screen can never offer a value
kind the model would not take. UI-free (no Textual) so it is table-tested without a terminal.

The screen edits the dictionary ``EngineAPI.settings_view()`` returns
(``Settings.model_dump(mode="json")`` with every secret replaced by ``"set"`` or ``None``):
typed text is parsed into a JSON value here (:func:`parse_input`, with a message on bad
input), checked against the section's own pydantic model (:func:`check_section`, the model's
messages), and the changed values become edits for ``update_settings`` (:func:`changed`).
The service validates the whole file again: this check is for the immediate hint.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr, ValidationError

from castui_core.settings import (
    ArrSettings,
    GuardrailSettings,
    JellyfinSettings,
    LibrarySettings,
    MetricsSettings,
    NodeSettings,
    NotifySettings,
    OperationalSettings,
    QueueSettings,
    ScanSettings,
    ServiceSettings,
    Settings,
    format_problems,
)

#: A key path from the top of the settings (``("libraries", 0, "path")``), as the core's.
KeyPath = tuple[str | int, ...]

Kind = Literal["bool", "int", "float", "select", "text", "path", "list", "secret", "map"]

#: What ``settings_view()`` shows for a secret that has a value.
SECRET_SET = "set"

#: Fields the screen does not offer: ``delete_source`` is the old spelling of
#: ``originals: delete`` (derived from it; editing both would contradict).
HIDDEN: frozenset[str] = frozenset({"delete_source"})


@dataclass(frozen=True)
class FieldSpec:
    """One editable field of a section: its name in the section and how it is typed."""

    name: str
    kind: Kind
    description: str = ""
    optional: bool = False  # ``None`` (empty input) is a value
    choices: tuple[str, ...] = ()  # select, or the allowed items of a list
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    item_secret: bool = False  # a list whose items are secrets (notify.urls)

    @property
    def secret(self) -> bool:
        return self.kind == "secret" or self.item_secret

    def bounds(self) -> str:
        """``40 … 110``, ``> 0``, ``≤ 100``: what the model allows, for the help line."""
        low = self.minimum
        high = self.maximum
        if low is not None and high is not None:
            left = "> " if self.min_exclusive else ""
            right = "< " if self.max_exclusive else ""
            return f"{left}{_num(low)} … {right}{_num(high)}".strip()
        if low is not None:
            return f"{'>' if self.min_exclusive else '≥'} {_num(low)}"
        if high is not None:
            return f"{'<' if self.max_exclusive else '≤'} {_num(high)}"
        return ""

    def help(self) -> str:
        """The description, plus bounds, choices and how to type the value."""
        parts = [self.description] if self.description else []
        hints = {
            "bool": "true or false",
            "list": "comma-separated",
            "map": "from=to, comma-separated",
            "path": "an absolute path",
            "secret": "type a new value to replace it; it is never shown",
        }
        if self.kind in ("int", "float") and self.bounds():
            parts.append(f"Allowed: {self.bounds()}.")
        if self.choices:
            parts.append(f"One of: {', '.join(self.choices)}.")
        if self.kind in hints:
            parts.append(f"({hints[self.kind]}{'; empty: none' if self.optional else ''})")
        elif self.optional:
            parts.append("(empty: none)")
        return " ".join(parts)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``Annotated[…]`` and ``| None``; whether ``None`` was allowed."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _choices(annotation: Any) -> tuple[str, ...]:
    if get_origin(annotation) is Literal:
        return tuple(str(a) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(str(m.value) for m in annotation)
    return ()


def field_spec(name: str, annotation: Any, description: str, metadata: list[Any]) -> FieldSpec:
    """One pydantic field as a :class:`FieldSpec` (type → kind, constraints → bounds)."""
    inner, optional = _unwrap(annotation)
    spec = FieldSpec(name, "text", description, optional)
    for meta in metadata:
        if isinstance(meta, annotated_types.Ge):
            spec = _replace(spec, minimum=float(meta.ge))  # type: ignore[arg-type]
        elif isinstance(meta, annotated_types.Gt):
            spec = _replace(spec, minimum=float(meta.gt), min_exclusive=True)  # type: ignore[arg-type]
        elif isinstance(meta, annotated_types.Le):
            spec = _replace(spec, maximum=float(meta.le))  # type: ignore[arg-type]
        elif isinstance(meta, annotated_types.Lt):
            spec = _replace(spec, maximum=float(meta.lt), max_exclusive=True)  # type: ignore[arg-type]
    if inner is bool:
        return _replace(spec, kind="bool")
    if inner is int:
        return _replace(spec, kind="int")
    if inner is float:
        return _replace(spec, kind="float")
    if _choices(inner):
        return _replace(spec, kind="select", choices=_choices(inner))
    if inner is SecretStr:
        return _replace(spec, kind="secret")
    if isinstance(inner, type) and issubclass(inner, Path):
        return _replace(spec, kind="path")
    origin = get_origin(inner)
    if origin is tuple:
        item, _ = _unwrap(get_args(inner)[0])
        return _replace(spec, kind="list", choices=_choices(item), item_secret=item is SecretStr)
    if origin is dict:
        return _replace(spec, kind="map")
    return spec


def _replace(spec: FieldSpec, **changes: Any) -> FieldSpec:
    return replace(spec, **changes)


def model_fields(model: type[BaseModel], only: tuple[str, ...] = ()) -> tuple[FieldSpec, ...]:
    """Every field of ``model`` (``only``: just these, in this order) the screen can edit."""
    names = only or tuple(n for n in model.model_fields if n not in HIDDEN)
    return tuple(
        field_spec(
            name,
            model.model_fields[name].annotation,
            model.model_fields[name].description or "",
            list(model.model_fields[name].metadata),
        )
        for name in names
    )


@dataclass(frozen=True)
class Section:
    """One entry of the section list: the fields under ``base`` in the settings.

    ``model`` validates the section's data on its own (``None``: only the whole file can, as
    for the top-level paths). ``removable``: a list item (a library, an arr entry) or an
    optional section (jellyfin, notify) that can be deleted. ``link``: no fields, the entry
    opens another screen (the profile editor).
    """

    key: str
    title: str
    base: KeyPath
    fields: tuple[FieldSpec, ...] = ()
    model: type[BaseModel] | None = None
    removable: bool = False
    optional: bool = False
    link: str | None = None
    note: str = ""

    def path(self, spec: FieldSpec) -> KeyPath:
        return (*self.base, spec.name)

    def dotted(self, spec: FieldSpec) -> str:
        return dotted(self.path(spec))


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


LIBRARY_FIELDS = model_fields(
    LibrarySettings,
    (
        "name", "path", "profile", "watch", "layout", "output_dir", "originals",
        "originals_keep_days", "version_label", "version_fallback", "follow_symlinks", "jellyfin",
    ),
)  # fmt: skip
FILE_FIELDS = model_fields(Settings, ("database", "ffmpeg", "ffprobe"))

#: Fixed sections after the libraries, in the order the screen lists them.
_FIXED: tuple[tuple[str, str, type[BaseModel], bool], ...] = (
    ("operational", "Operational limits", OperationalSettings, False),
    ("scan", "Scan", ScanSettings, False),
    ("guardrails", "Guardrails & schedule", GuardrailSettings, False),
    ("service", "Service", ServiceSettings, False),
    ("jellyfin", "Jellyfin", JellyfinSettings, True),
    ("notify", "Notifications", NotifySettings, True),
)
_LATE: tuple[tuple[str, str, type[BaseModel]], ...] = (
    ("metrics", "Metrics", MetricsSettings),
    ("queue", "Queue", QueueSettings),
    ("node", "Node", NodeSettings),
)


def sections(data: Mapping[str, Any]) -> list[Section]:
    """The section list for a settings view: each library, the fixed sections, each arr."""
    out: list[Section] = []
    profiles = tuple(sorted(data.get("profiles") or ()))
    library_fields = tuple(
        _replace(spec, kind="select", choices=profiles)
        if spec.name == "profile" and profiles
        else spec
        for spec in LIBRARY_FIELDS
    )
    for i, lib in enumerate(data.get("libraries") or ()):
        name = lib.get("name", str(i)) if isinstance(lib, Mapping) else str(i)
        out.append(
            Section(
                f"libraries.{i}",
                f"Library {name}",
                ("libraries", i),
                library_fields,
                LibrarySettings,
                removable=True,
            )
        )
    out.append(Section("profiles", "Profiles", ("profiles",), link="profiles"))
    for key, title, model, optional in _FIXED:
        note = "not configured: setting a field adds it" if data.get(key) is None else ""
        out.append(
            Section(key, title, (key,), model_fields(model), model, optional, optional, note=note)
        )
    for i, entry in enumerate(data.get("arr") or ()):
        name = entry.get("name") or entry.get("kind", "") if isinstance(entry, Mapping) else ""
        out.append(
            Section(
                f"arr.{i}",
                f"Arr {name or i}",
                ("arr", i),
                model_fields(ArrSettings),
                ArrSettings,
                removable=True,
            )
        )
    out.append(Section("arr.add", "+ Sonarr/Radarr", ("arr",), link="add_arr"))
    for key, title, model in _LATE:
        out.append(Section(key, title, (key,), model_fields(model), model))
    out.append(Section("files", "Database & tools", (), FILE_FIELDS))
    return out


def value_at(data: Any, path: KeyPath) -> Any:
    """The value at ``path`` in the view's data (``None`` where a part is missing)."""
    for part in path:
        if isinstance(part, int):
            if not isinstance(data, list | tuple) or part >= len(data):
                return None
            data = data[part]
        else:
            if not isinstance(data, Mapping):
                return None
            data = data.get(part)
    return data


def configured(data: Mapping[str, Any], section: Section) -> bool:
    """Whether the settings have this section (an optional one may be absent: ``None``)."""
    return not section.base or value_at(data, section.base) is not None


def current_value(data: Mapping[str, Any], section: Section, spec: FieldSpec) -> Any:
    """The field's value in the view; for a section not configured yet, the model's default
    (what the section will hold once a field of it is set), ``None`` for a required field."""
    if configured(data, section) or section.model is None:
        return value_at(data, section.path(spec))
    info = section.model.model_fields[spec.name]
    if info.is_required():
        return None
    default = info.get_default(call_default_factory=True)
    return getattr(default, "value", default)


def format_value(spec: FieldSpec, value: Any) -> str:
    """The value as the operator would type it; a secret only says whether it is set."""
    if spec.secret:
        return "set" if value not in (None, "", [], ()) else "not set"
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(FieldSpec("", "text"), v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown_value(spec: FieldSpec, value: Any) -> str:
    """:func:`format_value` for a table cell: ``none`` rather than an empty cell."""
    text = format_value(spec, value)
    if text:
        return text
    return "none" if spec.kind != "list" else "(empty)"


@dataclass(frozen=True)
class Parsed:
    """Typed text as a value, or why it cannot be one (then ``value`` is meaningless)."""

    value: Any = None
    problem: str | None = None


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_input(spec: FieldSpec, text: str) -> Parsed:
    """Text typed for ``spec`` as the JSON value the settings model takes.

    Only the kind is checked here (a number, a choice, a list); ranges and cross-field rules
    are the model's (:func:`check_section`), so each rule keeps the model's own wording.
    """
    raw = text.strip()
    if not raw and spec.kind not in ("list", "map", "text"):
        if spec.optional:
            return Parsed(None)
        return Parsed(problem="a value is needed")
    if not raw and spec.kind == "text" and spec.optional:
        return Parsed(None)
    if spec.kind == "bool":
        if raw.lower() in _TRUE:
            return Parsed(True)
        if raw.lower() in _FALSE:
            return Parsed(False)
        return Parsed(problem=f"{raw!r} is not true or false")
    if spec.kind == "int":
        try:
            return Parsed(int(raw))
        except ValueError:
            return Parsed(problem=f"{raw!r} is not a whole number")
    if spec.kind == "float":
        try:
            number = float(raw)
        except ValueError:
            return Parsed(problem=f"{raw!r} is not a number")
        if not math.isfinite(number):
            return Parsed(problem=f"{raw!r} is not a finite number")
        return Parsed(int(number) if number.is_integer() else number)
    if spec.kind == "select":
        for choice in spec.choices:
            if raw.lower() == choice.lower():
                return Parsed(choice)
        return Parsed(problem=f"{raw!r} is not one of {', '.join(spec.choices)}")
    if spec.kind == "list":
        items = [part.strip() for part in raw.split(",") if part.strip()]
        if spec.choices:
            bad = [i for i in items if i not in spec.choices]
            if bad:
                return Parsed(problem=f"{', '.join(bad)}: not one of {', '.join(spec.choices)}")
        return Parsed(items)
    if spec.kind == "map":
        mapping: dict[str, str] = {}
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            key, sep, target = part.partition("=")
            if not sep or not key.strip() or not target.strip():
                return Parsed(problem=f"{part!r} is not from=to")
            mapping[key.strip()] = target.strip()
        return Parsed(mapping)
    return Parsed(raw)


def section_data(data: Mapping[str, Any], section: Section, draft: Mapping[KeyPath, Any]) -> Any:
    """The section's data from the view with the draft's values for it applied."""
    current = value_at(data, section.base) if section.base else dict(data)
    merged = dict(current) if isinstance(current, Mapping) else {}
    for spec in section.fields:
        path = section.path(spec)
        if path in draft:
            merged[spec.name] = draft[path]
    return merged


def check_section(
    data: Mapping[str, Any], section: Section, draft: Mapping[KeyPath, Any]
) -> dict[str, str]:
    """The model's problems with the section as drafted: dotted field path → message.

    A problem of the whole section (a rule between two fields) is under the section's own
    dotted path. The view shows secrets redacted (``"set"``), which the model may refuse (a
    Redis URL that is not ``redis://…``): a problem on a secret that the saved section has as
    well is the redaction's, not the operator's, and is left out; the service checks the real
    value when it saves.
    """
    if section.model is None:
        return {}
    problems = _problems(section, section_data(data, section, draft))
    if not problems:
        return problems
    saved = _problems(section, section_data(data, section, {}))
    secrets = {
        section.dotted(spec)
        for spec in section.fields
        if spec.secret and section.path(spec) not in draft
    }
    return {k: v for k, v in problems.items() if not (k in secrets and saved.get(k) == v)}


def _problems(section: Section, merged: dict[str, Any]) -> dict[str, str]:
    assert section.model is not None
    for hidden in HIDDEN:
        merged.pop(hidden, None)
    try:
        section.model.model_validate(merged)
    except ValidationError as exc:
        lines = format_problems(exc)
    else:
        return {}
    problems: dict[str, str] = {}
    names = {spec.name: spec for spec in section.fields}
    for line in lines:
        where, _, message = line.partition(": ")
        spec = names.get(where.split(".")[0])
        if spec is not None:
            key = section.dotted(spec)
        else:
            key = dotted(section.base) if section.base else "settings"
            message = line if where not in ("", "settings") else message
        problems[key] = f"{problems[key]}; {message}" if key in problems else message
    return problems


def changed(data: Mapping[str, Any], draft: Mapping[KeyPath, Any]) -> list[tuple[KeyPath, Any]]:
    """The drafted values that differ from the view, as (path, value) in draft order.

    A secret is always sent when drafted: the view cannot say whether it is the same.
    """
    out: list[tuple[KeyPath, Any]] = []
    for path, value in draft.items():
        if value != value_at(data, path) or _is_secret_path(path):
            out.append((path, value))
    return out


def _is_secret_path(path: KeyPath) -> bool:
    """Whether ``path`` names a secret field (``jellyfin.api_key``, ``queue.url``, …)."""
    spec = spec_at(path)
    return spec is not None and spec.secret


def spec_at(path: KeyPath) -> FieldSpec | None:
    """The field spec of a full path, if the screen offers that field."""
    for section in _spec_sections():
        if len(path) != len(section.base) + 1:
            continue
        if all(
            isinstance(p, int) if isinstance(b, int) else p == b
            for p, b in zip(path, section.base, strict=False)
        ):
            for spec in section.fields:
                if spec.name == path[-1]:
                    return spec
    return None


def _spec_sections() -> Iterator[Section]:
    yield from sections({"libraries": [{}], "arr": [{}]})


@dataclass
class LibraryForm:
    """The add-a-library form: what it needs to be a library, before the model sees it."""

    name: str = ""
    path: str = ""
    profile: str = ""
    problems: dict[str, str] = field(default_factory=dict)

    def value(self) -> dict[str, Any]:
        """The new library as the settings file spells it (defaults left out)."""
        out: dict[str, Any] = {"name": self.name.strip(), "path": self.path.strip()}
        if self.profile.strip():
            out["profile"] = self.profile.strip()
        return out

    def check(self, existing: list[str], profiles: list[str]) -> dict[str, str]:
        """The model's problems with the new library, plus a name or profile it cannot know."""
        problems: dict[str, str] = {}
        value = self.value()
        try:
            LibrarySettings.model_validate(value)
        except ValidationError as exc:
            for line in format_problems(exc):
                where, _, message = line.partition(": ")
                problems.setdefault(where.split(".")[0] or "path", message)
        if value["name"] in existing:
            problems.setdefault("name", f"{value['name']!r} is already a library")
        profile = value.get("profile")
        if profile is not None and profiles and profile not in profiles:
            problems.setdefault(
                "profile", f"{profile!r} is not a profile; known: {', '.join(sorted(profiles))}"
            )
        self.problems = problems
        return problems


@dataclass
class ArrForm:
    """The add-a-Sonarr/Radarr form: kind, address and an optional name (default: the kind).

    The API key is not asked here: it is a secret, entered afterwards in the entry's own
    section (or kept in a file or the environment, as the model's description says).
    """

    kind: str = ""
    url: str = ""
    name: str = ""
    problems: dict[str, str] = field(default_factory=dict)

    def value(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.strip().lower(), "url": self.url.strip()}
        if self.name.strip():
            out["name"] = self.name.strip()
        return out

    def check(self, existing: list[str]) -> dict[str, str]:
        """The model's problems with the entry, plus a name another entry already has."""
        problems: dict[str, str] = {}
        value = self.value()
        try:
            entry = ArrSettings.model_validate(value)
        except ValidationError as exc:
            for line in format_problems(exc):
                where, _, message = line.partition(": ")
                problems.setdefault(where.split(".")[0] or "url", message)
        else:
            if entry.name in existing:
                problems["name"] = f"{entry.name!r} is already an entry: give this one a name"
        self.problems = problems
        return problems
