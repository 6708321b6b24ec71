"""Command-line arguments several ``castui`` subcommands share.

Why here: each subcommand module (store commands, doctor, jellyfin/arr checks) registers its
own parser; the ``--config`` option must read the same everywhere, so it is written once.
"""

from __future__ import annotations

import argparse
import re

from castui_core.settings import NodeSettings, Settings


def add_config(parser: argparse.ArgumentParser) -> None:
    """``--config PATH``: which settings file the subcommand reads."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="settings file (default: $CASTUI_CONFIG, ./settings.yaml, ~/.config/castui/)",
    )


def add_node(parser: argparse.ArgumentParser) -> None:
    """``--node NAME`` and ``--role all|worker``: override the settings' ``node:`` section, so
    one settings file can serve the library host and a GPU worker (castui_core/nodes.py)."""
    parser.add_argument(
        "--node",
        type=_node_name,
        metavar="NAME",
        help="this node's name in the nodes table and job history (default: node.name, the"
        " host name)",
    )
    parser.add_argument(
        "--role",
        choices=("all", "worker"),
        help="all: scan, watch, notify and convert (default); worker: only claim and convert",
    )


def _node_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use up to 64 letters, digits, '.', '_' or '-'")
    return text


def apply_node(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with ``--node``/``--role`` applied (validated like the settings file)."""
    update: dict[str, object] = {}
    if getattr(args, "node", None):
        update["name"] = args.node
    if getattr(args, "role", None):
        update["role"] = args.role
    if not update:
        return settings
    node = NodeSettings.model_validate({**settings.node.model_dump(), **update})
    return settings.model_copy(update={"node": node})
