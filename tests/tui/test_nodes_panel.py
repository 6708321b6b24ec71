"""The nodes panel: its wording (table-tested) and the widget in a real Textual app."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from castui.tui.screens.history import state_on_node
from castui.tui.widgets.nodes_panel import NodesPanel, node_rows
from castui_core.queue.protocol import NodeStatus
from castui_core.store import Job, JobAction, JobResult, JobState

NOW = 10_000.0


def node(name: str, age: float, **kw: object) -> NodeStatus:
    return NodeStatus(
        name, str(kw.pop("role", "worker")), 1, 0.0, "0.1.0", last_seen=NOW - age, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            node("gpu", 2, current_jobs=(7,), encoder="h264_nvenc", gpu_temp_c=61.4),
            ("gpu", "online", "worker", "#7", "h264_nvenc", "61°C", "2s ago"),
        ),
        (
            node("nas", 3, role="all", guard="GPU at 87 °C"),
            ("nas", "waiting: GPU at 87 °C", "all", "—", "—", "—", "3s ago"),
        ),
        (node("old", 16), ("old", "offline", "worker", "—", "—", "—", "16s ago")),
        (node("gone", 7200), ("gone", "offline", "worker", "—", "—", "—", "2h ago")),
    ],
)
def test_node_rows(status: NodeStatus, expected: tuple[str, ...]) -> None:
    assert node_rows([status], NOW, heartbeat_s=5.0) == [expected]


class PanelApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.chosen: list[str] = []

    def compose(self) -> ComposeResult:
        yield NodesPanel()

    def on_nodes_panel_selected(self, message: NodesPanel.Selected) -> None:
        self.chosen.append(message.name)


async def test_panel_shows_rows_and_says_which_node_was_chosen() -> None:
    app = PanelApp()
    async with app.run_test() as pilot:
        panel = app.query_one(NodesPanel)
        panel.show([], NOW)
        assert not panel.display  # no node has sent a heartbeat: no panel
        panel.show([node("a", 1), node("b", 100)], NOW)
        await pilot.pause()
        assert panel.display and panel.row_count == 2
        assert str(panel.get_row_at(1)[1]) == "offline"
        panel.focus()
        await pilot.press("down", "enter")
        await pilot.pause()
    assert app.chosen == ["b"]


@pytest.mark.parametrize(
    ("owner", "cell"),
    [("gpu-1:42/w0", "done on gpu-1"), ("fake/w0", "done"), (None, "done")],
)
def test_history_names_the_node_that_ran_the_job(owner: str | None, cell: str) -> None:
    job = Job(
        id=1,
        path="/m/a.mkv",
        library="L",
        action=JobAction.TRANSCODE,
        state=JobState.DONE,
        reasons=(),
        priority=0,
        attempts=1,
        max_attempts=3,
        run_after=0.0,
        lease_owner=owner,
        lease_token=1,
        lease_expires=None,
        rerun_requested=False,
        progress=None,
        result=JobResult(),
        reason=None,
        created_at=0.0,
        updated_at=0.0,
        started_at=0.0,
        finished_at=1.0,
    )
    assert state_on_node(job) == cell
