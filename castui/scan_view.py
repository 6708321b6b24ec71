"""``castui scan``: run core scans and show them (table, JSON, live progress on a terminal)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring as _encode_str
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from castui_core.bus import EventBus, Subscription
from castui_core.decide import Action
from castui_core.errors import ConfigError, StoreError, ToolNotFoundError
from castui_core.events import ScanProblem, ScanProgress
from castui_core.layout import label_from_profile
from castui_core.paths import display_path, display_text, is_utf8, json_safe, path_json
from castui_core.probe import ProbePool
from castui_core.scan import IgnoreRules, ScanMemory, ScannedFile, Scanner, ScanReport, ScanTarget
from castui_core.settings import Settings, load_settings
from castui_core.store import Store
from castui_core.store.catalog import KnownFile
from castui_core.store.outputs import read_outputs
from castui_core.tools import find_tool

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from castui.jellyfin_scan import JellyfinColumn

#: Library label of a scan of PATHs given on the command line.
PATHS_LABEL = "(paths)"

_ACTION_STYLE = {
    Action.SKIP: "green",
    Action.REMUX: "cyan",
    Action.TRANSCODE: "yellow",
    Action.REJECT: "red",
}


def scan_targets(settings: Settings, args: argparse.Namespace) -> list[ScanTarget]:
    """Explicit PATHs (first library's profile or --profile), else the configured libraries."""
    if args.paths:
        if args.profile:
            name = args.profile
        elif settings.libraries:
            name = settings.libraries[0].profile
        else:
            name = "chromecast-1080p"
        if name not in settings.profiles:
            known = ", ".join(sorted(settings.profiles))
            raise ConfigError(f"--profile {name!r} is not a profile; known: {known}")
        roots = tuple(Path(p).absolute() for p in args.paths)
        return [ScanTarget(PATHS_LABEL, roots, settings.profiles[name], explicit=True)]
    libraries = settings.libraries
    if args.library:
        libraries = (settings.library_named(args.library),)
    if args.profile:
        raise ConfigError("--profile applies to PATHs; a library uses its own profile")
    return [
        ScanTarget(
            lib.name,
            (lib.path,),
            settings.profile_for(lib),
            lib.follow_symlinks,
            output_dir=lib.output_dir,
            version_label=(
                (lib.version_label or label_from_profile(lib.profile))
                if lib.layout == "version"
                else None
            ),
            version_fallback=lib.version_fallback,
        )
        for lib in libraries
    ]


async def run_scan_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    targets = scan_targets(settings, args)
    try:
        ffprobe: Path | None = find_tool("ffprobe", settings.ffprobe)
    except ToolNotFoundError:
        ffprobe = None  # only the crash fallback needs it; PyAV does the probing
    err = ScanStderr()
    bus = EventBus()
    rules = IgnoreRules(settings.scan.extensions, settings.scan.ignore)
    reports: list[ScanReport] = []
    memories: list[ScanMemory] = []
    fresh = bool(getattr(args, "fresh", False))
    # The catalog remembers each file's probe: unchanged files are not opened again. Opened
    # like the engine's ingest opens it (WAL, busy timeout, BEGIN IMMEDIATE writes), so two
    # scans, or a scan beside a running engine, wait their turn instead of failing. Without
    # a usable database (a read-only folder, say) the scan still runs, probing everything.
    store: Store | None = None
    try:
        store = await Store.connect(
            settings.database, reclaim_on_open=False, event_retention_s=None
        )
    except StoreError as exc:
        err.warn(f"{exc}; every file is probed")
    try:
        with ProbePool(settings.scan.probe_workers, timeout=settings.scan.probe_timeout_s) as pool:
            # What castui wrote itself.
            outputs = await asyncio.to_thread(read_outputs, settings.database)
            scanner = Scanner(
                pool, rules=rules, bus=bus, ffprobe=ffprobe, outputs=outputs, file_events=False
            )
            watcher = asyncio.create_task(_show_progress(bus.subscribe(), err))
            try:
                for target in targets:
                    known = await _known(store, target) if store is not None else {}
                    memory = ScanMemory(known=known, fresh=fresh)
                    reports.append(await scanner.scan(target, memory))
                    memories.append(memory)
            finally:
                bus.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        learned = [e for m in memories for e in m.learned]
        vanished = [p for m in memories for p in m.vanished]
        if store is not None:
            try:
                if learned:
                    await store.upsert_files(learned)
                if vanished:
                    # Rows the engine acted on stay: it cancels their queued jobs itself.
                    await store.remove_files(vanished, scan_only=True)
            except StoreError as exc:  # the scan's answer stands; only the memory is lost
                err.warn(f"{exc}; nothing remembered")
    finally:
        if store is not None:
            await store.close()
    probed = pool.probed  # every file a probe worker opened (copies checked included)
    reused = sum(m.reused for m in memories)
    err.line(f"catalog: {probed} files probed, {reused} unchanged files not probed again")
    files = [f for report in reports for f in report.files]
    jf: dict[str, JellyfinColumn] | None = None
    if getattr(args, "jellyfin", False):  # Jellyfin's own reasons beside castui's
        from castui.jellyfin_scan import jellyfin_columns  # only then: 0.1 s of imports

        jf = await jellyfin_columns(settings, args, files)
    if args.json:
        write_json_lines(sys.stdout, _json_lines(files, jf))
    else:
        # With --jellyfin a file castui leaves but Jellyfin would transcode is shown too.
        disagree = {p for p, col in (jf or {}).items() if col.disagreement}
        shown = [f for f in files if args.all or f.action is not Action.SKIP or f.path in disagree]
        if not shown:  # the common rescan: one line, no table, so no rich to import
            print(summary_line(reports), flush=True)
            return 0
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        out = Console(highlight=False, soft_wrap=False)
        table = Table(show_edge=False, pad_edge=False, expand=False)
        table.add_column("action")
        table.add_column("path", overflow="fold")
        table.add_column("reasons", overflow="fold")
        if jf is not None:
            table.add_column("jellyfin", overflow="fold")
        for f in shown:
            style = _ACTION_STYLE[f.action]
            row: list[str | Text] = [
                f"[{style}]{f.action.value}[/]",
                Text(display_path(f.path)),  # Text: a "[" in a name is not markup
                Text(display_text("; ".join(f.decision.reasons))),
            ]
            if jf is not None:
                col = jf.get(f.path)
                text = col.verdict.text if col else ""
                if col and col.disagreement:
                    text += f" — DISAGREES: {col.disagreement}"
                row.append(Text(text, style="red" if col and col.disagreement else ""))
            table.add_row(*row)
        out.print(table)
        out.print(summary_line(reports), soft_wrap=True)
    return 0


async def _known(store: Store, target: ScanTarget) -> dict[str, KnownFile]:
    """The catalog rows a target's scan may reuse: its library's, or those under its PATHs."""
    if not target.explicit:
        return await store.known_files(library=target.library)
    known: dict[str, KnownFile] = {}
    for root in target.roots:
        known |= await store.known_files(under=str(root))
    return known


def _safe(text: str) -> str:
    return text if text.isascii() or is_utf8(text) else display_text(text)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


def write_json_array(out: TextIO, items: Iterable[object]) -> None:
    """A JSON array, one object per line, each encoded by the C encoder.

    ``json.dumps(indent=2)`` runs the pure-Python encoder: on a 100,000-file library it took
    4 of a rescan's 8 seconds. The items' strings must already be valid Unicode.
    """
    write_json_lines(out, map(_ENCODER.encode, items))


def write_json_lines(out: TextIO, lines: Iterable[str]) -> None:
    """A JSON array of already encoded objects, one per line, in one write (a write per
    line was 0.7 s of a 100,000-file rescan)."""
    body = ",\n  ".join(lines)
    out.write(f"[\n  {body}\n]\n" if body else "[]\n")


def _json_lines(files: list[ScannedFile], jf: dict[str, JellyfinColumn] | None) -> Iterator[str]:
    """Each file's JSON object, as ``_file_json`` encodes it.

    Most files of a library share their decision and library, so the part of the line that
    says them is encoded once per decision; only the path and the size are encoded per file.
    The text is what encoding ``_file_json`` gives (tests compare both); a file whose name
    is not UTF-8, or with a Jellyfin column, is encoded from ``_file_json`` itself.
    """
    middles: dict[tuple[str, tuple[str, ...], str], tuple[str, str]] = {}
    for f in files:
        if (jf and f.path in jf) or not is_utf8(f.path):
            yield _ENCODER.encode(_file_json(f, jf))
            continue
        key = (f.action.value, f.decision.reasons, f.library)
        parts = middles.get(key)
        if parts is None:
            head, _, tail = _ENCODER.encode(
                {
                    "action": key[0],
                    "reasons": [_safe(r) for r in key[1]],
                    "size": 0,
                    "library": _safe(key[2]),
                }
            ).partition('"size": 0')
            parts = middles[key] = (", " + head[1:] + '"size": ', tail)
        yield f'{{"path": {_encode_str(f.path)}{parts[0]}{f.size}{parts[1]}'


def _file_json(f: ScannedFile, jf: dict[str, JellyfinColumn] | None) -> dict[str, object]:
    """One file as ``castui scan --json`` prints it."""
    return {
        **path_json(f.path),
        "action": f.action.value,
        "reasons": [_safe(r) for r in f.decision.reasons],
        "size": f.size,
        "library": _safe(f.library),
        **({"jellyfin": json_safe(jf[f.path].to_json())} if jf and f.path in jf else {}),
    }


def summary_line(reports: list[ScanReport]) -> str:
    counts = dict.fromkeys(Action, 0)
    total = to_process = 0
    seconds = 0.0
    for report in reports:
        for action, n in report.counts.items():
            counts[action] += n
        total += len(report.files)
        to_process += report.bytes_to_process
        seconds += report.seconds
    parts = ", ".join(f"{n} {action.value}" for action, n in counts.items())
    return (
        f"{total} files: {parts}; {format_bytes(to_process)} would be processed"
        f" (scanned in {seconds:.1f} s)"
    )


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _rich_terminal(stream: TextIO) -> bool:
    """Whether rich would treat ``stream`` as a terminal (a tty, or the environment forces
    one or asks for colour). Only then is rich worth its ~50 ms of imports: elsewhere its
    output is the plain text, with no colour and no live bar."""
    forced = ("FORCE_TERMINAL", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "FORCE_COLOR")
    if any(os.environ.get(name) for name in forced):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: rich says no too
        return False


class ScanStderr:
    """A scan's stderr: rich (a yellow ``warning``, a live bar) on a terminal, plain lines
    elsewhere, so ``castui scan`` in a script or a pipe never imports rich."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.console: Console | None = None
        if _rich_terminal(self.stream):
            from rich.console import Console

            self.console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        if self.console is None:
            print(f"warning: {text}", file=self.stream, flush=True)
        else:
            from rich.text import Text

            self.console.print(Text.assemble(("warning", "yellow"), ": ", text))

    def line(self, text: str) -> None:
        if self.console is None:
            print(text, file=self.stream, flush=True)
        else:
            from rich.text import Text

            self.console.print(Text(text))


async def _show_progress(sub: Subscription, err: ScanStderr) -> None:
    """Follow scan events on stderr: a live bar on a terminal, problems always."""
    if err.console is None:
        async for event in sub:
            if isinstance(event, ScanProblem):
                err.warn(_problem_text(event))
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    live = err.console.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} files"),
        TimeElapsedColumn(),
        console=err.console,
        transient=True,
        disable=not live,
    )
    tasks: dict[str, object] = {}
    with progress:
        async for event in sub:
            if isinstance(event, ScanProblem):
                what = _problem_text(event)
                progress.console.print(Text.assemble(("warning", "yellow"), ": ", what))
            elif isinstance(event, ScanProgress) and live:
                task = tasks.get(event.library)
                if task is None:
                    task = tasks[event.library] = progress.add_task(f"scan {event.library}")
                total = event.found if event.walk_done else None
                progress.update(task, completed=event.decided, total=total)  # type: ignore[arg-type]


def _problem_text(event: ScanProblem) -> str:
    where = "" if event.library == PATHS_LABEL else f"library {event.library}: "
    return display_text(f"{where}{event.path}: {event.reason}")
