"""Job detail: why castui decided, the exact ffmpeg command, stderr, attempts; actions."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from castui.tui.format import ago, duration, format_bytes
from castui.tui.screens.base import LiveScreen
from castui.tui.screens.restore import RestoreScreen
from castui_core.errors import CastuiError
from castui_core.nodes import node_of_owner
from castui_core.paths import display_path
from castui_core.store import Event, Job, JobState
from castui_core.store.originals import OriginalRecord


def _attempt_line(event: Event) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
    move = f"{event.from_state or '—'} → {event.to_state}" if event.to_state else event.kind
    who = f" by {event.actor}" if event.actor else ""
    why = f": {event.reason}" if event.reason else ""
    return f"{stamp} {move}{who}{why}"


def original_line(record: OriginalRecord) -> str:
    """Where a job's original is: the archive and its size, or what became of it."""
    if record.state == "archived":
        return f"original: {display_path(record.archive)} ({format_bytes(record.size)})"
    if record.state == "restored":
        return f"original: restored to {display_path(record.path)}"
    return f"original: purged from the archive ({format_bytes(record.size)} freed)"


class JobDetailScreen(LiveScreen):
    """One job, everything known about it; retry, cancel or raise its priority."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="castui.job.back"),
        Binding("r", "retry", "Retry", id="castui.job.retry"),
        Binding("c", "cancel_job", "Cancel job", id="castui.job.cancel"),
        Binding(
            "plus,equals_sign",
            "raise_priority",
            "Raise priority",
            key_display="+",
            id="castui.job.raise_priority",
        ),
        Binding("o", "restore_original", "Restore original", id="castui.job.restore_original"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: Job | None = None
        self._events: list[Event] = []
        self._jellyfin = ""  # Jellyfin's verdict on the output, once it answered
        self.original: OriginalRecord | None = None  # where the original is (replace layout)
        self._restored = ""  # what the last restore from here said (or why it failed)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail"):
            yield Static("loading…", id="detail-head")
            yield Static("", id="detail-reasons")
            yield Static("", id="detail-command")
            yield Static("", id="detail-stderr")
            yield Static("", id="detail-attempts")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    def live_changed(self, changed: set[str]) -> None:
        if "jobs" in changed:
            self.reload()
        elif "progress" in changed and self.job is not None:
            self._render_job()

    @work(exclusive=True, group="detail")
    async def reload(self) -> None:
        engine = self.castui.engine
        try:
            # Shielded: a store read cancelled half-way would leave its transaction open.
            self.job = await asyncio.shield(engine.get_job(self.job_id))
            self._events = await asyncio.shield(engine.job_events(self.job_id, limit=20))
            confirmed = await asyncio.shield(engine.jellyfin_confirmations([self.job_id]))
            found = confirmed.get(self.job_id)
            self._jellyfin = found.message if found is not None else ""
            watched = await asyncio.shield(engine.watch_history([self.job_id]))
            kept = watched.get(self.job_id)
            if kept is not None:  # "watch history: restored for 2 users", "lost: ..."
                self._jellyfin = "\n".join(filter(None, (self._jellyfin, kept.message)))
            originals = await asyncio.shield(engine.originals_for([self.job_id]))
            self.original = originals.get(self.job_id)
        except CastuiError as exc:
            self.query_one("#detail-head", Static).update(f"job #{self.job_id}: {exc}")
            return
        self._render_job()

    def _render_job(self) -> None:
        job = self.job
        assert job is not None
        now = self.castui.clock()
        live = self.castui.state.live.get(job.path)
        result = job.result
        head = [
            f"Job #{job.id}  {job.state.value.upper()}  {job.action.value}  library {job.library}",
            display_path(job.path),
            f"attempts {job.attempts}/{job.max_attempts} · priority {job.priority}"
            + (f" · node {node}" if (node := node_of_owner(job.lease_owner)) else "")
            + f" · queued {ago(job.created_at, now)}"
            + (f" · finished {ago(job.finished_at, now)}" if job.finished_at else ""),
        ]
        if job.reason:
            head.append(f"reason: {job.reason}")
        if self._jellyfin:
            head.append(self._jellyfin)
        if self.original is not None:
            head.append(original_line(self.original))
        if self._restored:
            head.append(self._restored)
        if result.source_size is not None:
            after = format_bytes(result.output_size) if result.output_size is not None else "—"
            head.append(
                f"size {format_bytes(result.source_size)} → {after}"
                f" · took {duration(result.duration_s)} · encoder {result.encoder or '—'}"
            )
        if live is not None and live.percent is not None:
            head.append(
                f"progress {live.percent:.1f}% · {live.fps or 0:.0f} fps"
                f" · ETA {duration(live.eta_s)}"
            )
        # Text, not markup: names, reasons and ffmpeg's "[libx264 @ 0x…]" lines are shown as is.
        self.query_one("#detail-head", Static).update(Text("\n".join(head)))
        reasons = "\n".join(f"  • {r}" for r in job.reasons) or "  (none recorded)"
        why = Text(f"Why castui converts it:\n{reasons}")
        self.query_one("#detail-reasons", Static).update(why)
        command = " ".join(live.command) if live and live.command else result.command_line
        self.query_one("#detail-command", Static).update(
            Text(f"ffmpeg command:\n  {command or '(none recorded)'}")
        )
        if live is not None:
            label = "Live ffmpeg output and notes"
            body = "\n".join([*live.notes, *([live.stderr_tail] if live.stderr_tail else [])])
        else:
            label, body = "Last stderr", result.stderr_tail or ""
        self.query_one("#detail-stderr", Static).update(
            Text(f"{label}:\n{body.rstrip() or '  (none)'}")
        )
        attempts = "\n".join(_attempt_line(e) for e in reversed(self._events))
        self.query_one("#detail-attempts", Static).update(
            Text(f"History of this job:\n{attempts or '  (none)'}")
        )

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_retry(self) -> None:
        if self.job is not None and self.job.state in (
            JobState.FAILED,
            JobState.DEAD,
            JobState.CANCELLED,
        ):
            engine = self.castui.engine
            job_id = self.job_id
            self.castui.run_command(f"job #{job_id} queued again", lambda: engine.retry_job(job_id))
        else:
            self.notify("only failed, dead or cancelled jobs can be retried", severity="warning")

    def action_cancel_job(self) -> None:
        engine = self.castui.engine
        job_id = self.job_id
        self.castui.run_command(f"job #{job_id} cancelled", lambda: engine.cancel_job(job_id))

    def action_raise_priority(self) -> None:
        if self.job is None:
            return
        engine = self.castui.engine
        job_id, priority = self.job_id, self.job.priority + 10
        self.castui.run_command(
            f"job #{job_id} priority {priority}", lambda: engine.set_priority(job_id, priority)
        )

    def action_restore_original(self) -> None:
        original = self.original
        if self.job is None or self.job.state is not JobState.DONE:
            self.notify("only a done job's original can be restored", severity="warning")
            return
        if original is None or original.state != "archived":
            self.notify(
                "this job has no archived original to restore (see `castui originals list`)",
                severity="warning",
            )
            return

        def chosen(restore: bool | None) -> None:
            if restore:
                self._restore()

        self.app.push_screen(
            RestoreScreen(original.path, original.archive, original.output), chosen
        )

    @work(exclusive=True, group="restore")
    async def _restore(self) -> None:
        """Restore through the API (the service does it when attached); say what happened."""
        try:
            line = await self.castui.engine.restore_original(self.job_id, actor="dashboard")
        except CastuiError as exc:
            self._restored = f"restore failed: {exc}"
            self.notify(self._restored, severity="error", timeout=10)
        else:
            self._restored = line
            self.notify(line, timeout=5)
        self.reload()
