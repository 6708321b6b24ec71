"""``castui doctor [--json]``: the machine's readiness for castui, one line per check.

The checks are :mod:`castui_core.doctor`; this prints them (plain text, so it reads the same
over SSH, in CI logs and piped) and exits with the worst line: 0 ok, 1 warning, 2 error.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from castui.cli_args import add_config
from castui_core.settings import load_settings

_MARK = {"ok": "ok     ", "warning": "warning", "error": "error  "}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``castui doctor`` to the main parser."""
    doctor = subparsers.add_parser(
        "doctor",
        help="check this machine for castui: ffmpeg, encoders, GPU, inotify, database (0/1/2)",
        description=(
            "Check ffmpeg/ffprobe, the encoders and a one-frame NVENC test, NVML and GPUs,"
            " inotify limits against the libraries' folders, the database's disk, each"
            " library's filesystem and watch mode, and Jellyfin when configured. One line each:"
            " ok, warning or error with what to do. Exit 0 all ok, 1 a warning, 2 an error."
        ),
    )
    add_config(doctor)
    doctor.add_argument("--json", action="store_true", help="print one JSON object instead")
    doctor.set_defaults(handler=run_doctor_command)


def run_doctor_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    # Imported here: every castui command imports this module to register `doctor`, and
    # the checks pull in most of castui (0.14 s of start-up for `castui scan`).
    from castui_core.doctor import as_json, exit_code, run_doctor

    checks = asyncio.run(run_doctor(settings))
    if args.json:
        print(json.dumps(as_json(checks), indent=2, ensure_ascii=False))
        return exit_code(checks)
    source = settings.source or "built-in defaults (no settings file found)"
    print(f"castui doctor (settings: {source})")
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"  {_MARK[check.level]}  {check.name.ljust(width)}  {check.message}")
    code = exit_code(checks)
    counts = {level: sum(c.level == level for c in checks) for level in ("error", "warning")}
    print("all ok" if code == 0 else f"{counts['error']} error(s), {counts['warning']} warning(s)")
    return code
