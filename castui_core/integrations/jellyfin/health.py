"""The Jellyfin health check: at start, on reload, and ``castui jellyfin check``.

Why each step: Jellyfin answers 204 to a change notification even when it will do nothing
with it (a path outside every library is silently dropped), so a misconfiguration is invisible
unless it is looked for. In order, each step only when the one before passed:

1. reachable: ``/System/Info/Public`` needs no key (name, version), so "wrong URL / down" is
   told apart from "wrong key";
2. key valid: ``/System/Info`` (401 → the key is missing or invalid);
3. key may list libraries: ``/Library/VirtualFolders`` (403 → not an administrator's key);
4. every castui library that notifies Jellyfin (and its ``output_dir``), mapped through
   ``path_map``, lies inside a Jellyfin library location: a path that does not is named as an
   error, because every notification about it would be dropped.

Exit codes for the command: 0 healthy; 1 Jellyfin could not be reached or failed (try again);
2 a settings problem (no key, key refused, a library Jellyfin does not cover).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from castui_core.errors import (
    CastuiError,
    JellyfinAuthError,
    JellyfinConfigError,
    JellyfinError,
)
from castui_core.integrations.jellyfin.client import JellyfinClient, ServerInfo, VirtualFolder
from castui_core.integrations.jellyfin.paths import location_for, to_jellyfin
from castui_core.settings import Settings


@dataclass(frozen=True)
class LibraryMapping:
    """One castui folder and where Jellyfin sees it."""

    library: str
    castui_path: str
    jellyfin_path: str
    jellyfin_library: str | None  # the Jellyfin library holding it; None: dropped
    location: str | None


@dataclass
class HealthReport:
    url: str
    server: ServerInfo | None = None
    key_valid: bool | None = None
    may_list_libraries: bool | None = None
    monitor_delay_s: float | None = None
    folders: list[VirtualFolder] = field(default_factory=list)
    mappings: list[LibraryMapping] = field(default_factory=list)
    problems: tuple[str, ...] = ()
    exit_code: int = 0
    key_refused: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def lines(self) -> list[str]:
        """What ``castui jellyfin check`` prints (never the key)."""
        out = [f"Jellyfin at {self.url}"]
        if self.server is not None:
            out.append(f"  ok   reachable: {self.server.name} (Jellyfin {self.server.version})")
        if self.key_valid:
            out.append("  ok   API key accepted")
        if self.may_list_libraries:
            names = ", ".join(f.name for f in self.folders) or "none"
            out.append(f"  ok   the key may list libraries: {names}")
        if self.monitor_delay_s is not None:
            out.append(f"  info Jellyfin refreshes {self.monitor_delay_s:g} s after a change")
        for m in self.mappings:
            if m.jellyfin_library is not None:
                shown = m.castui_path
                if m.jellyfin_path != m.castui_path:
                    shown += f" -> {m.jellyfin_path}"
                out.append(
                    f"  ok   library {m.library}: {shown} is in Jellyfin's {m.jellyfin_library}"
                )
        out.extend(f"  FAIL {p}" for p in self.problems)
        return out


async def check_health(client: JellyfinClient, settings: Settings) -> HealthReport:
    """Run every step that can run; never raises for Jellyfin's answers (they are the report)."""
    report = HealthReport(url=client.base_url)
    problems: list[str] = []

    def fail(line: str, code: int) -> HealthReport:
        problems.append(line)
        report.problems = tuple(problems)
        report.exit_code = max(report.exit_code, code)
        return report

    try:
        report.server = await client.public_info()
    except JellyfinConfigError as exc:
        return fail(f"not Jellyfin: {exc}", 2)
    except JellyfinError as exc:
        return fail(f"unreachable: {exc}", 1)
    try:
        await client.system_info()
        report.key_valid = True
    except JellyfinAuthError as exc:
        report.key_valid, report.key_refused = False, True
        return fail(f"API key refused: {exc}", 2)
    except JellyfinError as exc:
        return fail(str(exc), 2 if isinstance(exc, JellyfinConfigError) else 1)
    try:
        report.folders = await client.virtual_folders()
        report.may_list_libraries = True
    except JellyfinAuthError as exc:
        report.may_list_libraries, report.key_refused = False, True
        return fail(f"the key may not list libraries: {exc}", 2)
    except JellyfinError as exc:
        return fail(str(exc), 2 if isinstance(exc, JellyfinConfigError) else 1)
    try:
        report.monitor_delay_s = await client.library_monitor_delay()
    except CastuiError:
        report.monitor_delay_s = None  # informational only (10.8 answers the same shape)
    jf = settings.jellyfin
    path_map = jf.path_map if jf is not None else {}
    locations = {loc: f.name for f in report.folders for loc in f.locations}
    for lib in settings.libraries:
        if not settings.notifies_jellyfin(lib):
            continue
        folders = [("", str(lib.path))]
        if lib.output_dir is not None:
            folders.append(("output_dir ", str(lib.output_dir)))
        for label, castui_path in folders:
            mapped = to_jellyfin(castui_path, path_map)
            location = location_for(mapped, locations)
            name = locations[location] if location is not None else None
            report.mappings.append(LibraryMapping(lib.name, castui_path, mapped, name, location))
            if location is None:
                known = ", ".join(sorted(locations)) or "none"
                via = f" (mapped to {mapped})" if mapped != castui_path else ""
                fail(
                    f"library {lib.name}: {label}{castui_path}{via} is in no Jellyfin library"
                    f" (Jellyfin's locations: {known}); Jellyfin would silently drop every"
                    " change there: fix jellyfin.path_map, add the folder to a Jellyfin library,"
                    f" or set jellyfin: false on library {lib.name}",
                    2,
                )
    report.problems = tuple(problems)
    return report
