"""Confirmation that closes the loop: Jellyfin's own PlaybackInfo verdict on castui's output.

Pure parts are table-tested on Jellyfin's JSON shapes; the end-to-end tests run real HTTP to the
stand-in Jellyfin, whose PlaybackInfo evaluates the DeviceProfile against a probe of the real
file (tests/jellyfin_streambuilder.py), so "direct play" and "would transcode" are both real.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import run_castui
from engine_helpers import cpu_engine, place_settled, wait_event
from jellyfin_fixtures import jellyfin  # noqa: F401
from jellyfin_standin import StandinJellyfin
from textual.pilot import Pilot
from tui.tui_helpers import wait_until

from castui.tui.app import CastuiApp, make_app
from castui.tui.screens.job_detail import JobDetailScreen
from castui_core.bus import EventBus
from castui_core.events import JellyfinConfirmed, JobStateChanged
from castui_core.integrations.jellyfin.client import JellyfinClient
from castui_core.integrations.jellyfin.confirm import (
    Confirmation,
    ConfirmTimes,
    item_with_path,
    library_for,
    playback_verdict,
    reasons_from_url,
    user_id_for,
)
from castui_core.integrations.jellyfin.deviceprofile import CastGeneration
from castui_core.integrations.jellyfin.watchers import Confirmer
from castui_core.metrics import Metrics
from castui_core.settings import Settings, parse_settings
from castui_core.store import Store

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("url", "reasons"),
    [
        (None, ()),
        ("/videos/x/master.m3u8?MediaSourceId=x", ()),
        (
            "/videos/x/master.m3u8?TranscodeReasons=VideoLevelNotSupported%2C%20"
            "AnamorphicVideoNotSupported&api_key=",
            ("VideoLevelNotSupported", "AnamorphicVideoNotSupported"),
        ),  # 10.x: ", "
        (
            "/videos/x/master.m3u8?a=1&TranscodeReasons=ContainerNotSupported%2CAudioCodecNotSupported",
            ("ContainerNotSupported", "AudioCodecNotSupported"),
        ),  # 11+/12: ","
        ("/v?transcodeReasons=VideoProfileNotSupported", ("VideoProfileNotSupported",)),
    ],
)
def test_reasons_from_url(url: str | None, reasons: tuple[str, ...]) -> None:
    assert reasons_from_url(url) == reasons


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ({"MediaSources": [{"SupportsDirectPlay": True}]}, (True, ())),
        (
            {
                "MediaSources": [
                    {
                        "SupportsDirectPlay": False,
                        "TranscodingUrl": "/v?TranscodeReasons=VideoLevelNotSupported",
                    }
                ]
            },
            (False, ("VideoLevelNotSupported",)),
        ),
        ({"MediaSources": [{"SupportsDirectPlay": False}]}, (False, ("DirectPlayError",))),
        ({"MediaSources": [], "ErrorCode": "NoCompatibleStream"}, (False, ("NoCompatibleStream",))),
        ("garbage", (False, ("NoMediaSource",))),
    ],
)
def test_playback_verdict(answer: Any, verdict: tuple[bool, tuple[str, ...]]) -> None:
    assert playback_verdict(answer) == verdict


FOLDERS = [
    {"Name": "Movies", "ItemId": "lib-movies", "Locations": ["/data/movies"]},
    {"Name": "Kids", "ItemId": "lib-kids", "Locations": ["/data/movies/kids", "/other"]},
]


@pytest.mark.parametrize(
    ("path", "library"),
    [
        ("/data/movies/a.mp4", "lib-movies"),
        ("/data/movies/kids/b.mp4", "lib-kids"),  # the longest location wins
        ("/data/movies-old/c.mp4", None),  # component-wise, not a string prefix
        ("/other/d.mp4", "lib-kids"),
        ("/elsewhere/e.mp4", None),
    ],
)
def test_library_for(path: str, library: str | None) -> None:
    assert library_for(FOLDERS, path) == library


def test_item_and_user_lookups() -> None:
    items = {"Items": [{"Id": "1", "Path": "/m/a.mkv"}, {"Id": "2", "Path": "/m/a.mp4"}]}
    assert item_with_path(items, "/m/a.mp4") == "2"
    assert item_with_path(items, "/m/b.mp4") is None
    users = [{"Name": "Ann", "Id": "u1"}, {"Name": "bob", "Id": "u2"}]
    assert user_id_for(users, "ann") == "u1"
    assert user_id_for(users, "carl") is None


def test_messages_say_what_happened() -> None:
    gen = CastGeneration.GEN1AND2
    assert Confirmation("direct_play", gen).message == (
        "Jellyfin: direct play on Chromecast (gen 1/2)"
    )
    transcode = Confirmation("transcode", gen, ("VideoLevelNotSupported",))
    assert transcode.message.startswith("Jellyfin would transcode: VideoLevelNotSupported")
    assert transcode.is_problem
    late = Confirmation("unconfirmed", gen, detail="Jellyfin had not listed /m/a.mp4")
    assert late.message == "Jellyfin: unconfirmed (Jellyfin had not listed /m/a.mp4)"
    assert late.is_problem


# --- end to end: real HTTP to the stand-in, real files, real store -----------------------------


def make_mp4(path: Path, *extra: str) -> Path:
    """A small real H.264/AAC MP4 (``extra``: x264 options, e.g. a level Cast refuses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            FFMPEG, "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra,
            "-c:a", "aac", "-movflags", "+faststart", str(path),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return path


def jellyfin_settings(
    tmp_path: Path, standin: StandinJellyfin, *, give_up_s: float = 20.0, **options: Any
) -> Settings:
    data = {
        "database": f"{tmp_path}/state/castui.db",
        "libraries": [{"name": "Movies", "path": f"{tmp_path}/lib", "watch": "off"}],
        "scan": {"settle_seconds": 0.3, "probe_workers": 2},
        "service": {"lease_seconds": 5, "shutdown_grace_s": 0},
        "guardrails": {"sample_interval_s": 0.2},
        "operational": {"encoder": "cpu", "min_free_gb": 0, "max_concurrent_jobs": 1},
        "jellyfin": {
            "url": standin.url,
            "api_key": standin.api_key,
            "user": "castui-test",
            "confirm_poll_s": 0.2,
            "confirm_give_up_s": give_up_s,
            **options,
        },
    }
    (tmp_path / "lib").mkdir(parents=True, exist_ok=True)
    return parse_settings(yaml.safe_dump(data))


def film_in_library(
    tmp_path: Path, standin: StandinJellyfin, samples: dict[str, Path]
) -> tuple[Settings, Path]:
    """Settings for ``standin``, its Movies library on ``tmp_path/lib`` and a settled
    ``film.mkv`` (the compliant sample) there for the engine's first scan (also used by
    tests/test_watch_history.py)."""
    settings = jellyfin_settings(tmp_path, standin)
    standin.add_library("Movies", [str(tmp_path / "lib")])
    return settings, place_settled(samples["compliant.mkv"], tmp_path / "lib" / "film.mkv")


async def expect_in_job_detail(
    app: CastuiApp, pilot: Pilot[object], job_id: int, text: str, *, what: str
) -> None:
    """Open the job's detail screen, wait until its head shows ``text``, then leave the
    dashboard (also used by tests/test_watch_history.py)."""
    app.open_job(job_id)
    await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
    screen = app.screen
    await wait_until(pilot, lambda: screen.job is not None)  # type: ignore[attr-defined]

    def shown() -> bool:
        return text in str(screen.query_one("#detail-head").render())

    await wait_until(pilot, shown, what=what)
    await pilot.press("escape")
    await pilot.press("q")


async def test_engine_done_is_confirmed_as_direct_play_and_shown_in_history(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    settings, _ = film_in_library(tmp_path, jellyfin, samples)
    engine = cpu_engine(settings)
    sub = engine.bus.subscribe()
    await engine.start()
    try:
        done = await wait_event(sub, lambda e: isinstance(e, JobStateChanged) and e.new == "done")
        assert isinstance(done, JobStateChanged) and done.output_path
        jellyfin.scan()  # Jellyfin picks the new file up (its monitor or its own scan)
        confirmed = await wait_event(sub, lambda e: isinstance(e, JellyfinConfirmed))
    finally:
        await engine.stop()
    assert isinstance(confirmed, JellyfinConfirmed)
    assert confirmed.status == "direct_play", confirmed
    assert confirmed.message == "Jellyfin: direct play on Chromecast (gen 1/2)"
    # Jellyfin was asked as the configured user, with the gen 1/2 Cast DeviceProfile.
    (asked,) = jellyfin.playback.asked
    assert asked["UserId"] == jellyfin.playback.user_id("castui-test")
    h264 = next(c for c in asked["DeviceProfile"]["CodecProfiles"] if c.get("Codec") == "h264")
    assert {c["Property"]: c["Value"] for c in h264["Conditions"]}["VideoLevel"] == "41"
    # The item was found by listing recently saved items, never by a Path filter.
    listed = jellyfin.requests_to("/Items", "GET")
    assert any("MinDateLastSaved" in r.query and r.query["Fields"] == ["Path"] for r in listed)
    assert all("Path" not in r.query for r in listed)

    config = tmp_path / "castui.yaml"
    config.write_text(yaml.safe_dump({"database": str(settings.database)}))
    (tmp_path / "home").mkdir()
    shown = run_castui("history", "--config", str(config), home=tmp_path / "home", COLUMNS="300")
    assert shown.returncode == 0, shown.stderr
    assert "Jellyfin: direct play on Chromecast (gen 1/2)" in " ".join(shown.stdout.split())
    as_json = run_castui("history", "--json", "--config", str(config), home=tmp_path / "home")
    (job,) = json.loads(as_json.stdout)
    assert job["jellyfin"]["status"] == "direct_play"


async def start_confirmer(
    settings: Settings, store: Store, bus: EventBus, client: JellyfinClient
) -> Confirmer:
    jf = settings.jellyfin
    assert jf is not None
    lib = settings.libraries[0]
    confirmer = Confirmer(
        client,
        store,
        bus,
        user="castui-test",
        to_jellyfin=lambda p: p,
        target_for=lambda name: (lib.profile, settings.profile_for(lib)),
        times=ConfirmTimes(settle_s=0.1, poll_s=0.2, give_up_s=jf.confirm_give_up_s),
    )
    await confirmer.start()
    return confirmer


async def queued_job(store: Store, path: Path) -> int:
    return (await store.enqueue(str(path), "Movies", "remux", ["container"])).job_id


async def test_a_level_jellyfin_refuses_is_recorded_as_would_transcode(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = jellyfin_settings(tmp_path, jellyfin)
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    output = make_mp4(tmp_path / "lib" / "film.mp4", "-level:v", "5.1")
    bus = EventBus()
    sub = bus.subscribe()
    metrics = Metrics(bus)
    async with (
        Store.open(settings.database) as store,
        JellyfinClient(jellyfin.url, jellyfin.api_key) as client,
    ):
        job_id = await queued_job(store, output)
        confirmer = await start_confirmer(settings, store, bus, client)
        try:
            # What the engine publishes once the store committed "done":
            bus.publish(JobStateChanged(job_id, str(output), "Movies", "running", "done",
                                        output_path=str(output)))  # fmt: skip
            await client.media_updated([(str(output), "Created")])  # what the sender posts
            confirmed = await wait_event(sub, lambda e: isinstance(e, JellyfinConfirmed))
        finally:
            await confirmer.stop()
        stored = (await store.jellyfin_confirmations([job_id]))[job_id]
    assert isinstance(confirmed, JellyfinConfirmed)
    assert confirmed.status == "transcode"
    assert confirmed.reasons == ("VideoLevelNotSupported",)
    assert confirmed.message.startswith("Jellyfin would transcode: VideoLevelNotSupported")
    assert (stored.status, stored.reasons) == ("transcode", ("VideoLevelNotSupported",))

    def counted() -> float | None:
        labels = {"result": "transcode"}
        return metrics.registry.get_sample_value("castui_jellyfin_confirmations_total", labels)

    async with asyncio.timeout(10):
        while counted() != 1.0:
            await asyncio.sleep(0.01)  # the metrics task follows the bus
    metrics.close()


async def test_a_file_jellyfin_never_lists_is_unconfirmed_not_dropped(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = jellyfin_settings(tmp_path, jellyfin, give_up_s=1.5)
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    output = make_mp4(tmp_path / "lib" / "film.mp4")
    bus = EventBus()
    sub = bus.subscribe()
    async with (
        Store.open(settings.database) as store,
        JellyfinClient(jellyfin.url, jellyfin.api_key) as client,
    ):
        job_id = await queued_job(store, output)
        confirmer = await start_confirmer(settings, store, bus, client)
        try:  # nobody tells Jellyfin: it never lists the file
            bus.publish(JobStateChanged(job_id, str(output), "Movies", "running", "done",
                                        output_path=str(output)))  # fmt: skip
            confirmed = await wait_event(sub, lambda e: isinstance(e, JellyfinConfirmed))
        finally:
            await confirmer.stop()
        stored = (await store.jellyfin_confirmations([job_id]))[job_id]
    assert isinstance(confirmed, JellyfinConfirmed) and confirmed.status == "unconfirmed"
    assert "had not listed" in confirmed.message and str(output) in confirmed.message
    assert stored.status == "unconfirmed"
    assert jellyfin.playback.asked == []


async def test_a_restart_resumes_a_pending_confirmation(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = jellyfin_settings(tmp_path, jellyfin)
    jellyfin.add_library("Movies", [str(tmp_path / "lib")])
    output = make_mp4(tmp_path / "lib" / "film.mp4")
    async with Store.open(settings.database) as store:
        job_id = await queued_job(store, output)
        # The previous castui stored "pending" and stopped before Jellyfin answered.
        await store.record_jellyfin_confirmation(
            job_id=job_id, path=str(output), status="pending", generation="gen1/2",
            reasons=(), message="pending", item_id=None, at=time.time(),
        )  # fmt: skip
    jellyfin.scan()
    bus = EventBus()
    sub = bus.subscribe()
    async with (
        Store.open(settings.database) as store,
        JellyfinClient(jellyfin.url, jellyfin.api_key) as client,
    ):
        confirmer = await start_confirmer(settings, store, bus, client)
        try:
            confirmed = await wait_event(sub, lambda e: isinstance(e, JellyfinConfirmed))
        finally:
            await confirmer.stop()
        assert await store.pending_jellyfin_confirmations() == []
    assert isinstance(confirmed, JellyfinConfirmed) and confirmed.job_id == job_id
    assert confirmed.status == "direct_play"


async def test_job_detail_shows_jellyfins_verdict(
    jellyfin: StandinJellyfin,  # noqa: F811
    samples: dict[str, Path],
    tmp_path: Path,
) -> None:
    settings, _ = film_in_library(tmp_path, jellyfin, samples)
    engine = cpu_engine(settings)
    sub = engine.bus.subscribe()
    app = make_app(engine)  # the dashboard starts the engine itself
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_event(sub, lambda e: isinstance(e, JobStateChanged) and e.new == "done")
        jellyfin.scan()
        confirmed = await wait_event(sub, lambda e: isinstance(e, JellyfinConfirmed))
        assert isinstance(confirmed, JellyfinConfirmed)
        await expect_in_job_detail(
            app,
            pilot,
            confirmed.job_id,
            "Jellyfin: direct play on Chromecast (gen 1/2)",
            what="Jellyfin's verdict in the job detail",
        )
