"""The SQLite store keeps node heartbeats (the nodes table of a one-host or shared-file queue)."""

from __future__ import annotations

from pathlib import Path

from castui_core.queue.protocol import NodeStatus
from castui_core.store import Store


async def test_node_heartbeats_round_trip_on_the_store_clock(tmp_path: Path) -> None:
    now = [1000.0]
    async with Store.open(tmp_path / "c.db", clock=lambda: now[0]) as store:
        assert await store.nodes() == []
        beat = NodeStatus(
            name="gpu-1",
            role="worker",
            pid=7,
            started_at=5.0,
            version="1.0",
            current_jobs=(3, 4),
            encoder="h264_nvenc",
            gpu_temp_c=61.5,
            guard=None,
            last_seen=99999.0,  # ignored: the store stamps its own clock
        )
        await store.node_heartbeat(beat)
        await store.node_heartbeat(NodeStatus("nas", "all", 8, 6.0, "1.0"))
        now[0] = 1005.0
        await store.node_heartbeat(NodeStatus("gpu-1", "worker", 7, 5.0, "1.0", guard="hot"))
        await store.pause()  # another meta row must not show up as a node
    async with Store.open(tmp_path / "c.db", clock=lambda: now[0]) as store:
        nodes = await store.nodes()
    assert [(n.name, n.last_seen, n.guard, n.current_jobs) for n in nodes] == [
        ("gpu-1", 1005.0, "hot", ()),
        ("nas", 1000.0, None, ()),
    ]
