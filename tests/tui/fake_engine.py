"""A deterministic engine double for snapshots: a real store with fixed jobs and clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from castui_core.api import StoreReads
from castui_core.bus import EventBus
from castui_core.events import (
    Event,
    GuardrailTripped,
    JobProgress,
    JobStarted,
    LibraryState,
    LogLine,
    QueueState,
    ScanFinished,
)
from castui_core.guardrails.disk import FreeSpace
from castui_core.originals import restore_job
from castui_core.settings import Settings, parse_settings
from castui_core.settings_update import Edit, SettingsUpdate, SettingsView, read_view
from castui_core.settings_update import update_settings as save_settings
from castui_core.store import Job, JobResult, Store
from castui_core.swap import Journal

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
NOW = T0 + 3600.0
ENCODING = "/media/movies/Big Buck Bunny (2008).avi"
COMMAND = (
    "ffmpeg", "-nostdin", "-y", "-i", f"file:{ENCODING}", "-c:v", "libx264", "-preset",
    "medium", "-crf", "21", "-c:a", "aac", "-movflags", "+faststart", "out.mp4",
)  # fmt: skip

SETTINGS = """\
database: {db}
libraries:
  - name: movies
    path: /media/movies
    watch: auto
  - name: shows
    path: /media/shows
    profile: nest-hub-720p
    watch: poll
"""


def fake_settings(tmp_path: Path) -> Settings:
    settings = parse_settings(SETTINGS.format(db=tmp_path / "castui.db"))
    settings._source = Path("/etc/castui/settings.yaml")
    return settings


def free_space(path: Path) -> FreeSpace:
    return FreeSpace(1_234_000_000_000 if "movies" in str(path) else 56_700_000_000, "/media")


class FakeEngine(StoreReads):
    """Same surface as ``Engine`` for the dashboard; commands change the store."""

    def __init__(self, settings: Settings, queued: int = 40) -> None:
        self.settings = settings
        self.bus = EventBus()
        self.store: Store
        self._queued = queued
        self.reloaded: list[Settings] = []

    async def start(self) -> None:
        self.store = await Store.connect(self.settings.database, clock=lambda: T0)
        running = await self.store.enqueue(
            ENCODING, "movies", "transcode", ["video codec mpeg4 is not H.264"]
        )
        await self.store.claim("fake/w0")
        done = await self.store.enqueue(
            "/media/movies/Sintel.mkv", "movies", "remux", ["container matroska is not MP4"]
        )
        failed = await self.store.enqueue(
            "/media/shows/Pilot S01E01.avi",
            "shows",
            "transcode",
            ["video codec mpeg4 is not H.264"],
        )
        claimed = await self.store.claim("fake/w0")
        assert claimed is not None and claimed.id == done.job_id
        await self.store.complete(
            claimed.id,
            claimed.token,
            JobResult(
                output_path="/media/movies/Sintel.mp4",
                source_size=2_100_000_000,
                output_size=2_050_000_000,
                duration_s=95.0,
                encoder="copy",
            ),
        )
        claimed = await self.store.claim("fake/w0")
        assert claimed is not None and claimed.id == failed.job_id
        await self.store.fail(
            claimed.id,
            claimed.token,
            "decode error: invalid data found when processing input",
            retryable=False,
            result=JobResult(
                source_size=734_003_200,
                duration_s=12.0,
                encoder="libx264",
                command=COMMAND,
                exit_code=1,
                stderr_tail=(
                    "[mpeg4 @ 0x5581] ac-tex damaged at 12 20\nError while decoding stream #0:0"
                ),
            ),
        )
        await self.store.pause(actor="test")  # nothing else gets claimed
        for i in range(self._queued):
            await self.store.enqueue(
                f"/media/shows/Show S01E{i + 2:02d}.avi",
                "shows",
                "transcode",
                ["audio codec ac3 is not AAC/MP3"],
            )
        await self.store.resume(actor="test")
        self.running_id = running.job_id

    async def initial_events(self) -> list[Event]:
        return [
            QueueState(paused=False),
            LibraryState(library="movies", state="watching"),
            LibraryState(library="shows", state="paused", reason="/media/shows is not mounted"),
            ScanFinished(
                library="movies",
                files=1523,
                counts=(("transcode", 2),),
                bytes_to_process=1,
                seconds=3.0,
            ),
            GuardrailTripped(name="gpu0_temperature", reason="GPU 0 at 86°C > 85°C: paused"),
            JobStarted(
                path=ENCODING, action="transcode", backend="cpu", encoder="libx264", command=COMMAND
            ),
            JobProgress(
                path=ENCODING,
                percent=42.5,
                fps=118.0,
                speed=4.7,
                eta_s=312.0,
                out_time_s=120.0,
                output_bytes=1,
            ),
            LogLine(level="info", message="NVENC: available"),
        ]

    async def stop(self, grace_s: float | None = None) -> None:
        await self.store.close()

    async def pause_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self.store.pause(actor=actor, reason=reason)
        self.bus.publish(QueueState(paused=True, actor=actor, reason=reason or ""))

    async def resume_queue(self, *, actor: str = "operator", reason: str | None = None) -> None:
        await self.store.resume(actor=actor, reason=reason)
        self.bus.publish(QueueState(paused=False, actor=actor, reason=reason or ""))

    async def cancel_job(self, job_id: int, *, actor: str = "operator") -> Job:
        return await self.store.cancel(job_id, actor=actor)

    async def retry_job(self, job_id: int, *, actor: str = "operator") -> Job:
        return await self.store.retry(job_id, actor=actor)

    async def scan(self, library: str | None = None) -> None:
        return None

    async def settings_view(self) -> SettingsView:
        """The real reader: the profile editor and the settings screen draft against it."""
        return await read_view(self.settings)

    async def update_settings(
        self, edits: Sequence[Edit], *, actor: str = "dashboard", revision: str | None = None
    ) -> SettingsUpdate:
        """The real save (file, audit through record_event, then reload) as Engine's."""
        return await save_settings(self, edits, actor=actor, revision=revision)

    async def reload(self, settings: Settings) -> None:
        self.reloaded.append(settings)

    async def set_priority(self, job_id: int, priority: int, *, actor: str = "operator") -> Job:
        return await self.store.set_priority(job_id, priority, actor=actor)

    async def record_event(
        self,
        kind: str,
        *,
        actor: str = "operator",
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        await self.store.record_event(kind, actor=actor, reason=reason, details=details)

    async def restore_original(self, target: int | str, *, actor: str = "operator") -> str:
        """The real restore, on this store and a journal beside its database."""
        journal = Journal(self.settings.database.parent / "journal")
        try:
            return await restore_job(
                self.settings, self.store, journal, target, bus=self.bus, actor=actor
            )
        finally:
            journal.close()

    async def running_ids(self) -> list[int]:
        return []  # the "running" job is a row in the store: nothing encodes in this process
