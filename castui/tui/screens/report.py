"""The readiness report (``r``): per built-in Cast profile, what plays directly and the cost.

The same numbers as ``castui report`` (castui_core/report.py), asked of the engine through
``EngineAPI.readiness_report`` so it works in-process and attached to a service alike. Read
when the screen is shown and on ``g`` (the catalog changes only with scans, so no polling).

With no history the estimate would be a guess (the default speed model): the report uses the
cached calibration when there is one, and ``c`` ("calibrate now") asks the engine to measure
the library's resolution classes with ``EngineAPI.calibrate`` (attached, the *service's*
encoder measures, since it is the one that will do the work). The speeds table names where
each speed came from (history / calibration / default, with a failed calibration's reason)
and the encoder it is for.
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
from castui_core.report import Calibration, ProfileReport, ReadinessReport

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
        Binding("g", "refresh_report", "Refresh", id="castui.report.refresh"),
        Binding("c", "calibrate", "Calibrate now", id="castui.report.calibrate"),
    ]

    calibrating: bool = False
    #: The calibration line's text once a calibration ran or failed (else a hint is shown).
    calibration_note: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Readiness report", classes="title")
        yield Label("reading the catalog…", id="report-summary")
        with VerticalScroll(id="report-body"):
            yield Static("", id="report-bars")
            yield DataTable(id="report-profiles", cursor_type="row")
            yield DataTable(id="report-reasons", cursor_type="row")
            yield Label("", id="report-calibration")
            yield DataTable(id="report-speeds", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        profiles = self.query_one("#report-profiles", DataTable)
        for column in ("profile", "direct", "remux", "transcode", "reject", "encode", "GB after"):
            profiles.add_column(column, key=column)
        reasons = self.query_one("#report-reasons", DataTable)
        for column in ("profile", "action", "files", "reason"):
            reasons.add_column(column, key=column)
        speeds = self.query_one("#report-speeds", DataTable)
        for column in ("class", "speed", "encoder", "from"):
            speeds.add_column(column, key=column)
        self.action_refresh_report()

    def action_refresh_report(self) -> None:
        self.run_worker(self._load(), exclusive=True, name="readiness-report")

    def action_calibrate(self) -> None:
        """Measure the library's classes that have no history, with the engine's encoder."""
        if self.calibrating:
            self.notify("a calibration is already running")
            return
        self.calibrating = True
        self.query_one("#report-calibration", Label).update(
            "calibrating: a 2 s encode per resolution class, with the engine's encoder…"
        )
        self.run_worker(self._calibrate(), group="calibrate", name="calibrate")

    async def _calibrate(self) -> None:
        status = self.query_one("#report-calibration", Label)
        try:
            running = len(await self.castui.engine.running_ids())
            if running:  # the clip shares the machine with them: the speed reads low
                status.update(
                    f"calibrating while {running} job(s) encode: the measured speed shares the"
                    " machine with them and reads low…"
                )
            done = await self.castui.engine.calibrate()
        except CastuiError as exc:
            self.calibration_note = f"calibration did not run: {exc}"
            status.update(self.calibration_note)
            return
        finally:
            self.calibrating = False
        self.calibration_note = describe_calibration(done)
        status.update(self.calibration_note)
        await self._load()

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
        if not self.calibrating and self.calibration_note is None:
            guessed = [s.resolution for s in report.speeds if s.kind == "default"]
            hint = [c for c in report.uncalibrated() if c in guessed]
            self.query_one("#report-calibration", Label).update(
                f"encode time for {', '.join(hint)} is the default model's guess: c measures it"
                " with the engine's encoder"
                if hint
                else "encode speed used:"
            )
        speeds = self.query_one("#report-speeds", DataTable)
        speeds.clear()
        for sp in report.speeds:
            speeds.add_row(
                sp.resolution,
                f"{sp.x_realtime:.2f}x",
                sp.encoder or "-",
                sp.source,
                key=sp.resolution,
            )


def describe_calibration(done: Calibration) -> str:
    """One line on what a calibration measured (or why it could not)."""
    measured = ", ".join(f"{cls} {x:.2f}x" for cls, x in done.speeds.items())
    if done.failure:
        head = f"calibrated with {done.encoder}: {measured}; then " if measured else ""
        return (
            f"{head}calibration with {done.encoder} failed: {done.failure}; the estimate uses"
            " the default speed for the rest"
        )
    if not measured:
        return "nothing to calibrate: every resolution class in the library has history"
    return f"calibrated with {done.encoder}: {measured} (x realtime)"
