"""Scanning: walk libraries, probe the media files, decide each one.

The walk runs in a thread (``os.scandir`` blocks, and on a network share it blocks for long)
and streams paths to the probe pool while it is still going, so probing starts at once. It
survives unreadable directories and symlink loops and reports them as ``ScanProblem`` events
instead of failing. A scan changes nothing in the library.

With a :class:`ScanMemory` (the catalog's rows for what is scanned) a file whose size, mtime
and inode match its row is decided from the recorded probe instead of being opened again:
probing is what costs (every file opened, often over the network), deciding is cheap, so the
decisions are always made afresh against today's profile and the output does not depend on
whether a file was probed now or before. What was probed is collected for the caller to write
back; the scanner itself never writes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from castui_core.bus import EventBus
from castui_core.decide import Action, Decision, copy_decision, decide
from castui_core.errors import ProbeError, SwapError
from castui_core.events import (
    FileDecided,
    ScanFinished,
    ScanProblem,
    ScanProgress,
    ScanStarted,
)
from castui_core.layout import CASTUI_DIR, version_problem
from castui_core.media import MediaInfo, ProbeFailure
from castui_core.probe import ProbePool, ProbeResult, probe_ffprobe
from castui_core.profiles import Profile
from castui_core.settings import DEFAULT_EXTENSIONS
from castui_core.store.catalog import KnownFile, scan_label
from castui_core.store.models import CatalogEntry, OutputRecord
from castui_core.swap import plan_placement

_PROGRESS_INTERVAL_S = 0.25


@dataclass(frozen=True)
class ScanTarget:
    """What to scan: a library root (or explicit paths) and the profile to decide against."""

    library: str
    roots: tuple[Path, ...]
    profile: Profile
    follow_symlinks: bool = False
    explicit: bool = False  # roots named by the user: a missing file is a reject, not a warning
    #: The library's ``output_dir`` (outputs mirrored there), for the existing-copy check.
    output_dir: Path | None = None
    #: The version layout's label (None: another layout), so scan says per file where
    #: Jellyfin would not group the versions and what castui does instead.
    version_label: str | None = None
    version_fallback: str = "replace"


@dataclass(frozen=True)
class ScannedFile:
    library: str
    path: str
    size: int
    decision: Decision
    info: MediaInfo | None = None

    @property
    def action(self) -> Action:
        return self.decision.action


@dataclass
class ScanReport:
    files: list[ScannedFile] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> dict[Action, int]:
        counter = Counter(f.action for f in self.files)
        return {action: counter.get(action, 0) for action in Action}

    @property
    def bytes_to_process(self) -> int:
        return sum(f.size for f in self.files if f.action.needs_work)


# --- what the catalog remembers ----------------------------------------------------------------

#: (size, mtime_ns, inode) of a walked file; None where it could not be stat'ed.
Fingerprint = tuple[int, int, int] | None


@dataclass
class ScanMemory:
    """The catalog rows of what is being scanned, and what this scan learned for them.

    ``fresh`` ignores the rows (everything is probed again) but still collects what the scan
    learned. ``learned`` holds the rows to write back (new or changed files, labelled as a
    scan's, see :data:`castui_core.store.catalog.SCAN_PREFIX`: a scan queues nothing, so the
    engine must not take them for acted upon); ``vanished`` the remembered paths the walk did
    not find (under no folder it failed to read).
    """

    known: dict[str, KnownFile] = field(default_factory=dict)
    fresh: bool = False
    learned: list[CatalogEntry] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    reused: int = 0
    probed: int = 0
    _failures: dict[str, str] = field(default_factory=dict, repr=False)

    def recall(self, path: str, stat: Fingerprint) -> ProbeResult | None:
        """The recorded probe of an unchanged file, or None (probe it)."""
        if self.fresh or stat is None:
            return None
        row = self.known.get(path)
        if row is None or row.probe is None or (row.size, row.mtime_ns) != stat[:2]:
            return None
        if row.inode is not None and row.inode != stat[2]:
            return None  # replaced by another file with the same size and time
        try:
            if row.probe.startswith('{"failure"'):
                # Unreadable files share a handful of reasons: parse each text once.
                reason = self._failures.get(row.probe)
                if reason is None:
                    reason = self._failures[row.probe] = str(json.loads(row.probe)["failure"])
                return ProbeFailure(path, stat[0], reason)
            data = json.loads(row.probe)
            if "failure" in data:
                return ProbeFailure(path, stat[0], str(data["failure"]))
            return MediaInfo.from_json(data)
        except (ValueError, TypeError, KeyError):
            return None  # a row an older castui wrote differently: probe again

    def learn(self, library: str, path: str, stat: Fingerprint, result: ProbeResult) -> None:
        """Remember a fresh probe. A hang or crash may be passing: not remembered."""
        self.probed += 1
        if stat is None or (isinstance(result, ProbeFailure) and result.extra):
            return
        row = self.known.get(path)
        probe = result.to_json() if isinstance(result, MediaInfo) else {"failure": result.reason}
        self.learned.append(
            CatalogEntry(
                path=path,
                # Labelled as a scan's row (see SCAN_PREFIX), in the library it was in.
                library=scan_label(row.library if row is not None else library),
                size=stat[0],
                mtime_ns=stat[1],
                inode=stat[2],
                probe=probe,
            )
        )


def _fingerprint(path: str) -> Fingerprint:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


# --- an output name that is already taken ------------------------------------------------------


def _stats(paths: Sequence[str]) -> list[tuple[int, int, int] | None]:
    """(size, mtime_ns, inode) of each path, None where it cannot be read (blocking)."""
    found: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return found


#: ``own(source, output)``: True when castui wrote ``output`` from ``source`` (both unchanged).
OwnOutput = Callable[[str, Path], Awaitable[bool]]


def output_name(
    source: str, *, library_root: Path | None = None, output_dir: Path | None = None
) -> Path | None:
    """Where castui would put ``source``'s output; None when that is the source's own name
    (converted in place: nothing can be "in the way") or no name can be made."""
    try:
        placement = plan_placement(
            Path(source), library_root=library_root, output_dir=output_dir, token="scan"
        )
    except SwapError:
        return None
    return None if placement.backup is not None else placement.final


def _maybe_taken(sources: Sequence[str]) -> set[str]:
    """The sources whose output name (next to them) may be taken (blocking: lists each folder
    once). Naming an output costs more than deciding a file, and on a rescan most folders hold
    nothing it could be: the name is ``<stem, maybe shortened>.mp4``, so only a folder entry
    ending in ``.mp4`` whose stem starts the source's name can be it (compared ignoring case,
    as a case-insensitive share would). A superset: the caller checks these exactly."""
    mp4s: dict[str, list[str]] = {}
    maybe: set[str] = set()
    for source in sources:
        folder, name = os.path.split(source)
        stems = mp4s.get(folder)
        if stems is None:
            try:
                names = os.listdir(folder)
            except OSError:
                names = [".mp4"]  # cannot tell: check this folder's sources exactly
            stems = mp4s[folder] = [n[:-4].lower() for n in names if n.lower().endswith(".mp4")]
        low = name.lower()
        if any(low.startswith(stem) for stem in stems):
            maybe.add(source)
    return maybe


async def copy_decisions(
    pool: ProbePool,
    decided: Sequence[tuple[MediaInfo, Decision]],
    profile: Profile,
    *,
    library_root: Path | None = None,
    output_dir: Path | None = None,
    own: OwnOutput | None = None,
    probed: Mapping[str, ProbeResult] | None = None,
) -> dict[str, Decision]:
    """New decisions for sources whose output name is already taken (by source path).

    castui's own output of the source (``own``), or a Cast-ready copy of the same length,
    makes the source ``skip`` with the copy named; any other file there adds a reason that
    says what to do (see :func:`castui_core.decide.copy_decision`). Sources with a free output
    name are not in the result. The existence checks run in a thread (slow shares).
    ``probed``: results this scan already has (the copy is usually in the same library), so
    a copy is not opened a second time.
    """
    work = [(i, d) for i, d in decided if d.action.needs_work]
    if output_dir is None and work:
        maybe = await asyncio.to_thread(_maybe_taken, [i.path for i, _ in work])
        work = [(i, d) for i, d in work if i.path in maybe]
    wanted: dict[str, tuple[MediaInfo, Decision, Path]] = {}
    for info, decision in work:
        final = output_name(info.path, library_root=library_root, output_dir=output_dir)
        if final is not None:
            wanted[info.path] = (info, decision, final)
    if not wanted:
        return {}

    def taken() -> list[str]:
        return [src for src, (_, _, final) in wanted.items() if os.path.lexists(final)]

    changed: dict[str, Decision] = {}
    to_probe: dict[str, str] = {}  # copy path -> source path
    for src in await asyncio.to_thread(taken):
        final = wanted[src][2]
        if own is not None and await own(src, final):
            changed[src] = Decision(Action.SKIP, (f"castui already converted it: {final.name}",))
        else:
            to_probe[str(final)] = src
    have = probed or {}
    ready = [have[copy] for copy in to_probe if copy in have]
    missing = [copy for copy in to_probe if copy not in have]
    for copy_info in ready:
        src = to_probe[copy_info.path]
        info, decision, final = wanted[src]
        changed[src] = copy_decision(decision, info, copy_info, profile, final.name)
    if missing:
        async for copy in pool.probe_many(missing):
            src = to_probe[copy.path]
            info, decision, final = wanted[src]
            changed[src] = copy_decision(decision, info, copy, profile, final.name)
    return changed


def _globs_re(globs: Sequence[str]) -> re.Pattern[str] | None:
    """One pattern that matches a name when ``fnmatchcase`` matches it with any of ``globs``."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


class IgnoreRules:
    """Extension filter and ignore globs (``dir/`` patterns match directories)."""

    def __init__(self, extensions: Sequence[str], ignore: Sequence[str]) -> None:
        self.extensions = frozenset(e.lower().lstrip(".") for e in extensions)
        self.file_globs = tuple(p for p in ignore if not p.endswith("/"))
        self.dir_globs = tuple(p.rstrip("/") for p in ignore if p.endswith("/"))
        # One regular expression per kind, what fnmatchcase would try glob by glob: the walk
        # asks for every file, and a glob at a time was 7 % of a 100,000-file rescan.
        self._file_re = _globs_re(self.file_globs)
        self._dir_re = _globs_re(self.dir_globs)

    def ignores_dir(self, name: str) -> bool:
        return name.startswith(".") or (
            self._dir_re is not None and self._dir_re.match(name) is not None
        )

    def ignores_file(self, name: str) -> bool:
        return self._file_re is not None and self._file_re.match(name) is not None

    def is_media(self, name: str) -> bool:
        dot = name.rfind(".")
        return dot > 0 and name[dot + 1 :].lower() in self.extensions

    def wants(self, name: str) -> bool:
        return self.is_media(name) and not self.ignores_file(name)


def walk_media(
    root: Path,
    rules: IgnoreRules,
    *,
    follow_symlinks: bool,
    on_problem: Callable[[str, str], None],
) -> Iterator[str]:
    """Yield media file paths under ``root`` (depth first, sorted per directory).

    Unreadable directories and symlink loops are reported through ``on_problem`` and
    skipped; the walk never raises for them.
    """
    seen: set[tuple[int, int]] = set()
    stack: list[str] = [str(root)]
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
        except OSError as exc:
            on_problem(directory, f"cannot read directory: {exc.strerror}")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            on_problem(directory, "symlink loop (directory already visited); skipped")
            continue
        seen.add(key)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            on_problem(directory, f"cannot read directory: {exc.strerror}")
            continue
        subdirs: list[str] = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    # castui's own folder (the archive of originals) is never media, even
                    # with an ignore list that lets hidden folders in.
                    top_castui = entry.name == CASTUI_DIR and directory == str(root)
                    if not rules.ignores_dir(entry.name) and not top_castui:
                        subdirs.append(entry.path)
                elif rules.wants(entry.name):
                    if not entry.is_symlink():
                        yield entry.path
                    elif follow_symlinks:
                        if os.path.exists(entry.path):
                            yield entry.path
                        else:
                            on_problem(entry.path, "broken symlink; skipped")
            except OSError as exc:
                on_problem(entry.path, f"cannot read: {exc.strerror}")
        stack.extend(reversed(subdirs))


def _version_notes(
    files: Sequence[ScannedFile], changed: dict[str, Decision], target: ScanTarget
) -> dict[str, Decision]:
    """Files of a version-layout library that Jellyfin would not group (blocking: lists each
    folder once): the reason, and what castui does instead (replace layout, or skip)."""
    assert target.version_label is not None
    notes: dict[str, Decision] = {}
    listed: dict[str, list[str]] = {}
    for scanned in files:
        decision = changed.get(scanned.path, scanned.decision)
        if not decision.action.needs_work:
            continue
        folder = os.path.dirname(scanned.path)
        if folder not in listed:
            try:
                listed[folder] = [n for n in os.listdir(folder) if not n.startswith(".")]
            except OSError:
                listed[folder] = []
        name = os.path.basename(scanned.path)
        siblings = [
            n
            for n in listed[folder]
            if n != name and n.rpartition(".")[2].lower() in _VIDEO_EXTENSIONS
        ]
        problem = version_problem(Path(scanned.path), target.version_label, siblings)
        if problem is None:
            continue
        if target.version_fallback == "skip":
            notes[scanned.path] = Decision(
                Action.SKIP, (*decision.reasons, f"version layout not possible: {problem}")
            )
        else:
            notes[scanned.path] = Decision(
                decision.action,
                (*decision.reasons, f"version layout not possible, replace used: {problem}"),
            )
    return notes


_VIDEO_EXTENSIONS = frozenset(DEFAULT_EXTENSIONS)


def _under_any(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


class Scanner:
    """Walk + probe + decide, publishing progress on the bus."""

    def __init__(
        self,
        pool: ProbePool,
        *,
        rules: IgnoreRules,
        bus: EventBus | None = None,
        ffprobe: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        outputs: Mapping[str, OutputRecord] | None = None,
        file_events: bool = True,
    ) -> None:
        self.pool = pool
        #: Publish a ``FileDecided`` per file (a dashboard lists them). ``castui scan`` shows
        #: only progress and problems: 100,000 events nobody reads were 1.5 s of a rescan.
        self.file_events = file_events
        self.rules = rules
        self.bus = bus if bus is not None else EventBus()
        self.ffprobe = ffprobe
        self.clock = clock
        #: The outputs castui recorded (``store.read_outputs``), to recognise its own work.
        self.outputs = outputs or {}

    async def scan(self, target: ScanTarget, memory: ScanMemory | None = None) -> ScanReport:
        """Scan one target; every file found ends in the report with a decision.

        With ``memory`` unchanged files are decided from their recorded probe (see the module
        docstring) and ``memory`` collects what to write back to the catalog."""
        started = self.clock()
        report = ScanReport()
        library = target.library
        for root in target.roots:
            self.bus.publish(ScanStarted(library=library, root=str(root)))

        found = 0
        walk_done = False
        last_progress = 0.0

        def problem(path: str, reason: str) -> None:
            event = ScanProblem(library=library, path=path, reason=reason)
            report.problems.append(event)
            self.bus.publish(event)

        def progress(force: bool = False) -> None:
            nonlocal last_progress
            now = self.clock()
            if force or now - last_progress >= _PROGRESS_INTERVAL_S:
                last_progress = now
                self.bus.publish(
                    ScanProgress(
                        library=library,
                        found=found,
                        decided=len(report.files),
                        walk_done=walk_done,
                    )
                )

        seen: dict[str, Fingerprint] = {}

        async def paths() -> AsyncIterator[str]:
            nonlocal found, walk_done
            async for path, stat in self._walk(target, problem, stats=memory is not None):
                found += 1
                if memory is not None:
                    seen[path] = stat
                    recalled = memory.recall(path, stat)
                    if recalled is not None:
                        memory.reused += 1
                        decided(recalled)
                        continue
                progress()
                yield path
            walk_done = True

        by_reason: dict[str, Decision] = {}

        def decided(result: ProbeResult) -> None:
            if isinstance(result, ProbeFailure):
                # A failure's decision is its reason: one (immutable) Decision per reason.
                decision = by_reason.get(result.reason)
                if decision is None:
                    decision = by_reason[result.reason] = decide(result, target.profile)
            else:
                decision = decide(result, target.profile)
            scanned = ScannedFile(
                library=library,
                path=result.path,
                size=result.size,
                decision=decision,
                info=result if isinstance(result, MediaInfo) else None,
            )
            report.files.append(scanned)
            if self.file_events:
                self.bus.publish(
                    FileDecided(
                        library=library,
                        path=scanned.path,
                        size=scanned.size,
                        action=decision.action.value,
                        reasons=decision.reasons,
                    )
                )
            progress()

        async for result in self.pool.probe_many(paths()):
            if isinstance(result, ProbeFailure) and result.extra.get("crashed"):
                result = await self._ffprobe_fallback(result)
            if memory is not None:
                memory.learn(library, result.path, seen.get(result.path), result)
            decided(result)
        walk_done = True
        if memory is not None:
            failed = [p.path for p in report.problems]
            memory.vanished = [
                p for p in memory.known if p not in seen and not _under_any(p, failed)
            ]
        await self._check_copies(target, report)
        progress(force=True)
        report.files.sort(key=lambda f: f.path)
        report.seconds = self.clock() - started
        self.bus.publish(
            ScanFinished(
                library=library,
                files=len(report.files),
                counts=tuple((a.value, n) for a, n in report.counts.items()),
                bytes_to_process=report.bytes_to_process,
                seconds=report.seconds,
            )
        )
        return report

    async def _check_copies(self, target: ScanTarget, report: ScanReport) -> None:
        """Re-decide castui's own outputs (``skip``) and sources whose output name is taken
        (castui's output of that source, or a Cast-ready copy: ``skip``)."""
        outputs = self.outputs
        mine = [f.path for f in report.files if f.path in outputs]
        changed: dict[str, Decision] = {}
        for path, now in zip(mine, await asyncio.to_thread(_stats, mine), strict=True):
            record = outputs[path]
            if now is not None and record.matches(*now):
                why = f"castui output ({record.written_by}, from {Path(record.source).name})"
                changed[path] = Decision(Action.SKIP, (why,))

        async def own(source: str, output: Path) -> bool:
            record = outputs.get(str(output))
            if record is None or record.source != source:
                return False
            now, src = await asyncio.to_thread(_stats, [str(output), source])
            return (
                now is not None
                and record.matches(*now)
                and src is not None
                and record.source_state in ((None, None), src[:2])
            )

        decided = [
            (f.info, f.decision)
            for f in report.files
            if f.info is not None and f.path not in changed
        ]
        root = None if target.explicit or len(target.roots) != 1 else target.roots[0]
        changed |= await copy_decisions(
            self.pool,
            decided,
            target.profile,
            library_root=root,
            output_dir=target.output_dir,
            own=own if outputs else None,
            probed={f.path: f.info for f in report.files if f.info is not None},
        )
        if target.version_label is not None:
            changed |= await asyncio.to_thread(_version_notes, report.files, changed, target)
        for n, scanned in enumerate(report.files):
            decision = changed.get(scanned.path)
            if decision is None:
                continue
            report.files[n] = replace(scanned, decision=decision)
            if self.file_events:
                self.bus.publish(
                    FileDecided(
                        library=scanned.library,
                        path=scanned.path,
                        size=scanned.size,
                        action=decision.action.value,
                        reasons=decision.reasons,
                    )
                )

    async def _walk(
        self, target: ScanTarget, problem: Callable[[str, str], None], *, stats: bool = False
    ) -> AsyncIterator[tuple[str, Fingerprint]]:
        """Run the blocking walk in a thread and stream its paths in chunks (with their
        fingerprints when ``stats``: the stat is made in the thread too)."""
        loop = asyncio.get_running_loop()
        # Unbounded on purpose: a bounded queue would block the walk thread forever if the
        # consumer went away, and a path list is small next to what probing it costs.
        chunks: asyncio.Queue[list[tuple[str, Fingerprint]] | None] = asyncio.Queue()
        stop = False

        def report_problem(path: str, reason: str) -> None:
            loop.call_soon_threadsafe(problem, path, reason)

        def put(item: list[tuple[str, Fingerprint]] | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nobody listens
                loop.call_soon_threadsafe(chunks.put_nowait, item)

        def walk() -> None:
            try:
                chunk: list[tuple[str, Fingerprint]] = []
                for root in target.roots:
                    for path in self._paths_under(root, target, report_problem):
                        if stop:
                            return
                        chunk.append((path, _fingerprint(path) if stats else None))
                        if len(chunk) >= 256:
                            put(chunk)
                            chunk = []
                if chunk:
                    put(chunk)
            finally:
                put(None)

        task = asyncio.create_task(asyncio.to_thread(walk))
        try:
            while (chunk := await chunks.get()) is not None:
                for item in chunk:
                    yield item
            await task
        finally:
            stop = True

    def _paths_under(
        self, root: Path, target: ScanTarget, problem: Callable[[str, str], None]
    ) -> Iterator[str]:
        """A file root is yielded as is (whatever its extension); a directory is walked."""
        if root.is_dir():
            yield from walk_media(
                root, self.rules, follow_symlinks=target.follow_symlinks, on_problem=problem
            )
        elif target.explicit or root.exists() or root.is_symlink():
            yield str(root)
        else:
            problem(str(root), "does not exist (missing or not mounted)")

    async def _ffprobe_fallback(self, failure: ProbeFailure) -> ProbeResult:
        """Retry a file that crashed PyAV with an ffprobe subprocess (isolated, timed)."""
        if self.ffprobe is None:
            return failure
        try:
            return await probe_ffprobe(self.ffprobe, failure.path, timeout=self.pool.timeout)
        except ProbeError as exc:
            return ProbeFailure(
                failure.path, failure.size, f"{failure.reason}; ffprobe: {exc.reason}"
            )
