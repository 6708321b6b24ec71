"""``castui convert FILE...``: decide → encode → validate → swap now, with a live progress bar."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from castui.scan_view import format_bytes
from castui_core.bus import EventBus, Subscription
from castui_core.convert import Converter, ConvertOptions, ConvertOutcome
from castui_core.errors import ConfigError
from castui_core.events import JobNote, JobProgress, JobStarted
from castui_core.ffmpeg.nvenc import NvencStatus, detect_nvenc
from castui_core.probe import ProbePool
from castui_core.settings import LibrarySettings, Settings, load_settings
from castui_core.swap import Journal, recover
from castui_core.tools import find_tools

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


def options_for(settings: Settings, path: Path, args: argparse.Namespace) -> ConvertOptions:
    """Profile, placement and deletion policy for one file, from its library (if any)."""
    library = library_of(settings, path)
    if args.profile:
        if args.profile not in settings.profiles:
            known = ", ".join(sorted(settings.profiles))
            raise ConfigError(f"--profile {args.profile!r} is not a profile; known: {known}")
        profile = settings.profiles[args.profile]
    elif library is not None:
        profile = settings.profile_for(library)
    else:
        profile = settings.profiles["chromecast-1080p"]
    op = settings.operational
    return ConvertOptions(
        profile=profile,
        encoder=args.encoder or op.encoder,
        library_root=library.path if library is not None else None,
        output_dir=library.output_dir if library is not None else None,
        delete_source=library.delete_source if library is not None else False,
        min_free_bytes=int(op.min_free_gb * 1e9),
        stall_timeout_s=op.stall_timeout_s,
        timeout_s=op.job_timeout_s,
    )


async def run_convert_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    tools = find_tools(settings.ffmpeg, settings.ffprobe)
    files = [Path(p).absolute() for p in args.files]  # noqa: ASYNC240 (getcwd only)
    plans = [(path, options_for(settings, path, args)) for path in files]
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    journal = Journal(settings.database.parent / "journal")
    for line in await asyncio.to_thread(recover, journal):
        err.print(f"[yellow]{line}[/]")

    nvenc: NvencStatus | None = None
    if any(options.encoder != "cpu" for _, options in plans):
        nvenc = await detect_nvenc(tools.ffmpeg)

    bus = EventBus()
    outcomes: list[ConvertOutcome] = []
    interrupted = False
    with ProbePool(1, timeout=settings.scan.probe_timeout_s) as pool:
        converter = Converter(tools=tools, pool=pool, journal=journal, bus=bus, nvenc=nvenc)
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


def _print_outcome(out: Console, outcome: ConvertOutcome) -> None:
    style = _STATUS_STYLE[outcome.status]
    head = f"[{style}]{outcome.status}[/] {outcome.action.value}: {outcome.path}"
    if outcome.status == "done":
        after = outcome.bytes_after or 0
        out.print(
            f"{head} -> {outcome.output_path} ({format_bytes(outcome.bytes_before)} ->"
            f" {format_bytes(after)}, {outcome.seconds:.1f} s, {outcome.encoder})"
        )
        for note in outcome.notes:
            out.print(f"    {note}")
    else:
        out.print(f"{head} ({outcome.reason})")


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
                progress.console.print(f"[yellow]{event.message}[/]")
            elif isinstance(event, JobStarted):
                name = Path(event.path).name
                description = f"{event.action} {name[:40]} [{event.encoder}]"
                if event.path in tasks:
                    progress.update(tasks[event.path], description=description, completed=0)
                else:
                    tasks[event.path] = progress.add_task(description, total=100, detail="")
            elif isinstance(event, JobProgress) and event.path in tasks:
                detail = " ".join(
                    part
                    for part in (
                        f"{event.fps:.0f} fps" if event.fps else "",
                        f"{event.speed:.2g}x" if event.speed else "",
                        f"ETA {event.eta_s:.0f} s" if event.eta_s is not None else "",
                    )
                    if part
                )
                progress.update(tasks[event.path], completed=event.percent or 0, detail=detail)
