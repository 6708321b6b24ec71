"""The ``castui`` command line.

Every subcommand loads settings the same way, runs core code, and turns a ``CastuiError`` into
its message on stderr and its exit code: a person sees what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from collections.abc import Callable, Sequence

from castui.cli_args import add_node, apply_node
from castui.keymap import keymap_problems
from castui.version_view import VersionAction
from castui_core.datadir import data_dir_problems, prepare_data_dir
from castui_core.errors import CastuiError, ConfigError
from castui_core.fsinfo import filesystem_of
from castui_core.settings import Settings, load_settings
from castui_core.tools import find_tool

Handler = Callable[[argparse.Namespace], int]


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="settings file (default: $CASTUI_CONFIG, ./settings.yaml, ~/.config/castui/)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="castui",
        description="Keep a media library playable directly on every Chromecast.",
    )
    parser.add_argument(
        "--version",
        action=VersionAction,
        help="show castui, Python, ffmpeg and database schema versions, then exit",
    )
    parser.add_argument(
        "--no-ui",
        action="store_true",
        help="run the engine headless (a service): log lines instead of the dashboard",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="with --no-ui: scan, process the queue until empty, print a summary, exit",
    )
    parser.add_argument(
        "--max-wait",
        type=parse_duration,
        metavar="DURATION",
        help="with --once: stop waiting after DURATION (90s, 30m, 2h) while jobs are still"
        " queued (held by a guardrail), list them with the reason, and exit 1",
    )
    parser.add_argument(
        "--status-every",
        type=parse_duration,
        default=60.0,
        metavar="DURATION",
        help="with --once: while jobs wait (a guardrail holds), log why this often (default 60s)",
    )
    add_node(parser)  # --node, --role: which node this is, with --no-ui
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="with --no-ui: human text or JSON lines (journald/Loki)",
    )
    parser.add_argument(
        "--config",
        dest="main_config",
        metavar="PATH",
        help="settings file for --no-ui (subcommands take their own --config)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    config = sub.add_parser("config", help="inspect the settings")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate the settings file; print ok or errors")
    _add_config(check)
    check.set_defaults(handler=run_config_check)

    scan = sub.add_parser(
        "scan",
        help="show which files a Chromecast cannot play, and what castui would do",
        description=(
            "Walk the configured libraries (or the PATHs given), probe every media file and "
            "print what castui would do with it and why. Files whose size, time and inode "
            "match the catalog are not probed again (their probe is remembered in castui's "
            "database). Changes nothing in the library."
        ),
    )
    _add_config(scan)
    scan.add_argument(
        "--fresh",
        action="store_true",
        help="probe every file again, even those the catalog knows unchanged",
    )
    scan.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to scan")
    scan.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    scan.add_argument("--profile", metavar="NAME", help="target profile for PATHs")
    scan.add_argument("--library", metavar="NAME", help="scan only this configured library")
    scan.add_argument(
        "--all", action="store_true", help="also list files that already play directly"
    )
    scan.add_argument(
        "--jellyfin",
        action="store_true",
        help="also ask Jellyfin (PlaybackInfo, Cast profile) and show its reasons beside castui's",
    )
    scan.set_defaults(handler=run_scan)

    convert = sub.add_parser(
        "convert",
        help="convert files now: decide, encode, validate, swap in safely",
        description=(
            "Run decide -> encode -> validate -> swap on the given files now, with a live "
            "progress bar. The original is only replaced after the new file is validated. "
            "Exit 0 when every file succeeded (or already plays directly), 1 otherwise."
        ),
    )
    _add_config(convert)
    convert.add_argument("files", nargs="+", metavar="FILE", help="media files to convert")
    convert.add_argument("--profile", metavar="NAME", help="target profile (default: library's)")
    convert.add_argument(
        "--encoder",
        choices=("auto", "nvenc", "cpu"),
        help="auto: NVENC when a working NVIDIA encoder is found, else CPU (default: settings)",
    )
    convert.set_defaults(handler=run_convert)

    try:
        from castui import cli_store
    except ImportError:  # pragma: no cover - the store commands ship with the package
        pass
    else:
        cli_store.register(sub)

    # `castui jellyfin check` (castui/cli_jellyfin.py): the optional Jellyfin integration.
    from castui import cli_jellyfin

    cli_jellyfin.register(sub)

    # `castui arr check` (castui/cli_arr.py): the optional Sonarr/Radarr integration.
    from castui import cli_arr

    cli_arr.register(sub)

    # `castui demo` and `castui doctor` (castui/demo_view.py, castui/doctor_view.py).
    from castui import demo_view, doctor_view

    demo_view.register(sub)
    doctor_view.register(sub)

    # `castui report` (castui/report_view.py): the readiness report from the catalog.
    from castui import report_view

    report_view.register(sub)

    # `castui originals list|restore|purge` (castui/originals_view.py): the archive.
    from castui import originals_view

    originals_view.register(sub)

    # `castui serve` (castui/serve.py): the dashboard in a web browser.
    from castui import serve

    serve.register(sub)
    return parser


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1h30m`` as seconds (argparse type: a bad value is
    a usage error naming the option, not a traceback)."""
    import re

    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m or 2h")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be more than 0")
    return seconds


def run_config_check(args: argparse.Namespace) -> int:
    """Validate settings (and the environment they point at); print ok or every problem."""
    settings = load_settings(args.config)
    problems = check_environment(settings)
    if problems:
        raise ConfigError("settings are valid, but:", problems=tuple(problems))
    from rich.console import Console  # here only: `castui scan` and `--no-ui` never pay for it

    out = Console(highlight=False, soft_wrap=True)
    out.print("ok")
    source = settings.source or "built-in defaults (no settings file found)"
    out.print(f"  settings:  {source}")
    out.print(f"  database:  {settings.database}")
    for lib in settings.libraries:
        state = "" if lib.path.is_dir() else "  (missing or not mounted)"
        out.print(
            f"  library:   {lib.name}: {lib.path} -> {lib.profile}, watch {lib.watch.value}{state}"
        )
    out.print(f"  profiles:  {', '.join(sorted(settings.profiles))}")
    out.print(f"  ffmpeg:    {find_tool('ffmpeg', settings.ffmpeg)}")
    out.print(f"  ffprobe:   {find_tool('ffprobe', settings.ffprobe)}")
    return 0


def check_environment(settings: Settings) -> list[str]:
    """Problems that validation of the file alone cannot see."""
    problems: list[str] = data_dir_problems(settings.database)
    for i, lib in enumerate(settings.libraries):
        if lib.path.exists() and not lib.path.is_dir():
            problems.append(
                f"libraries.{i}.path: {lib.path} (library {lib.name!r}) is a file, not a folder;"
                " point `path:` at the folder that holds the library's media"
            )
    mount = filesystem_of(settings.database)
    if mount is not None and mount.is_network:
        problems.append(
            f"database: {settings.database} is on a {mount.fs_type} share ({mount.mount_point});"
            " SQLite locking is unsafe there: put it on a local disk"
        )
    for name, configured in (("ffmpeg", settings.ffmpeg), ("ffprobe", settings.ffprobe)):
        try:
            find_tool(name, configured)  # type: ignore[arg-type]
        except CastuiError as exc:
            problems.append(str(exc))
    problems.extend(keymap_problems(settings.keymap))  # the ids are the dashboard's
    return problems


def run_scan(args: argparse.Namespace) -> int:
    from castui.scan_view import run_scan_command

    return asyncio.run(run_scan_command(args))


def run_headless(args: argparse.Namespace) -> int:
    from castui.headless import run_headless as run

    return asyncio.run(run(args))


def run_tui(args: argparse.Namespace) -> int:
    """The dashboard: attach to a running ``castui --no-ui`` if there is one, else run the
    engine in-process (serving the attach socket so a second ``castui`` attaches to it)."""
    from castui.tui.app import dashboard_for
    from castui_core.control import ForeignServiceError
    from castui_core.engine import Engine

    settings = apply_node(load_settings(args.config), args)  # --node, --role
    # First: another user's service is named as such, not as an unwritable folder of theirs.
    try:
        app = dashboard_for(settings)  # says plainly when it can neither attach nor run one
    except ForeignServiceError:
        raise  # another user's service runs here: that is the answer, not their folders' modes
    except CastuiError:
        prepare_data_dir(settings.database)  # if castui's folder is at fault: which, what to do
        raise
    prepare_data_dir(settings.database)  # before the screen opens: the message stays readable
    if isinstance(app.engine, Engine):  # its own engine: --node/--role outlive a save's reload
        app.engine.settings_overrides = functools.partial(apply_node, args=args)
    return app.run() or 0


def run_convert(args: argparse.Namespace) -> int:
    from castui.convert_view import run_convert_command

    # The journal lives in the database's folder: check it here, or a read-only one surfaces
    # as a swap error that blames the library's folder.
    prepare_data_dir(load_settings(args.config).database)
    return asyncio.run(run_convert_command(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None and args.no_ui:
        args.config = args.main_config
        handler = run_headless
    if handler is None:
        if args.once or args.max_wait is not None:
            parser.error("--once and --max-wait need --no-ui")
        args.config = args.main_config
        handler = run_tui
    try:
        return handler(args)
    except CastuiError as exc:
        print(f"castui: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("castui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `castui scan | head`
        return 0


def json_dump(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)
