"""Libraries: path, profile, watch mode and state (with the reason when paused), last scan."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Label

from castui.tui.format import ago
from castui.tui.screens.base import LiveScreen


class LibrariesScreen(LiveScreen):
    """One row per configured library; enter or n scans the selected one now."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n,enter", "scan_selected", "Scan now", id="castui.libraries.scan")
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Libraries", classes="title")
        yield DataTable(id="libraries", cursor_type="row")
        yield Label("", id="library-reason")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#libraries", DataTable)
        for column in ("name", "path", "profile", "watch", "state", "last scan"):
            table.add_column(column, key=column)
        self.live_changed({"libraries"})

    def live_changed(self, changed: set[str]) -> None:
        if "libraries" not in changed:
            return
        app = self.castui
        now = app.clock()
        table = self.query_one("#libraries", DataTable)
        cursor = table.cursor_row
        table.clear()
        reasons = []
        for lib in app.settings.libraries:
            view = app.state.libraries.get(lib.name)
            state = view.state if view else "unknown"
            if view and view.scanning:
                state += f", scanning ({view.found:,} found)"
            if view and view.reason:
                reasons.append(f"{lib.name}: {view.reason}")
            last = "—"
            if view and view.last_scan_at is not None:
                last = f"{ago(view.last_scan_at, now)} ({view.last_scan_files:,} files)"
            table.add_row(
                lib.name, str(lib.path), lib.profile, lib.watch.value, state, last, key=lib.name
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        self.query_one("#library-reason", Label).update("\n".join(reasons))

    def action_scan_selected(self) -> None:
        table = self.query_one("#libraries", DataTable)
        if not table.row_count:
            return
        name = app_lib = self.castui.settings.libraries[table.cursor_row].name
        engine = self.castui.engine
        self.castui.run_command(f"scan of {app_lib} started", lambda: engine.scan(name))
