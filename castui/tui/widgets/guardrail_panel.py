"""GPU temperature and encoder load (with sparkline history), disk free, the pause reason, and
Jellyfin's link and outbox (when Jellyfin is configured)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from castui.tui.state import LiveState
from castui_core.guardrails.disk import format_gb


class GuardrailPanel(Vertical):
    """Shows why work waits; everything here comes from guardrail events and disk readings."""

    def compose(self) -> ComposeResult:
        yield Label("", id="guard-state")
        yield Label("GPU: no readings yet", id="gpu-line")
        yield Sparkline([], id="gpu-temp")
        yield Label("", id="enc-line")
        yield Sparkline([], id="gpu-enc")
        yield Label("", id="disk-lines")
        yield Label("", id="jellyfin-line")

    def show(self, state: LiveState, disk: Mapping[str, int | str]) -> None:
        waiting = state.waiting_reason()
        status = self.query_one("#guard-state", Label)
        status.update(f"Paused: {waiting}" if waiting else "Running: new jobs may start")
        status.set_class(bool(waiting), "-waiting")
        if state.gpus:
            index = min(state.gpus)
            gpu = state.gpus[index]
            temp = "—" if gpu.temperature_c is None else f"{gpu.temperature_c}°C"
            self.query_one("#gpu-line", Label).update(f"GPU{index} {gpu.name[:14]}: {temp}")
            enc = "—" if gpu.encoder_percent is None else f"{gpu.encoder_percent}%"
            sessions = "" if gpu.encoder_sessions is None else f", {gpu.encoder_sessions} sess"
            self.query_one("#enc-line", Label).update(f"encoder load {enc}{sessions}")
            self.query_one("#gpu-temp", Sparkline).data = list(state.temp_history.get(index, ()))
            self.query_one("#gpu-enc", Sparkline).data = list(state.encoder_history.get(index, ()))
        lines = []
        for name, free in disk.items():
            lines.append(
                f"{name}: {format_gb(free)} free" if isinstance(free, int) else f"{name}: {free}"
            )
        self.query_one("#disk-lines", Label).update("\n".join(lines) or "disk: —")
        self.show_jellyfin(state)

    def show_jellyfin(self, state: LiveState) -> None:
        """Jellyfin's line; hidden (no space taken) until a report comes, i.e. when Jellyfin is
        not configured. Plain text, never markup: the last error quotes a server's words."""
        text = state.jellyfin_text()
        line = self.query_one("#jellyfin-line", Label)
        line.update(Text(text))
        line.set_class(bool(text), "-shown")
        line.set_class(state.jellyfin_trouble, "-trouble")
        self.set_class(bool(text), "-with-jellyfin")
