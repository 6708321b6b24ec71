"""History: finished jobs, filterable by state and library, with the totals."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, Select

from castui.tui.format import ago, duration, format_bytes, name_of
from castui.tui.screens.base import LiveScreen
from castui_core.errors import CastuiError
from castui_core.nodes import node_of_owner
from castui_core.paths import display_path
from castui_core.store import FINISHED_STATES, HistoryTotals, Job
from castui_core.store.originals import OriginalRecord

PAGE = 500
ALL = "all"


def totals_text(totals: HistoryTotals) -> str:
    failures = ", ".join(f"{reason} ×{n}" for reason, n in totals.failures_by_reason[:3])
    return (
        f"converted {totals.files_done} · saved {format_bytes(max(0, totals.bytes_saved))}"
        f" · failed {totals.failed} · dead {totals.dead} · cancelled {totals.cancelled}"
        + (f"\nfailures by reason: {failures}" if failures else "")
    )


def original_cell(record: OriginalRecord | None) -> str:
    """Where a job's original is, short: the archive path (the job detail adds its size)."""
    if record is None:
        return ""
    if record.state == "archived":
        return f"archived: {display_path(record.archive)}"
    return record.state  # restored / purged


def state_on_node(job: Job) -> str:
    """``done on gpu-1``: which node ran the job (the node part of its lease owner); the bare
    state for jobs no node has run, or run before nodes had names."""
    node = node_of_owner(job.lease_owner)
    return f"{job.state.value} on {node}" if node else job.state.value


class HistoryScreen(LiveScreen):
    """The newest finished jobs (500 at a time) and what they achieved."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="history-filters"):
            yield Label("state", classes="filter-label")
            yield Select(
                [(s.value, s.value) for s in FINISHED_STATES],
                prompt="all states",
                id="state-filter",
                compact=True,
            )
            yield Label("library", classes="filter-label")
            yield Select(
                [(lib.name, lib.name) for lib in self.castui.settings.libraries],
                prompt="all libraries",
                id="library-filter",
                compact=True,
            )
        yield DataTable(id="history", cursor_type="row")
        yield Label("", id="totals")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#history", DataTable)
        # Most telling first: at 80 columns the rest scrolls sideways.
        for column in (
            "id",
            "state",
            "file",
            "reason",
            "before",
            "after",
            "time",
            "finished",
            "library",
            "original",
        ):
            table.add_column(column, key=column)
        self.reload()

    def live_changed(self, changed: set[str]) -> None:
        if "jobs" in changed:
            self.reload()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self.reload()

    def _filters(self) -> tuple[str | None, str | None]:
        state = self.query_one("#state-filter", Select).value
        library = self.query_one("#library-filter", Select).value
        return (
            state if isinstance(state, str) else None,
            library if isinstance(library, str) else None,
        )

    @work(exclusive=True, group="history")
    async def reload(self) -> None:
        state, library = self._filters()
        engine = self.castui.engine
        try:
            # Shielded: a store read cancelled half-way would leave its transaction open.
            jobs = await asyncio.shield(
                engine.history(states=[state] if state else None, library=library, limit=PAGE)
            )
            totals = await asyncio.shield(engine.totals(library=library))
            originals = await asyncio.shield(engine.originals_for([j.id for j in jobs]))
        except CastuiError as exc:
            self.notify(f"history: {exc}", severity="error")
            return
        self._show(jobs, totals, originals)

    def _show(
        self, jobs: list[Job], totals: HistoryTotals, originals: dict[int, OriginalRecord]
    ) -> None:
        now = self.castui.clock()
        table = self.query_one("#history", DataTable)
        table.clear()
        for job in jobs:
            result = job.result
            table.add_row(
                f"#{job.id}",
                state_on_node(job),
                Text(name_of(job.path)),  # Text: a "[b]" in a name is not markup
                job.reason or "",
                format_bytes(result.source_size) if result.source_size is not None else "—",
                format_bytes(result.output_size) if result.output_size is not None else "—",
                duration(result.duration_s),
                ago(job.finished_at, now),
                job.library,
                Text(original_cell(originals.get(job.id))),
                key=str(job.id),
            )
        self.query_one("#totals", Label).update(totals_text(totals))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.castui.open_job(int(event.row_key.value))
