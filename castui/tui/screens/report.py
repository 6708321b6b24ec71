"""The readiness report (``r``): per built-in Cast profile, what plays directly and the cost.

The same numbers as ``castui report`` (castui_core/report.py), asked of the engine through
``EngineAPI.readiness_report`` so it works in-process and attached to a service alike. Read
when the screen is shown and on ``g`` (the catalog changes only with scans, so no polling).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Label, Static

from castui.tui.screens.base import LiveScreen
from castui_core.errors import CastuiError
from castui_core.report import ProfileReport, ReadinessReport

_PARTS = (
    ("direct", "green"),
    ("remux", "blue"),
    ("transcode", "dark_orange"),
    ("reject", "grey50"),
)


def stacked_bar(p: ProfileReport, width: int) -> Text:
    """The profile's files by action as one line of coloured blocks, ``width`` cells wide."""
    counts = [getattr(p, key).files for key, _ in _PARTS]
    total = sum(counts)
    text = Text()
    if not total:
        return Text("·" * width, style="grey30")
    used = 0
    for i, ((_, colour), n) in enumerate(zip(_PARTS, counts, strict=True)):
        cells = width - used if i == len(_PARTS) - 1 else round(width * n / total)
        cells = max(0, min(cells, width - used)) if n else 0
        text.append("█" * cells, style=colour)
        used += cells
    return text


class ReportScreen(LiveScreen):
    """Bars and tables of the readiness report; ``g`` reads it again."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "refresh_report", "Refresh", id="castui.report.refresh")
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Readiness report", classes="title")
        yield Label("reading the catalog…", id="report-summary")
        with VerticalScroll(id="report-body"):
            yield Static("", id="report-bars")
            yield DataTable(id="report-profiles", cursor_type="row")
            yield DataTable(id="report-reasons", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        profiles = self.query_one("#report-profiles", DataTable)
        for column in ("profile", "direct", "remux", "transcode", "reject", "encode", "GB after"):
            profiles.add_column(column, key=column)
        reasons = self.query_one("#report-reasons", DataTable)
        for column in ("profile", "action", "files", "reason"):
            reasons.add_column(column, key=column)
        self.action_refresh_report()

    def action_refresh_report(self) -> None:
        self.run_worker(self._load(), exclusive=True, name="readiness-report")

    async def _load(self) -> None:
        try:
            report = await self.castui.engine.readiness_report()
        except CastuiError as exc:
            self.query_one("#report-summary", Label).update(f"cannot read the report: {exc}")
            return
        self.show(report)

    def show(self, report: ReadinessReport) -> None:
        total = report.total
        summary = Text(
            f"{total.files:,} files, {total.hours:.1f} h, {total.gb:.2f} GB"
            + (f"; {report.unprobed} not probed yet" if report.unprobed else "")
            + "  "
        )
        for key, colour in _PARTS:  # the legend, in the bars' colours
            summary.append(" █", style=colour).append(f" {key}")
        self.query_one("#report-summary", Label).update(summary)
        width = max(10, self.size.width - 28)
        bars = Text()
        for p in report.profiles:
            bars.append(f"{p.profile:<20}", style="bold")
            bars.append_text(stacked_bar(p, width))
            bars.append(f" {p.direct_share:>4.0%}\n")
        self.query_one("#report-bars", Static).update(bars)
        profiles = self.query_one("#report-profiles", DataTable)
        profiles.clear()
        for p in report.profiles:
            profiles.add_row(
                p.profile,
                str(p.direct.files),
                str(p.remux.files),
                str(p.transcode.files),
                str(p.reject.files),
                f"{p.encode_seconds / 3600:.1f} h",
                f"{p.bytes_after / 1e9:.2f}",
                key=p.profile,
            )
        reasons = self.query_one("#report-reasons", DataTable)
        reasons.clear()
        for p in report.profiles:
            for r in p.reasons:
                reasons.add_row(p.profile, r.action, str(r.tally.files), r.reason)
