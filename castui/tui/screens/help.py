"""Help: every key, and what each screen shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from castui.keymap import BINDING_IDS, usable_keymap
from castui.tui.host import DashboardHost

HELP = """\
castui: keeps every file in the libraries playable directly on a Chromecast.

Screens                               Global keys
  d  Dashboard: running, queue, GPU     p  pause / resume the queue
  h  History: finished jobs, totals     s  scan all libraries now
  l  Libraries: watch state, scan       ?  this help
  e  Profile editor                     q  quit (asks if jobs run)
  r  Readiness report per device        ctrl+p  command palette
  ,  Settings: every setting
  enter  job detail (from a list)

Job detail: r retry  c cancel  + raise priority  esc back
History: tab to the filters; enter opens a job
Report: g read again  c calibrate this machine's encoder now
Settings, Profiles: enter edits a field; ctrl+s saves (comments kept,
  backup made; attached, the service writes its own file), esc discards.
  Settings: a add library  del remove  x set to none.
Attached to `castui --no-ui`? Quitting leaves the service running.
"""


def remapped(keymap: Mapping[str, str]) -> str:
    """The keys the settings' ``keymap:`` changed (the text above shows the defaults)."""
    usable = usable_keymap(keymap)
    if not usable:
        return ""
    lines = [f"  {keys}  {BINDING_IDS[binding_id]}" for binding_id, keys in sorted(usable.items())]
    return "\nRemapped in your settings (keymap:), instead of the keys above:\n" + "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close help", id="castui.help.close")
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(
                HELP + remapped(cast(DashboardHost, self.app).settings.keymap),
                id="help-text",
                markup=False,
            )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
