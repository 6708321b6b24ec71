"""``castui report [--library NAME] [--json] [--html FILE]``: the readiness report.

The numbers are :mod:`castui_core.report`'s, read from the catalog and history (no file is
re-probed), so it is quick and safe beside a running service (SQLite WAL: readers do not
block the writer). Plain text tables by default, so it reads the same over SSH and in logs;
``--json`` for scripts; ``--html`` writes one self-contained page (inline CSS and SVG bars,
nothing fetched) for people who would rather look than read.

Exit codes: 0 the report was printed/written, 1 there is no catalog yet or ``--library``
names no catalogued files (the message says to run ``castui scan``), 2 bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from castui.cli_args import add_config
from castui_core.errors import CastuiError
from castui_core.settings import load_settings

if TYPE_CHECKING:  # imported lazily at run time: every castui command registers `report`
    from castui_core.report import ProfileReport, ReadinessReport
    from castui_core.settings import Settings

_ACTIONS = (("direct", "plays directly"), ("remux", "remux"), ("transcode", "transcode"),
            ("reject", "reject"))  # fmt: skip
_COLOURS = {"direct": "#2e7d32", "remux": "#1565c0", "transcode": "#ef6c00", "reject": "#9e9e9e"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``castui report`` to the main parser."""
    report = subparsers.add_parser(
        "report",
        help="how much of the library plays directly on each Cast generation, and the cost",
        description=(
            "For each built-in Cast profile: files, hours and GB that play directly, what the"
            " rest needs (remux, transcode, reject) by reason, the estimated encode time on"
            " this machine (from castui's history, else a default speed model) and the space"
            " after. Reads the catalog that `castui scan` and the service write; never probes."
        ),
    )
    add_config(report)
    report.add_argument("--library", metavar="NAME", help="only this library's files")
    report.add_argument("--json", action="store_true", help="print one JSON object instead")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    report.add_argument(
        "--no-calibrate",
        action="store_true",
        help="with no history and no cached calibration, use the default speed model instead"
        " of a 2 s calibration encode",
    )
    report.set_defaults(handler=run_report_command)


async def _read(settings: Settings, library: str | None, calibrate: bool) -> ReadinessReport:
    """The report, calibrating (once, cached) the classes history has no speed for with the
    encoder a job on this node would use (``operational.encoder`` and the NVENC probe)."""
    from castui_core.calibrate import cache_path, cached_calibration, calibrate_report
    from castui_core.report import build_report
    from castui_core.store import Store
    from castui_core.store.catalog import scan_label

    database = settings.database
    async with Store.open(database, reclaim_on_open=False) as store:
        entries = await store.list_files()
        history = await store.history(states=["done"], limit=10_000)
    if library is not None:
        wanted = {library, scan_label(library)}
        entries = [e for e in entries if e.library in wanted]
        history = [j for j in history if j.library in wanted]
    if not calibrate:  # the cached calibration is still this machine's measurement
        cached = await cached_calibration(cache_path(database))
        return build_report(entries, history, library=library, calibration=cached)
    report = build_report(entries, history, library=library)
    if not report.uncalibrated():
        return report
    # Measured once per encoder and class (cached beside the db); a failed encode (NVENC
    # that will not open) comes back as the calibration's failure, shown in the report.
    done = await calibrate_report(settings, report, library=library, force=False)
    return build_report(entries, history, library=library, calibration=done)


def run_report_command(args: argparse.Namespace) -> int:
    from castui_core.report import as_json

    settings = load_settings(args.config)
    database = settings.database
    if not database.exists():
        raise CastuiError(f"no catalog yet at {database}: run `castui scan` first")
    report = asyncio.run(_read(settings, args.library, not args.no_calibrate))
    if report.total.files == 0 and report.unprobed == 0:
        where = f"library {args.library!r}" if args.library else "the catalog"
        raise CastuiError(f"{where} has no files yet: run `castui scan` first")
    if args.html:
        path = Path(args.html).expanduser()
        path.write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(as_json(report), indent=2, ensure_ascii=False))
    else:
        print(render_text(report))
        if args.html:
            print(f"\nwrote {args.html}")
    return 0


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def render_text(report: ReadinessReport) -> str:
    """Plain tables: one block per profile, then the speeds the estimate used."""
    lines = [
        f"castui readiness report ({report.library or 'all libraries'}):"
        f" {report.total.files} files, {_hours(report.total.seconds)}, {_gb(report.total.bytes)}"
        + (f"; {report.unprobed} not probed yet" if report.unprobed else "")
    ]
    for p in report.profiles:
        lines += ["", f"{p.profile}  ({p.description})"]
        for key, label in _ACTIONS:
            t = getattr(p, key)
            share = t.files / report.total.files if report.total.files else 0.0
            lines.append(
                f"  {label:<15}{t.files:>7} files {share:>6.0%} {_hours(t.seconds):>10}"
                f" {_gb(t.bytes):>11}"
            )
        for r in p.reasons:
            lines.append(f"    {r.action:<10}{r.tally.files:>6}  {r.reason}")
        lines.append(
            f"  cost: about {_hours(p.encode_seconds)} of encoding;"
            f" {_gb(report.total.bytes)} -> {_gb(p.bytes_after)} after"
        )
    lines += ["", "encode speed used (x realtime, for encoder):"]
    lines += [
        f"  {s.resolution:<6}{s.x_realtime:>7.2f}x  {s.encoder or '-':<11} {s.source}"
        for s in report.speeds
    ]
    return "\n".join(lines)


def _bar(p: ProfileReport, total: int) -> str:
    """One stacked inline-SVG bar: the profile's files by action."""
    x = 0.0
    parts = []
    for key, label in _ACTIONS:
        files = getattr(p, key).files
        w = 600 * files / total if total else 0.0
        if w:
            parts.append(
                f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="22" fill="{_COLOURS[key]}">'
                f"<title>{label}: {files} files</title></rect>"
            )
        x += w
    svg = '<svg width="600" height="22" role="img" aria-label="files by action">'
    return svg + "".join(parts) + "</svg>"


def render_html(report: ReadinessReport) -> str:
    """One page, no external resources: inline CSS, inline SVG, no script."""
    e = html.escape
    total = report.total.files
    body = [
        f"<h1>castui readiness report: {e(report.library or 'all libraries')}</h1>",
        f"<p>{total} files, {_hours(report.total.seconds)}, {_gb(report.total.bytes)}"
        + (f"; {report.unprobed} not probed yet" if report.unprobed else "")
        + "</p>",
        '<p class="legend">'
        + " ".join(
            f'<span style="color:{_COLOURS[k]}">&#9632; {e(lbl)}</span>' for k, lbl in _ACTIONS
        )
        + "</p>",
    ]
    for p in report.profiles:
        rows = "".join(
            f"<tr><td>{e(label)}</td><td>{getattr(p, key).files}</td>"
            f"<td>{_hours(getattr(p, key).seconds)}</td><td>{_gb(getattr(p, key).bytes)}</td></tr>"
            for key, label in _ACTIONS
        )
        reasons = "".join(
            f"<tr><td>{e(r.action)}</td><td>{r.tally.files}</td><td>{e(r.reason)}</td></tr>"
            for r in p.reasons
        )
        body += [
            f"<h2>{e(p.profile)}</h2><p>{e(p.description)}</p>",
            _bar(p, total),
            f"<table><tr><th>action</th><th>files</th><th>hours</th><th>size</th></tr>{rows}</table>",
            f"<table><tr><th>action</th><th>files</th><th>reason</th></tr>{reasons}</table>"
            if reasons
            else "",
            f"<p>Cost: about {_hours(p.encode_seconds)} of encoding;"
            f" {_gb(report.total.bytes)} &rarr; {_gb(p.bytes_after)} after.</p>",
        ]
    speeds = "".join(
        f"<tr><td>{e(s.resolution)}</td><td>{s.x_realtime:.2f}&times;</td>"
        f"<td>{e(s.encoder or '-')}</td><td>{e(s.source)}</td></tr>"
        for s in report.speeds
    )
    body.append(
        "<h2>Encode speed used</h2><table><tr><th>class</th><th>speed</th><th>encoder</th>"
        f"<th>from</th></tr>"
        f"{speeds}</table>"
    )
    css = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .8em;"
        "border-bottom:1px solid #ddd;text-align:left}.legend span{margin-right:1em}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>castui readiness report</title><style>{css}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
