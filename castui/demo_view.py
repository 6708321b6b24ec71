"""``castui demo [DIR] [--no-ui]``: a sample library in the shapes Chromecasts choke on, and
castui run on it, so a newcomer sees what castui does without pointing it at their own media.

The files come from :mod:`castui_core.demo`; this module only says what it made and hands the
demo's settings file to the normal dashboard or the normal headless ``--once`` run, so the demo
shows the real thing, not a special mode.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from castui_core.demo import DEMO, DEMO_SECONDS, make_demo
from castui_core.tools import find_tool

#: Where the demo goes when no DIR is given (relative to the current folder).
DEFAULT_DIR = Path("castui-demo")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``castui demo`` to the main parser."""
    demo = subparsers.add_parser(
        "demo",
        help="make a small sample library (files Chromecasts cannot play) and run castui on it",
        description=(
            "Make a sample library with ffmpeg's test sources in DIR/library (10-bit HDR HEVC,"
            " MPEG-4 in AVI, 1440p60, interlaced MPEG-2 with AC-3, two audio tracks and"
            " subtitles, an anamorphic DVD rip, a file still downloading), write"
            " DIR/settings.yaml and run castui on it: the dashboard, or with --no-ui headless"
            " until the queue is empty, then a summary. Rerunning it in the same DIR recreates"
            " the demo. Your own settings and library are never touched."
        ),
    )
    demo.add_argument(
        "dir",
        nargs="?",
        type=Path,
        default=DEFAULT_DIR,
        metavar="DIR",
        help=f"folder for the demo (default: ./{DEFAULT_DIR}); created, or an earlier demo's",
    )
    demo.add_argument(
        "--no-ui",
        dest="demo_no_ui",
        action="store_true",
        help="headless: process everything, print the summary and exit (for SSH and CI)",
    )
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from castui.cli import run_headless, run_tui

    ffmpeg = find_tool("ffmpeg", None)
    root: Path = args.dir
    print(f"castui demo: making {len(DEMO)} sample files with {ffmpeg} ...", flush=True)
    site, reused = asyncio.run(make_demo(root, ffmpeg, seconds=DEMO_SECONDS))
    if reused:
        print(f"castui demo: recreated the earlier demo in {site.root}")
    for name, sample in DEMO.items():
        print(f"  {name}  (expect: {sample.action}{': ' + sample.reason if sample.reason else ''})")
    print(f"castui demo: library {site.library}")
    print(f"castui demo: settings {site.settings} (database and logs in {site.state})")
    print(
        f"castui demo: look again with `castui scan --all --config {site.settings}`,"
        f" or open the dashboard with `castui --config {site.settings}`",
        flush=True,
    )
    args.config = str(site.settings)
    if args.no_ui or args.demo_no_ui:
        args.once = True
        return run_headless(args)
    return run_tui(args)
