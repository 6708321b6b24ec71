"""Save edits to ``settings.yaml`` without losing what the operator wrote by hand.

Why round-trip YAML (ruamel.yaml) rather than dumping the pydantic model: the file is the
operator's; its comments, key order and the keys they left at defaults must survive a
dashboard edit byte for byte except where a value changed. The save is careful because a
broken settings file stops the service at its next start:

1. the edited text is validated with the same rules as loading (``parse_settings``) before
   anything is written, so an invalid value never reaches the disk;
2. the previous file is kept as ``settings.yaml.bak``;
3. the new text goes to a temporary file in the same directory, is fsynced, and replaces the
   file atomically (``os.replace``): a crash leaves the old or the new file, never half;
4. the file is loaded again with ``load_settings`` to verify; on failure the backup is put
   back and the error raised.

Why in the core: the settings screen saves through the engine API, and an attached
dashboard's edit is saved by the *service* (its own file), which has no UI to borrow a
writer from. The profile editor imports it through ``castui.tui.settings_writer``.

Blocking file I/O: call :func:`save_edits` / :func:`save_text` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from castui_core.errors import CastuiError, ConfigError
from castui_core.settings import Settings, load_settings, parse_settings

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

# ruamel.yaml (~30 ms) is imported inside the functions that read or write a settings file:
# `castui --no-ui` imports this module through the engine but saves settings only on request.

#: A key path from the top of the file, e.g. ``("profiles", "tv", "video", "max_width")``;
#: an ``int`` indexes a list (``("libraries", 1, "watch")``).
KeyPath = tuple[str | int, ...]


def _yaml() -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the operator's long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _reads_back(text: str) -> bool:
    """Whether ``text`` written unquoted is read back by castui's loader as the same text.

    Why: ruamel writes YAML 1.2, where ``off``, ``yes``, ``21:00`` and ``1_000`` are plain
    text, but castui reads the file with PyYAML (YAML 1.1): ``off`` -> False, ``21:00`` ->
    the sexagesimal 1260. Such a value is written double-quoted instead."""
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def _text(value: str) -> str:
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    return value if _reads_back(value) else DoubleQuotedScalarString(value)


def plain(value: Any) -> Any:
    """``value`` as YAML nodes: tuples and lists as block sequences, dicts as block mappings
    (a plain dict would be dumped in flow style, ``{name: x, path: y}``), paths as text;
    text YAML 1.1 would read as something else (``off``, ``21:00``) double-quoted."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import ScalarString

    if isinstance(value, tuple | list):
        seq = CommentedSeq()
        seq.extend(plain(v) for v in value)
        return seq
    if isinstance(value, Mapping):
        out = CommentedMap()
        for key, item in value.items():
            out[_text(key) if isinstance(key, str) else key] = plain(item)
        return out
    if isinstance(value, Path):
        return _text(str(value))
    if isinstance(value, Enum):  # WatchMode.POLL: YAML holds its value
        return plain(value.value)
    if isinstance(value, str) and not isinstance(value, ScalarString):
        return _text(value)
    return value


def load_document(text: str) -> CommentedMap:
    """The round-trip document of a settings file's text (an empty file: an empty mapping)."""
    from ruamel.yaml.comments import CommentedMap

    data = _yaml().load(text) if text.strip() else None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ConfigError("the settings file's top level is not a mapping; fix it by hand first")
    return data


def dump_document(data: CommentedMap) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def apply_edits(text: str, edits: Mapping[KeyPath, Any]) -> str:
    """``text`` with each key path set to its value (mappings created as needed)."""
    from ruamel.yaml.comments import CommentedMap

    data = load_document(text)
    for path, value in edits.items():
        node: Any = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = CommentedMap()
                node[key] = child
            node = child
        node[path[-1]] = plain(value)
    return dump_document(data)


@dataclass(frozen=True)
class SaveResult:
    path: Path
    backup: Path | None
    settings: Settings
    #: The file's mode before, when the save made it private (0600) because it now holds a
    #: key and was readable by others; ``None`` when its mode was kept.
    tightened_from: int | None = None


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def read_text(path: Path) -> str:
    """The file's text, ``""`` when it does not exist yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"settings file {path} is not UTF-8 text") from exc


def _write_atomic(path: Path, text: str, mode: int | None) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename.

    Why ``resolve``: a settings file that is a symlink (into a dotfiles folder) must stay
    one; the new text replaces the file it points to. Why ``mkstemp``: the temporary file is
    created new (O_EXCL, never one planted at a guessable name) and 0600 from the start, so
    keys in it are never readable by others, not even between write and chmod.
    """
    path = path.resolve()
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_text(path: Path, new_text: str, *, private: bool = False) -> SaveResult:
    """Write ``new_text`` as the settings file at ``path`` safely (see the module docstring).

    Raises :class:`ConfigError` (with ``problems``) when the text is not valid settings; the
    file is then untouched. A file that did not exist is created (0600: it may hold keys).
    ``private``: the text holds a key just typed; a file readable by group or others is made
    0600 (:attr:`SaveResult.tightened_from` says so), else it keeps its mode.
    """
    parse_settings(new_text, source=path)  # raises ConfigError: nothing written
    existed = path.exists()
    backup: Path | None = None
    mode: int | None = None if existed else 0o600
    tightened: int | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if existed:
            backup = backup_path(path)
            shutil.copy2(path, backup)
            mode = path.stat().st_mode & 0o7777
            if private and mode & 0o077:
                tightened, mode = mode, 0o600
        _write_atomic(path, new_text, mode)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
    try:
        settings = load_settings(path)
    except CastuiError:
        rollback(path, backup)
        raise
    return SaveResult(path, backup, settings, tightened)


def save_edits(path: Path, edits: Mapping[KeyPath, Any]) -> SaveResult:
    """Apply ``edits`` to the settings file at ``path`` and save it with :func:`save_text`."""
    return save_text(path, apply_edits(read_text(path), edits))


def rollback(path: Path, backup: Path | None) -> None:
    """Put the backup back (or remove a file that did not exist before)."""
    if backup is None:
        path.unlink(missing_ok=True)
        return
    _write_atomic(path, backup.read_text(encoding="utf-8"), backup.stat().st_mode & 0o7777)


__all__ = [
    "KeyPath",
    "SaveResult",
    "apply_edits",
    "backup_path",
    "dump_document",
    "load_document",
    "plain",
    "read_text",
    "rollback",
    "save_edits",
    "save_text",
]
