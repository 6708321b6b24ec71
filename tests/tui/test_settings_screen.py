"""The settings screen (issue 14) on an in-process engine: edit, refuse, secrets, libraries.

Real parts: the engine, its settings file and the core's ``update_settings`` (validate, write
round-trip with a backup, audit, reload); keys pressed through the app's pilot.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fake_engine import NOW, FakeEngine, fake_settings, free_space
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, OptionList
from tui_helpers import attached_to_service, make_engine, wait_until

from castui.tui.app import CastuiApp, make_app
from castui.tui.screens.profiles import ProfileEditorScreen
from castui.tui.screens.settings import AddEntryScreen, ConfirmRemoveScreen, SettingsScreen
from castui.tui.settings_form import LIBRARY_FIELDS
from castui_core.settings import Settings, load_settings
from castui_core.settings_update import Edit, SettingsUpdate, SettingsView
from castui_core.settings_update import settings_view as view_of
from castui_core.settings_update import update_settings as update_of

ARR = """
arr:
  - kind: sonarr
    url: http://127.0.0.1:9/sonarr
    api_key: s3cr3t-sonarr-k3y
"""


async def open_settings(pilot: Pilot[Any]) -> SettingsScreen:
    app = pilot.app
    assert isinstance(app, CastuiApp)
    await wait_until(pilot, lambda: app.engine_ready.is_set(), what="the engine")
    await pilot.press("comma")
    await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="settings")
    screen = app.screen
    assert isinstance(screen, SettingsScreen)
    await wait_until(pilot, lambda: screen.view is not None, what="the settings view")
    return screen


async def select_section(pilot: Pilot[Any], screen: SettingsScreen, key: str) -> None:
    options = screen.query_one("#settings-sections", OptionList)
    options.focus()
    index = [s.key for s in screen.sections].index(key)
    while options.highlighted != index:
        await pilot.press("down" if (options.highlighted or 0) < index else "up")
    await wait_until(
        pilot, lambda: screen.section is not None and screen.section.key == key, what=key
    )


async def edit_field(pilot: Pilot[Any], screen: SettingsScreen, name: str, text: str) -> None:
    """Enter on the field's row, replace the input's text, enter."""
    assert screen.section is not None
    table = screen.query_one("#settings-fields", DataTable)
    table.focus()
    table.move_cursor(row=[f.name for f in screen.section.fields].index(name))
    await pilot.press("enter")
    await wait_until(pilot, lambda: screen.editing is not None, what="the input")
    await pilot.press("ctrl+a", "ctrl+k", *text, "enter")
    await pilot.pause()


def cell(screen: SettingsScreen, name: str, column: str) -> str:
    assert screen.section is not None
    table = screen.query_one("#settings-fields", DataTable)
    row = [f.name for f in screen.section.fields].index(name)
    return str(table.get_cell_at(Coordinate(row, ["field", "value", "note"].index(column))))


def screen_text(app: CastuiApp) -> str:
    return app.export_screenshot()


async def test_change_a_guardrail_save_and_see_it(settings: Settings, settings_file: Path) -> None:
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        assert "Settings" in [c.title for c in app.get_system_commands(app.screen)]  # palette
        screen = await open_settings(pilot)
        await select_section(pilot, screen, "guardrails")
        assert cell(screen, "gpu_max_temp_c", "value") == "85"
        await edit_field(pilot, screen, "gpu_max_temp_c", "90")
        assert cell(screen, "gpu_max_temp_c", "value") == "* 90"
        assert "1 unsaved" in str(screen.query_one("#settings-status", Label).render())
        await pilot.press("ctrl+s")
        await wait_until(
            pilot, lambda: engine.settings.guardrails.gpu_max_temp_c == 90, what="reload"
        )
        await wait_until(
            pilot, lambda: cell(screen, "gpu_max_temp_c", "value") == "90", what="new view"
        )
        assert not screen.draft
        saved = settings_file.read_text()
        assert "gpu_max_temp_c: 90" in saved
        assert "# a profile the editor changes" in saved  # comments kept
        assert load_settings(settings_file).guardrails.gpu_max_temp_c == 90
        events = await engine.store.list_events(kind="settings_edit")
        assert [(e.details["path"], e.details["before"], e.details["after"]) for e in events] == [
            ("guardrails.gpu_max_temp_c", "85", "90")
        ]


async def test_invalid_value_shows_the_models_message_and_writes_nothing(
    settings: Settings, settings_file: Path
) -> None:
    original = settings_file.read_text()
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_settings(pilot)
        await select_section(pilot, screen, "guardrails")
        # A rule between two fields, checked by the section's model as it is entered.
        await edit_field(pilot, screen, "gpu_resume_temp_c", "95")
        assert cell(screen, "gpu_resume_temp_c", "note") == ("✗ must be below gpu_max_temp_c (85)")
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert settings_file.read_text() == original
        await pilot.press("escape")  # discard
        assert not screen.draft and not screen.problems

        # A rule only the whole file knows: the service refuses it, shown at the field.
        await select_section(pilot, screen, "files")
        inside = settings.libraries[0].path / "castui.db"
        await edit_field(pilot, screen, "database", str(inside))
        assert screen.problems == {}
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "database" in screen.problems, what="the refusal")
        assert "is inside library 'media'" in screen.problems["database"]
        assert cell(screen, "database", "note").startswith("✗ ")
        assert settings_file.read_text() == original
        assert engine.settings.database == settings.database


async def test_a_secret_is_never_displayed(tmp_path: Path, settings_file: Path) -> None:
    settings_file.write_text(settings_file.read_text() + ARR)
    engine = make_engine(load_settings(settings_file), scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_settings(pilot)
        await select_section(pilot, screen, "arr.0")
        assert cell(screen, "api_key", "value") == "set"
        assert "s3cr3t" not in screen_text(app)
        assert screen.section is not None
        table = screen.query_one("#settings-fields", DataTable)
        table.focus()
        table.move_cursor(row=[f.name for f in screen.section.fields].index("api_key"))
        await pilot.press("enter")
        field_input = screen.query_one("#settings-input", Input)
        assert field_input.value == "" and field_input.password  # never prefilled
        await pilot.press(*"n3w-t0k3n", "enter")
        assert cell(screen, "api_key", "value") == "* set"
        assert "n3w-t0k3n" not in screen_text(app)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not screen.draft, what="the save")
        assert "api_key: n3w-t0k3n" in settings_file.read_text()
        assert engine.settings.arr[0].api_key is not None
        assert engine.settings.arr[0].api_key.get_secret_value() == "n3w-t0k3n"
        assert "n3w-t0k3n" not in screen_text(app)
        events = await engine.store.list_events(kind="settings_edit")
        assert [(e.details["before"], e.details["after"]) for e in events] == [("set", "set")]


async def test_add_and_remove_a_library(
    tmp_path: Path, settings: Settings, settings_file: Path
) -> None:
    films = tmp_path / "films"
    films.mkdir()
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_settings(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AddEntryScreen), what="form")
        await pilot.press(*"films", "enter", *"films", "enter", "enter")
        dialog = app.screen
        problem = str(dialog.query_one("#add-path-problem", Label).render())
        assert problem == "✗ 'films': must be an absolute path"  # the model's words
        path_input = dialog.query_one("#add-path", Input)
        path_input.focus()
        await pilot.press("ctrl+a", "ctrl+k", *str(films), "enter", *"tv", "enter")
        await wait_until(pilot, lambda: len(engine.settings.libraries) == 2, what="added")
        assert engine.settings.libraries[1].name == "films"
        assert engine.settings.libraries[1].profile == "tv"
        assert load_settings(settings_file).libraries[1].path == films
        await wait_until(
            pilot,
            lambda: screen.section is not None and screen.section.key == "libraries.1",
            what="the new library shown",
        )
        assert cell(screen, "path", "value") == str(films)

        # A library inside another one: only the whole file knows; refused, nothing written.
        saved = settings_file.read_text()
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AddEntryScreen), what="form")
        await pilot.press(*"nested", "enter", *str(films / "sub"), "enter", "enter")
        await wait_until(pilot, lambda: bool(screen.general), what="the refusal")
        assert "is inside library 'films'" in screen.general[0]
        status = str(screen.query_one("#settings-status", Label).render())
        assert "✗ libraries.2.path: library 'nested'" in status
        assert settings_file.read_text() == saved
        assert len(engine.settings.libraries) == 2

        await pilot.press("delete")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmRemoveScreen), what="ask")
        await pilot.press("y")
        await wait_until(pilot, lambda: len(engine.settings.libraries) == 1, what="removed")
        assert [lib.name for lib in load_settings(settings_file).libraries] == ["media"]
        await wait_until(
            pilot, lambda: "libraries.1" not in [s.key for s in screen.sections], what="view"
        )


# --- snapshots ------------------------------------------------------------------------------


class SettingsFakeEngine(FakeEngine):
    """The snapshot engine, with the core's real settings view and update."""

    async def settings_view(self) -> SettingsView:
        return view_of(self.settings)

    async def update_settings(
        self, edits: Sequence[Edit], *, actor: str = "dashboard", revision: str | None = None
    ) -> SettingsUpdate:
        return await update_of(self, edits, actor=actor, revision=revision)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_settings_snapshot(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app(
        SettingsFakeEngine(fake_settings(tmp_path)), clock=lambda: NOW, free_space=free_space
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await open_settings(pilot)
        await select_section(pilot, screen, "guardrails")
        table = screen.query_one("#settings-fields", DataTable)
        table.focus()
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def test_attached_the_service_saves_its_own_file(
    tmp_path: Path, settings: Settings, settings_file: Path
) -> None:
    """Attached to a service, the edit goes through it: its file is the one written, its
    engine applies it live, its audit log has the entry; the dashboard's own file (here a
    copy elsewhere, same database) is not touched."""
    local_file = tmp_path / "elsewhere" / "settings.yaml"
    local_file.parent.mkdir()
    local_file.write_text(settings_file.read_text())
    async with attached_to_service(settings, local_file) as (engine, app):
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_settings(pilot)
            assert screen.view is not None and screen.view.file == str(settings_file)
            await select_section(pilot, screen, "guardrails")
            await edit_field(pilot, screen, "gpu_max_temp_c", "92")
            await pilot.press("ctrl+s")
            await wait_until(
                pilot,
                lambda: engine.settings.guardrails.gpu_max_temp_c == 92,
                what="the service's engine to apply it",
            )
            await wait_until(
                pilot, lambda: cell(screen, "gpu_max_temp_c", "value") == "92", what="view"
            )
            await pilot.press("q")
        assert "gpu_max_temp_c: 92" in settings_file.read_text()
        assert "gpu_max_temp_c" not in local_file.read_text()
        events = await engine.store.list_events(kind="settings_edit")
        assert [(e.actor, e.details["after"]) for e in events] == [("dashboard", "92")]


async def test_restart_marks_toggles_clearing_and_the_profiles_link(
    settings: Settings, settings_file: Path
) -> None:
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_settings(pilot)
        await select_section(pilot, screen, "scan")
        assert cell(screen, "probe_workers", "field") == "probe_workers ↻"
        assert cell(screen, "settle_seconds", "field") == "settle_seconds"
        await edit_field(pilot, screen, "probe_workers", "2")
        await edit_field(pilot, screen, "settle_seconds", "5")

        await select_section(pilot, screen, "libraries.0")
        table = screen.query_one("#settings-fields", DataTable)
        table.focus()
        table.move_cursor(row=[f.name for f in LIBRARY_FIELDS].index("follow_symlinks"))
        await pilot.press("enter")  # a bool flips, nothing to type
        assert cell(screen, "follow_symlinks", "value") == "* true"
        table.move_cursor(row=[f.name for f in LIBRARY_FIELDS].index("name"))
        await pilot.press("x")  # a required field cannot be none: nothing drafted
        assert ("libraries", 0, "name") not in screen.draft

        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not screen.draft, what="the save")
        assert engine.settings.libraries[0].follow_symlinks is True
        assert engine.settings.scan.settle_seconds == 5
        status = str(screen.query_one("#settings-status", Label).render())
        assert "↻ restart castui for: scan.probe_workers" in status
        assert "settle_seconds" not in status
        assert load_settings(settings_file).scan.probe_workers == 2

        await select_section(pilot, screen, "scan")
        table.focus()
        table.move_cursor(row=[f.name for f in screen.section.fields].index("probe_workers"))  # type: ignore[union-attr]
        await pilot.press("x")  # optional: back to none (the model's default)
        assert screen.draft == {("scan", "probe_workers"): None}
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not screen.draft, what="the second save")
        assert load_settings(settings_file).scan.probe_workers is None

        await select_section(pilot, screen, "profiles")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ProfileEditorScreen), what="the profile editor"
        )


async def test_add_a_sonarr_then_its_key(settings: Settings, settings_file: Path) -> None:
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_settings(pilot)
        await select_section(pilot, screen, "arr.add")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, AddEntryScreen), what="form")
        await pilot.press(*"sonarr", "enter", *"http://127.0.0.1:9/sonarr", "enter", "enter")
        await wait_until(pilot, lambda: len(engine.settings.arr) == 1, what="the entry")
        assert engine.settings.arr[0].name == "sonarr"
        await wait_until(
            pilot,
            lambda: screen.section is not None and screen.section.key == "arr.0",
            what="its section",
        )
        assert cell(screen, "api_key", "value") == "not set"
        await edit_field(pilot, screen, "api_key", "k3y-0f-s0narr")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: engine.settings.arr[0].api_key is not None, what="key")
        assert load_settings(settings_file).arr[0].api_key_value() == "k3y-0f-s0narr"
        await wait_until(pilot, lambda: cell(screen, "api_key", "value") == "set", what="view")
        assert "k3y-0f-s0narr" not in screen_text(app)


async def test_a_stale_screen_never_overwrites_a_library_added_meanwhile(
    tmp_path: Path, settings: Settings, settings_file: Path
) -> None:
    """Review #1: the screen read one library; another is added to the file meanwhile (by
    hand or by another dashboard). 'a' used to overwrite it with the new one; the save is now
    refused as stale, the screen reads the file again, and adding again appends."""
    (tmp_path / "films").mkdir()
    (tmp_path / "tv").mkdir()
    engine = make_engine(settings, scan=False)
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_settings(pilot)
        first = screen.view
        films = f"    profile: tv\n  - name: films\n    path: {tmp_path / 'films'}\n"
        settings_file.write_text(settings_file.read_text().replace("    profile: tv\n", films, 1))
        changed = settings_file.read_text()
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AddEntryScreen), what="form")
        await pilot.press(*"tv", "enter", *str(tmp_path / "tv"), "enter", "enter")
        await wait_until(pilot, lambda: screen.view is not first, what="the view read again")
        assert settings_file.read_text() == changed  # nothing written
        assert screen.view is not None
        assert [lib["name"] for lib in screen.view.data["libraries"]] == ["media", "films"]

        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AddEntryScreen), what="form")
        await pilot.press(*"tv", "enter", *str(tmp_path / "tv"), "enter", "enter")
        await wait_until(pilot, lambda: len(engine.settings.libraries) == 3, what="saved")
        assert [lib.name for lib in load_settings(settings_file).libraries] == [
            "media",
            "films",
            "tv",
        ]
