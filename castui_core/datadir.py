"""castui's own folder: the database's folder and the ``logs/`` and ``journal/`` in it.

Every entry point (the service, ``convert``, ``queue``/``history``, the dashboard) checks
it before anything else, so a read-only or misplaced folder is one sentence naming that
folder and what to do, not an ``OSError`` traceback from the log set-up or a swap error that
blames the library ("cannot prepare /media/movies") when the journal's folder was at fault.

Writability is tried, not inferred from mode bits: root ignores mode bits, while a read-only
mount, an immutable folder (``chattr +i``) or a file where a folder should be still refuse.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from castui_core.errors import ConfigError

#: Sub-folders castui writes in next to the database.
SUBFOLDERS = ("logs", "journal")


def data_folders(database: Path) -> list[Path]:
    """The folders castui writes in: the database's folder, then its sub-folders."""
    root = database.parent
    return [root, *(root / name for name in SUBFOLDERS)]


def prepare_data_dir(database: Path) -> None:
    """Create castui's folders (owner-only) and check each one can be written.

    Raises ``ConfigError`` (exit 2) naming the first folder that cannot be used. Blocking
    file-system calls: run it before the event loop starts, or in a thread.
    """
    for folder in data_folders(database):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(_cannot(folder, exc, database)) from exc
        problem = _write_probe(folder, database)
        if problem is not None:
            raise ConfigError(problem)


def data_dir_problems(database: Path) -> list[str]:
    """What would stop castui writing its folders, without creating any (``config check``)."""
    for folder in data_folders(database):
        if folder.is_dir():
            problem = _write_probe(folder, database)
            if problem is not None:
                return [problem]
            continue
        # Not there yet: castui will create it, so its nearest existing parent must let it.
        parent = folder.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return [_cannot(folder, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), database)]
        if not os.access(parent, os.W_OK | os.X_OK):
            return [_cannot(folder, OSError(errno.EACCES, os.strerror(errno.EACCES)), database)]
        # castui will create it; a sibling that exists (journal/ without logs/) is checked next.
    return []


def _write_probe(folder: Path, database: Path) -> str | None:
    """Create and remove a file in ``folder``: the only test that holds for root too."""
    try:
        fd, name = tempfile.mkstemp(prefix=".castui-write-test-", dir=folder)
    except OSError as exc:
        return _cannot(folder, exc, database)
    os.close(fd)
    os.unlink(name)
    return None


def _cannot(folder: Path, exc: OSError, database: Path) -> str:
    """The sentence a person acts on: which folder, why, and the two ways out."""
    if exc.errno == errno.ENOTDIR:
        blocker = _file_in_the_way(folder)
        why = f"{blocker} is a file, not a folder" if blocker is not None else "not a folder"
    else:
        why = exc.strerror or str(exc)
    who = _user()
    return (
        f"cannot write castui's folder {folder} ({why}); castui keeps its database, journal and"
        f" logs there (database: {database}). Make the folder writable for {who}, or set"
        " `database:` in the settings to a file in a folder you can write"
    )


def _file_in_the_way(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def _user() -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(os.geteuid()).pw_name}"
    except (ImportError, KeyError):
        return f"uid {os.geteuid()}"
