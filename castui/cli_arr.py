"""``castui arr check``: is each Sonarr/Radarr entry reachable, its key valid, each library
under one of its root folders? Exit 0 healthy, 1 a warning (a library it cannot see), 2
unreachable, key refused or not configured (the worst entry wins).

Prints what it checked and, when the database exists, how many rescans are waiting per entry.
It never prints the API key (the client sends it only in the ``X-Api-Key`` header).
"""

from __future__ import annotations

import argparse
import asyncio

from castui.cli_args import add_config
from castui_core.errors import ConfigError
from castui_core.settings import Settings, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``castui arr ...`` to the main parser."""
    arr = subparsers.add_parser("arr", help="the optional Sonarr/Radarr integration")
    actions = arr.add_subparsers(dest="arr_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="check each Sonarr/Radarr entry: reachable, key valid, libraries seen"
    )
    add_config(check)
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not settings.arr:
        raise ConfigError(
            "no Sonarr/Radarr is configured: add an arr: entry with kind, url and api_key_file"
            " (see settings.sample.yaml)"
        )
    return asyncio.run(_check(settings))


async def _check(settings: Settings) -> int:
    # Imported here: every other castui command starts without loading the HTTP client.
    from castui.cli_store import looking_queue
    from castui_core.integrations.arr import check
    from castui_core.store.outbox import arr_target

    worst = 0
    for entry in settings.arr:
        health = await check(entry, settings)
        worst = max(worst, health.exit_code)
        print(f"{entry.name} ({entry.kind}): {'ok' if health.ok else 'problem'}")
        for line in health.lines:
            print(f"  {line}")
        if settings.database.is_file():  # looking never creates a database
            async with looking_queue(settings) as queue:  # the outbox lives with the jobs
                counts = await queue.outbox_counts(arr_target(entry.name))
            line = f"  {counts['pending']} rescan(s) waiting"
            if counts["stopped"]:
                line += f", {counts['stopped']} stopped by a refusal (fix it and restart castui)"
            print(line)
    return worst
