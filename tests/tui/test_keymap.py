"""Keys remapped from the settings' ``keymap:`` (issue 14): binding id -> keys.

A remapped key runs the binding's action and the old key no longer does; an id no binding has
is said plainly (the dashboard's log and a notification at start, and ``castui config check``),
because Textual itself would ignore it without a word.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_castui
from fake_engine import NOW, SETTINGS, FakeEngine, free_space
from textual.binding import Binding
from textual.widgets import Static
from tui_helpers import wait_until

import castui.tui
from castui.keymap import BINDING_IDS, keymap_problems, usable_keymap
from castui.tui.app import CastuiApp, make_app
from castui.tui.screens.help import HelpScreen
from castui_core.settings import parse_settings


def dashboard_binding_ids() -> dict[str, list[str]]:
    """Every ``Binding`` the dashboard's classes declare, by id (``''`` for one without)."""
    found: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(castui.tui.__path__, "castui.tui."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for binding in vars(cls).get("BINDINGS", []):
                assert isinstance(binding, Binding), f"{name}: use Binding(…, id=…)"
                found.setdefault(binding.id or "", []).append(f"{name}: {binding.key}")
    return found


def test_binding_ids_are_the_dashboards() -> None:
    """The list config check uses is the one the dashboard has: every binding has an id, each
    id is used once, and castui/keymap.py names exactly those."""
    found = dashboard_binding_ids()
    assert "" not in found, f"bindings without an id: {found.get('')}"
    assert {i: w for i, w in found.items() if len(w) > 1} == {}
    assert set(found) == set(BINDING_IDS)


@pytest.mark.parametrize(
    "keymap,problems",
    [
        ({}, []),
        ({"castui.scan": "f5", "castui.toggle_pause": "ctrl+p,space"}, []),
        ({"castui.help": "question_mark,?"}, []),
        (
            {"castui.scna": "f5"},
            [
                "keymap.castui.scna: no dashboard key has this id; did you mean 'castui.scan'?"
                " the ids are listed in settings.sample.yaml (`castui.scan`,"
                " `castui.toggle_pause`, …)"
            ],
        ),
        (
            {"castui.scan": "ctrl r"},
            [
                "keymap.castui.scan: 'ctrl r' is not a key; write keys like f5, ctrl+r or"
                " question_mark, several separated by commas"
            ],
        ),
        ({"castui.scan": ""}, ["keymap.castui.scan: '' is not a key; write keys like f5,"
                               " ctrl+r or question_mark, several separated by commas"]),
    ],
)  # fmt: skip
def test_keymap_problems(keymap: dict[str, str], problems: list[str]) -> None:
    assert keymap_problems(keymap) == problems
    assert set(usable_keymap(keymap)) == set(keymap) - {p.split(":")[0][7:] for p in problems}


def build(tmp_path: Path, keymap: str) -> CastuiApp:
    text = SETTINGS.format(db=tmp_path / "castui.db") + "keymap:\n" + keymap
    engine = FakeEngine(parse_settings(text))
    return make_app(engine, clock=lambda: NOW, free_space=free_space)


async def test_remapped_key_runs_the_action_and_the_old_key_does_not(tmp_path: Path) -> None:
    app = build(tmp_path, "  castui.toggle_pause: f5\n")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_ready.wait()
        await pilot.pause()
        assert not app.state.paused

        await pilot.press("f5")
        await wait_until(pilot, lambda: app.state.paused, what="f5 to pause the queue")
        assert await app.engine.store.is_paused()  # type: ignore[attr-defined]

        await pilot.press("p")  # the old key: no longer bound to anything
        await pilot.press("f5")  # a command after it, in order: p was handled before this
        await wait_until(pilot, lambda: not app.state.paused, what="f5 to resume the queue")
        assert not await app.engine.store.is_paused()  # type: ignore[attr-defined]
        # p did nothing: one pause and one resume, both by f5, in the audit trail.
        events = await app.engine.store.list_events(limit=10)  # type: ignore[attr-defined]
        kinds = [e.kind for e in events if e.actor == "operator"]
        assert len(kinds) == 2, kinds
        # The footer offers the new key, not the old one.
        assert "f5" in app.active_bindings
        assert "p" not in app.active_bindings


async def test_unknown_id_is_reported_and_the_rest_applied(tmp_path: Path) -> None:
    app = build(tmp_path, "  castui.scna: f6\n  castui.toggle_pause: f5\n")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_ready.wait()
        lines = [text for _, level, text in app.state.log if level == "error"]
        assert lines == [
            "keymap.castui.scna: no dashboard key has this id; did you mean 'castui.scan'?"
            " the ids are listed in settings.sample.yaml (`castui.scan`,"
            " `castui.toggle_pause`, …)"
        ]
        await pilot.press("f5")
        await wait_until(pilot, lambda: app.state.paused, what="the valid entry applied")


def test_config_check_names_an_unknown_id(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "lib").mkdir()
    path = tmp_path / "settings.yaml"
    tools = "".join(
        f"{name}: {shutil.which(name)}\n" for name in ("ffmpeg", "ffprobe") if shutil.which(name)
    )
    path.write_text(
        f"database: {tmp_path / 'data' / 'castui.db'}\n{tools}"
        f"libraries:\n  - name: media\n    path: {tmp_path / 'lib'}\n"
        "keymap:\n  castui.toggle_pause: f5\n  castui.qiut: ctrl+q\n",
        encoding="utf-8",
    )
    result = run_castui("config", "check", "--config", str(path), home=home, cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "keymap.castui.qiut: no dashboard key has this id; did you mean 'castui.quit'?" in (
        result.stdout + result.stderr
    )
    assert "keymap.castui.toggle_pause" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


async def test_help_lists_the_remapped_keys(tmp_path: Path) -> None:
    app = build(tmp_path, "  castui.toggle_pause: f5\n  castui.help: f2\n")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_ready.wait()
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help on f2")
        text = str(app.screen.query_one("#help-text", Static).render())
        assert "Remapped in your settings (keymap:)" in text
        assert "  f5  pause / resume the queue" in text
        assert "  f2  show the help" in text


def test_settings_sample_lists_every_id() -> None:
    """settings.sample.yaml is where the messages send people: it must list every id."""
    sample = Path(__file__).parents[2].joinpath("settings.sample.yaml").read_text()
    listed = sample.partition("Ids: ")[2].partition("\n# keymap:")[0]
    ids = {part.replace("#", "").strip() for part in listed.split(",")}
    assert ids == set(BINDING_IDS)
    # The commented example is valid once uncommented.
    example = sample.partition("\n# keymap:\n")[2].partition("\n\n")[0]
    text = "keymap:\n" + "\n".join(line.removeprefix("#") for line in example.splitlines())
    assert keymap_problems(parse_settings(text).keymap) == []
