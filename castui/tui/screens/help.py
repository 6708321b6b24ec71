"""Help: every key, and what each screen shows."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
castui: keeps every file in the libraries playable directly on a Chromecast.

Screens                               Global keys
  d  Dashboard: running, queue, GPU     p  pause / resume the queue
  h  History: finished jobs, totals     s  scan all libraries now
  l  Libraries: watch state, scan       ?  this help
  e  Profile editor                     q  quit (asks if jobs run)
  enter  job detail (from a list)       ctrl+p  command palette

Job detail: r retry  c cancel  + raise priority  esc back
History: tab to the filters; enter opens a job
Profiles: enter edits a field; enter saves the value to the draft,
  ctrl+s writes settings.yaml (comments kept, backup made), esc cancels.
Attached to `castui --no-ui`? Quitting leaves the service running.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close help", id="castui.help.close")
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(HELP, id="help-text")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
