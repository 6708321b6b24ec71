"""Dashboard: what is converting and how fast, what waits and why, guardrails, the log."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Label

from castui.tui.screens.base import LiveScreen
from castui.tui.widgets.active_jobs import ActiveJobs
from castui.tui.widgets.guardrail_panel import GuardrailPanel
from castui.tui.widgets.log_pane import LogPane
from castui.tui.widgets.queue_view import QueueView


class DashboardScreen(LiveScreen):
    """The first screen: active jobs, queue, guardrail panel and log."""

    #: ``-short`` below 30 rows: with Jellyfin shown, the GPU sparklines give way (castui.tcss)
    #: so Jellyfin's line and the disk lines still fit an 80×24 terminal.
    #: Not annotated: Textual declares it ``ClassVar[...] | None``, which mypy will not let a
    #: subclass repeat as a ClassVar.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]  # noqa: RUF012

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="service-banner")
        with Vertical(id="active-box"):
            yield Label("Active: none", id="active-title", classes="title")
            yield ActiveJobs(id="active")
        with Horizontal(id="middle"):
            with Vertical(id="queue-box"):
                yield Label("Queue: empty", id="queue-title", classes="title")
                yield QueueView(clock=self.castui.clock, id="queue")
            with Vertical(id="guard-box"):
                yield Label("Guardrails", classes="title")
                yield GuardrailPanel(id="guards")
        yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.live_changed({"jobs", "progress", "guards", "log", "service", "jellyfin"})

    def live_changed(self, changed: set[str]) -> None:
        app = self.castui
        state = app.state
        if "service" in changed:
            banner = self.query_one("#service-banner", Label)
            banner.update(state.service_text() if state.service_lost else "")
            banner.set_class(state.service_lost, "-lost")
        if changed & {"jobs", "progress", "service"}:
            running = app.running_jobs
            self.query_one(ActiveJobs).show(running, state.live)
            title = f"Active: {len(running)} running" if running else "Active: none running"
            if state.service_lost:  # the store's last word, not live: say so
                title += " (as last recorded; the service is not reachable)"
            self.query_one("#active-title", Label).update(title)
        if changed & {"jobs", "guards"}:
            queued = app.queued_jobs
            self.query_one(QueueView).set_jobs(queued, state.waiting_reason())
            waiting = state.waiting_reason()
            title = f"Queue: {len(queued):,} waiting" if queued else "Queue: empty"
            self.query_one("#queue-title", Label).update(
                f"{title} · paused: {waiting}" if waiting else title
            )
        if "guards" in changed:
            self.query_one(GuardrailPanel).show(state, app.disk)
        elif "jellyfin" in changed:
            self.query_one(GuardrailPanel).show_jellyfin(state)
        if "log" in changed:
            self.query_one(LogPane).show(state)

    def on_queue_view_selected(self, message: QueueView.Selected) -> None:
        self.castui.open_job(message.job_id)

    def on_active_jobs_selected(self, message: ActiveJobs.Selected) -> None:
        self.castui.open_job(message.job_id)
