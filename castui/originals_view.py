"""``castui originals list|restore|purge`` and ``castui layout migrate``: the archive of
originals the replace layout keeps (``castui_core.originals``).

Every command first finishes what a crash left (the journal's restores, then the rows a
crash left between files and database), so what it prints is the state on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from castui_core.errors import CastuiError
from castui_core.settings import Settings, load_settings

if TYPE_CHECKING:
    from castui_core.store import Store
    from castui_core.swap import Journal


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``castui originals ...`` to the main parser."""
    originals = subparsers.add_parser(
        "originals", help="originals the replace layout archived: list, restore, purge"
    )
    actions = originals.add_subparsers(dest="originals_command", metavar="ACTION", required=True)

    def config(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", metavar="PATH", help="settings file")

    listing = actions.add_parser("list", help="every archived original, totals per library")
    config(listing)
    listing.add_argument("--library", metavar="NAME", help="only this library")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=run_list)

    restore = actions.add_parser(
        "restore", help="put originals back (byte-identical) and remove castui's output"
    )
    config(restore)
    restore.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="the original's path, castui's output or the archived file",
    )
    restore.set_defaults(handler=run_restore)

    again = actions.add_parser(
        "convert-again",
        help="let castui convert restored files again (a restore marks them to be left alone)",
    )
    config(again)
    again.add_argument("paths", nargs="+", metavar="PATH", help="a restored original's path")
    again.set_defaults(handler=run_convert_again)

    purge = actions.add_parser("purge", help="delete archived originals to free their space")
    config(purge)
    from castui.cli import parse_duration

    purge.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="DURATION",
        help="only those archived longer ago (30d, 12h)",
    )
    purge.add_argument("--library", metavar="NAME", help="only this library")
    purge.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    purge.set_defaults(handler=run_purge)

    layout = subparsers.add_parser("layout", help="the library layouts (replace/version/mirror)")
    layout_actions = layout.add_subparsers(dest="layout_command", metavar="ACTION", required=True)
    migrate = layout_actions.add_parser(
        "migrate",
        help="move outputs castui wrote before layouts (<stem>.mp4 beside a kept source) to"
        " each library's layout",
    )
    config(migrate)
    migrate.add_argument("--library", metavar="NAME", help="only this library")
    migrate.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    migrate.set_defaults(handler=run_migrate)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if getattr(args, "library", None):
        settings.library_named(args.library)  # ConfigError naming the known ones
    return settings


def _human(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.0f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 60:.0f}m"


@contextlib.asynccontextmanager
async def _prepared(settings: Settings) -> AsyncIterator[tuple[Store, Journal, list[str]]]:
    """The store and journal, after finishing what a crash left (journal first: a restore
    whose files were finished is then recorded by ``reconcile``)."""
    from castui_core.originals import reconcile
    from castui_core.store import Store
    from castui_core.swap import Journal, recover

    journal = Journal(settings.database.parent / "journal")
    try:
        lines = await asyncio.to_thread(recover, journal)
        async with Store.open(
            settings.database, reclaim_on_open=False, event_retention_s=None
        ) as store:
            lines += await reconcile(store)
            yield store, journal, lines
    finally:
        journal.close()


def run_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.database.is_file():
        print("no archived originals (no database yet)")
        return 0
    return asyncio.run(_list(settings, args))


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    from castui.cli import json_dump
    from castui_core.originals import archive_bytes, list_archived

    async with _prepared(settings) as (store, _journal, lines):
        items = await list_archived(store, library=args.library)
    for line in lines:
        print(line, file=sys.stderr)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in items:
        totals[item.record.library][0] += 1
        totals[item.record.library][1] += item.record.size
    on_disk = {
        lib.name: await asyncio.to_thread(archive_bytes, lib.path)
        for lib in settings.libraries
        if args.library in (None, lib.name)
    }
    if args.json:
        print(
            json_dump(
                {
                    "originals": [item.to_json() for item in items],
                    "totals": {
                        name: {"count": c, "bytes": b, "on_disk": on_disk.get(name)}
                        for name, (c, b) in sorted(totals.items())
                    },
                }
            )
        )
        return 0
    for item in items:
        r = item.record
        missing = "" if item.present else "  (missing from the archive)"
        print(f"{_human(r.size):>9}  {_age(item.age_s):>4}  {r.path}{missing}")
        print(f"{'':>17}replaced by {r.output or '-'}")
    for name, (count, size) in sorted(totals.items()):
        disk = on_disk.get(name)
        tail = f", {_human(disk)} on disk" if disk is not None else ""
        print(f"{name}: {count} original(s), {_human(size)}{tail}")
    if not items:
        print("no archived originals")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.database.is_file():
        raise CastuiError(f"no database at {settings.database}: castui archived nothing yet")
    return asyncio.run(_restore(settings, [str(Path(p).absolute()) for p in args.paths]))


async def _restore(settings: Settings, paths: list[str]) -> int:
    from castui_core.originals import restore
    from castui_core.queue.forward import forward_for_command

    async with _prepared(settings) as (store, journal, lines):
        summary = await restore(settings, store, journal, paths, actor="cli")
        kept = await forward_for_command(settings, store)  # a shared queue: notices go there
        lines += [kept] if kept else []
    for line in [*lines, *summary.lines]:
        print(line)
    print(f"restored {summary.done}, not restored {summary.skipped}")
    if summary.done:
        print(
            "castui will not convert these again;"
            " `castui originals convert-again PATH` lets it convert one"
        )
    return 0 if summary.skipped == 0 else 1


def run_purge(args: argparse.Namespace) -> int:
    settings = _settings(args)
    older: float | None = args.older_than
    if not settings.database.is_file():
        print("nothing to purge (no database yet)")
        return 0
    return asyncio.run(_purge(settings, older, args.library, bool(args.dry_run)))


async def _purge(settings: Settings, older: float | None, library: str | None, dry: bool) -> int:
    from castui_core.originals import purge

    async with _prepared(settings) as (store, _journal, lines):
        summary = await purge(store, older_than_s=older, library=library, dry_run=dry)
    for line in [*lines, *summary.lines]:
        print(line)
    verb = "would free" if dry else "freed"
    print(
        f"{'would purge' if dry else 'purged'} {summary.done} original(s), {verb}"
        f" {_human(summary.bytes)} ({summary.bytes} bytes)"
        + (f"; kept {summary.skipped}" if summary.skipped else "")
    )
    return 0 if summary.skipped == 0 else 1


def run_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.database.is_file():
        print("nothing to migrate (no database yet: castui has written no outputs)")
        return 0
    return asyncio.run(_migrate(settings, args.library, bool(args.dry_run)))


async def _migrate(settings: Settings, library: str | None, dry: bool) -> int:
    from castui_core.originals import migrate_layout
    from castui_core.queue.forward import forward_for_command

    async with _prepared(settings) as (store, _journal, lines):
        summary = await migrate_layout(settings, store, library=library, dry_run=dry, actor="cli")
        kept = await forward_for_command(settings, store)  # a shared queue: notices go there
        lines += [kept] if kept else []
    for line in [*lines, *summary.lines]:
        print(line)
    verb = "would move" if dry else "moved"
    tail = f"; left {summary.skipped} (see above)" if summary.skipped else ""
    print(f"{verb} {summary.done} file(s) to the library layout{tail}")
    return 0


def run_convert_again(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.database.is_file():
        raise CastuiError(f"no database at {settings.database}: castui restored nothing yet")
    return asyncio.run(_convert_again(settings, [str(Path(p).absolute()) for p in args.paths]))


async def _convert_again(settings: Settings, paths: list[str]) -> int:
    missing = 0
    async with _prepared(settings) as (store, _journal, lines):
        for line in lines:
            print(line)
        for path in paths:
            if await store.clear_restored_marker(path, actor="cli"):
                print(f"{path}: castui converts it again at the next scan or `castui convert`")
            else:
                missing += 1
                print(f"{path}: not marked as restored; nothing to do")
    return 0 if missing == 0 else 1
