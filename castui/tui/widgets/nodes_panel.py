"""The nodes panel: every castui sharing the queue, whether it is online, what it runs and why
it waits (issue 13). Data down (:meth:`NodesPanel.show`), messages up (:class:`Selected`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from castui_core.nodes import HEARTBEAT_S, is_online
from castui_core.queue.protocol import NodeStatus

COLUMNS = ("node", "state", "role", "job", "encoder", "GPU", "last seen")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def node_rows(
    nodes: Sequence[NodeStatus], now: float, heartbeat_s: float = HEARTBEAT_S
) -> list[tuple[str, ...]]:
    """One row of text per node (pure, so the panel's wording is tested without a terminal).

    An online node that does not claim shows its reason ("waiting: ...") as its state.
    """
    rows: list[tuple[str, ...]] = []
    for node in nodes:
        if not is_online(node.last_seen, now, heartbeat_s):
            state = "offline"
        elif node.guard:
            state = f"waiting: {node.guard}"
        else:
            state = "online"
        jobs = ", ".join(f"#{j}" for j in node.current_jobs) or "—"
        temp = "—" if node.gpu_temp_c is None else f"{node.gpu_temp_c:.0f}°C"
        rows.append(
            (
                node.name,
                state,
                node.role,
                jobs,
                node.encoder or "—",
                temp,
                _ago(now - node.last_seen),
            )
        )
    return rows


class NodesPanel(DataTable[Text]):
    """A compact table of nodes; styled by ``nodes_panel.tcss`` beside this file."""

    DEFAULT_CSS = (Path(__file__).with_suffix(".tcss")).read_text(encoding="utf-8")

    class Selected(Message):
        """The person chose a node (Enter on its row)."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*COLUMNS)

    def show(self, nodes: Sequence[NodeStatus], now: float) -> None:
        """Replace the rows (a few nodes: redrawing them all is cheap)."""
        self.clear()
        for row in node_rows(nodes, now):
            style = "dim" if row[1] == "offline" else ("yellow" if row[1] != "online" else "")
            self.add_row(*(Text(cell, style=style) for cell in row), key=row[0])
        self.display = bool(nodes)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Selected(str(event.row_key.value)))
