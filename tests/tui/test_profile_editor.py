"""Profile edit: invalid value refused, valid value saved with comments kept, new jobs use it."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable
from tui_helpers import add_sample, attached_to_service, make_engine, wait_until

from castui.tui.app import CastuiApp, make_app
from castui.tui.profile_editor import PROFILE_FIELDS
from castui.tui.screens.profiles import ProfileEditorScreen
from castui.tui.settings_writer import apply_edits
from castui_core.settings import Settings
from castui_core.store import JobState


async def open_editor(pilot: Pilot[object], app: CastuiApp) -> ProfileEditorScreen:
    """The profile editor, opened with its key once the engine is ready."""
    await wait_until(pilot, lambda: app.engine_ready.is_set(), what="the engine")
    await pilot.press("e")
    await wait_until(pilot, lambda: isinstance(app.screen, ProfileEditorScreen))
    screen = app.screen
    assert isinstance(screen, ProfileEditorScreen)
    return screen


def test_apply_edits_keeps_comments_and_order(settings_file: Path) -> None:
    text = settings_file.read_text()
    out = apply_edits(text, {("profiles", "tv", "video", "quality"): 30})
    assert "# a profile the editor changes" in out
    assert "max_width: 1920   # full HD" in out
    assert "quality: 30" in out
    assert out.index("libraries:") < out.index("profiles:") < out.index("operational:")


async def test_edit_invalid_refused_valid_saved_and_used(
    settings: Settings, settings_file: Path, samples: dict[str, Path]
) -> None:
    original = settings_file.read_text()
    engine = make_engine(settings, scan=True)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_editor(pilot, app)
        options = screen.query_one("#profile-list")
        options.focus()
        for _ in range(sorted(settings.profiles).index("tv")):
            await pilot.press("down")
        await wait_until(pilot, lambda: screen.draft is not None and screen.draft.profile == "tv")
        table = screen.query_one("#profile-fields")
        table.focus()
        row = [f.name for f in PROFILE_FIELDS].index("video.quality")
        for _ in range(row):
            await pilot.press("down")
        await pilot.press("enter")
        await pilot.press("ctrl+a", "ctrl+k", *"99")  # not a CRF
        problem = str(screen.query_one("#profile-problem").render())
        assert "✗" in problem and "51" in problem
        await pilot.press("enter")  # kept in the draft, shown as invalid
        assert screen.draft is not None and "video.quality" in screen.draft.problems
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert settings_file.read_text() == original  # refused: nothing written

        await pilot.press("enter")
        await pilot.press("ctrl+a", "ctrl+k", *"30")
        assert "✓" in str(screen.query_one("#profile-problem").render())
        await pilot.press("enter")
        assert screen.draft.valid
        await pilot.press("ctrl+s")
        await wait_until(
            pilot, lambda: engine.settings.profiles["tv"].video.quality == 30, what="reload"
        )
        saved = settings_file.read_text()
        assert "quality: 30" in saved
        assert "# a profile the editor changes" in saved and "# full HD" in saved
        assert (settings_file.parent / "settings.yaml.bak").read_text() == original
        (event,) = await engine.store.list_events(kind="settings_edit")
        assert event.details["path"] == "profiles.tv.video.quality"
        assert (event.details["before"], event.details["after"]) == ("23", "30")

        # A new job uses the saved profile without a restart.
        add_sample(settings, samples["mpeg4.avi"], "new.avi")
        # The dashboard's scan key queues it. Not waited for on the dashboard's tables: a
        # small job can be queued, run and done between two of its queue re-reads (seen in CI).
        await pilot.press("d", "s")

        async def done() -> bool:
            jobs = await engine.store.history(states=[JobState.DONE])
            return bool(jobs)

        await wait_until(pilot, done, timeout=60, what="the new job to finish")
        job = (await engine.store.history(states=[JobState.DONE]))[0]
        command = job.result.command
        assert command[command.index("-crf") + 1] == "30"
        await pilot.press("q")


async def test_attached_drafts_against_the_service_and_saves_one_at_a_time(
    tmp_path: Path, settings: Settings, settings_file: Path
) -> None:
    """Attached, the editor shows and checks the service's file (not the dashboard's own,
    here a different copy), and a second ctrl+s while the save is out says so instead of
    cancelling it: the save is written, audited and applied once."""
    local_file = tmp_path / "elsewhere" / "settings.yaml"
    local_file.parent.mkdir()
    local_text = settings_file.read_text().replace("quality: 23", "quality: 27")
    local_file.write_text(local_text)
    async with (
        attached_to_service(settings, local_file) as (engine, app),
        app.run_test(size=(120, 40)) as pilot,
    ):
        screen = await open_editor(pilot, app)
        await wait_until(pilot, lambda: screen.view is not None, what="the view")
        options = screen.query_one("#profile-list")
        options.focus()
        for _ in range(screen._profile_names().index("tv")):
            await pilot.press("down")
        await wait_until(pilot, lambda: screen.draft is not None and screen.draft.profile == "tv")
        assert screen.draft is not None and screen.draft.source == settings_file
        table = screen.query_one("#profile-fields", DataTable)
        table.focus()
        row = [f.name for f in PROFILE_FIELDS].index("video.quality")
        assert str(table.get_cell("video.quality", "value")) == "23"  # the service's
        for _ in range(row):
            await pilot.press("down")
        await pilot.press("enter", "ctrl+a", "ctrl+k", *"30", "enter")
        assert screen.draft.valid
        # Two ctrl+s in one tick (a key press waits until the app is idle, by which
        # time a save over the socket may be done): the second finds the first out.
        screen.action_save()
        assert screen.saving
        screen.action_save()
        await wait_until(
            pilot,
            lambda: "saving…" in [n.message for n in app._notifications],
            what="the second ctrl+s to say a save is out",
        )
        await wait_until(
            pilot,
            lambda: engine.settings.profiles["tv"].video.quality == 30,
            what="the service to apply it",
        )
        await wait_until(pilot, lambda: not screen.saving, what="the save to end")
        events = await engine.store.list_events(kind="settings_edit")
        assert [e.details["path"] for e in events] == ["profiles.tv.video.quality"]
        assert "quality: 30" in settings_file.read_text()
        assert local_file.read_text() == local_text
        await wait_until(
            pilot,
            lambda: str(table.get_cell("video.quality", "value")) == "30",
            what="the editor to show the saved value",
        )


async def test_a_draft_on_a_file_changed_since_is_refused_and_read_again(
    settings: Settings, settings_file: Path
) -> None:
    """The save carries the revision the draft was made on: a hand edit meanwhile refuses
    it (nothing written over the hand edit), and the editor reads the file again, so the
    next save goes through."""
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_editor(pilot, app)
        await wait_until(pilot, lambda: screen.draft is not None, what="a draft")
        assert screen.view is not None and screen.draft is not None
        first = screen.view.revision
        name = screen.draft.profile
        assert engine.settings.profiles[name].video.quality != 30
        spec = next(f for f in PROFILE_FIELDS if f.name == "video.quality")
        hand_edit = settings_file.read_text() + "# a hand edit\n"
        settings_file.write_text(hand_edit)
        screen.draft.set(spec, 30)
        assert screen.draft.valid
        await pilot.press("ctrl+s")
        await wait_until(
            pilot,
            lambda: screen.view is not None and screen.view.revision != first,
            what="the editor to read the file again",
        )
        assert settings_file.read_text() == hand_edit
        assert screen.draft is not None and screen.draft.profile == name
        screen.draft.set(spec, 30)
        await pilot.press("ctrl+s")
        await wait_until(
            pilot,
            lambda: engine.settings.profiles[name].video.quality == 30,
            what="the second save",
        )
        assert "# a hand edit" in settings_file.read_text()
