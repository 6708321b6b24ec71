"""Ask before putting an archived original back: the restore removes castui's output."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class RestoreScreen(ModalScreen[bool]):
    """Returns True to restore, False to leave things as they are.

    Why a confirmation: restoring deletes the converted file the library plays now, and a
    stray key in the job detail must not do that.
    """

    DEFAULT_CSS = """
    RestoreScreen {
        align: center middle;
    }
    #restore-dialog {
        width: 72;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 0 1;
    }
    #restore-dialog Button {
        width: 1fr;
        margin-top: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "choose(True)", "Restore", id="castui.restore.confirm"),
        Binding("escape,n", "choose(False)", "Keep as is", id="castui.restore.stay"),
    ]

    def __init__(self, original: str, archive: str, output: str | None) -> None:
        super().__init__()
        self._original = original
        self._archive = archive
        self._output = output

    def compose(self) -> ComposeResult:
        with Vertical(id="restore-dialog"):
            yield Label("Put the original back?", classes="title")
            yield Label(f"{self._archive} → {self._original}", markup=False)
            if self._output and self._output != self._original:
                yield Label(f"castui's output {self._output} is removed", markup=False)
            yield Label("It is not converted again unless you retry it (castui retry).")
            yield Button("Restore (y)", id="restore", variant="warning")
            yield Button("Keep as is (esc)", id="stay")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "restore")

    def action_choose(self, choice: bool) -> None:
        self.dismiss(choice)
