"""Settings changed through the engine API (issue 14): pure rules table-tested, then a real
in-process engine on a real settings file and database: saved round-trip with comments
kept, backed up, audited with before/after, applied live; refused edits write nothing;
secrets never leave the file."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_engine import Recorder, make_engine

from castui_core import settings_update
from castui_core.control import error_from_reply, error_reply
from castui_core.control_messages import REPLY, ErrorReply, encode
from castui_core.engine import Engine
from castui_core.errors import (
    CastuiError,
    ConfigError,
    JobNotFoundError,
    ProbeError,
    SettingsRejected,
)
from castui_core.events import LogLine
from castui_core.settings import Settings, WatchMode, load_settings
from castui_core.settings_file import backup_path, dump_document, plain
from castui_core.settings_update import (
    SECRETS,
    Edit,
    file_revision,
    is_stale,
    needs_restart,
    redact,
    settings_view,
    write_edits,
)
from castui_core.store import Event as AuditEvent

pytestmark = pytest.mark.timeout(90)
NOON = datetime(2026, 1, 1, 12, 0)

TEXT = """\
# castui settings for the living-room box
database: {root}/state/castui.db
libraries:
  - name: Movies   # the films
    path: {root}/movies
    watch: off
scan:
  settle_seconds: 0
operational:
  encoder: cpu   # no GPU in this box
guardrails:
  gpu_max_temp_c: 85   # the card runs hot
  sample_interval_s: 0.2
"""


@pytest.mark.parametrize(
    ("path", "restart"),
    [
        (("guardrails", "gpu_max_temp_c"), False),
        ("guardrails.schedule", False),
        (("operational", "max_concurrent_jobs"), False),
        ("operational.min_free_gb", False),
        ("operational.encoder", True),
        (("libraries", 1, "watch"), False),
        ("libraries.0.path", False),
        ("libraries", False),
        ("profiles.tv.video.quality", False),
        ("scan.settle_seconds", False),
        ("scan.probe_workers", True),
        ("scan.probe_timeout_s", True),
        ("arr.0.api_key", False),
        ("node.path_map", False),
        ("node.name", True),
        ("node.role", True),
        ("database", True),
        ("ffmpeg", True),
        ("metrics.listen", True),
        ("metrics", True),
        ("queue.url", True),
        ("queue", True),
        ("service.lease_seconds", True),
        ("service.shutdown_grace_s", False),
        ("notify.urls", True),
        ("jellyfin", True),
        ("jellyfin.api_key", True),
        ("jellyfin.batch_window_s", False),
        ("keymap.castui.scan", True),
    ],
)
def test_needs_restart(path: tuple[str | int, ...] | str, restart: bool) -> None:
    assert needs_restart(path) is restart


def test_secrets_are_every_secret_field_of_the_model() -> None:
    assert set(SECRETS) == {
        ("jellyfin", "api_key"),
        ("notify", "urls"),
        ("arr", "*", "api_key"),
        ("queue", "url"),
    }


@pytest.mark.parametrize(
    ("path", "value", "shown"),
    [
        ("jellyfin.api_key", "hunter2", "set"),
        (("jellyfin", "api_key"), None, "not set"),
        ("notify.urls", ["ntfy://a", "ntfy://b"], "set"),
        ("notify.urls", [], "not set"),
        ("queue.url", "redis://:pw@host:6379/0", "set"),
        (("arr", 0, "api_key"), "k", "set"),
        (("arr", 0), {"name": "tv", "api_key": "k"}, '{"name": "tv", "api_key": "set"}'),
        ("jellyfin", {"url": "http://j", "api_key": "k"}, '{"url": "http://j", "api_key": "set"}'),
        ("guardrails.gpu_max_temp_c", 90, "90"),
        ("libraries.0.follow_symlinks", True, "true"),
        ("operational.job_timeout_s", None, "not set"),
        ("guardrails.schedule", ["22:00-07:00"], '["22:00-07:00"]'),
        ("libraries.0.path", Path("/srv/films"), "/srv/films"),
    ],
)
def test_redact(path: str | tuple[str | int, ...], value: Any, shown: str) -> None:
    assert redact(path, value) == shown


def test_a_missing_file_is_created_with_only_the_edit(tmp_path: Path) -> None:
    file = tmp_path / "config" / "settings.yaml"
    written = write_edits(file, [Edit(("guardrails", "gpu_max_temp_c"), 80)])
    assert file.read_text() == "guardrails:\n  gpu_max_temp_c: 80\n"
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600  # it may come to hold keys
    assert written.result is not None and written.result.backup is None
    assert [c.path for c in written.changes] == ["guardrails.gpu_max_temp_c"]
    assert settings_view(Settings()).file is None  # defaults: the screen says where it goes


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    (tmp_path / "movies").mkdir()
    (tmp_path / "tv").mkdir()
    (tmp_path / "settings.yaml").write_text(TEXT.format(root=tmp_path))
    engine = make_engine(
        load_settings(tmp_path / "settings.yaml"), scan_at_start=False, now=lambda: NOON
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def _audit(engine: Engine) -> list[AuditEvent]:
    return list(reversed(await engine.store.list_events(kind="settings_edit")))


async def test_guardrail_saved_audited_and_applied_live(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    before = file.read_text()
    rec = Recorder(engine.bus)
    update = await engine.update_settings(
        [
            Edit(("guardrails", "gpu_max_temp_c"), "90"),  # what a text input gives
            Edit(("guardrails", "schedule"), ["01:00-02:00"]),
        ],
        actor="tester",
    )
    text = file.read_text()
    assert "gpu_max_temp_c: 90   # the card runs hot" in text
    assert "# castui settings for the living-room box" in text
    assert "encoder: cpu   # no GPU in this box" in text
    assert "- 01:00-02:00" in text
    assert backup_path(file).read_text() == before
    assert update.file == str(file)
    assert update.applied_live
    assert [(c.path, c.before, c.after, c.needs_restart) for c in update.changes] == [
        ("guardrails.gpu_max_temp_c", "85", "90", False),
        ("guardrails.schedule", "[]", '["01:00-02:00"]', False),
    ]
    assert update.message.startswith("saved ") and "2 changes applied live" in update.message

    audit = await _audit(engine)
    assert [
        (a.actor, a.details["path"], a.details["before"], a.details["after"]) for a in audit
    ] == [
        ("tester", "guardrails.gpu_max_temp_c", "85", "90"),
        ("tester", "guardrails.schedule", "[]", '["01:00-02:00"]'),
    ]
    assert audit[0].details["file"] == str(file)
    assert audit[0].details["backup"] == str(backup_path(file))

    # Live: the engine runs on the new values; the window excludes noon, so it holds work.
    assert engine.settings.guardrails.gpu_max_temp_c == 90
    await rec.wait_for(lambda e: isinstance(e, LogLine) and "settings reloaded" in e.message)
    assert "schedule" in engine.guardrails.active
    view = await engine.settings_view()
    assert view.file == str(file)
    assert view.data["guardrails"]["gpu_max_temp_c"] == 90


async def test_invalid_value_refused_and_nothing_written(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    before = file.read_bytes()
    with pytest.raises(SettingsRejected) as caught:
        await engine.update_settings(
            [
                Edit(("guardrails", "gpu_max_temp_c"), 500),
                Edit(("libraries", 0, "watch"), "sometimes"),
            ]
        )
    problems = dict(caught.value.problems)
    assert set(problems) == {"guardrails.gpu_max_temp_c", "libraries.0.watch"}
    assert "less than or equal to 110" in problems["guardrails.gpu_max_temp_c"]
    assert "'auto', 'events', 'poll' or 'off'" in problems["libraries.0.watch"]
    assert "guardrails.gpu_max_temp_c" in str(caught.value)
    assert file.read_bytes() == before
    assert not backup_path(file).exists()
    assert await _audit(engine) == []
    assert engine.settings.guardrails.gpu_max_temp_c == 85

    with pytest.raises(SettingsRejected, match="no item 5"):
        await engine.update_settings([Edit(("libraries", 5, "watch"), "poll")])
    assert file.read_bytes() == before


async def test_a_secret_never_leaves_the_file(engine: Engine, tmp_path: Path) -> None:
    secret = "s3cr3t-jellyfin-key"
    rec = Recorder(engine.bus)
    update = await engine.update_settings(
        [
            Edit(("jellyfin", "url"), "http://127.0.0.1:9"),
            Edit(("jellyfin", "api_key"), secret),
        ]
    )
    assert f"api_key: {secret}" in (tmp_path / "settings.yaml").read_text()
    assert engine.settings.jellyfin is not None
    assert engine.settings.jellyfin.api_key is not None
    assert engine.settings.jellyfin.api_key.get_secret_value() == secret
    changes = {c.path: c for c in update.changes}
    assert changes["jellyfin"].needs_restart
    assert '"api_key": "set"' in changes["jellyfin"].after
    view = await engine.settings_view()
    assert view.data["jellyfin"]["api_key"] == "set"

    # Changed again: reported (set -> set), its value nowhere.
    second = await engine.update_settings([Edit(("jellyfin", "api_key"), secret + "-2")])
    assert [(c.path, c.before, c.after) for c in second.changes] == [
        ("jellyfin.api_key", "set", "set")
    ]
    await rec.wait_for(lambda e: isinstance(e, LogLine) and "settings reloaded" in e.message)
    shown = [
        repr(update),
        repr(second),
        json.dumps(view.data),
        json.dumps([a.details for a in await _audit(engine)]),
        *(e.message for e in rec.events if isinstance(e, LogLine)),
    ]
    assert not any(secret in text for text in shown)


async def test_add_and_remove_a_library(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    added = await engine.update_settings(
        [Edit(("libraries", 1), {"name": "TV", "path": tmp_path / "tv", "watch": WatchMode.POLL})]
    )
    assert [c.path for c in added.changes] == ["libraries.1"]
    assert '"name": "TV"' in added.changes[0].after
    assert [lib.name for lib in engine.settings.libraries] == ["Movies", "TV"]
    assert "- name: TV" in file.read_text()

    removed = await engine.update_settings([Edit(("libraries", 0), remove=True)])
    assert [(c.path, c.after) for c in removed.changes] == [("libraries.0", "not set")]
    assert '"name": "Movies"' in removed.changes[0].before
    assert [lib.name for lib in engine.settings.libraries] == ["TV"]
    text = file.read_text()
    assert "Movies" not in text and "# castui settings for the living-room box" in text
    assert [a.details["path"] for a in await _audit(engine)] == ["libraries.1", "libraries.0"]
    assert engine.settings.libraries[0].watch.value == "poll"


async def test_a_field_read_at_start_is_saved_and_marked(engine: Engine, tmp_path: Path) -> None:
    update = await engine.update_settings([Edit(("metrics", "listen"), "127.0.0.1:9199")])
    assert [(c.path, c.needs_restart) for c in update.changes] == [("metrics.listen", True)]
    assert not update.applied_live
    assert "1 change needs a restart: metrics.listen" in update.message
    assert "listen: 127.0.0.1:9199" in (tmp_path / "settings.yaml").read_text()

    unchanged = await engine.update_settings([Edit(("metrics", "listen"), "127.0.0.1:9199")])
    assert unchanged.changes == () and unchanged.message.startswith("nothing changed")


@pytest.mark.parametrize(
    "error",
    [
        SettingsRejected("not saved", (("guardrails.gpu_max_temp_c", "500: too hot"),)),
        ConfigError("settings.yaml: invalid settings", ("scan.probe_workers: 0: too few",)),
        JobNotFoundError("no job 7"),
        ProbeError("/m/a.avi", "not media"),  # not rebuilt from its text: a CastuiError
    ],
)
def test_errors_cross_the_control_socket_as_their_class(error: CastuiError) -> None:
    line = encode(error_reply(3, error))  # what the service writes on the socket
    reply = REPLY.validate_json(line)
    assert isinstance(reply, ErrorReply)
    back = error_from_reply(reply)
    assert str(back) == str(error)
    if isinstance(error, ProbeError):
        assert type(back) is CastuiError
        return
    assert type(back) is type(error)
    if isinstance(error, SettingsRejected | ConfigError):
        assert isinstance(back, SettingsRejected | ConfigError)
        assert back.problems == error.problems


def test_a_value_that_is_not_plain_data_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text(TEXT.format(root=tmp_path))
    before = file.read_bytes()
    with pytest.raises(SettingsRejected, match="cannot be written as YAML"):
        write_edits(file, [Edit(("guardrails", "gpu_max_temp_c"), object())])
    assert file.read_bytes() == before


async def test_an_engine_on_defaults_saves_to_the_user_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / ".local" / "share"))
    engine = make_engine(Settings(), scan_at_start=False)
    await engine.start()
    try:
        assert (await engine.settings_view()).file is None
        update = await engine.update_settings([Edit(("guardrails", "gpu_max_temp_c"), 80)])
        file = tmp_path / ".config" / "castui" / "settings.yaml"
        assert update.file == str(file)
        assert update.message.startswith("saved ~/.config/castui/settings.yaml")
        assert file.read_text() == "guardrails:\n  gpu_max_temp_c: 80\n"
        assert engine.settings.source == file  # a SIGHUP reload now reads it
        assert (await engine.settings_view()).file == str(file)
    finally:
        await engine.stop()


async def test_a_settings_file_gone_is_refused_not_replaced_by_defaults(
    engine: Engine, tmp_path: Path
) -> None:
    """The engine was started from a file that was since moved away: saving must not write a
    one-key file and reload on the built-in defaults (every library dropped)."""
    file = tmp_path / "settings.yaml"
    file.rename(tmp_path / "settings.yaml.orig")
    with pytest.raises(SettingsRejected, match="is gone") as caught:
        await engine.update_settings([Edit(("guardrails", "gpu_max_temp_c"), 90)])
    assert "put it back" in str(caught.value)
    assert not file.exists()
    assert [lib.name for lib in engine.settings.libraries] == ["Movies"]
    assert await _audit(engine) == []


async def test_changes_are_reported_against_what_the_engine_runs(
    engine: Engine, tmp_path: Path
) -> None:
    """A hand edit not yet reloaded is applied by the save's reload too: the changes say so."""
    file = tmp_path / "settings.yaml"
    file.write_text(file.read_text().replace("gpu_max_temp_c: 85", "gpu_max_temp_c: 95"))
    update = await engine.update_settings([Edit(("guardrails", "schedule"), ["01:00-02:00"])])
    assert [(c.path, c.before, c.after) for c in update.changes] == [
        ("guardrails.gpu_max_temp_c", "85", "95"),
        ("guardrails.schedule", "[]", '["01:00-02:00"]'),
    ]
    assert engine.settings.guardrails.gpu_max_temp_c == 95


async def test_a_cancelled_caller_does_not_cut_a_save_in_half(
    engine: Engine, tmp_path: Path
) -> None:
    """Cancelled while the file is being written (a second ctrl+s in an exclusive worker):
    the save still audits and reloads, and the caller's cancellation returns only then."""
    file = tmp_path / "settings.yaml"
    before = file.read_text()
    save = asyncio.create_task(engine.update_settings([Edit(("guardrails", "gpu_max_temp_c"), 90)]))

    async def written() -> None:
        while file.read_text() == before:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(written(), timeout=10)  # the thread has replaced the file
    save.cancel()
    with pytest.raises(asyncio.CancelledError):
        await save
    assert "gpu_max_temp_c: 90" in file.read_text()
    assert engine.settings.guardrails.gpu_max_temp_c == 90
    assert [a.details["path"] for a in await _audit(engine)] == ["guardrails.gpu_max_temp_c"]


LIBS = """\
database: {root}/state/castui.db
libraries:
  - name: a
    path: {root}/a
"""


def _libraries(root: Path) -> Path:
    for name in "abc":
        (root / name).mkdir()
    file = root / "settings.yaml"
    file.write_text(LIBS.format(root=root))
    return file


def _names(file: Path) -> list[str]:
    return [lib.name for lib in load_settings(file).libraries]


def test_a_save_on_a_stale_revision_is_refused(tmp_path: Path) -> None:
    file = _libraries(tmp_path)
    revision = file_revision(file.read_text())
    write_edits(file, [Edit(("libraries", 1), {"name": "b", "path": str(tmp_path / "b")})])
    before = file.read_bytes()
    with pytest.raises(SettingsRejected) as caught:
        write_edits(file, [Edit(("libraries", 0, "watch"), "poll")], revision=revision)
    assert is_stale(caught.value)
    assert "changed since the screen read it" in str(caught.value)
    assert file.read_bytes() == before
    ok = write_edits(
        file, [Edit(("libraries", 0, "watch"), "poll")], revision=file_revision(before.decode())
    )
    assert [c.path for c in ok.changes] == ["libraries.0.watch"]
    # No file: its revision is "" (a save on defaults creates it).
    missing = tmp_path / "new" / "settings.yaml"
    with pytest.raises(SettingsRejected):
        write_edits(missing, [Edit(("scan", "settle_seconds"), 1)], revision="0123")
    assert write_edits(missing, [Edit(("scan", "settle_seconds"), 1)], revision="").changes


def test_an_append_on_a_stale_count_never_overwrites(tmp_path: Path) -> None:
    file = _libraries(tmp_path)
    shown = 1  # the screen counted one library
    write_edits(file, [Edit(("libraries", 1), {"name": "b", "path": str(tmp_path / "b")})])
    before = file.read_bytes()
    with pytest.raises(SettingsRejected) as caught:
        write_edits(
            file,
            [Edit(("libraries", shown), {"name": "c", "path": str(tmp_path / "c")}, append=True)],
        )
    assert is_stale(caught.value)
    assert file.read_bytes() == before and _names(file) == ["a", "b"]
    write_edits(
        file, [Edit(("libraries", 2), {"name": "c", "path": str(tmp_path / "c")}, append=True)]
    )
    assert _names(file) == ["a", "b", "c"]


def test_a_list_item_is_named_as_well_as_indexed(tmp_path: Path) -> None:
    file = _libraries(tmp_path)
    for i, n in enumerate("bc", start=1):
        write_edits(file, [Edit(("libraries", i), {"name": n, "path": str(tmp_path / n)})])
    write_edits(file, [Edit(("libraries", 0), remove=True)])  # another dashboard removes a
    with pytest.raises(SettingsRejected) as caught:  # this one confirmed "Remove b?" (index 1)
        write_edits(file, [Edit(("libraries", 1), remove=True, item="b")])
    assert is_stale(caught.value)
    assert _names(file) == ["b", "c"]
    with pytest.raises(SettingsRejected):
        write_edits(file, [Edit(("libraries", 1, "watch"), "poll", item="b")])
    write_edits(file, [Edit(("libraries", 0), remove=True, item="b")])
    assert _names(file) == ["c"]


async def test_the_view_carries_the_file_revision(engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    view = await engine.settings_view()
    assert view.revision == file_revision(file.read_text()) != ""
    await engine.update_settings([Edit(("scan", "settle_seconds"), 2)], revision=view.revision)
    with pytest.raises(SettingsRejected) as caught:  # the same view again: the file changed
        await engine.update_settings([Edit(("scan", "settle_seconds"), 3)], revision=view.revision)
    assert is_stale(caught.value)
    assert engine.settings.scan.settle_seconds == 2
    assert (await engine.settings_view()).revision == file_revision(file.read_text())

    # A hand edit not reloaded yet: the view shows the file (its indexes are the save's).
    tv = f"    watch: off\n  - name: TV\n    path: {tmp_path / 'tv'}\n"
    file.write_text(file.read_text().replace("    watch: off\n", tv, 1))
    view = await engine.settings_view()
    assert [lib["name"] for lib in view.data["libraries"]] == ["Movies", "TV"]
    assert [lib.name for lib in engine.settings.libraries] == ["Movies"]


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("off", True),
        ("yes", True),
        ("on", True),
        ("No", True),
        ("21:00", True),  # YAML 1.1: the sexagesimal 1260
        ("08:30", False),  # a leading 0 is no sexagesimal: text either way
        ("1_000", True),
        ("0x10", True),
        ("null", True),
        ("~", True),
        ("", True),
        ("true", True),
        ("a: b", True),
        ("#not a comment", True),
        ("playing", False),
        ("/srv/films", False),
        ("Living room TV", False),
    ],
)
def test_text_is_read_back_as_the_same_text(text: str, quoted: bool) -> None:
    """Written by ruamel (YAML 1.2), read by castui's PyYAML (1.1): never another value."""
    dumped = dump_document(plain({"k": text, text or "empty": [text]}))
    assert yaml.safe_load(dumped) == {"k": text, text or "empty": [text]}
    assert dumped.startswith('k: "') is quoted


def test_a_yaml_11_word_saved_from_the_screen_loads_as_that_word(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    file = tmp_path / "settings.yaml"
    file.write_text(f"database: {tmp_path}/db.sqlite\njellyfin:\n  url: http://127.0.0.1:9\n")
    write_edits(
        file,
        [
            Edit(("jellyfin", "pause_while"), "off"),
            Edit(("notify", "daily_summary_at"), "21:00"),
            Edit(("libraries", 0), {"name": "off", "path": str(tmp_path / "a")}),
        ],
    )
    settings = load_settings(file)
    assert settings.jellyfin is not None and settings.jellyfin.pause_while == "off"
    assert settings.notify.daily_summary_at == "21:00"
    assert settings.libraries[0].name == "off"


def test_a_symlinked_settings_file_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "castui.yaml"
    real.parent.mkdir()
    real.write_text(f"database: {tmp_path}/db.sqlite\n")
    link = tmp_path / "settings.yaml"
    link.symlink_to(real)
    written = write_edits(link, [Edit(("guardrails", "gpu_max_temp_c"), 90)])
    assert link.is_symlink() and link.resolve() == real
    assert "gpu_max_temp_c: 90" in real.read_text()
    assert written.result is not None and written.result.settings.guardrails.gpu_max_temp_c == 90
    assert sorted(p.name for p in real.parent.iterdir()) == ["castui.yaml"]  # no temp left


def test_the_temporary_file_is_never_one_planted_beforehand(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text(f"database: {tmp_path}/db.sqlite\n")
    victim = tmp_path / "victim"
    (tmp_path / f".settings.yaml.{os.getpid()}.tmp").symlink_to(victim)  # the old fixed name
    write_edits(file, [Edit(("jellyfin", "url"), "http://127.0.0.1:9")])
    assert not victim.exists()
    assert not file.is_symlink() and "127.0.0.1:9" in file.read_text()


async def test_a_key_saved_into_a_readable_file_makes_it_private(
    engine: Engine, tmp_path: Path
) -> None:
    file = tmp_path / "settings.yaml"
    file.chmod(0o644)
    kept = await engine.update_settings([Edit(("guardrails", "gpu_max_temp_c"), 90)])
    assert stat.S_IMODE(file.stat().st_mode) == 0o644  # no key: the operator's mode is kept
    assert "0600" not in kept.message
    update = await engine.update_settings(
        [Edit(("jellyfin", "url"), "http://127.0.0.1:9"), Edit(("jellyfin", "api_key"), "k3y")]
    )
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert "was readable by others (0644) and now holds a key: made 0600" in update.message


async def test_a_save_cancelled_while_waiting_its_turn_is_dropped(
    engine: Engine, tmp_path: Path
) -> None:
    """Cancelled before it read anything (another save held the engine's lock): dropped."""
    file = tmp_path / "settings.yaml"
    before = file.read_bytes()
    lock = settings_update._locks.setdefault(engine, asyncio.Lock())
    async with lock:  # as a save in progress holds it
        save = asyncio.create_task(
            engine.update_settings([Edit(("guardrails", "gpu_max_temp_c"), 90)])
        )
        for _ in range(5):
            await asyncio.sleep(0)  # let it reach the lock
        save.cancel()
        with pytest.raises(asyncio.CancelledError):
            await save
    assert file.read_bytes() == before
    assert await _audit(engine) == []
