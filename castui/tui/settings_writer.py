"""The settings writer, moved to the core (:mod:`castui_core.settings_file`).

Why it moved: the settings screen saves through the engine API, and an attached dashboard's
edit is saved by the service, which has no UI to borrow a writer from. This module stays so
the profile editor's imports keep working.
"""

from __future__ import annotations

from castui_core.settings_file import (
    KeyPath,
    SaveResult,
    apply_edits,
    backup_path,
    rollback,
    save_edits,
    save_text,
)

__all__ = [
    "KeyPath",
    "SaveResult",
    "apply_edits",
    "backup_path",
    "rollback",
    "save_edits",
    "save_text",
]
