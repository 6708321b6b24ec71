"""Follows engine events as log lines (the same wording as the headless service log)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from castui.tui.state import LiveState

_STYLES = {"warning": "yellow", "error": "bold red"}


class LogPane(RichLog):
    """Appends the state's new log lines; keeps the last 500."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=500, wrap=False, markup=False, highlight=False)
        self._shown = 0

    def show(self, state: LiveState) -> None:
        new = min(state.log_serial - self._shown, len(state.log))
        if new <= 0:
            return
        for at, level, text in list(state.log)[-new:]:
            stamp = time.strftime("%H:%M:%S", time.localtime(at))
            self.write(Text(f"{stamp} {text}", style=_STYLES.get(level, "")))
        self._shown = state.log_serial
