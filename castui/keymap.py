"""The dashboard's binding ids, and what is wrong with a ``keymap:`` from the settings.

Why a module of its own, without Textual: ``castui config check`` (and the service, which never
loads the dashboard) must be able to say that ``keymap: {castui.scna: f5}`` names no binding,
and that check must not pull in Textual. ``tests/tui/test_keymap.py`` holds this list to the
ids the dashboard's ``Binding`` declarations really carry, so the two cannot drift apart.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

#: Every binding id of the dashboard, with what the binding does (for messages and docs).
BINDING_IDS: dict[str, str] = {
    "castui.dashboard": "show the dashboard",
    "castui.history": "show the history",
    "castui.libraries": "show the libraries",
    "castui.profiles": "show the profile editor",
    "castui.report": "show the readiness report",
    "castui.toggle_pause": "pause / resume the queue",
    "castui.scan": "scan all libraries now",
    "castui.help": "show the help",
    "castui.quit": "quit",
    "castui.interrupt": "quit (ctrl+c)",
    "castui.libraries.scan": "libraries: scan the selected library",
    "castui.report.refresh": "report: read the readiness report again",
    "castui.report.calibrate": "report: calibrate now (measure the engine's encode speed)",
    "castui.settings": "show the settings",
    "castui.settings.save": "settings: save the changes",
    "castui.settings.cancel_edit": "settings: cancel the edit / discard the changes",
    "castui.settings.clear": "settings: set the field to none",
    "castui.settings.add_library": "settings: add a library",
    "castui.settings.remove": "settings: remove the library or section",
    "castui.settings.add.cancel": "add dialog (library, Sonarr/Radarr): cancel",
    "castui.settings.remove.confirm": "remove dialog: remove",
    "castui.settings.remove.stay": "remove dialog: keep",
    "castui.job.back": "job detail: back",
    "castui.job.retry": "job detail: retry",
    "castui.job.cancel": "job detail: cancel",
    "castui.job.raise_priority": "job detail: raise priority",
    "castui.job.restore_original": "job detail: restore the archived original",
    "castui.restore.confirm": "restore dialog: put the original back",
    "castui.restore.stay": "restore dialog: keep as is",
    "castui.quit.requeue": "quit dialog: stop jobs and requeue them",
    "castui.quit.wait": "quit dialog: wait for running jobs",
    "castui.quit.stay": "quit dialog: stay",
    "castui.profiles.save": "profile editor: write settings.yaml",
    "castui.profiles.cancel_edit": "profile editor: cancel the edit",
    "castui.help.close": "help: close",
    "castui.active.open": "active jobs: open the job",
    "castui.queue.up": "queue: cursor up",
    "castui.queue.down": "queue: cursor down",
    "castui.queue.page_up": "queue: page up",
    "castui.queue.page_down": "queue: page down",
    "castui.queue.first": "queue: first job",
    "castui.queue.last": "queue: last job",
    "castui.queue.open": "queue: open the job",
}

# One key as Textual names it: ``f5``, ``ctrl+r``, ``question_mark``, ``?``, ``shift+tab``.
_KEY = re.compile(r"^(?:[a-z]+\+)*(?:[a-z0-9_]+|[^\s,])$", re.IGNORECASE)


def keymap_problems(keymap: Mapping[str, str]) -> list[str]:
    """One line per problem in a ``keymap:`` section (empty: every entry can be applied).

    An unknown id is reported with the nearest known id: Textual ignores it silently, so a
    typo would otherwise leave the old key working with no word said.
    """
    problems: list[str] = []
    for binding_id, keys in keymap.items():
        if binding_id not in BINDING_IDS:
            near = difflib.get_close_matches(binding_id, list(BINDING_IDS), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            problems.append(
                f"keymap.{binding_id}: no dashboard key has this id; {hint}the ids are listed"
                " in settings.sample.yaml (`castui.scan`, `castui.toggle_pause`, …)"
            )
            continue
        names = [k.strip() for k in str(keys).split(",")]
        bad = [k for k in names if not _KEY.match(k)]
        if not names or bad:
            shown = ", ".join(repr(k) for k in bad) or repr(keys)
            problems.append(
                f"keymap.{binding_id}: {shown} is not a key; write keys like f5, ctrl+r or"
                " question_mark, several separated by commas"
            )
    return problems


def usable_keymap(keymap: Mapping[str, str]) -> dict[str, str]:
    """The entries that can be applied as they are (known id, keys without spaces)."""
    return {
        binding_id: ",".join(k.strip() for k in keys.split(","))
        for binding_id, keys in keymap.items()
        if not keymap_problems({binding_id: keys})
    }
