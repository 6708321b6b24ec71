"""Put a validated output in place without ever losing the source, even across a crash.

The sequence for one job (each step journaled *after* it happened, fsynced, so a crash at any
instant leaves a journal entry that says how far it got):

1. ``begin``: journal ``encoding``; the encoder writes a hidden temp file in the *final*
   directory (same filesystem, so the later rename is atomic).
2. the caller validates the temp (``castui_core.validate``);
3. ``commit``: fsync the temp, journal ``validated``; when the output has the source's own
   name (``Movie.mp4`` from ``Movie.mp4``) rename the source to ``Movie.original.mp4`` first
   (journal ``source_moved``); rename the temp to the final name and fsync the directory
   (journal ``placed``); only now, if asked, delete the source (journal ``source_deleted``);
   remove the journal entry (``done``).
4. ``recover`` at start-up rolls every left-over entry forward (the temp was validated) or
   back (the temp may be partial) so that the source, or its byte-identical content under
   the backup name, always survives.

Each entry names its owner: the :class:`Journal` that wrote it holds an exclusive ``flock`` on
``owners/<owner>.lock`` for as long as it lives. Several castui processes share one journal
(the service, ``castui convert``, the dashboard's engine), so ``recover`` handles only the
entries whose owner lock it can take, i.e. whose process is gone (the kernel drops the lock
when a process dies, even by ``kill -9``). A PID check would be racy (PID reuse, other hosts
on a shared disk); a lock cannot be held by a dead process.

Renames refuse to replace an existing name (hard link + unlink, which fails atomically with
EEXIST; plain exists-check + rename on filesystems without hard links), so castui never
overwrites a file it did not write. Everything here is blocking file I/O on purpose: the
engine runs these functions in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from castui_core.errors import (
    InsufficientSpaceError,
    NameTooLongError,
    OutputExistsError,
    SourceChangedError,
    SwapError,
)
from castui_core.fsinfo import filesystem_of
from castui_core.layout import LayoutName, sidecar_plan

if TYPE_CHECKING:
    from castui_core.ffmpeg.command import EncodePlan
    from castui_core.media import MediaInfo
    from castui_core.profiles import Profile

#: Safety margin on output size estimates (container overhead, VBV peaks).
SIZE_MARGIN = 1.1
#: Bitrate assumed for a copied audio track whose source bitrate is unknown.
_UNKNOWN_AUDIO_BPS = 640_000
_NAME_MAX = 255  # bytes, for one path component on every Linux filesystem castui targets
_JOURNAL_VERSION = 1


class Step(StrEnum):
    """How far one job's swap got; journaled after each step happened."""

    ENCODING = "encoding"  # temp may be partial
    VALIDATED = "validated"  # temp complete, validated and fsynced
    SOURCE_MOVED = "source_moved"  # same-name case: source renamed to the backup name
    PLACED = "placed"  # final is the new file
    SOURCE_DELETED = "source_deleted"  # the source (or backup) was deleted as asked
    DONE = "done"  # entry removed


_ORDER = {step: n for n, step in enumerate(Step)}


# --- placement ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where one job reads and writes.

    ``temp`` is a hidden name in ``final``'s directory; ``backup`` is set only when the output
    takes the source's own name (the source is renamed there before the output is placed).
    """

    source: Path
    final: Path
    temp: Path
    backup: Path | None

    @property
    def temp_prefix(self) -> str:
        """Name prefix of every temp file of this job (the MP4 and any sidecar temps)."""
        name = self.temp.name
        return name[: name.rindex(".tmp")]

    def sidecar_temp(self, suffix: str) -> Path:
        """Temp name for a sidecar written with the output (``.eng.sup`` -> hidden temp)."""
        return self.temp.with_name(f"{self.temp_prefix}.tmp{suffix}")

    def sidecar_final(self, temp: Path) -> Path:
        """Final name for a sidecar temp: ``Movie.eng.sup`` next to ``Movie.mp4``.

        Accepts both ``sidecar_temp`` names and ``<prefix><suffix>`` names (the temp stem
        with the sidecar suffix appended).
        """
        rest = temp.name[len(self.temp_prefix) :]
        if not temp.name.startswith(self.temp_prefix) or temp == self.temp or not rest:
            raise SwapError(f"{temp} is not a sidecar temp of {self.final}")
        if rest.startswith(".tmp."):
            rest = rest[len(".tmp") :]
        return self.final.with_name(f"{self.final.stem}{rest}")

    @property
    def key(self) -> str:
        """Stable journal key of this job (the temp name is unique per job via the token)."""
        return hashlib.sha256(os.fsencode(self.temp)).hexdigest()[:32]


@dataclass(frozen=True)
class NameLimits:
    """This filesystem's limits on one name (NAME_MAX) and a whole path (PATH_MAX, with NUL).

    Read with ``pathconf`` where the output goes: eCryptfs allows 143 bytes per name, most
    filesystems 255, so "fits" is a property of the destination, not of castui.
    """

    name_max: int = _NAME_MAX
    path_max: int = 4096

    @classmethod
    def of(cls, directory: Path) -> NameLimits:
        """The limits of the filesystem holding ``directory`` (or its nearest existing parent)."""
        probe = directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            name_max = os.pathconf(probe, "PC_NAME_MAX")
            path_max = os.pathconf(probe, "PC_PATH_MAX")
        except (OSError, ValueError):
            return cls()
        return cls(name_max if name_max > 0 else _NAME_MAX, path_max if path_max > 0 else 4096)


def _fit(directory: Path, stem: str, rest: str, limits: NameLimits) -> str | None:
    """The longest prefix of ``stem`` (whole characters, at least one) such that
    ``directory / (stem + rest)`` fits ``limits``; None when not even one character fits."""
    room_in_path = limits.path_max - 1 - len(os.fsencode(directory)) - 1  # "/" and the NUL
    budget = min(limits.name_max, room_in_path) - len(os.fsencode(rest))
    while len(os.fsencode(stem)) > budget and stem:
        stem = stem[:-1]
    return stem or None


def output_dir_for(
    source: Path, *, library_root: Path | None = None, output_dir: Path | None = None
) -> Path:
    """The folder the output of ``source`` goes to (see :func:`plan_placement`)."""
    if output_dir is None:
        return source.parent
    if library_root is None:
        return output_dir
    try:
        relative = source.relative_to(library_root)
    except ValueError:
        raise SwapError(
            f"{source} is not inside the library {library_root}: cannot mirror it"
            f" under {output_dir}"
        ) from None
    return output_dir / relative.parent


def _too_long(what: str, path: Path, limits: NameLimits) -> NameTooLongError:
    return NameTooLongError(
        f"cannot name the {what} for {path.name!r} in {path.parent}: even shortened, it"
        f" exceeds this filesystem's limits ({limits.name_max} bytes a name, "
        f"{limits.path_max - 1} a path); move the file to a shorter folder or rename it"
    )


def plan_placement(
    source: Path,
    *,
    library_root: Path | None = None,
    output_dir: Path | None = None,
    suffix: str = ".mp4",
    token: str,
    limits: NameLimits | None = None,
    sidecar_suffixes: Sequence[str] = (),
    archive_root: Path | None = None,
    version_label: str | None = None,
) -> Placement:
    """Where the output of ``source`` goes (pure: nothing is read from disk).

    With ``output_dir`` the library tree is mirrored there (``output_dir /
    source.relative_to(library_root)``, or flat without ``library_root``); otherwise the
    output goes next to the source. An output that would take the source's own name (also
    case-insensitively, for SMB/exFAT shares) gets a backup name ``<stem>.original.<ext>`` for
    the source. ``token`` makes the temp name unique per job.

    Every name castui will create (temp, final, backup, the sidecars ``<final stem><sidecar
    suffix>`` and their temps) is made to fit ``limits`` (the destination's NAME_MAX and
    PATH_MAX, see :meth:`NameLimits.of`) by shortening the stem: a 250-byte name still gets
    a backup name. ``NameTooLongError`` (never retried) when no name fits at all.

    Layouts (``castui_core.layout``): ``archive_root`` (replace layout, needs
    ``library_root``) makes the backup of *every* source its archive name
    ``archive_root / source.relative_to(library_root)`` (the original's own name, so a
    restore is a rename back), whether or not the output takes the source's name;
    ``version_label`` names the output ``<stem> - <label><suffix>`` (a Jellyfin version).
    """
    if not token or "/" in token or "\0" in token:
        raise SwapError(f"invalid job token {token!r}")
    limits = limits or NameLimits()
    final_dir = output_dir_for(source, library_root=library_root, output_dir=output_dir)
    longest = max((suffix, *sidecar_suffixes), key=lambda s: len(os.fsencode(s)))
    label = "" if version_label is None else f" - {version_label}"
    stem = _fit(final_dir, source.stem, f"{label}{longest}", limits)
    if stem is None:
        raise _too_long("output", final_dir / f"{source.stem}{label}{suffix}", limits)
    final = final_dir / f"{stem}{label}{suffix}"
    same = final == source or (
        final.parent == source.parent and final.name.casefold() == source.name.casefold()
    )
    backup = None
    if archive_root is not None:
        if library_root is None:
            raise SwapError(f"{source}: archiving the original needs the library's folder")
        try:
            relative = source.relative_to(library_root)
        except ValueError:
            raise SwapError(f"{source} is not inside the library {library_root}") from None
        backup = archive_root / relative
        room = limits.path_max - 1
        if len(os.fsencode(backup)) > room or len(os.fsencode(backup.name)) > limits.name_max:
            raise _too_long("archived original", backup, limits)
    elif same:
        rest = f".original{source.suffix}"
        backup_stem = _fit(source.parent, source.stem, rest, limits)
        if backup_stem is None:
            raise _too_long("backup of the original", source, limits)
        backup = source.with_name(f"{backup_stem}{rest}")
    tail = f".castui-{token}.tmp"
    temp_stem = _fit(final_dir, f".{source.stem}", f"{tail}{longest}", limits)
    if temp_stem is None:
        raise _too_long("temporary output", final_dir / f".{source.stem}{tail}{suffix}", limits)
    temp = final_dir / f"{temp_stem}{tail}{suffix}"
    return Placement(source=source, final=final, temp=temp, backup=backup)


# --- source identity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceIdentity:
    """Which file a job read: device, inode, size and mtime at the start of the job.

    A file renamed over the source (a new download, a re-rip) has another inode; one
    rewritten in place has another size or mtime. Either way the output is of content that
    is no longer there, so it must not be placed.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SourceIdentity:
        """Stat ``path`` (raises ``OSError``)."""
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def change(self, now: SourceIdentity | None) -> str | None:
        """How ``now`` differs from this identity, in words (None: the same file)."""
        if now is None:
            return "it was removed"
        if (now.dev, now.ino) != (self.dev, self.ino):
            return "another file was put in its place"
        if now.size != self.size:
            return f"its size changed ({self.size} -> {now.size} bytes)"
        if now.mtime_ns != self.mtime_ns:
            return "it was modified"
        return None


def _identity(path: Path) -> SourceIdentity | None:
    try:
        return SourceIdentity.of(path)
    except OSError:
        return None


def source_changed_error(source: Path, how: str) -> SourceChangedError:
    return SourceChangedError(
        f"source changed during encode: {source}: {how}; the output was discarded and the new"
        " content is converted next (`castui convert` again, or the service requeues it)"
    )


# --- journal -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    """One job's swap state as stored on disk."""

    placement: Placement
    step: Step
    delete_source: bool
    source_size: int | None
    source_mtime_ns: int | None
    output_size: int | None = None  # the validated temp, recorded at ``validated``
    output_mtime_ns: int | None = None
    #: The :class:`Journal` (one per process) that wrote the entry; None in old entries.
    owner: str | None = None
    #: Device and inode of the source at ``begin`` (None in old entries).
    source_dev: int | None = None
    source_ino: int | None = None

    @property
    def source_identity(self) -> SourceIdentity | None:
        if None in (self.source_dev, self.source_ino, self.source_size, self.source_mtime_ns):
            return None
        assert self.source_dev is not None and self.source_ino is not None
        assert self.source_size is not None and self.source_mtime_ns is not None
        return SourceIdentity(
            self.source_dev, self.source_ino, self.source_size, self.source_mtime_ns
        )

    def to_json(self) -> dict[str, Any]:
        p = self.placement
        return {
            "version": _JOURNAL_VERSION,
            "owner": self.owner,
            "step": str(self.step),
            "source": str(p.source),
            "final": str(p.final),
            "temp": str(p.temp),
            "backup": None if p.backup is None else str(p.backup),
            "delete_source": self.delete_source,
            "source_size": self.source_size,
            "source_mtime_ns": self.source_mtime_ns,
            "source_dev": self.source_dev,
            "source_ino": self.source_ino,
            "output_size": self.output_size,
            "output_mtime_ns": self.output_mtime_ns,
            "updated": time.time(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournalEntry:
        backup = data.get("backup")
        placement = Placement(
            source=Path(data["source"]),
            final=Path(data["final"]),
            temp=Path(data["temp"]),
            backup=None if backup is None else Path(backup),
        )
        return cls(
            placement=placement,
            step=Step(data["step"]),
            delete_source=bool(data["delete_source"]),
            source_size=data.get("source_size"),
            source_mtime_ns=data.get("source_mtime_ns"),
            output_size=data.get("output_size"),
            output_mtime_ns=data.get("output_mtime_ns"),
            owner=data.get("owner"),
            source_dev=data.get("source_dev"),
            source_ino=data.get("source_ino"),
        )


def _fsync_dir(directory: Path) -> None:
    """Make renames/unlinks in ``directory`` durable (ignored where the FS cannot, e.g. SMB)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_OWNERS = "owners"


def _owner_lock_path(directory: Path, owner: str) -> Path:
    return directory / _OWNERS / f"{owner}.lock"


def _try_lock(path: Path) -> int | None:
    """Open ``path`` (creating it) and take an exclusive flock; the fd, or None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


class Journal:
    """One small JSON file per job in ``directory`` (the engine uses ``<db dir>/journal``).

    Each write is atomic and durable (temp file, fsync, ``os.replace``, fsync of the
    directory), so after a crash an entry is either the old or the new state, never torn.

    Every entry is stamped with this journal's ``owner`` id, and before the first write the
    journal takes the owner lock (see the module docstring) and holds it until :meth:`close`
    or process exit: that lock is what tells another process's ``recover`` "still working,
    hands off".
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.owner = secrets.token_hex(8)
        self._owner_fd: int | None = None

    def _path(self, placement: Placement) -> Path:
        return self.directory / f"{placement.key}.json"

    def _hold(self) -> None:
        """Take this journal's owner lock (once); entries are written only while it is held."""
        if self._owner_fd is not None:
            return
        lock = _owner_lock_path(self.directory, self.owner)
        lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only, like entries
        fd = _try_lock(lock)
        if fd is None:  # a fresh random name: nobody else can hold it
            raise SwapError(f"journal owner lock {lock} is held by another process")
        self._owner_fd = fd

    def close(self) -> None:
        """Give up the owner lock: entries left behind become another start's to recover."""
        fd, self._owner_fd = self._owner_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            _owner_lock_path(self.directory, self.owner).unlink()
        os.close(fd)

    def owner_alive(self, owner: str | None) -> bool:
        """Whether ``owner``'s lock is held now (by this journal or a live process)."""
        if owner is None:
            return False  # an entry from before owners existed: its process is long gone
        if owner == self.owner:
            return self._owner_fd is not None
        lock = _owner_lock_path(self.directory, owner)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @contextlib.contextmanager
    def claim_dead(self, owner: str | None) -> Iterator[bool]:
        """Hold ``owner``'s lock while its entries are recovered; yields False if it lives.

        Holding the lock (not just testing it) also keeps two starting processes from
        recovering the same entry at once. The lock file of a dead owner is removed after.
        """
        if owner is None:
            yield True
            return
        if owner == self.owner:
            yield self._owner_fd is None
            return
        lock = _owner_lock_path(self.directory, owner)
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = _try_lock(lock)
        if fd is None:
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)

    def write(self, entry: JournalEntry) -> None:
        # Entries name the user's files: the folder is theirs alone (mode never above 0700).
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._hold()
        entry = replace(entry, owner=self.owner)
        path = self._path(entry.placement)
        # The owner in the temp name lets ``recover`` tell a live writer's temp from debris.
        tmp = path.with_name(f".{path.stem}.{self.owner}.json.tmp")
        data = json.dumps(entry.to_json(), indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.directory)

    def read(self, placement: Placement) -> JournalEntry | None:
        try:
            return JournalEntry.from_json(json.loads(self._path(placement).read_bytes()))
        except FileNotFoundError:
            return None

    def remove(self, placement: Placement) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(placement).unlink()
            _fsync_dir(self.directory)

    def entries(self) -> list[tuple[Path, JournalEntry | None]]:
        """Every entry file with its parsed entry (``None``: unreadable, left for a person)."""
        if not self.directory.is_dir():
            return []
        found: list[tuple[Path, JournalEntry | None]] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                found.append((path, JournalEntry.from_json(json.loads(path.read_bytes()))))
            except (OSError, ValueError, KeyError, TypeError):
                found.append((path, None))
        return found

    def advance(self, entry: JournalEntry, step: Step, **changes: Any) -> JournalEntry:
        """Write ``entry`` moved on to ``step`` (with ``changes``) and return it."""
        new = replace(entry, step=step, owner=self.owner, **changes)
        self.write(new)
        return new


# --- free space --------------------------------------------------------------------------------


UsageFn = Callable[[str], Any]  # shutil.disk_usage-like: returns an object with ``.free``


def _human(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB"


def check_free_space(
    directory: Path,
    needed_bytes: int,
    *,
    min_free_bytes: int = 0,
    usage: UsageFn = shutil.disk_usage,
    archive: Path | None = None,
) -> None:
    """Refuse to start a job whose output would not fit (or would eat the reserve).

    Checked before encoding so a full disk never ends a job hours in with a partial temp,
    and so the free space the person keeps for other things is respected. ``directory`` may
    not exist yet (a mirrored output tree): its nearest existing parent is measured.
    """
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = int(usage(str(probe)).free)
    if free - needed_bytes >= min_free_bytes:
        return
    mount = filesystem_of(probe)
    where = mount.mount_point if mount is not None else str(probe)
    keep = f" (keep {_human(min_free_bytes)} free)" if min_free_bytes > 0 else ""
    held = _archive_bytes(archive) if archive is not None else 0
    tail = (
        f"; the archive of originals ({archive}) holds {_human(held)}: `castui originals purge`"
        " frees it"
        if held
        else ""
    )
    raise InsufficientSpaceError(
        f"need {_human(needed_bytes)} for the output, {_human(free)} free on {where}{keep}{tail}"
    )


def _archive_bytes(archive: Path) -> int:
    """Bytes the originals archive holds (the replace layout keeps it on the same disk, so
    it counts against the free space: a refusal says how much purging would give back)."""
    total = 0
    for folder, _dirs, files in os.walk(archive):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def estimate_output_size(source: MediaInfo, plan: EncodePlan, profile: Profile) -> int:
    """Bytes to reserve for the output: an upper estimate, never a guess on the low side.

    A remux is about the source's size; a transcode is at most the profile's maximum video
    bitrate plus the audio tracks for the duration (and, in practice, at most the source),
    both with a 10 % margin.
    """
    if plan.video == "copy" or not source.duration_s:
        return int(source.size * SIZE_MARGIN)
    by_index = {a.index: a for a in source.audio}
    audio_bps = 0
    for track in plan.audio_plan:
        if track.action == "copy":
            stream = by_index.get(track.source_index)
            audio_bps += (stream.bit_rate if stream else None) or _UNKNOWN_AUDIO_BPS
        else:
            audio_bps += profile.audio.bitrate_kbps * 1000
    video_bps = profile.video.max_bitrate_kbps * 1000
    capped = source.duration_s * (video_bps + audio_bps) / 8
    return int(min(source.size, capped) * SIZE_MARGIN)


# --- the swap ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwapResult:
    final: Path
    backup: Path | None  # where the original now lives (None: deleted, or not renamed)
    source_deleted: bool
    bytes_before: int
    bytes_after: int


AfterStep = Callable[[str], None]


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, never replacing an existing ``dst`` (``OutputExistsError``).

    A hard link fails atomically when ``dst`` exists; after it both names are the same
    inode, which recovery recognises (``samefile``) and finishes by removing ``src``.
    Filesystems without hard links get an exists-check and ``os.replace``.
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise OutputExistsError(
            f"{dst} already exists; castui never overwrites a file it did not write"
        ) from None
    except OSError as exc:
        if exc.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.EMLINK,
        ):
            raise
        if _exists(dst):
            raise OutputExistsError(
                f"{dst} already exists; castui never overwrites a file it did not write"
            ) from None
        os.replace(src, dst)
        return
    os.unlink(src)


def _make_parent(path: Path) -> None:
    """Create ``path``'s folder (the archive mirrors the library: its folders are made on
    demand), owner-only for new folders, as the archive is castui's, and fsync the parents so
    the rename into it survives a crash."""
    parent = path.parent
    if parent.is_dir():
        return
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _fsync_dir(parent.parent)


def _stat_pair(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _unchanged(path: Path, entry: JournalEntry) -> bool:
    """The source (or its backup) still is the file the job started from."""
    return _stat_pair(path) == (entry.source_size, entry.source_mtime_ns)


def _is_output(path: Path, entry: JournalEntry) -> bool:
    """``path`` is the validated output this job placed (size and mtime as recorded)."""
    if entry.output_size is None or entry.output_size == 0:
        return False
    return _stat_pair(path) == (entry.output_size, entry.output_mtime_ns)


def _check_names_free(placement: Placement) -> None:
    """``OutputExistsError`` when the final (or backup) name holds a file castui did not write."""
    message = "{} already exists; castui never overwrites a file it did not write"
    if _exists(placement.final) and not _same(placement.final, placement.source):
        raise OutputExistsError(message.format(placement.final))
    if placement.backup is not None and _exists(placement.backup):
        raise OutputExistsError(message.format(placement.backup))


def begin(
    journal: Journal,
    placement: Placement,
    *,
    delete_source: bool,
    expect: SourceIdentity | None = None,
) -> None:
    """Record the job before the encoder writes anything (journal ``encoding``).

    Refuses a taken output name up front, so hours of encoding are not wasted on a job that
    could never be placed; records the source's identity (device, inode, size, mtime) so
    that ``commit`` places nothing made from a source that was replaced meanwhile and
    nothing deletes a source that changed. ``expect`` is the identity the caller read
    before probing: a source replaced between probe and encode is refused here already.
    """
    try:
        st = os.stat(placement.source)
    except OSError as exc:
        raise SwapError(f"{placement.source}: cannot read the source: {exc.strerror}") from exc
    if expect is not None:
        how = expect.change(SourceIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        if how is not None:
            raise source_changed_error(placement.source, how)
    _check_names_free(placement)
    try:
        placement.final.parent.mkdir(parents=True, exist_ok=True)
        journal.write(
            JournalEntry(
                placement=placement,
                step=Step.ENCODING,
                delete_source=delete_source,
                source_size=st.st_size,
                source_mtime_ns=st.st_mtime_ns,
                source_dev=st.st_dev,
                source_ino=st.st_ino,
            )
        )
    except OSError as exc:
        raise SwapError(f"cannot prepare {placement.final.parent}: {exc.strerror}") from exc


def commit(
    journal: Journal,
    placement: Placement,
    *,
    delete_source: bool,
    sidecar_temps: Sequence[Path] = (),
    _after_step: AfterStep | None = None,
) -> SwapResult:
    """Put the validated temp in place (call only after validation passed).

    Checks first, touching nothing: the temp exists and is not empty, the source exists, the
    final (and backup) name is free. Then each step happens and is journaled; the source is
    deleted (if asked) only once the new file is in place and durable, and only if it is
    still the file the job started from. An ``OSError`` midway leaves the journal entry:
    ``recover`` (or ``abort``) finishes it.

    ``sidecar_temps`` (bitmap-subtitle sidecars written beside the temp, validated with
    it) are moved to their final names right after the output, before the original may be
    deleted: they carry subtitles that exist nowhere else once the original is gone.

    ``_after_step`` is a test hook called after each step (``"validated"``, ...,
    ``"done"``) and after each filesystem change before it is journaled
    (``"<step>-pending"``): crash tests kill the process there.
    """
    hook = _after_step or (lambda _step: None)
    entry = journal.read(placement)
    temp_stat = _stat_pair(placement.temp)
    if temp_stat is None or temp_stat[0] == 0:
        raise SwapError(f"{placement.temp}: the output to place is missing or empty")
    source_stat = _stat_pair(placement.source)
    if source_stat is None:
        raise SwapError(f"{placement.source}: the source vanished during the job; nothing placed")
    started_as = entry.source_identity if entry is not None else None
    if started_as is not None:
        how = started_as.change(_identity(placement.source))
        if how is not None:
            raise source_changed_error(placement.source, how)
    _check_names_free(placement)
    sidecars = [(t, placement.sidecar_final(t)) for t in sidecar_temps]
    for temp, final in sidecars:
        if not _exists(temp):
            raise SwapError(f"{temp}: the subtitle sidecar to place is missing")
        if _exists(final):
            raise OutputExistsError(
                f"{final} already exists; castui never overwrites a file it did not write"
            )
    if entry is None:  # begin() was not called: record the source as it is now
        entry = JournalEntry(placement, Step.ENCODING, delete_source, *source_stat)
    try:
        for path in (placement.temp, *(temp for temp, _ in sidecars)):
            _fsync_file(path)
        entry = journal.advance(
            entry,
            Step.VALIDATED,
            delete_source=delete_source,
            output_size=temp_stat[0],
            output_mtime_ns=temp_stat[1],
        )
        hook(Step.VALIDATED)
        if placement.backup is not None:
            _make_parent(placement.backup)
            _rename_noreplace(placement.source, placement.backup)
            _fsync_dir(placement.backup.parent)
            _fsync_dir(placement.source.parent)
            hook(f"{Step.SOURCE_MOVED}-pending")
            entry = journal.advance(entry, Step.SOURCE_MOVED)
            hook(Step.SOURCE_MOVED)
        _rename_noreplace(placement.temp, placement.final)
        for temp, final in sidecars:
            _rename_noreplace(temp, final)
        _fsync_dir(placement.final.parent)
        hook(f"{Step.PLACED}-pending")
        entry = journal.advance(entry, Step.PLACED)
        hook(Step.PLACED)
        deleted = False
        if delete_source:
            deleted = _delete_original(entry)
            if deleted:
                hook(f"{Step.SOURCE_DELETED}-pending")
                entry = journal.advance(entry, Step.SOURCE_DELETED)
                hook(Step.SOURCE_DELETED)
        journal.remove(placement)
        hook(Step.DONE)
    except OSError as exc:
        raise SwapError(
            f"placing {placement.final} failed: {exc.strerror or exc}; the journal keeps the"
            " state and castui finishes or undoes it at the next start"
        ) from exc
    kept = placement.backup if placement.backup is not None and not deleted else None
    return SwapResult(
        final=placement.final,
        backup=kept,
        source_deleted=deleted,
        bytes_before=source_stat[0],
        bytes_after=temp_stat[0],
    )


def _delete_original(entry: JournalEntry) -> bool:
    """Delete the source (or its backup) now that the output is in place; False if kept.

    Kept when the output is not (or no longer) in place and non-empty, or when the original
    changed since the job started (the person replaced it: the output is of the old file).
    """
    p = entry.placement
    victim = p.backup if p.backup is not None else p.source
    if not _exists(victim):
        return False
    final = _stat_pair(p.final)
    if final is None or final[0] == 0 or _same(victim, p.final):
        return False
    if not _unchanged(victim, entry):
        return False
    os.unlink(victim)
    _fsync_dir(victim.parent)
    return True


def _remove_temps(placement: Placement) -> list[Path]:
    """Remove the job's temp and sidecar temps: hidden names starting with the temp prefix.

    Covers ``.<stem>.castui-<token>.tmp.mp4``, ``sidecar_temp`` names and sidecars written
    as ``.<stem>.castui-<token>.eng.sup`` (the token makes the prefix unique to the job).
    """
    removed: list[Path] = []
    prefix = placement.temp_prefix
    directory = placement.temp.parent
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if name.startswith(prefix + "."):
            path = directory / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    if removed:
        _fsync_dir(directory)
    return removed


def abort(journal: Journal, placement: Placement) -> None:
    """Give up a job before its output was placed: remove the temps, restore the source name.

    If the swap had already placed the output, undoing it would be the riskier move, so the
    entry is rolled forward instead (as ``recover`` would).
    """
    entry = journal.read(placement)
    if entry is not None and _ORDER[entry.step] >= _ORDER[Step.PLACED]:
        _recover_entry(journal, entry)
        return
    if entry is not None and entry.step is not Step.ENCODING and not _exists(placement.temp):
        _recover_entry(journal, entry)  # the temp was already renamed into place
        return
    backup = placement.backup
    if backup is not None and _exists(backup):
        if _exists(placement.source) and _same(placement.source, backup):
            os.unlink(backup)  # crashed between link and unlink: the source name is intact
        elif not _exists(placement.source):
            _rename_noreplace(backup, placement.source)
        _fsync_dir(backup.parent)
    _remove_temps(placement)
    journal.remove(placement)


def recover(journal: Journal) -> list[str]:
    """Finish or undo every swap a crash interrupted; return what was done, in words.

    Run once at start-up, before any job starts. Only entries whose owner is dead are
    touched (see the module docstring): another castui process's encode in progress is
    left alone. The rule everywhere: a temp journaled as ``validated`` is complete and may be
    placed; one still ``encoding`` may be partial and is removed; the original is deleted
    only when the new file is in place, non-empty and the original is unchanged; and the
    original is never left without a name.
    """
    lines: list[str] = recover_restores(journal)
    for path, entry in journal.entries():
        if entry is None:
            lines.append(f"journal entry {path} is unreadable: left for you to inspect")
            continue
        with journal.claim_dead(entry.owner) as dead:
            if not dead or not path.exists():  # alive, or recovered meanwhile by another
                continue
            try:
                lines.append(_recover_entry(journal, entry))
            except (OSError, SwapError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                lines.append(
                    f"could not recover {entry.placement.source}: {reason}; journal entry kept"
                )
    if journal.directory.is_dir():
        for stray in journal.directory.glob(".*.json.tmp"):
            # ``.<key>.<owner>.json.tmp``: a live owner may be writing it right now.
            parts = stray.name.split(".")  # ["", key, owner, "json", "tmp"]
            owner = parts[2] if len(parts) == 5 else None
            if not journal.owner_alive(owner):
                with contextlib.suppress(OSError):
                    stray.unlink()
        referenced = {e.owner for _, e in journal.entries() if e is not None}
        for lock in journal.directory.glob(f"{_OWNERS}/*.lock"):
            if lock.stem not in referenced and lock.stem != journal.owner:
                with contextlib.suppress(OSError), journal.claim_dead(lock.stem):
                    pass  # taking a dead owner's lock removes its file
    return lines


def _recover_entry(journal: Journal, entry: JournalEntry) -> str:
    p = entry.placement
    if entry.step is Step.ENCODING:
        _remove_temps(p)
        journal.remove(p)
        return f"recovered: removed the partial output for {p.source} (crash during the encode)"
    how = {
        Step.VALIDATED: "crash after validation",
        Step.SOURCE_MOVED: "crash after the original was renamed",
        Step.PLACED: "crash after placing",
        Step.SOURCE_DELETED: "crash after deleting the original",
        Step.DONE: "crash while finishing",
    }[entry.step]
    placed_now = False
    if _exists(p.temp):
        if _exists(p.final) and _same(p.temp, p.final):
            os.unlink(p.temp)  # crashed between link and unlink
            _fsync_dir(p.temp.parent)
            placed_now = True
        else:
            conflict = _prepare_final_name(p)
            if conflict is not None:
                _remove_temps(p)
                journal.remove(p)
                return f"recovered: {conflict}; removed the new file, the original is untouched"
            _rename_noreplace(p.temp, p.final)
            _fsync_dir(p.final.parent)
            placed_now = True
    elif p.backup is not None and _exists(p.backup) and not _exists(p.final):
        # The original was renamed but the new file never arrived: give it its name back.
        _rename_noreplace(p.backup, p.source)
        _fsync_dir(p.source.parent)
        _remove_temps(p)
        journal.remove(p)
        return f"recovered: restored {p.source} from {p.backup.name} (new file missing, {how})"
    elif p.backup is not None and _exists(p.backup) and _same(p.backup, p.source):
        os.unlink(p.backup)  # link done, unlink not: the source name still holds the original
        _fsync_dir(p.backup.parent)
    if not placed_now and not _is_output(p.final, entry):
        _remove_temps(p)
        journal.remove(p)
        return f"recovered: nothing to finish for {p.source} ({how}); the original is in place"
    kept = _place_sidecar_temps(p)
    deleted = entry.delete_source and _delete_original(entry)
    _remove_temps(p)
    journal.remove(p)
    what = "finished placing" if placed_now else "checked"
    tail = f"; deleted {p.backup or p.source} as asked" if deleted else ""
    if kept:
        tail += f"; placed {len(kept)} subtitle sidecar(s)"
    return f"recovered: {what} {p.final} ({how}){tail}"


def _prepare_final_name(p: Placement) -> str | None:
    """Free the final name for the temp: move the original to its backup name if needed.

    Returns why the temp cannot be placed (a file castui did not write holds a name), else
    ``None``.
    """
    if p.backup is not None:
        source_there = _exists(p.source)
        backup_there = _exists(p.backup)
        if source_there and backup_there:
            if not _same(p.source, p.backup):
                return f"{p.backup} already exists"
            os.unlink(p.source)  # link done, unlink not
            _fsync_dir(p.source.parent)
        elif source_there:
            _make_parent(p.backup)
            _rename_noreplace(p.source, p.backup)
            _fsync_dir(p.backup.parent)
        return None
    if _exists(p.final):
        return f"{p.final} appeared meanwhile and is not castui's"
    return None


def _place_sidecar_temps(p: Placement) -> list[Path]:
    """Recovery: move left-over, non-empty sidecar temps of a placed job to their names.

    They were written and validated with the output (a job reaches ``validated`` only after
    that), so they are complete; a name already taken is never overwritten (the temp is then
    removed with the other temps).
    """
    placed: list[Path] = []
    try:
        names = sorted(os.listdir(p.temp.parent))
    except OSError:
        return placed
    for name in names:
        temp = p.temp.parent / name
        if not name.startswith(p.temp_prefix + ".") or temp == p.temp:
            continue
        final = p.sidecar_final(temp)
        with contextlib.suppress(OSError, SwapError):
            if os.stat(temp).st_size > 0 and not _exists(final):
                _rename_noreplace(temp, final)
                placed.append(final)
    if placed:
        _fsync_dir(p.temp.parent)
    return placed


# --- restore: an archived original back to its place --------------------------------------------

#: Restore entries live beside the swap entries, in their own folder (another format).
_RESTORES = "restores"


class RestoreStep(StrEnum):
    """How far one restore got; journaled after each step happened."""

    BEGUN = "begun"  # nothing moved yet; what to do is recorded
    OUTPUT_ASIDE = "output_aside"  # castui's output renamed to a hidden name beside it
    ORIGINAL_BACK = "original_back"  # the original has its name again
    OUTPUT_REMOVED = "output_removed"  # the set-aside output was deleted


@dataclass(frozen=True)
class RestorePlan:
    """One restore: the archived original, its home, and castui's output to remove (if any).

    ``output`` is None when the output is to be kept (castui did not write it, or it changed
    since): the original then only goes back when its name is free. ``aside`` is the hidden
    name the output is moved to before the original takes its place (the same name when the
    source was an ``.mp4``), deleted only once the original is back.
    """

    archive: Path
    home: Path
    output: Path | None
    aside: Path | None
    archive_size: int
    archive_mtime_ns: int
    output_size: int | None = None
    output_mtime_ns: int | None = None

    @property
    def key(self) -> str:
        return hashlib.sha256(os.fsencode(self.archive)).hexdigest()[:32]

    def to_json(self, step: RestoreStep, owner: str) -> dict[str, Any]:
        return {
            "version": _JOURNAL_VERSION,
            "kind": "restore",
            "owner": owner,
            "step": str(step),
            "archive": str(self.archive),
            "home": str(self.home),
            "output": None if self.output is None else str(self.output),
            "aside": None if self.aside is None else str(self.aside),
            "archive_size": self.archive_size,
            "archive_mtime_ns": self.archive_mtime_ns,
            "output_size": self.output_size,
            "output_mtime_ns": self.output_mtime_ns,
            "updated": time.time(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> tuple[RestorePlan, RestoreStep, str | None]:
        def opt(key: str) -> Path | None:
            value = data.get(key)
            return None if value is None else Path(value)

        plan = cls(
            archive=Path(data["archive"]),
            home=Path(data["home"]),
            output=opt("output"),
            aside=opt("aside"),
            archive_size=int(data["archive_size"]),
            archive_mtime_ns=int(data["archive_mtime_ns"]),
            output_size=data.get("output_size"),
            output_mtime_ns=data.get("output_mtime_ns"),
        )
        return plan, RestoreStep(data["step"]), data.get("owner")


def plan_restore(archive: Path, home: Path, output: Path | None, *, token: str) -> RestorePlan:
    """What restoring ``archive`` to ``home`` does (reads sizes; raises ``SwapError``).

    ``output`` is castui's output to remove, already checked by the caller against the
    ``outputs`` record (castui wrote it and it did not change since); None keeps it.
    Refuses when the original would have to overwrite a file that stays.
    """
    a = _stat_pair(archive)
    if a is None:
        raise SwapError(f"{archive}: the archived original is missing; nothing was changed")
    if output is not None and not _exists(output):
        output = None
    o = _stat_pair(output) if output is not None else None
    if _exists(home) and (output is None or not _same(home, output)):
        raise OutputExistsError(
            f"{home} exists and is not castui's unchanged output: the original stays in"
            f" {archive}; move or remove {home.name} first"
        )
    aside = None
    if output is not None:
        aside = output.with_name(f".{output.stem[:180]}.castui-{token}.restore{output.suffix}")
    return RestorePlan(
        archive=archive,
        home=home,
        output=output,
        aside=aside,
        archive_size=a[0],
        archive_mtime_ns=a[1],
        output_size=None if o is None else o[0],
        output_mtime_ns=None if o is None else o[1],
    )


def _restore_path(journal: Journal, plan: RestorePlan) -> Path:
    return journal.directory / _RESTORES / f"{plan.key}.json"


def _write_restore(journal: Journal, plan: RestorePlan, step: RestoreStep) -> None:
    directory = journal.directory / _RESTORES
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    journal._hold()
    path = _restore_path(journal, plan)
    tmp = path.with_name(f".{path.stem}.{journal.owner}.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(plan.to_json(step, journal.owner), indent=1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(directory)


def _remove_restore(journal: Journal, plan: RestorePlan) -> None:
    with contextlib.suppress(FileNotFoundError):
        _restore_path(journal, plan).unlink()
        _fsync_dir(journal.directory / _RESTORES)


def restore(journal: Journal, plan: RestorePlan, *, _after_step: AfterStep | None = None) -> str:
    """Put the archived original back (blocking; journaled so a crash is rolled forward).

    Order: journal ``begun``; castui's output to its hidden ``aside`` name; the original
    renamed home (the archive is on the same filesystem: a rename keeps bytes, mode and
    mtime); the set-aside output deleted. Each step is journaled after it happened. Once
    begun, a restore is finished by ``recover`` (the person asked for it, and every step is
    a rename castui can repeat), except that nothing is ever overwritten.
    """
    hook = _after_step or (lambda _step: None)
    _write_restore(journal, plan, RestoreStep.BEGUN)
    hook(RestoreStep.BEGUN)
    try:
        return _finish_restore(journal, plan, RestoreStep.BEGUN, hook)
    except OSError as exc:
        raise SwapError(
            f"restoring {plan.home} failed: {exc.strerror or exc}; the journal keeps the state"
            " and castui finishes it at the next start"
        ) from exc


def _finish_restore(journal: Journal, plan: RestorePlan, step: RestoreStep, hook: AfterStep) -> str:
    order = list(RestoreStep)
    at = order.index(step)
    out, aside = plan.output, plan.aside
    if out is not None and aside is not None and at < order.index(RestoreStep.OUTPUT_ASIDE):
        if _exists(out) and _exists(aside) and _same(out, aside):
            os.unlink(out)  # link done, unlink not
        elif _exists(out) and not _exists(aside):
            if _stat_pair(out) != (plan.output_size, plan.output_mtime_ns):
                _remove_restore(journal, plan)
                return (
                    f"not restored: {out} changed meanwhile; the original stays in {plan.archive}"
                )
            _rename_noreplace(out, aside)
        _fsync_dir(out.parent)
        hook(f"{RestoreStep.OUTPUT_ASIDE}-pending")
        _write_restore(journal, plan, RestoreStep.OUTPUT_ASIDE)
        hook(RestoreStep.OUTPUT_ASIDE)
    if at < order.index(RestoreStep.ORIGINAL_BACK):
        if _exists(plan.archive) and _exists(plan.home):
            if not _same(plan.archive, plan.home):
                return _undo_aside(journal, plan, f"{plan.home} appeared meanwhile")
            os.unlink(plan.archive)  # link done, unlink not
        elif _exists(plan.archive):
            plan.home.parent.mkdir(parents=True, exist_ok=True)
            _rename_noreplace(plan.archive, plan.home)
        elif not _exists(plan.home):
            return _undo_aside(journal, plan, f"the archived original {plan.archive} is gone")
        _fsync_dir(plan.home.parent)
        _fsync_dir(plan.archive.parent)
        hook(f"{RestoreStep.ORIGINAL_BACK}-pending")
        _write_restore(journal, plan, RestoreStep.ORIGINAL_BACK)
        hook(RestoreStep.ORIGINAL_BACK)
    removed = ""
    if aside is not None and _exists(aside):
        if _stat_pair(aside) == (plan.output_size, plan.output_mtime_ns):
            os.unlink(aside)
            _fsync_dir(aside.parent)
            removed = f"; removed castui's output {plan.output}"
        hook(f"{RestoreStep.OUTPUT_REMOVED}-pending")
        _write_restore(journal, plan, RestoreStep.OUTPUT_REMOVED)
        hook(RestoreStep.OUTPUT_REMOVED)
    elif out is not None:
        removed = f"; removed castui's output {out}"
    _remove_restore(journal, plan)
    hook("done")
    return f"restored {plan.home} from {plan.archive}{removed}"


def _undo_aside(journal: Journal, plan: RestorePlan, why: str) -> str:
    """The original cannot go back: give castui's output its name again (nothing lost)."""
    out, aside = plan.output, plan.aside
    if out is not None and aside is not None and _exists(aside) and not _exists(out):
        _rename_noreplace(aside, out)
        _fsync_dir(out.parent)
    _remove_restore(journal, plan)
    return f"not restored: {why}; the original stays in {plan.archive}, the output in place"


def recover_restores(journal: Journal) -> list[str]:
    """Finish every restore a crash interrupted (owners that are gone only); see ``recover``."""
    directory = journal.directory / _RESTORES
    if not directory.is_dir():
        return []
    lines: list[str] = []
    for path in sorted(directory.glob("*.json")):
        try:
            plan, step, owner = RestorePlan.from_json(json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError):
            lines.append(f"restore journal entry {path} is unreadable: left for you to inspect")
            continue
        with journal.claim_dead(owner) as dead:
            if not dead or not path.exists():
                continue
            try:
                done = _finish_restore(journal, plan, step, lambda _s: None)
            except (OSError, SwapError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                lines.append(f"could not finish restoring {plan.home}: {reason}; entry kept")
                continue
            lines.append(f"recovered: {done} (crash during the restore)")
    for stray in directory.glob(".*.json.tmp"):
        parts = stray.name.split(".")
        if not journal.owner_alive(parts[2] if len(parts) == 5 else None):
            with contextlib.suppress(OSError):
                stray.unlink()
    return lines


def carry_sidecars(source: Path, final: Path, *, layout: LayoutName) -> list[Path]:
    """Give the source's sidecars (subtitles, ``.nfo``, artwork) names that match the output
    (blocking; see :func:`castui_core.layout.sidecar_plan` for the rules per layout).

    replace renames (the source is gone from the folder), version hard-links (the source
    keeps its own); a name already taken is never overwritten. Returns the new names.
    """
    if final.parent != source.parent or layout not in ("replace", "version"):
        return []
    try:
        names = os.listdir(source.parent)
    except OSError:
        return []
    made: list[Path] = []
    for old, new in sidecar_plan(source.stem, final.stem, names, layout=layout):
        src, dst = source.parent / old, source.parent / new
        try:
            if layout == "version":
                os.link(src, dst, follow_symlinks=False)
            else:
                _rename_noreplace(src, dst)
        except (OSError, SwapError):
            continue  # taken meanwhile, or no hard links here: the sidecar stays as it was
        made.append(dst)
    if made:
        _fsync_dir(source.parent)
    return made
