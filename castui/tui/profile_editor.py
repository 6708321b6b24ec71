"""The profile editor's model: every profile field, a draft of edits, and validation.

UI-free so it can be tested without a terminal. Validation is the settings file's own: the
draft is applied to the file's text and parsed with ``parse_settings``, so the editor can
never accept a value the service would refuse at its next start (and no rule is written
twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from castui.tui.settings_writer import KeyPath, apply_edits
from castui_core.errors import ConfigError
from castui_core.profiles import Profile
from castui_core.settings import parse_settings


@dataclass(frozen=True)
class FieldSpec:
    """One editable field, as a path inside a profile (``("video", "max_width")``)."""

    path: tuple[str, ...]
    description: str
    is_text: bool

    @property
    def name(self) -> str:
        return ".".join(self.path)


def _fields(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterator[FieldSpec]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, (*prefix, name))
        else:
            yield FieldSpec((*prefix, name), info.description or "", annotation is str)


#: Every field of a profile, in the model's order.
PROFILE_FIELDS: tuple[FieldSpec, ...] = tuple(_fields(Profile, ()))


def field_value(profile: Profile, path: tuple[str, ...]) -> Any:
    value: Any = profile
    for part in path:
        value = getattr(value, part)
    return value


def format_value(value: Any) -> str:
    """The value as the operator would type it in the YAML file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(getattr(value, "value", value))


def parse_value(spec: FieldSpec, text: str) -> Any:
    """Typed text to a YAML value (``30``, ``null``, ``[aac, mp3]``); text fields stay text."""
    if spec.is_text:
        return text
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text  # validation reports it with the field's own rule


class ProfileDraft:
    """Pending edits to one profile, validated against the whole settings file."""

    def __init__(self, base_text: str, source: Path, profile: str) -> None:
        self.base_text = base_text
        self.source = source
        self.profile = profile
        self.edits: dict[tuple[str, ...], Any] = {}
        self.problems: dict[str, str] = {}
        self.general: list[str] = []

    def key_path(self, path: tuple[str, ...]) -> KeyPath:
        return ("profiles", self.profile, *path)

    def file_edits(self) -> dict[KeyPath, Any]:
        return {self.key_path(p): v for p, v in self.edits.items()}

    def check(
        self, extra: dict[tuple[str, ...], Any] | None = None
    ) -> tuple[dict[str, str], list[str]]:
        """Problems of the draft (plus ``extra`` tentative edits): by field name, and others."""
        edits = {**self.edits, **(extra or {})}
        try:
            text = apply_edits(self.base_text, {self.key_path(p): v for p, v in edits.items()})
            parse_settings(text, source=self.source)
        except ConfigError as exc:
            return self._split(exc.problems or (str(exc),))
        return {}, []

    def _split(self, lines: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
        prefix = f"profiles.{self.profile}."
        by_field: dict[str, str] = {}
        general: list[str] = []
        for line in lines:
            where, _, what = line.partition(": ")
            if where.startswith(prefix):
                field = where.removeprefix(prefix)
                by_field[field] = f"{by_field[field]}; {what}" if field in by_field else what
            else:
                general.append(line)
        return by_field, general

    def set(self, spec: FieldSpec, value: Any) -> None:
        self.edits[spec.path] = value
        self.problems, self.general = self.check()

    def problem_for(self, spec: FieldSpec, value: Any) -> str | None:
        """The problem ``value`` would cause in ``spec``'s field (for inline hints)."""
        by_field, general = self.check({spec.path: value})
        problem = by_field.get(spec.name)
        if problem is None:
            # A cross-field rule may name a sibling (level ↔ max_fps): show it anyway.
            section = spec.path[0] if len(spec.path) > 1 else None
            for field, text in by_field.items():
                if section is None or field.startswith(section):
                    return f"{field}: {text}"
            return general[0] if general else None
        return problem

    @property
    def valid(self) -> bool:
        return not self.problems and not self.general
