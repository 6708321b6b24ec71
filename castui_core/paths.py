"""File names as the OS gives them, shown to people and written as JSON without loss or forgery.

A POSIX file name is any bytes but ``/`` and NUL. Python hands castui a name that is not valid
UTF-8 as a str with *surrogate escapes* (``b"a\\xff.mkv"`` becomes ``"a\\udcff.mkv"``); that str
opens the file and gives ffmpeg the right bytes (``os.fsencode``), but it cannot be written to a
UTF-8 terminal, log file or JSON document as it is. A name may also hold a newline or another
control character, which would start a new, forged line in a text log. So:

* ``display_path`` is what a person reads (text log, terminal, dashboard): one line, valid
  Unicode; undecodable bytes are shown as ``\\xff`` and control or invisible characters as
  Python escapes (``\\n``, ``\\x1b``, ``\\u202e``). It is for reading, not for opening the file.
* ``path_json`` is what a program reads: ``{"path": "..."}`` with the exact name when it is
  valid UTF-8 (JSON escapes control characters itself), and otherwise the display form plus
  ``"path_bytes_b64"``, the name's exact bytes in base64, so no consumer ever has to parse
  invalid UTF-8 and none loses the real name.

The SQLite side of the same problem (such a name is stored as its raw bytes) lives in
``castui_core.store.db``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Any

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)  # how os.fsdecode spells bytes 0x80..0xFF


def is_utf8(text: str) -> bool:
    """True when ``text`` is valid Unicode (no surrogate escapes) and so encodable as UTF-8."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as one printable line of valid Unicode, for people (logs, terminal, dashboard).

    Lossy on purpose (a name that contains the text ``\\n`` and one that contains a newline look
    alike); a program that needs the name uses ``path_json`` or the str itself.
    """
    return display_text(os.fspath(path))


def display_text(text: str) -> str:
    """``text`` with every non-printable character escaped, so it can never break a line."""
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
            continue
        code = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif code in _SURROGATE_ESCAPES:
            out.append(f"\\x{code - 0xDC00:02x}")  # the byte the OS really has there
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def path_json(path: str | os.PathLike[str], key: str = "path") -> dict[str, str]:
    """JSON fields for one path: ``{key: name}``, plus ``{key}_bytes_b64`` when not UTF-8.

    The name itself is kept exactly when it is valid UTF-8 (a JSON encoder escapes control
    characters); otherwise ``key`` holds ``display_path`` and the exact bytes are in base64.
    """
    text = os.fspath(path)
    if is_utf8(text):
        return {key: text}
    return {
        key: display_path(text),
        f"{key}_bytes_b64": base64.b64encode(os.fsencode(text)).decode("ascii"),
    }


def json_safe(value: Any) -> Any:
    """``value`` with every str made valid Unicode (for a JSON log or reply written as UTF-8).

    Strings that are not valid UTF-8 become their ``display_text``; containers are copied.
    Top-level path fields should use ``path_json`` instead, which also keeps the exact bytes.
    """
    if isinstance(value, str):
        return value if is_utf8(value) else display_text(value)
    if isinstance(value, Mapping):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [json_safe(v) for v in value]
    return value
