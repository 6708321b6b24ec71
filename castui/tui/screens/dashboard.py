"""Dashboard: what is converting and how fast, what waits and why, guardrails, the log."""

from __future__ import annotations

import time

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Label

from castui.tui.screens.base import LiveScreen
from castui.tui.widgets.active_jobs import ActiveJobs
from castui.tui.widgets.guardrail_panel import GuardrailPanel
from castui.tui.widgets.log_pane import LogPane
from castui.tui.widgets.nodes_panel import NodesPanel
from castui.tui.widgets.queue_view import QueueView
from castui_core.errors import CastuiError

#: How often the dashboard re-reads the nodes table (nodes heartbeat every 5 s).
NODES_REFRESH_S = 2.0


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
                yield NodesPanel(id="nodes")  # hidden until a node has sent a heartbeat
            with Vertical(id="guard-box"):
                yield Label("Guardrails", classes="title")
                yield GuardrailPanel(id="guards")
        yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.live_changed({"jobs", "progress", "guards", "log", "service", "jellyfin"})
        self.query_one(NodesPanel).display = False
        self.set_interval(NODES_REFRESH_S, self._refresh_nodes)
        self._refresh_nodes()

    @work(group="nodes", exclusive=True, exit_on_error=False)
    async def _refresh_nodes(self) -> None:
        """Nodes heartbeat into the queue, not onto this bus: read them every few seconds."""
        try:
            found = await self.castui.engine.nodes()
        except CastuiError:
            return  # the queue's trouble is already in the log and the banner
        self._node_statuses = {n.name: n for n in found}
        self.query_one(NodesPanel).show(found, time.time())

    def on_nodes_panel_selected(self, message: NodesPanel.Selected) -> None:
        node = getattr(self, "_node_statuses", {}).get(message.name)
        if node is not None:
            jobs = ", ".join(f"#{j}" for j in node.current_jobs) or "no job"
            self.notify(
                f"{node.name} ({node.role}, pid {node.pid}, castui {node.version}): {jobs}"
                + (f"; waiting: {node.guard}" if node.guard else ""),
                timeout=8,
            )

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
