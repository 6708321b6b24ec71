"""``castui jellyfin check``: is the configured Jellyfin reachable, the key valid, every
library mapped? Exit 0 healthy, 1 Jellyfin unreachable or failing, 2 a settings problem.

Prints what it checked and, when the database exists, how many notifications are waiting.
It never prints the API key (the client sends it only in the Authorization header).
"""

from __future__ import annotations

import argparse
import asyncio

from castui.cli_args import add_config
from castui_core.errors import ConfigError
from castui_core.settings import Settings, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``castui jellyfin ...`` to the main parser."""
    jellyfin = subparsers.add_parser("jellyfin", help="the optional Jellyfin integration")
    actions = jellyfin.add_subparsers(dest="jellyfin_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="check Jellyfin: reachable, key valid, every library mapped (exit 0/1/2)",
    )
    add_config(check)
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if settings.jellyfin is None:
        raise ConfigError(
            "jellyfin is not configured: add a jellyfin: block with url and api_key_file"
            " (see settings.sample.yaml)"
        )
    return asyncio.run(_check(settings))


async def _check(settings: Settings) -> int:
    # Imported here: every other castui command starts without loading the HTTP client.
    from castui.cli_store import looking_queue
    from castui_core.integrations.jellyfin.client import JellyfinClient
    from castui_core.integrations.jellyfin.health import check_health

    jf = settings.jellyfin
    assert jf is not None
    client = JellyfinClient(
        jf.url, jf.api_key_value(), timeout_s=jf.timeout_s, verify_tls=jf.verify_tls
    )
    async with client:
        report = await check_health(client, settings)
    for line in report.lines():
        print(line)
    if settings.database.is_file():  # looking never creates a database
        async with looking_queue(settings) as queue:  # the outbox lives with the jobs
            counts = await queue.outbox_counts()
        line = f"  info {counts['pending']} notification(s) waiting to be sent"
        if counts["stopped"]:
            line += f", {counts['stopped']} stopped by a refusal (fix it and reload castui)"
        print(line)
    print("ok" if report.ok else f"{len(report.problems)} problem(s)")
    return report.exit_code
