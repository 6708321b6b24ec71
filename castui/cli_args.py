"""Command-line arguments several ``castui`` subcommands share.

Why here: each subcommand module (store commands, doctor, jellyfin/arr checks) registers its
own parser; the ``--config`` option must read the same everywhere, so it is written once.
"""

from __future__ import annotations

import argparse


def add_config(parser: argparse.ArgumentParser) -> None:
    """``--config PATH``: which settings file the subcommand reads."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="settings file (default: $CASTUI_CONFIG, ./settings.yaml, ~/.config/castui/)",
    )
