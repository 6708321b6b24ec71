"""The queue, virtualised: one line rendered per visible row, whatever the queue's length.

Why not a DataTable: 100,000 queued jobs would mean 100,000 rows of cell renderables built
up front (seconds of start-up, hundreds of MB). This ``ScrollView`` keeps the store's job list
as is and formats only the rows on screen (the Line API), so start-up and scrolling cost the
same for 10 jobs or 100,000.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.segment import Segment
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from castui.tui.format import duration, name_of
from castui_core.store import Job, JobState


class QueueView(ScrollView, can_focus=True):
    """Queued jobs with their action and why they are (still) waiting."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "queue-view--cursor",
        "queue-view--header",
        "queue-view--dim",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="castui.queue.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="castui.queue.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="castui.queue.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="castui.queue.page_down"),
        Binding("home", "jump(0)", "First", show=False, id="castui.queue.first"),
        Binding("end", "jump(-1)", "Last", show=False, id="castui.queue.last"),
        Binding("enter", "open", "Job detail", id="castui.queue.open"),
    ]

    cursor = reactive(0, always_update=True)

    class Selected(Message):
        """The operator opened a job."""

        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, *, clock: Callable[[], float], id: str | None = None) -> None:
        super().__init__(id=id)
        self._jobs: Sequence[Job] = ()
        self._clock = clock
        self._waiting = ""

    @property
    def jobs(self) -> Sequence[Job]:
        return self._jobs

    def set_jobs(self, jobs: Sequence[Job], waiting: str = "") -> None:
        """Show ``jobs`` (kept by reference, never copied) and the queue-wide wait reason."""
        selected = self.selected_id
        self._jobs = jobs
        self._waiting = waiting
        self.virtual_size = Size(0, len(jobs))  # rows are clipped, never scrolled sideways
        if selected is not None and self.cursor < len(jobs) and jobs[self.cursor].id != selected:
            # Keep the cursor on the same job when rows above it come and go (cheap scan of
            # the first screenful only: a full search over 100k would cost on every refresh).
            for i in range(max(0, self.cursor - 50), min(len(jobs), self.cursor + 50)):
                if jobs[i].id == selected:
                    self.cursor = i
                    break
        self.cursor = max(0, min(self.cursor, len(jobs) - 1))
        self.refresh()

    @property
    def selected_id(self) -> int | None:
        if 0 <= self.cursor < len(self._jobs):
            return self._jobs[self.cursor].id
        return None

    def watch_cursor(self, _old: int, new: int) -> None:
        height = self.scrollable_content_region.height or 1
        if new < self.scroll_y:
            self.scroll_to(y=new, animate=False)
        elif new >= self.scroll_y + height:
            self.scroll_to(y=new - height + 1, animate=False)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.cursor = max(0, min(len(self._jobs) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, where: int) -> None:
        self.cursor = max(0, len(self._jobs) - 1) if where < 0 else 0

    def action_open(self) -> None:
        job_id = self.selected_id
        if job_id is not None:
            self.post_message(self.Selected(job_id))

    def row_text(self, job: Job, now: float) -> str:
        """One queue row: id, action, file name, and why (decision, or why it waits).

        The queue-wide wait reason (paused, GPU too hot) is in the title, not on every row.
        """
        if job.state is JobState.RUNNING:
            why = "running"
        elif job.run_after > now:
            why = f"retry in {duration(job.run_after - now)}"
            if job.reason:
                why += f" ({job.reason})"
        else:
            why = "; ".join(job.reasons) or "ready"
        return f"#{job.id:<6} {job.action.value:<9} {name_of(job.path)}  {why}"

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = self.scroll_offset.y + y
        if not self._jobs and y == 0:
            text = "nothing waiting"
            style = self.get_component_rich_style("queue-view--dim")
            return Strip([Segment(text[:width].ljust(width), style)], width)
        if index >= len(self._jobs):
            return Strip.blank(width, self.rich_style)
        text = self.row_text(self._jobs[index], self._clock())
        style = self.rich_style
        if index == self.cursor:
            style = self.get_component_rich_style("queue-view--cursor")
        text = text[self.scroll_offset.x :]
        return Strip([Segment(text[:width].ljust(width), style)], width)
