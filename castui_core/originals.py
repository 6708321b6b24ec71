"""Archived originals: list them, put them back, free their space.

The replace layout moves each original into ``<library>/.castui/originals/<relative path>``
(``castui_core.swap`` does the rename, journaled; ``castui_core.convert`` records it in the
``originals`` table). This module is what a person does with them afterwards:

- :func:`list_archived`: every archived original with its size, age and the output that
  replaced it, totals per library;
- :func:`restore`: the original back byte-identical (a rename on the same filesystem),
  castui's output removed only when castui wrote it and it did not change since (checked
  against the ``outputs`` table and the file), the file marked so it is not converted again,
  Jellyfin told through its outbox and the audit log written, all in one transaction;
- :func:`purge`: delete archived originals older than a limit (or all), with a summary.

Every file operation is blocking and runs in a thread. The database is updated after the
files; :func:`reconcile` repairs rows a crash left between the two (an original back home
but still listed as archived), and every command here runs it first.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from castui_core.bus import EventBus
from castui_core.errors import CastuiError, SwapError
from castui_core.events import OriginalChanged
from castui_core.layout import CASTUI_DIR, ORIGINALS_DIR, archive_root
from castui_core.nodes import map_in
from castui_core.settings import DEFAULT_EXTENSIONS, Settings
from castui_core.store import JobState, Store
from castui_core.store.originals import OriginalRecord
from castui_core.store.outbox import OutboxEntry
from castui_core.swap import Journal, _archive_bytes, plan_restore
from castui_core.swap import restore as restore_files

if TYPE_CHECKING:
    from castui_core.queue.protocol import JobQueue


@dataclass(frozen=True)
class ArchivedOriginal:
    """One archived original as ``castui originals list`` shows it."""

    record: OriginalRecord
    present: bool  # the archive file is still there
    age_s: float

    def to_json(self) -> dict[str, object]:
        r = self.record
        return {
            "library": r.library,
            "path": r.path,
            "archive": r.archive,
            "output": r.output,
            "size": r.size,
            "archived_at": r.archived_at,
            "age_days": round(self.age_s / 86400, 2),
            "present": self.present,
        }


@dataclass
class Summary:
    """What a restore or purge did, in numbers and lines."""

    done: int = 0
    skipped: int = 0
    bytes: int = 0
    lines: list[str] = field(default_factory=list)


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


async def reconcile(store: Store) -> list[str]:
    """Bring rows up to date with the files after a crash between a restore and its commit.

    An archived row whose archive file is gone while the original (same size and mtime) is
    home again was restored: it becomes ``restored``. Anything else is left as it is and
    shows as missing in the list (a person may have moved it).
    """
    lines: list[str] = []
    for record in await store.list_originals():
        archive = await asyncio.to_thread(_stat, record.archive)
        if archive is not None:
            continue
        home = await asyncio.to_thread(_stat, record.path)
        if home is not None and home[:2] == (record.size, record.mtime_ns):
            output = record.output
            gone = output is None or output == record.path or _stat(output) is None
            await store.end_original(
                record,
                "restored",
                forget_output=output if gone and output != record.path else None,
                actor="castui",
                details={"finished": "after a crash between the files and the database"},
            )
            lines.append(f"recorded the restore of {record.path} (finished after a crash)")
    return lines


async def list_archived(store: Store, *, library: str | None = None) -> list[ArchivedOriginal]:
    now = time.time()
    found = []
    for record in await store.list_originals(library=library):
        present = await asyncio.to_thread(os.path.lexists, record.archive)
        found.append(ArchivedOriginal(record, present, max(0.0, now - record.archived_at)))
    return found


def archive_bytes(library_root: Path) -> int:
    """Bytes the archive of a library holds on disk (blocking; for the disk report)."""
    return _archive_bytes(archive_root(library_root))


async def _outbox(
    settings: Settings, library: str, changes: Sequence[tuple[str, str]]
) -> list[OutboxEntry]:
    lib = next((x for x in settings.libraries if x.name == library), None)
    if lib is None or not settings.notifies_jellyfin(lib):
        return []
    return [OutboxEntry(p, kind, library) for p, kind in changes]  # type: ignore[arg-type]


async def restore(
    settings: Settings,
    store: Store,
    journal: Journal,
    paths: Sequence[str],
    *,
    bus: EventBus | None = None,
    actor: str = "operator",
) -> Summary:
    """Put the archived originals of ``paths`` back (a path may name the original's home,
    castui's output or the archive file)."""
    summary = Summary()
    for given in paths:
        path = str(Path.cwd() / given) if not given.startswith("/") else given
        record = await store.archived_original(path)
        if record is None:
            summary.skipped += 1
            summary.lines.append(f"{given}: no archived original recorded for it")
            continue
        keep_why: str | None = None
        output: Path | None = None
        if record.output is not None:
            written = await store.get_output(record.output)
            now = await asyncio.to_thread(_stat, record.output)
            if now is None:
                keep_why = None  # already gone: nothing to remove
            elif written is None:
                keep_why = f"{record.output} is not recorded as castui's output: it stays"
            elif not written.matches(now[0], now[1], now[2]):
                keep_why = f"{record.output} changed since castui wrote it: it stays"
            else:
                output = Path(record.output)
        try:
            plan = await asyncio.to_thread(
                plan_restore,
                Path(record.archive),
                Path(record.path),
                output,
                token=secrets.token_hex(4),
            )
            line = await asyncio.to_thread(restore_files, journal, plan)
        except (SwapError, CastuiError) as exc:
            summary.skipped += 1
            summary.lines.append(f"{given}: {exc}")
            continue
        if line.startswith("not restored"):
            summary.skipped += 1
            summary.lines.append(f"{given}: {line}")
            continue
        removed = output is not None and output != Path(record.path)
        changes = [(record.path, "Modified" if output == Path(record.path) else "Created")]
        if removed:
            changes.append((str(output), "Deleted"))
        await store.end_original(
            record,
            "restored",
            forget_output=str(output) if output is not None else None,
            outbox_entries=await _outbox(settings, record.library, changes),
            actor=actor,
            details={"kept_output": keep_why} if keep_why else None,
        )
        summary.done += 1
        summary.bytes += record.size
        summary.lines.append(line + (f"; {keep_why}" if keep_why else ""))
        if bus is not None:
            bus.publish(OriginalChanged("restored", record.path, record.archive, line))
    return summary


async def restore_job(
    settings: Settings,
    store: Store,
    journal: Journal,
    target: int | str,
    *,
    bus: EventBus | None = None,
    actor: str = "operator",
    queue: JobQueue | None = None,
    path_map: Mapping[str, str] | None = None,
) -> str:
    """Restore the original of one done job (``target``: its id, or any path :func:`restore`
    takes) for the dashboard: the line saying what happened, or a CastuiError saying why not.

    Why a job must be done: a queued or running job's original is not archived yet, and an
    encode finishing after the restore would archive it again behind the person's back.

    ``queue`` holds the jobs when it is not ``store`` (a shared Redis); its paths are the
    library host's, so they go through this node's ``path_map`` to find the archived original
    this node recorded (its own paths).
    """
    if isinstance(target, int):
        job = await (queue if queue is not None else store).get_job(target)
        if job.state is not JobState.DONE:
            raise CastuiError(
                f"job #{job.id} is {job.state.value}: only a done job's original can be"
                " restored (cancel it instead if it has not finished)"
            )
        here = path_map or {}
        record = await store.archived_original(map_in(job.path, here))
        if record is None and job.result.output_path:
            record = await store.archived_original(map_in(job.result.output_path, here))
        if record is None:
            raise CastuiError(
                f"job #{job.id} has no archived original (the library's layout is not replace,"
                " or it was already restored or purged: see `castui originals list`)"
            )
        path = record.path
    else:
        path = target
    summary = await restore(settings, store, journal, [path], bus=bus, actor=actor)
    if summary.done == 0:
        raise CastuiError("; ".join(summary.lines) or f"{path}: not restored")
    return "; ".join(summary.lines)


def _remove_archived(record: OriginalRecord) -> str | None:
    """Delete one archived original (blocking); why not, or None when it was deleted."""
    now = _stat(record.archive)
    if now is None:
        return "already gone from the archive"
    if now[:2] != (record.size, record.mtime_ns):
        return "changed since it was archived: left for you to look at"
    os.unlink(record.archive)
    # Empty archive folders go too, up to (not including) the archive root.
    folder = Path(record.archive).parent
    while not (folder.name == ORIGINALS_DIR and folder.parent.name == CASTUI_DIR):
        try:
            folder.rmdir()
        except OSError:
            break
        folder = folder.parent
    return None


async def purge(
    store: Store,
    *,
    older_than_s: float | None,
    library: str | None = None,
    dry_run: bool = False,
    bus: EventBus | None = None,
    actor: str = "operator",
) -> Summary:
    """Delete archived originals older than ``older_than_s`` (None: all of them)."""
    summary = Summary()
    now = time.time()
    for item in await list_archived(store, library=library):
        record = item.record
        if older_than_s is not None and item.age_s < older_than_s:
            continue
        if dry_run:
            if item.present:
                summary.done += 1
                summary.bytes += record.size
                summary.lines.append(f"would purge {record.archive} ({record.size} bytes)")
            continue
        why = await asyncio.to_thread(_remove_archived, record)
        if why is not None and why != "already gone from the archive":
            summary.skipped += 1
            summary.lines.append(f"kept {record.archive}: {why}")
            continue
        freed = record.size if why is None else 0
        await store.end_original(
            record,
            "purged",
            actor=actor,
            details={"freed": freed, "age_days": round((now - record.archived_at) / 86400, 2)},
        )
        summary.done += 1
        summary.bytes += freed
        summary.lines.append(f"purged {record.archive} ({freed} bytes)")
        if bus is not None:
            bus.publish(OriginalChanged("purged", record.path, record.archive, f"{freed} bytes"))
    return summary


# --- castui layout migrate -----------------------------------------------------------------


def _migrate_replace(source: Path, archive: Path) -> None:
    """Move an old-layout source into the archive (blocking; one rename, never overwriting).

    A crash between the hard link and the unlink leaves both names on one inode; the next
    migrate sees that and finishes (``_rename_noreplace`` semantics of ``castui_core.swap``).
    """
    from castui_core.swap import _fsync_dir, _make_parent, _rename_noreplace

    if archive.exists() and source.exists() and os.path.samefile(source, archive):
        os.unlink(source)
    else:
        _make_parent(archive)
        _rename_noreplace(source, archive)
    _fsync_dir(source.parent)
    _fsync_dir(archive.parent)


def _migrate_rename(old: Path, new: Path) -> None:
    from castui_core.swap import _fsync_dir, _rename_noreplace

    _rename_noreplace(old, new)
    _fsync_dir(new.parent)


async def migrate_layout(
    settings: Settings,
    store: Store,
    *,
    library: str | None = None,
    dry_run: bool = False,
    actor: str = "operator",
) -> Summary:
    """Move outputs written before layouts (``<stem>.mp4`` beside a kept source, per the
    ``outputs`` table) to each library's layout.

    replace: the kept source goes into the archive (with ``originals: delete`` it stays:
    migrate never deletes a file). version: the output is renamed ``<stem> - <label>.mp4``
    where Jellyfin groups it (else left, with the reason). mirror: nothing to do beside the
    source. Only files castui wrote and that did not change since are touched.
    """
    from castui_core.layout import archive_path, label_from_profile, version_problem, version_stem
    from castui_core.store.models import OutputRecord
    from castui_core.swap import carry_sidecars

    summary = Summary()
    libs = [lib for lib in settings.libraries if library in (None, lib.name)]
    for record in await store.all_outputs():
        out, src = Path(record.path), Path(record.source)
        lib = next((x for x in libs if src.is_relative_to(x.path)), None)
        if lib is None or lib.layout == "mirror" or out.parent != src.parent:
            continue
        now = await asyncio.to_thread(_stat, record.path)
        if now is None or not record.matches(*now):
            continue  # gone or changed since castui wrote it: not castui's to move
        kept = src if src != out else src.with_name(f"{src.stem}.original{src.suffix}")
        source_there = await asyncio.to_thread(_stat, str(kept))
        if lib.layout == "replace":
            if source_there is None or lib.originals != "archive":
                continue
            archive = archive_path(lib.path, src)
            if dry_run:
                summary.done += 1
                summary.lines.append(f"would archive {kept} -> {archive}")
                continue
            try:
                await asyncio.to_thread(_migrate_replace, kept, archive)
            except (OSError, CastuiError) as exc:
                summary.skipped += 1
                summary.lines.append(f"{kept}: not moved: {exc}")
                continue
            st = await asyncio.to_thread(_stat, str(archive))
            assert st is not None
            original = OriginalRecord(
                library=lib.name,
                path=str(src),
                archive=str(archive),
                output=record.path,
                size=st[0],
                mtime_ns=st[1],
                archived_at=time.time(),
            )
            changes = [] if kept == out else [(str(kept), "Deleted")]
            await store.move_output(
                record.path,
                record,
                original=original,
                outbox_entries=await _outbox(settings, lib.name, changes),
                actor=actor,
            )
            summary.done += 1
            summary.lines.append(f"archived {kept} -> {archive}")
            continue
        # version
        if source_there is None or kept != src:
            continue
        label = lib.version_label or label_from_profile(record.profile or lib.profile)
        names = await asyncio.to_thread(os.listdir, src.parent)
        siblings = [
            n
            for n in names
            if n not in (src.name, out.name)
            and not n.startswith(".")
            and n.rpartition(".")[2].lower() in DEFAULT_EXTENSIONS
        ]
        problem = version_problem(src, label, siblings)
        if problem is not None:
            summary.skipped += 1
            summary.lines.append(f"{out}: left as it is: {problem}")
            continue
        new = out.with_name(f"{version_stem(src.stem, label)}{out.suffix}")
        if dry_run:
            summary.done += 1
            summary.lines.append(f"would rename {out.name} -> {new.name}")
            continue
        try:
            await asyncio.to_thread(_migrate_rename, out, new)
        except (OSError, CastuiError) as exc:
            summary.skipped += 1
            summary.lines.append(f"{out}: not renamed: {exc}")
            continue
        await asyncio.to_thread(carry_sidecars, src, new, layout="version")
        moved = OutputRecord(
            path=str(new),
            source=record.source,
            size=record.size,
            mtime_ns=record.mtime_ns,
            profile=record.profile,
            written_by=record.written_by,
            written_at=record.written_at,
            inode=record.inode,
            source_size=record.source_size,
            source_mtime_ns=record.source_mtime_ns,
        )
        changes = [(str(out), "Deleted"), (str(new), "Created")]
        await store.move_output(
            record.path,
            moved,
            outbox_entries=await _outbox(settings, lib.name, changes),
            actor=actor,
        )
        summary.done += 1
        summary.lines.append(f"renamed {out.name} -> {new.name}")
    return summary


async def at_start(settings: Settings, store: Store, bus: EventBus | None = None) -> list[str]:
    """What a starting service does with the archive (after journal recovery): record
    restores a crash left between files and database, then apply each library's
    ``originals_keep_days`` (automatic retention, off unless set). Lines for the log."""
    lines = await reconcile(store)
    for lib in settings.libraries:
        if lib.originals_keep_days is None:
            continue
        summary = await purge(
            store,
            older_than_s=lib.originals_keep_days * 86400,
            library=lib.name,
            bus=bus,
            actor="retention",
        )
        if summary.done or summary.skipped:
            lines.append(
                f"{lib.name}: purged {summary.done} archived original(s) older than"
                f" {lib.originals_keep_days:g} days ({summary.bytes} bytes freed)"
                + (f"; kept {summary.skipped} that changed" if summary.skipped else "")
            )
    return lines
