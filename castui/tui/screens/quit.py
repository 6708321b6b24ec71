"""Quit while jobs run: leave them queued (stop now) or wait for them to finish."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitScreen(ModalScreen[str | None]):
    """Returns ``"requeue"``, ``"wait"`` or ``None`` (stay)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "choose('requeue')", "Stop now, requeue", id="castui.quit.requeue"),
        Binding("w", "choose('wait')", "Wait for jobs", id="castui.quit.wait"),
        Binding("escape,n", "choose(None)", "Stay", id="castui.quit.stay"),
    ]

    def __init__(self, running: int) -> None:
        super().__init__()
        self._job_count = running

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog"):
            yield Label(f"{self._job_count} job(s) are converting.", classes="title")
            yield Label("r: stop now; they go back to the queue and restart next time")
            yield Label("w: wait until they finish (no new job starts), then quit")
            yield Label("esc: stay")
            yield Button("Stop now, requeue (r)", id="requeue", variant="warning")
            yield Button("Wait for them (w)", id="wait", variant="primary")
            yield Button("Stay (esc)", id="stay")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
