"""Issue 14: a setting changed from a dashboard attached to a service goes through the service.

Before: the profile editor wrote the settings file itself, also when attached, and had the
service re-read it: the dashboard wrote behind the service's back, into whatever file *it*
had loaded. Now the attached engine sends the edits over the control socket; the service
validates them, writes its own file (comments kept, backup), audits each change and reloads.
A real ``castui --no-ui`` process, a real socket, the real file and database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from realtime_site import Service, make_site

from castui_core.control import RemoteEngine
from castui_core.errors import SettingsRejected
from castui_core.settings import load_settings
from castui_core.settings_file import backup_path
from castui_core.settings_update import Edit, file_revision, is_stale

pytestmark = pytest.mark.timeout(120)

GUARDRAILS = "guardrails:\n  gpu_max_temp_c: 85   # the card runs hot\n"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """``castui --no-ui`` on an empty library, serving its control socket."""
    site = make_site(tmp_path, extra_yaml=GUARDRAILS)
    svc = Service(site, realtime=False)
    try:
        svc.start(deadline_s=60)
        yield site
    finally:
        svc.stop_all()


@pytest.fixture
async def remote(service: dict[str, Path]) -> AsyncIterator[RemoteEngine]:
    engine = RemoteEngine(load_settings(service["settings"]))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def test_attached_edit_is_saved_audited_and_applied_by_the_service(
    service: dict[str, Path], remote: RemoteEngine
) -> None:
    file = service["settings"]
    before = file.read_text()
    update = await remote.update_settings(
        [
            Edit(("guardrails", "gpu_max_temp_c"), 90),
            Edit(("guardrails", "schedule"), ["22:00-07:00"]),
        ],
        actor="dashboard",
    )
    assert update.file == str(file)  # the service's own file
    assert update.applied_live, update.message
    assert [(c.path, c.before, c.after) for c in update.changes] == [
        ("guardrails.gpu_max_temp_c", "85", "90"),
        ("guardrails.schedule", "[]", '["22:00-07:00"]'),
    ]
    text = file.read_text()
    assert "gpu_max_temp_c: 90   # the card runs hot" in text
    assert "- 22:00-07:00" in text
    assert backup_path(file).read_text() == before

    # Audited by the service, in the database it owns (read here through our read handle).
    audit = await remote.store.list_events(kind="settings_edit")
    rows = sorted((a.details["path"], a.details["before"], a.details["after"]) for a in audit)
    assert rows == [
        ("guardrails.gpu_max_temp_c", "85", "90"),
        ("guardrails.schedule", "[]", '["22:00-07:00"]'),
    ]
    assert {a.actor for a in audit} == {"dashboard"}

    # Asked again through the socket: the service runs on the new values.
    view = await remote.settings_view()
    assert view.file == str(file)
    assert view.data["guardrails"]["gpu_max_temp_c"] == 90
    assert view.data["guardrails"]["schedule"] == ["22:00-07:00"]
    assert remote.settings.guardrails.gpu_max_temp_c == 90  # this side's copy follows


async def test_attached_invalid_edit_is_refused_by_the_service(
    service: dict[str, Path], remote: RemoteEngine
) -> None:
    file = service["settings"]
    before = file.read_bytes()
    with pytest.raises(SettingsRejected) as caught:  # the same class, across the socket
        await remote.update_settings([Edit(("guardrails", "gpu_max_temp_c"), 500)])
    ((path, why),) = caught.value.problems
    assert path == "guardrails.gpu_max_temp_c"
    assert "less than or equal to 110" in why
    assert file.read_bytes() == before
    assert not backup_path(file).exists()
    assert await remote.store.list_events(kind="settings_edit") == []
    view = await remote.settings_view()
    assert view.data["guardrails"]["gpu_max_temp_c"] == 85


async def test_attached_save_on_a_stale_view_is_refused_by_the_service(
    service: dict[str, Path], remote: RemoteEngine
) -> None:
    """The revision, the append and the item name cross the socket: a dashboard whose view
    is older than the service's file never edits the wrong library (review #1)."""
    file = service["settings"]
    view = await remote.settings_view()
    assert view.revision == file_revision(file.read_text())
    libraries = view.data["libraries"]
    await remote.update_settings([Edit(("scan", "settle_seconds"), 2)], revision=view.revision)
    before = file.read_bytes()
    with pytest.raises(SettingsRejected) as caught:
        await remote.update_settings([Edit(("scan", "settle_seconds"), 3)], revision=view.revision)
    assert is_stale(caught.value)
    with pytest.raises(SettingsRejected) as caught:  # appended at a count the file no longer has
        await remote.update_settings(
            [Edit(("libraries", len(libraries) + 1), dict(libraries[0]), append=True)]
        )
    assert is_stale(caught.value)
    with pytest.raises(SettingsRejected) as caught:
        await remote.update_settings([Edit(("libraries", 0), remove=True, item="not-this-one")])
    assert is_stale(caught.value)
    assert file.read_bytes() == before
    assert (await remote.settings_view()).data["scan"]["settle_seconds"] == 2
