"""Notifications through Apprise, delivered from the durable outbox to a real local receiver."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from castui_core.bus import EventBus
from castui_core.events import JobStateChanged
from castui_core.notify import Notifier, next_summary_at
from castui_core.settings import NotifySettings
from castui_core.store import JobState, Store
from castui_core.store.outbox import NOTIFY

REASON = "ffmpeg: No space left on device (the disk filled up during the encode)"
TOKEN = "s3cret-token-42"


class Receiver:
    """An HTTP server on 127.0.0.1 recording every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                outer.paths.append(self.path)
                self.send_response(200)
                self.end_headers()
                outer.got.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


async def test_a_dead_job_sends_one_notification_with_path_and_reason(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    film = str(tmp_path / "lib" / "Film (2001).mkv")
    settings = NotifySettings.model_validate(
        {"urls": [f"json://127.0.0.1:{receiver.port}/{TOKEN}"], "on": ["dead"]}
    )
    bus = EventBus()
    async with (
        Store.open(tmp_path / "castui.db", max_attempts=1) as store,
        Notifier(store, settings, bus) as notifier,
    ):
        await store.enqueue(film, "Movies", "transcode", ["video: mpeg4"])
        claimed = await store.claim("w0")
        assert claimed is not None
        job = await store.fail(claimed.id, claimed.token, REASON, retryable=True)
        assert job.state is JobState.DEAD
        # As the engine does: the transition is published once the store committed it.
        bus.publish(
            JobStateChanged(
                job_id=job.id,
                path=film,
                library="Movies",
                old="running",
                new="dead",
                reason=REASON,
            )
        )
        assert await asyncio.to_thread(receiver.got.wait, 30), "no notification arrived"
        async with asyncio.timeout(30):  # delivered: the row leaves the outbox
            while (await store.outbox_counts(NOTIFY))["pending"]:
                await asyncio.sleep(0.02)
        assert notifier.sent == 1
    (body,) = receiver.bodies
    assert film in body["message"] and REASON in body["message"]
    assert f"castui retry {job.id}" in body["message"]
    assert body["title"] == "castui"
    assert receiver.paths == [f"/{TOKEN}"]
    assert TOKEN not in caplog.text  # the URL's token is never logged


async def test_an_unreachable_service_keeps_the_notification_in_the_outbox(tmp_path: Path) -> None:
    receiver = Receiver()
    port = receiver.port
    receiver.server.shutdown()
    receiver.server.server_close()  # nothing listens there now
    settings = NotifySettings.model_validate({"urls": [f"json://127.0.0.1:{port}"]})
    async with Store.open(tmp_path / "castui.db") as store:
        async with Notifier(store, settings, EventBus()) as notifier:
            await notifier.queue("Jellyfin is unreachable: test")
            async with asyncio.timeout(30):
                while notifier.failed == 0:
                    await asyncio.sleep(0.02)
        (row,) = await store.outbox_rows(target=NOTIFY)
    assert row.attempts == 1 and row.folder == "Jellyfin is unreachable: test"
    assert row.last_error and str(port) not in row.last_error


def test_next_summary_is_later_today_or_tomorrow() -> None:
    import datetime as dt

    noon = dt.datetime(2026, 5, 1, 12, 0).astimezone().timestamp()
    assert next_summary_at(noon, "13:30") - noon == pytest.approx(5400)
    assert 0 < next_summary_at(noon, "08:00") - noon <= 86400
