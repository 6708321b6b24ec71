"""Pilot tests of the key flows, on a real engine converting tiny real files."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import add_sample, make_engine, wait_until

from castui.tui.app import make_app
from castui.tui.screens.job_detail import JobDetailScreen
from castui.tui.widgets.active_jobs import ActiveJobs
from castui_core.settings import Settings
from castui_core.store import JobState


async def test_job_runs_from_queued_to_done_with_progress(
    settings: Settings, samples: dict[str, Path]
) -> None:
    add_sample(settings, samples["mpeg4.avi"])
    engine = make_engine(settings)
    await engine_pause_before_start(settings)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: bool(app.queued_jobs), what="the job to be queued")
        job_id = app.queued_jobs[0].id
        assert "paused" in app.state.waiting_reason()
        await pilot.press("p")  # resume
        seen_percent: list[float] = []

        def progress_shown() -> bool:
            for live in app.state.live.values():
                if live.percent is not None:
                    seen_percent.append(live.percent)
            return bool(seen_percent) or bool(app.running_jobs)

        await wait_until(pilot, progress_shown, what="the job to start")
        table = app.screen.query_one(ActiveJobs)

        async def done() -> bool:
            progress_shown()
            if table.row_count:
                seen_percent.append(-1)  # a row was shown
            return (await engine.store.get_job(job_id)).state is JobState.DONE

        await wait_until(pilot, done, timeout=60, what="the job to finish")
        await wait_until(pilot, lambda: not app.running_jobs and not app.queued_jobs)
        assert seen_percent, "progress was never shown"
        await pilot.press("h")
        await wait_until(
            pilot,
            lambda: app.screen.query_one("#history").row_count == 1,  # type: ignore[attr-defined]
            what="history row",
        )
        await pilot.press("q")


async def engine_pause_before_start(settings: Settings) -> None:
    """Pause the queue in the database so the test sees the job queued before it runs."""
    from castui_core.store import Store

    settings.database.parent.mkdir(parents=True, exist_ok=True)
    async with Store.open(settings.database) as store:
        await store.pause(actor="test")


async def test_failed_job_shows_reason_and_retry_works(
    settings: Settings, samples: dict[str, Path]
) -> None:
    broken = add_sample(settings, samples["mpeg4.avi"], "broken.avi")
    engine = make_engine(settings)
    await engine_pause_before_start(settings)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: bool(app.queued_jobs), what="the job to be queued")
        job_id = app.queued_jobs[0].id
        broken.write_bytes(b"not a video any more\n" * 200)  # fails when it runs
        await pilot.press("p")

        async def finished() -> bool:
            job = await engine.store.get_job(job_id)
            return job.state in (JobState.FAILED, JobState.DEAD)

        await wait_until(pilot, finished, timeout=60, what="the job to fail")
        job = await engine.store.get_job(job_id)
        assert job.reason
        app.open_job(job_id)
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        screen = app.screen
        expected = job.reason.split(":")[0][:20]

        def shown() -> bool:
            # The screen is composed, then loads the job: wait on what is shown.
            return expected in str(screen.query_one("#detail-head").render())

        await wait_until(pilot, shown, what=f"the detail head to show {expected!r}")
        await pilot.press("p")  # pause so the retried job stays queued for the check
        await wait_until(pilot, lambda: app.state.paused)
        await pilot.press("r")

        async def requeued() -> bool:
            return (await engine.store.get_job(job_id)).state is JobState.QUEUED

        await wait_until(pilot, requeued, what="the retried job to be queued")
        await wait_until(pilot, lambda: any(j.id == job_id for j in app.queued_jobs))
        await pilot.press("escape")
        await pilot.press("q")


async def test_pause_and_resume_from_the_keyboard(settings: Settings) -> None:
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine_ready.is_set())
        await pilot.press("p")
        await wait_until(pilot, lambda: app.state.paused, what="paused")
        assert await engine.store.is_paused()
        label = app.screen.query_one("#guard-state")
        await wait_until(pilot, lambda: "Paused" in str(label.render()), what="panel")
        await pilot.press("p")
        await wait_until(pilot, lambda: not app.state.paused, what="resumed")
        assert not await engine.store.is_paused()
        await pilot.press("q")


async def test_attach_to_a_headless_engine(settings: Settings, settings_file: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from test_control import start_headless

    from castui_core.control import RemoteEngine

    proc = start_headless(settings_file)
    try:
        app = make_app(RemoteEngine(settings), attached=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.engine_ready.is_set(), what="attached")
            await pilot.press("p")
            await wait_until(pilot, lambda: app.state.paused, what="paused via the service")
            assert await app.engine.store.is_paused()
            await pilot.press("q")
        assert proc.poll() is None  # the service keeps running after the TUI closes
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_quit_with_a_running_job_asks_then_requeues_it(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """q while an encode runs asks first; 'r' stops it, requeues it and leaves no trace."""
    import shutil
    import subprocess
    import sys

    from castui.tui.screens.quit import QuitScreen
    from castui_core.engine import Engine
    from castui_core.guardrails import NoGpu
    from castui_core.store import Store
    from castui_core.tools import Tools

    source = settings.libraries[0].path / "long.avi"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=8",
            "-f", "lavfi", "-i", "sine=duration=8",
            "-c:v", "mpeg4", "-c:a", "libmp3lame", str(source),
        ],
        check=True,
    )  # fmt: skip
    before = source.read_bytes()
    shim = Path(__file__).parent.parent / "nvenc_shim.py"
    wrapper = tmp_path / "ffmpeg-realtime"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{shim}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CASTUI_SHIM_REALTIME", "1")  # the encode takes ~8 s
    ffprobe = Path(shutil.which("ffprobe") or "ffprobe")
    engine = Engine(
        settings,
        watch=False,
        gpu=NoGpu("no GPU: tests"),
        idle_poll_s=0.2,
        tools=Tools(ffmpeg=wrapper, ffprobe=ffprobe),
    )
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: bool(engine.running), timeout=30, what="the encode")
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitScreen), what="the question")
        await pilot.press("r")
        await wait_until(pilot, lambda: not app.is_running, timeout=30, what="the app to exit")
    assert source.read_bytes() == before
    assert sorted(p.name for p in source.parent.iterdir()) == ["long.avi"]
    async with Store.open(settings.database, reclaim_on_open=False) as store:
        (job,) = await store.active_jobs()
    assert (job.state, job.attempts) == (JobState.QUEUED, 0)
