"""Running encodes with a progress bar, percent, fps, speed, ETA and encoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from castui.tui.format import bar, duration, name_of, opt
from castui.tui.state import LiveJob
from castui_core.store import Job

COLUMNS = ("job", "file", "progress", "%", "fps", "speed", "ETA", "encoder")
#: Fixed widths for the cells whose text grows after the row is added ("—" first, then
#: "54.0"): an auto-sized column keeps its first width and would show "5". ``None``: sized
#: by the content of the row when it is added (the job id, the file name).
WIDTHS: dict[str, int | None] = {
    "job": None,
    "file": None,
    "progress": 12,
    "%": 5,  # 100.0
    "fps": 4,  # 9999
    "speed": 7,  # 250.00x
    "ETA": 6,  # 59m59s
    "encoder": 16,  # NVENC hevc_nvenc
}


def encoder_label(encoder: str) -> str:
    """``NVENC`` / ``CPU`` plus the codec, the way an operator asks "is the GPU used?"."""
    if not encoder:
        return "—"
    kind = "NVENC" if encoder.endswith("_nvenc") else "CPU"
    if encoder == "copy":
        kind = "remux"
    return f"{kind} {encoder}"


class ActiveJobs(DataTable[str | Text]):
    """One row per running job; cells update in place as progress arrives."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Job detail", id="castui.active.open")
    ]

    class Selected(Message):
        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._rows: tuple[int, ...] = ()

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column, key=column, width=WIDTHS[column])

    def show(self, running: Sequence[Job], live: Mapping[str, LiveJob]) -> None:
        ids = tuple(job.id for job in running)
        if ids != self._rows:
            self.clear()
            for job in running:
                self.add_row(*self._cells(job, live.get(job.path)), key=str(job.id))
            self._rows = ids
            return
        for job in running:
            for column, value in zip(COLUMNS, self._cells(job, live.get(job.path)), strict=True):
                self.update_cell(str(job.id), column, value)

    @staticmethod
    def _cells(job: Job, live: LiveJob | None) -> tuple[str | Text, ...]:
        stored = job.progress
        percent = (
            live.percent
            if live and live.percent is not None
            else (stored.percent if stored else None)
        )
        fps = live.fps if live else (stored.fps if stored else None)
        speed = live.speed if live else (stored.speed if stored else None)
        eta = live.eta_s if live else (stored.eta_s if stored else None)
        encoder = (live.encoder if live else "") or (job.result.encoder or "")
        return (
            f"#{job.id}",
            Text(name_of(job.path)),  # Text: a "[b]" in a name is not markup
            bar(percent),
            opt(percent, ".1f"),
            opt(fps, ".0f"),
            "—" if speed is None else f"{speed:.2f}x",
            duration(eta),
            encoder_label(encoder),
        )

    def action_open(self) -> None:
        if self.row_count and 0 <= self.cursor_row < len(self._rows):
            self.post_message(self.Selected(self._rows[self.cursor_row]))
