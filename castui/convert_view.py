"""``castui convert FILE...``: decide → encode → validate → swap now, with a live progress bar."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from castui.scan_view import format_bytes
from castui_core.bus import EventBus, Subscription
from castui_core.convert import Converter, ConvertOptions, ConvertOutcome, options_for
from castui_core.errors import CastuiError
from castui_core.events import JobNote, JobProgress, JobStarted
from castui_core.ffmpeg.nvenc import NvencStatus, detect_nvenc
from castui_core.paths import display_path, display_text
from castui_core.probe import ProbePool
from castui_core.settings import LibrarySettings, Settings, load_settings
from castui_core.store import Store
from castui_core.swap import Journal, recover
from castui_core.tools import Tools, find_tools

_STATUS_STYLE = {
    "done": "green",
    "skipped": "green",
    "rejected": "red",
    "failed": "red",
    "cancelled": "yellow",
}


def library_of(settings: Settings, path: Path) -> LibrarySettings | None:
    """The configured library whose folder holds ``path`` (the deepest one wins)."""
    best: LibrarySettings | None = None
    for lib in settings.libraries:
        if path.is_relative_to(lib.path) and (
            best is None or len(lib.path.parts) > len(best.path.parts)
        ):
            best = lib
    return best


def convert_options(settings: Settings, path: Path, args: argparse.Namespace) -> ConvertOptions:
    """Options for one file: its library's policy, ``--profile``/``--encoder`` on top."""
    return options_for(
        settings, library_of(settings, path), profile=args.profile, encoder=args.encoder
    )


async def run_convert_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    tools = find_tools(settings.ffmpeg, settings.ffprobe)
    files = [Path(p).absolute() for p in args.files]  # noqa: ASYNC240 (getcwd only)
    plans = [(path, convert_options(settings, path, args)) for path in files]
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    journal = Journal(settings.database.parent / "journal")
    try:
        # The same database as the service (settings.database): every output this command
        # writes is recorded there, so the service recognises it as castui's own work.
        async with Store.open(
            settings.database, reclaim_on_open=False, event_retention_s=None
        ) as store:
            return await _convert_files(settings, tools, plans, journal, store, out, err)
    finally:
        journal.close()


async def _convert_files(
    settings: Settings,
    tools: Tools,
    plans: list[tuple[Path, ConvertOptions]],
    journal: Journal,
    store: Store,
    out: Console,
    err: Console,
) -> int:
    files = [path for path, _ in plans]
    for line in await asyncio.to_thread(recover, journal):
        err.print(f"[yellow]{line}[/]")

    nvenc: NvencStatus | None = None
    if any(options.encoder != "cpu" for _, options in plans):
        nvenc = await detect_nvenc(tools.ffmpeg)

    bus = EventBus()
    outcomes: list[ConvertOutcome] = []
    interrupted = False
    with ProbePool(1, timeout=settings.scan.probe_timeout_s) as pool:
        converter = Converter(
            tools=tools, pool=pool, journal=journal, bus=bus, nvenc=nvenc, store=store
        )
        viewer = asyncio.create_task(_show_progress(bus.subscribe(), err))
        loop = asyncio.get_running_loop()
        current: list[Path] = []
        cancels: set[asyncio.Task[None]] = set()

        def on_signal() -> None:
            nonlocal interrupted
            interrupted = True
            for path in current:
                task = loop.create_task(converter.cancel(str(path), "interrupted (Ctrl-C)"))
                cancels.add(task)
                task.add_done_callback(cancels.discard)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            for path, options in plans:
                if interrupted:
                    break
                current[:] = [path]
                outcome = await converter.convert(path, options)
                outcomes.append(outcome)
                try:
                    await _tell_jellyfin(settings, store, path, outcome)
                except CastuiError as exc:  # the file is converted; only the notice is lost
                    err.print(Text(f"not queued for Jellyfin/Sonarr/Radarr: {exc}"), style="yellow")
                _print_outcome(out, outcome)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            bus.close()
            with contextlib.suppress(asyncio.CancelledError):
                await viewer
    done = sum(o.ok for o in outcomes)
    saved = sum(o.bytes_before - (o.bytes_after or 0) for o in outcomes if o.status == "done")
    out.print(
        f"{done} of {len(files)} succeeded"
        + (f"; {format_bytes(saved)} saved" if saved > 0 else "")
    )
    if interrupted:
        return 130
    return 0 if done == len(files) else 1


async def _tell_jellyfin(
    settings: Settings, store: Store, path: Path, outcome: ConvertOutcome
) -> None:
    """Queue the swap's changes in the outbox for Jellyfin and each Sonarr/Radarr entry; the
    service's senders deliver them (this command does not wait for either)."""
    library = library_of(settings, path)
    if outcome.status != "done" or library is None:
        return
    from castui_core.integrations.arr import arr_entries
    from castui_core.integrations.jellyfin.sender import outbox_entries

    entries = await outbox_entries(settings, library.name, str(path), outcome.output_path)
    entries += arr_entries(settings, library.name, outcome.output_path)
    if not entries:
        return
    # The outbox lives with the jobs: this host's database, or the shared Redis queue when
    # the settings name one (the senders on the library host read it there).
    from castui_core.queue.open import open_queue

    queue = await open_queue(settings, store)
    try:
        await queue.outbox_add(entries)
    finally:
        if queue is not store:
            await queue.close()


def _print_outcome(out: Console, outcome: ConvertOutcome) -> None:
    # Text, not markup, and display_text: a file name may hold "[b]", a newline or bytes
    # that are not UTF-8 (which a strict UTF-8 terminal refuses to print).
    style = _STATUS_STYLE[outcome.status]
    head = Text.assemble((outcome.status, style), f" {outcome.action.value}: ")
    if outcome.status == "done":
        after = outcome.bytes_after or 0
        tail = (
            f"{outcome.path} -> {outcome.output_path} ({format_bytes(outcome.bytes_before)} ->"
            f" {format_bytes(after)}, {outcome.seconds:.1f} s, {outcome.encoder})"
        )
        out.print(head + Text(display_text(tail)))
        for note in outcome.notes:
            out.print(Text(display_text(f"    {note}")))
    else:
        out.print(head + Text(display_text(f"{outcome.path} ({outcome.reason})")))


async def _show_progress(sub: Subscription, err: Console) -> None:
    """A live bar per file on a terminal; notes (like an NVENC fallback) always."""
    live = err.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not live,
    )
    tasks: dict[str, TaskID] = {}
    with progress:
        async for event in sub:
            if isinstance(event, JobNote):
                progress.console.print(Text(display_text(event.message), style="yellow"))
            elif isinstance(event, JobStarted):
                name = escape(display_path(Path(event.path).name)[:40])
                description = f"{event.action} {name} [{event.encoder}]"
                if event.path in tasks:
                    progress.update(tasks[event.path], description=description, completed=0)
                else:
                    tasks[event.path] = progress.add_task(description, total=100, detail="")
            elif isinstance(event, JobProgress) and event.path in tasks:
                detail = " ".join(
                    part
                    for part in (
                        f"{event.fps:.0f} fps" if event.fps else "",
                        f"{event.speed:.1f}x" if event.speed else "",
                        f"ETA {event.eta_s:.0f} s" if event.eta_s is not None else "",
                    )
                    if part
                )
                progress.update(tasks[event.path], completed=event.percent or 0, detail=detail)
