"""Settings: every setting of the settings file, edited from the dashboard and saved live.

Sections on the left (each library, the limits, scan, guardrails and schedule, service,
Jellyfin, notifications, each Sonarr/Radarr, queue, node, files), the fields of the selected
one on the right with their value and description. The fields are generated from the
settings model (:mod:`castui.tui.settings_form`), so nothing here lists them by hand.

Why only ``settings_view()`` and ``update_settings()``: the same two calls work with the
engine in-process and attached to a service (which then writes its own file, with its
backup, verify-and-rollback and audit entry), so the screen never touches the store or the
file. Secrets come from the view as "set" or nothing and are only ever replaced, never shown.
A value is checked with its section's model as it is entered (the model's words, marked ✗)
and a draft with a ✗ is not sent; what only the whole file can refuse (two libraries in one
folder) comes back as ``SettingsRejected`` and is shown next to its field, nothing written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, OptionList

from castui.tui.screens.base import LiveScreen
from castui.tui.settings_form import (
    ArrForm,
    FieldSpec,
    KeyPath,
    LibraryForm,
    Section,
    changed,
    check_section,
    configured,
    current_value,
    dotted,
    format_value,
    parse_input,
    sections,
    shown_value,
    value_at,
)
from castui_core.errors import CastuiError
from castui_core.settings_update import (
    Edit,
    SettingsRejected,
    SettingsView,
    is_stale,
    needs_restart,
)

#: Marks a field whose change takes effect only after castui restarts.
RESTART = "↻"
#: The value column's widest; longer values (a list of extensions) are cut, the input has all.
VALUE_WIDTH = 28


class SettingsScreen(LiveScreen):
    """Section list, field table, one input line; ctrl+s sends the draft to the engine."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True, id="castui.settings.save"),
        Binding("escape", "cancel_edit", "Discard", id="castui.settings.cancel_edit"),
        Binding("x", "clear_field", "None", id="castui.settings.clear"),
        Binding("a", "add_library", "Add library", id="castui.settings.add_library"),
        Binding("delete", "remove_section", "Remove", id="castui.settings.remove"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view: SettingsView | None = None
        self.sections: list[Section] = []
        self.section: Section | None = None
        self.draft: dict[KeyPath, Any] = {}
        #: Problems by dotted path: the section model's as entered, the service's on save.
        self.problems: dict[str, str] = {}
        self.general: list[str] = []
        #: Saved changes that wait for a restart (dotted paths).
        self.restart_pending: list[str] = []
        self.editing: FieldSpec | None = None
        self.saving = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="settings-main"):
            yield OptionList(id="settings-sections")
            with Vertical(id="settings-fields-box"):
                yield Label("", id="settings-title")
                yield DataTable(id="settings-fields", cursor_type="row")
                yield Input(id="settings-input")
                yield Label("", id="settings-help")
        yield Label("", id="settings-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#settings-input", Input).display = False
        self.load()

    def on_resize(self) -> None:
        if self.view is not None:
            self.refresh_fields()  # the description column takes the new width

    def on_screen_resume(self) -> None:
        # The profile editor or another front end may have saved meanwhile: re-read, unless
        # that would throw away what the operator is typing.
        if not self.draft and self.editing is None:
            self.load()

    # --- data -----------------------------------------------------------------------------

    @work(group="settings-load", exit_on_error=False)
    async def load(self, select: str | None = None) -> None:
        """Read the settings from the engine (the service's, when attached) and show them.

        Shielded: a call cancelled half-way (the screen closing) must still read its reply,
        or an attached engine's connection would hand that reply to the next call.
        """
        try:
            view = await asyncio.shield(self.castui.engine.settings_view())
        except CastuiError as exc:
            self.notify(f"cannot read the settings: {exc}", severity="error", timeout=15)
            return
        self.show_view(view, select)

    def show_view(self, view: SettingsView, select: str | None = None) -> None:
        self.view = view
        keep = select or (self.section.key if self.section else None)
        self.sections = sections(view.data)
        options = self.query_one("#settings-sections", OptionList)
        options.clear_options()
        options.add_options([_section_label(s) for s in self.sections])
        keys = [s.key for s in self.sections]
        index = keys.index(keep) if keep in keys else 0
        self.section = self.sections[index]
        options.highlighted = index
        self.refresh_fields()

    def _value(self, section: Section, spec: FieldSpec) -> Any:
        path = section.path(spec)
        if path in self.draft:
            return self.draft[path]
        return current_value(self.view.data if self.view else {}, section, spec)

    def refresh_fields(self) -> None:
        section = self.section
        table = self.query_one("#settings-fields", DataTable)
        row = table.cursor_row
        # Columns again each time: a column keeps the width of the longest cell it ever had.
        table.clear(columns=True)
        title = self.query_one("#settings-title", Label)
        if section is None:
            return
        if section.link == "add_arr":
            title.update("Sonarr/Radarr: enter adds one, asked to rescan after each swap")
        elif section.link is not None:
            title.update(f"{section.title}: enter opens the profile editor (e)")
        else:
            notes = [section.title]
            if section.note:
                notes.append(section.note)
            if section.removable and configured(self.view.data if self.view else {}, section):
                notes.append("del removes it")
            if any(needs_restart(section.path(spec)) for spec in section.fields):
                notes.append(f"{RESTART} takes effect after a restart")
            title.update(" · ".join(notes))
        rows = []
        for spec in section.fields:
            path = section.path(spec)
            name = f"{spec.name} {RESTART}" if needs_restart(path) else spec.name
            value = shown_value(spec, self._value(section, spec))
            if path in self.draft:
                value = f"* {value}"
            problem = self.problems.get(section.dotted(spec))
            rows.append((name, value, f"✗ {problem}" if problem else spec.description))
        name_width = max((len(r[0]) for r in rows), default=5)
        value_width = min(max((len(r[1]) for r in rows), default=5), VALUE_WIDTH)
        # The description fills the rest (the help line under the table has all of it).
        width = table.size.width or (self.app.size.width - 28)
        note_width = max(12, width - name_width - value_width - 7)
        table.add_column("field", key="field", width=name_width)
        table.add_column("value", key="value", width=value_width)
        table.add_column("", key="note", width=note_width)
        for spec, cells in zip(section.fields, rows, strict=True):
            table.add_row(*cells, key=section.dotted(spec))
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        self._show_help()
        self._status()

    def _status(self) -> None:
        if self.view and self.view.file:
            parts = [f"saves to {self.view.file}"]
        else:
            parts = ["no settings file yet: a save creates one"]
        if self.draft:
            parts.append(f"{len(self.draft)} unsaved")
            parts.append("fix ✗ to save" if self.problems else "ctrl+s saves")
        if self.restart_pending:
            parts.append(f"{RESTART} restart castui for: {', '.join(self.restart_pending)}")
        text = " · ".join(parts)
        section_problem = self.section and self.problems.get(dotted(self.section.base))
        lines = [f"✗ {section_problem}"] if section_problem else []
        lines += [f"✗ {line}" for line in self.general[:2]]
        if lines:
            text += "\n" + "\n".join(lines)
        self.query_one("#settings-status", Label).update(text)

    def _selected_spec(self) -> FieldSpec | None:
        section = self.section
        table = self.query_one("#settings-fields", DataTable)
        if section is None or not section.fields or not table.row_count:
            return None
        return section.fields[min(table.cursor_row, len(section.fields) - 1)]

    def _show_help(self) -> None:
        label = self.query_one("#settings-help", Label)
        if self.editing is not None:
            return
        spec = self._selected_spec()
        if spec is None or self.section is None:
            label.update("")
            label.set_class(False, "-invalid")
            return
        problem = self.problems.get(self.section.dotted(spec))
        label.set_class(problem is not None, "-invalid")
        if problem is not None:
            label.update(f"✗ {spec.name}: {problem}")
            return
        restart = (
            f" {RESTART} Takes effect after a restart."
            if needs_restart(self.section.path(spec))
            else ""
        )
        label.update(f"{spec.name}: {spec.help()}{restart}")

    # --- navigation -----------------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id != "settings-sections" or not self.sections:
            return
        section = self.sections[min(event.option_index, len(self.sections) - 1)]
        if section is not self.section:
            self._end_edit(refresh=False)
            self.section = section
            self.refresh_fields()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.section is not None and self.section.link == "add_arr":
            self.add_arr()
            return
        if self.section is not None and self.section.link is not None:
            self.app.switch_mode(self.section.link)
            return
        self.query_one("#settings-fields", DataTable).focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "settings-fields":
            self._show_help()

    # --- editing --------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "settings-fields":
            return
        spec = self._selected_spec()
        section = self.section
        if spec is None or section is None:
            return
        if spec.kind == "bool":  # nothing to type: enter flips it
            self._set(section, spec, not bool(self._value(section, spec)))
            return
        self.editing = spec
        field_input = self.query_one("#settings-input", Input)
        field_input.display = True
        field_input.border_title = spec.name
        field_input.password = spec.secret
        field_input.suggester = SuggestFromList(spec.choices) if spec.choices else None
        # A secret's input starts empty: what is typed replaces it; the old one is never shown.
        field_input.value = "" if spec.secret else format_value(spec, self._value(section, spec))
        field_input.placeholder = "new value (replaces it; never shown)" if spec.secret else ""
        field_input.focus()
        self._hint(field_input.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "settings-input" and self.editing is not None:
            self._hint(event.value)

    def _hint(self, text: str) -> None:
        """The problem the typed text would be, as the operator types."""
        spec, section = self.editing, self.section
        if spec is None or section is None or self.view is None:
            return
        parsed = parse_input(spec, text)
        problem = parsed.problem
        if problem is None:
            draft = {**self.draft, section.path(spec): parsed.value}
            problem = check_section(self.view.data, section, draft).get(section.dotted(spec))
        label = self.query_one("#settings-help", Label)
        label.update(f"✗ {problem}" if problem else f"✓ {spec.help()}")
        label.set_class(problem is not None, "-invalid")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        spec, section = self.editing, self.section
        if event.input.id != "settings-input" or spec is None or section is None:
            return
        if spec.secret and not event.value:
            self._end_edit()  # nothing typed: the secret stays as it is
            return
        parsed = parse_input(spec, event.value)
        if parsed.problem is not None:
            self._hint(event.value)
            return  # not a value of this kind at all: keep the input open
        self._end_edit(refresh=False)
        self._set(section, spec, parsed.value)

    def _set(self, section: Section, spec: FieldSpec, value: Any) -> None:
        """Put ``value`` in the draft and check the section again with its model."""
        path = section.path(spec)
        saved = value_at(self.view.data if self.view else {}, path)
        if value == saved and not spec.secret:
            self.draft.pop(path, None)
        else:
            self.draft[path] = value
        self._recheck(section)
        self.refresh_fields()

    def _recheck(self, section: Section) -> None:
        if self.view is None:
            return
        prefix = dotted(section.base)
        self.problems = {
            k: v
            for k, v in self.problems.items()
            if not (k == prefix or k.startswith(prefix + "."))
        }
        self.general = []
        self.problems.update(check_section(self.view.data, section, self.draft))

    def _end_edit(self, refresh: bool = True) -> None:
        self.editing = None
        field_input = self.query_one("#settings-input", Input)
        field_input.display = False
        field_input.value = ""
        if refresh:
            self.refresh_fields()
            self.query_one("#settings-fields", DataTable).focus()

    def action_cancel_edit(self) -> None:
        if self.editing is not None:
            self._end_edit()
        elif self.draft:
            self.draft.clear()
            self.problems.clear()
            self.general = []
            self.refresh_fields()
            self.notify("unsaved changes discarded")

    def action_clear_field(self) -> None:
        spec, section = self._selected_spec(), self.section
        if self.editing is not None or spec is None or section is None:
            return
        if not spec.optional:
            self.notify(f"{spec.name} needs a value", severity="warning")
            return
        self._set(section, spec, None)

    # --- saving ---------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.editing is not None:
            self.notify("finish the value first (enter), or esc", severity="warning")
            return
        if self.view is None:
            return
        edits = [
            Edit(path, value, item=self._item(path))
            for path, value in changed(self.view.data, self.draft)
        ]
        if not edits:
            self.notify("nothing to save")
            return
        if self.problems:
            self.notify("not saved: fix the fields marked ✗ first", severity="error")
            return
        self.send(edits)

    def _item(self, path: KeyPath) -> str | None:
        """The name of the list item ``path`` goes through (``libraries.1...``) as shown, so
        the engine refuses the edit if another item sits at that index now."""
        if self.view is None or len(path) < 2 or not isinstance(path[1], int):
            return None
        return _name_at(self.view.data, path[:2])

    def send(self, edits: list[Edit], select: str | None = None) -> None:
        """Send edits to the engine, one save at a time (a second ctrl+s waits its turn)."""
        if self.saving:
            self.notify("a save is in progress", severity="warning")
            return
        self.saving = True
        self._send(edits, select)

    @work(group="settings-save", exit_on_error=False)
    async def _send(self, edits: list[Edit], select: str | None) -> None:
        """The engine validates, writes, reloads and answers what it did (shielded like
        :meth:`load`: a save is never abandoned half-way)."""
        try:
            update = await asyncio.shield(
                self.castui.engine.update_settings(
                    edits,
                    actor="dashboard",
                    revision=self.view.revision if self.view is not None else None,
                )
            )
        except SettingsRejected as exc:
            if is_stale(exc):
                self._stale(exc)
            else:
                self._rejected(exc)
            return
        except CastuiError as exc:
            self.notify(f"not saved: {exc}", severity="error", timeout=15)
            return
        finally:
            self.saving = False
        restart = [c.path for c in update.changes if c.needs_restart]
        self.restart_pending += [p for p in restart if p not in self.restart_pending]
        self.notify(
            update.message,
            title="settings saved",
            severity="warning" if restart else "information",
            timeout=10 if restart else 5,
        )
        self.draft.clear()
        self.problems.clear()
        self.general = []
        self.load(select)

    def _stale(self, exc: SettingsRejected) -> None:
        """The file changed since this screen read it (another dashboard, a hand edit): the
        edit may name the wrong list item now, so it is dropped and the settings read again."""
        self.notify(
            exc.problems[0][1] if exc.problems else str(exc),
            title="not saved; the settings file is unchanged",
            severity="error",
            timeout=15,
        )
        self.draft.clear()
        self.problems.clear()
        self.general = []
        self.load()

    def _rejected(self, exc: SettingsRejected) -> None:
        """Each of the model's problems next to its field; the rest under the table."""
        known = {s.dotted(f) for s in self.sections for f in s.fields}
        known |= {dotted(s.base) for s in self.sections if s.base}
        self.general = []
        for where, message in exc.problems:
            if where in known:
                self.problems[where] = message
            else:
                self.general.append(f"{where}: {message}" if where else message)
        first = next(iter(exc.problems), ("settings", str(exc)))
        self.notify(
            f"{first[0]}: {first[1]}",
            title="not saved; the settings file is unchanged",
            severity="error",
            timeout=15,
        )
        self.refresh_fields()

    # --- libraries and optional sections --------------------------------------------------

    def action_add_library(self) -> None:
        if self.view is None:
            return
        if self.draft:
            self.notify("save or discard (esc) the changes first", severity="warning")
            return
        libraries = self.view.data.get("libraries") or []
        names = [str(lib.get("name")) for lib in libraries]
        profiles = sorted(self.view.data.get("profiles") or ())
        self.app.push_screen(library_form(names, profiles), self._added("libraries"))

    def add_arr(self) -> None:
        if self.view is None:
            return
        if self.draft:
            self.notify("save or discard (esc) the changes first", severity="warning")
            return
        entries = self.view.data.get("arr") or []
        names = [str(entry.get("name")) for entry in entries]
        self.app.push_screen(arr_form(names), self._added("arr"))

    def _added(self, key: str) -> Callable[[dict[str, Any] | None], None]:
        """Send the form's new entry, appended to the ``key`` list; then show it."""

        def chosen(value: dict[str, Any] | None) -> None:
            if value is None or self.view is None:
                return
            index = len(self.view.data.get(key) or [])
            self.send([Edit((key, index), value, append=True)], select=f"{key}.{index}")

        return chosen

    def action_remove_section(self) -> None:
        section = self.section
        if section is None or not section.removable or self.view is None:
            self.notify("only a library, an arr entry or an optional section can be removed")
            return
        if section.optional and value_at(self.view.data, section.base) is None:
            self.notify(f"{section.title} is not configured")
            return
        if self.draft:
            self.notify("save or discard (esc) the changes first", severity="warning")
            return

        def chosen(remove: bool | None) -> None:
            if remove:
                self.send([Edit(section.base, remove=True, item=self._item(section.base))])

        if section.base[0] == "libraries":
            detail = "Its files stay where they are; castui stops looking after them."
        else:
            detail = "castui stops using it; the rest of the settings stay as they are."
        self.app.push_screen(ConfirmRemoveScreen(section.title, detail), chosen)


def _section_label(section: Section) -> str:
    if section.link is not None:
        return f"{section.title} →"
    return section.title


#: One input of an add form: its name, placeholder and the values it suggests.
FormPart = tuple[str, str, list[str]]
#: What an add form's values make: problems by part (empty: fine) and the entry to add.
FormCheck = Callable[[dict[str, str]], tuple[dict[str, str], dict[str, Any]]]


class AddEntryScreen(ModalScreen[dict[str, Any] | None]):
    """A small form for a new list entry (a library, a Sonarr/Radarr); returns the entry as
    the settings file spells it, or None. Each input's problem is the model's, shown under it.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="castui.settings.add.cancel"),
    ]

    def __init__(self, title: str, parts: list[FormPart], check: FormCheck) -> None:
        super().__init__()
        self._title = title
        self._parts = parts
        self._check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="add-dialog"):
            yield Label(self._title, classes="title")
            for part, placeholder, suggestions in self._parts:
                yield Input(
                    placeholder=placeholder,
                    id=f"add-{part}",
                    suggester=SuggestFromList(suggestions) if suggestions else None,
                )
                yield Label("", id=f"add-{part}-problem", classes="form-problem")
            with Horizontal(id="add-buttons"):
                yield Button("Add", id="add", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        for part, _placeholder, _suggestions in self._parts:
            self.query_one(f"#add-{part}", Input).border_title = part

    def _submit(self) -> None:
        values = {part: self.query_one(f"#add-{part}", Input).value for part, _, _ in self._parts}
        problems, value = self._check(values)
        for part, _placeholder, _suggestions in self._parts:
            label = self.query_one(f"#add-{part}-problem", Label)
            label.update(f"✗ {problems[part]}" if part in problems else "")
        if not problems:
            self.dismiss(value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        order = [f"add-{part}" for part, _, _ in self._parts]
        if event.input.id in order[:-1]:
            self.query_one(f"#{order[order.index(event.input.id) + 1]}", Input).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "add":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def library_form(names: list[str], profiles: list[str]) -> AddEntryScreen:
    """Name, path and profile of a new library."""

    def check(values: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
        form = LibraryForm(values["name"], values["path"], values["profile"])
        return form.check(names, profiles), form.value()

    parts: list[FormPart] = [
        ("name", "e.g. Films", []),
        ("path", "absolute, e.g. /media/films", []),
        ("profile", f"empty: the default; {', '.join(profiles)}", profiles),
    ]
    return AddEntryScreen("Add a library", parts, check)


def arr_form(names: list[str]) -> AddEntryScreen:
    """Kind, address and name of a new Sonarr/Radarr (its key goes in its section after)."""

    def check(values: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
        form = ArrForm(values["kind"], values["url"], values["name"])
        return form.check(names), form.value()

    parts: list[FormPart] = [
        ("kind", "sonarr or radarr", ["sonarr", "radarr"]),
        ("url", "e.g. http://127.0.0.1:8989", []),
        ("name", "empty: the kind (name two of a kind apart)", []),
    ]
    return AddEntryScreen("Add a Sonarr or Radarr", parts, check)


class ConfirmRemoveScreen(ModalScreen[bool]):
    """Returns True to remove the section. Why ask: a stray key must not drop a library."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "choose(True)", "Remove", id="castui.settings.remove.confirm"),
        Binding("escape,n", "choose(False)", "Keep", id="castui.settings.remove.stay"),
    ]

    def __init__(self, title: str, detail: str) -> None:
        super().__init__()
        self._what = title
        self._detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="remove-dialog"):
            yield Label(f"Remove {self._what} from the settings?", classes="title")
            yield Label(self._detail)
            with Horizontal(id="remove-buttons"):
                yield Button("Remove (y)", id="remove", variant="error")
                yield Button("Keep (esc)", id="keep")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "remove")

    def action_choose(self, remove: bool) -> None:
        self.dismiss(remove)


def _name_at(data: dict[str, Any], path: KeyPath) -> str | None:
    """The ``name`` of the list item at ``path`` (``("libraries", 1)``) in the view's data."""
    items = data.get(str(path[0]))
    index = path[1]
    if not isinstance(items, list) or not isinstance(index, int) or not 0 <= index < len(items):
        return None
    name = items[index].get("name") if isinstance(items[index], dict) else None
    return str(name) if name is not None else None
