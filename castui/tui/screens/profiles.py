"""Profile editor: pick a profile, edit any field from the keyboard, save to settings.yaml.

Each value is checked as it is typed with the settings file's own rules; an invalid value
stays visible in the draft (marked ✗ with the reason) and the draft cannot be saved until it
is fixed. Saving goes through the engine API's ``update_settings`` (the service's, when
attached): it keeps the file's comments and order, makes a backup, verifies, records each
change in the audit log and reloads the engine for jobs that start next.

The draft is made against the engine's own settings (``settings_view``: the file a save goes
to, and the profiles as the engine runs them), not this process's: attached, the service's
file may not be the one the dashboard was started with, and a draft checked against another
file would be saved into the service's unchecked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Label, OptionList

from castui.tui.profile_editor import (
    PROFILE_FIELDS,
    FieldSpec,
    ProfileDraft,
    field_value,
    format_value,
    parse_value,
)
from castui.tui.screens.base import LiveScreen
from castui_core.errors import CastuiError, SettingsRejected
from castui_core.profiles import Profile
from castui_core.settings import user_config_file
from castui_core.settings_file import read_text
from castui_core.settings_update import Edit, SettingsView, is_stale


class ProfileEditorScreen(LiveScreen):
    """Profiles on the left, their fields on the right, one input line for the value."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True, id="castui.profiles.save"),
        Binding(
            "escape",
            "cancel_edit",
            "Cancel edit / discard",
            show=True,
            id="castui.profiles.cancel_edit",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.draft: ProfileDraft | None = None
        self.editing: FieldSpec | None = None
        #: The engine's view: its file, its profiles, and the file's revision for the save.
        self.view: SettingsView | None = None
        self.base_text = ""
        self.profiles: dict[str, Profile] = dict(self.castui.settings.profiles)
        #: One save at a time: a second ctrl+s must not cancel the one in flight.
        self.saving = False

    @property
    def settings_path(self) -> Path:
        if self.view is not None and self.view.file:
            return Path(self.view.file)
        return self.castui.settings.source or user_config_file()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="profile-main"):
            yield OptionList(*sorted(self.profiles), id="profile-list")
            with Vertical(id="profile-fields-box"):
                yield DataTable(id="profile-fields", cursor_type="row")
                yield Input(id="profile-input", placeholder="value (YAML: 30, true, null, [a, b])")
                yield Label("", id="profile-problem")
        yield Label("", id="profile-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#profile-fields", DataTable)
        table.add_column("field", key="field")
        table.add_column("value", key="value")
        table.add_column("", key="note")
        self.query_one("#profile-input", Input).display = False
        self.query_one("#profile-status", Label).update("reading the engine's settings…")
        self.read_engine_settings()

    @work(group="profiles-load", exclusive=True, exit_on_error=False)
    async def read_engine_settings(self, profile: str | None = None) -> None:
        """The engine's settings and its file's text (the draft's base), then ``profile``
        (or the first) is shown. Only reads: cancelling it (a reload) loses nothing."""
        try:
            view = await self.castui.engine.settings_view()
            path = Path(view.file) if view.file else None
            text = await asyncio.to_thread(_read_text, path)
            profiles = _profiles(view.data)
        except CastuiError as exc:
            self.notify(f"cannot read the engine's settings: {exc}", severity="error")
            return
        self.view, self.base_text, self.profiles = view, text, profiles
        names = self._profile_names()
        options = self.query_one("#profile-list", OptionList)
        options.clear_options()
        options.add_options(names)
        if not names:
            return
        name = profile if profile in names else names[0]
        self.draft = None  # so the highlight below loads the profile fresh
        options.highlighted = names.index(name)
        self.load_profile(name)

    def _profile_names(self) -> list[str]:
        return sorted(self.profiles)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if self.view is None:
            return  # still reading the engine's settings: read_engine_settings shows one
        name = self._profile_names()[event.option_index]
        if self.draft is None or self.draft.profile != name:
            if self.draft is not None and self.draft.edits:
                self.notify(f"unsaved edits to {self.draft.profile} discarded", severity="warning")
            self.load_profile(name)

    def on_option_list_option_selected(self, _event: OptionList.OptionSelected) -> None:
        self.query_one("#profile-fields", DataTable).focus()

    def load_profile(self, name: str) -> None:
        """A fresh draft of ``name`` against the engine's file as last read."""
        self.draft = ProfileDraft(self.base_text, self.settings_path, name)
        self.refresh_table()

    def _value(self, spec: FieldSpec) -> object:
        assert self.draft is not None
        if spec.path in self.draft.edits:
            return self.draft.edits[spec.path]
        return field_value(self.profiles[self.draft.profile], spec.path)

    def refresh_table(self) -> None:
        draft = self.draft
        assert draft is not None
        table = self.query_one("#profile-fields", DataTable)
        row = table.cursor_row
        table.clear()
        for spec in PROFILE_FIELDS:
            problem = draft.problems.get(spec.name)
            value = format_value(self._value(spec))
            if spec.path in draft.edits:
                value = f"* {value}"
            note = f"✗ {problem}" if problem else spec.description
            table.add_row(spec.name, value, note, key=spec.name)
        table.move_cursor(row=row)
        status = f"{draft.profile} · {self.settings_path}"
        if draft.edits:
            status += f" · {len(draft.edits)} unsaved"
            status += " · ctrl+s save" if draft.valid else " · fix ✗ to save"
        for line in draft.general[:2]:
            status += f"\n✗ {line}"
        self.query_one("#profile-status", Label).update(status)

    # --- editing --------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "profile-fields":
            return
        spec = PROFILE_FIELDS[event.cursor_row]
        self.editing = spec
        field_input = self.query_one("#profile-input", Input)
        field_input.display = True
        field_input.border_title = spec.name
        field_input.value = format_value(self._value(spec))
        field_input.focus()
        self._hint(field_input.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.editing is not None:
            self._hint(event.value)

    def _hint(self, text: str) -> None:
        assert self.draft is not None and self.editing is not None
        problem = self.draft.problem_for(self.editing, parse_value(self.editing, text))
        label = self.query_one("#profile-problem", Label)
        label.update(f"✗ {problem}" if problem else "✓ valid")
        label.set_class(problem is not None, "-invalid")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.editing is None or self.draft is None:
            return
        self.draft.set(self.editing, parse_value(self.editing, event.value))
        self._end_edit()

    def _end_edit(self) -> None:
        self.editing = None
        self.query_one("#profile-input", Input).display = False
        self.query_one("#profile-problem", Label).update("")
        self.refresh_table()
        self.query_one("#profile-fields", DataTable).focus()

    def action_cancel_edit(self) -> None:
        if self.editing is not None:
            self._end_edit()
        elif self.draft is not None and self.draft.edits and not self.saving:
            self.load_profile(self.draft.profile)
            self.notify("edits discarded")

    # --- saving ---------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.saving:
            self.notify("saving…", severity="warning")
            return
        draft = self.draft
        if draft is None or not draft.edits:
            self.notify("nothing to save")
            return
        if not draft.valid:
            self.notify("cannot save: fix the fields marked ✗ first", severity="error")
            return
        # Not exclusive: a second save would cancel this one half-way. The guard above makes
        # a second ctrl+s say so instead.
        self.saving = True
        self.run_worker(self._save(draft), group="save", exit_on_error=False)

    async def _save(self, draft: ProfileDraft) -> None:
        # Through the engine API, like every setting: attached to a service, the service
        # validates, writes its own file, audits and reloads (never a write behind its back).
        # The revision makes the engine refuse a draft made on a file that changed since.
        # No shield needed here: the engine's update_settings finishes a save whose caller
        # was cancelled (a closed screen), and so does a service whose dashboard went away.
        edits = [Edit(path, value) for path, value in draft.file_edits().items()]
        revision = self.view.revision if self.view is not None else None
        try:
            update = await self.castui.engine.update_settings(
                edits, actor="operator", revision=revision
            )
        except SettingsRejected as exc:
            problems = "; ".join(f"{where}: {what}" for where, what in exc.problems) or str(exc)
            self.notify(f"not saved: {problems}", severity="error", timeout=15)
            if is_stale(exc):  # the file changed under the draft: read it again
                self.read_engine_settings(draft.profile)
            return
        except CastuiError as exc:
            self.notify(f"not saved: {exc}", severity="error", timeout=15)
            return
        finally:
            self.saving = False
        self.notify(update.message, timeout=5)
        self.read_engine_settings(draft.profile)


def _read_text(path: Path | None) -> str:
    """The settings file's text; ``""`` when there is none yet (a save creates it)."""
    return "" if path is None else read_text(path)


def _profiles(data: dict[str, Any]) -> dict[str, Profile]:
    """The engine's profiles from its view (JSON form), as the editor shows them."""
    try:
        raw = data.get("profiles") or {}
        return {name: Profile.model_validate(value) for name, value in raw.items()}
    except ValueError as exc:  # pydantic's ValidationError: another castui version's shape
        raise CastuiError(
            f"the engine's profiles were not understood ({exc}); is it the same castui version?"
        ) from exc
