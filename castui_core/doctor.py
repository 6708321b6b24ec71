"""``castui doctor``: is this machine ready for castui? One line per thing, ok / warning / error.

Why pure checks fed by small readers: each verdict (an inotify limit too low for the library,
a database on NFS, an ffmpeg without libx264) is a rule over a few facts, and the rules are
table-tested with facts a test chooses; only :func:`run_doctor` reads the real machine
(``/proc``, the mount table, ffmpeg, NVML), each blocking read in a thread.

Exit code: the worst line: 0 all ok, 1 a warning (castui runs, but not at its best: no GPU,
a limit that may bite), 2 an error (castui cannot do its job until it is fixed).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from castui_core.datadir import data_dir_problems
from castui_core.errors import CastuiError
from castui_core.ffmpeg.nvenc import NvencStatus, detect_nvenc
from castui_core.fsinfo import Mount, filesystem_of
from castui_core.guardrails.gpu import GpuReading, GpuUnavailableError, NoGpu
from castui_core.settings import LibrarySettings, Settings, WatchMode
from castui_core.subproc import run_bounded
from castui_core.tools import JELLYFIN_FFMPEG_DIR, find_tool

Level = Literal["ok", "warning", "error"]

_RANK: dict[Level, int] = {"ok": 0, "warning": 1, "error": 2}

#: Encoders castui uses: the CPU ones for every job without NVENC, the NVENC ones on a GPU.
ENCODERS: tuple[str, ...] = ("libx264", "libx265", "h264_nvenc", "hevc_nvenc")

#: Where the kernel's inotify limits are read.
INOTIFY_DIR = Path("/proc/sys/fs/inotify")


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, the verdict, and what to do about it."""

    name: str
    level: Level
    message: str


def worst(checks: Iterable[Check]) -> Level:
    level: Level = "ok"
    for check in checks:
        if _RANK[check.level] > _RANK[level]:
            level = check.level
    return level


def exit_code(checks: Iterable[Check]) -> int:
    """0 all ok, 1 a warning, 2 an error."""
    return _RANK[worst(checks)]


def as_json(checks: Sequence[Check]) -> dict[str, object]:
    return {
        "checks": [asdict(c) for c in checks],
        "worst": worst(checks),
        "exit_code": exit_code(checks),
    }


# --- pure checks -------------------------------------------------------------------------------


def check_tool(name: str, path: Path | None, version: str | None, error: str | None) -> Check:
    """ffmpeg/ffprobe: where it is, its version, and whether it is jellyfin-ffmpeg."""
    if path is None:
        return Check(name, "error", error or f"{name} not found")
    if version is None:
        return Check(
            name,
            "error",
            f"{path} does not run ({error or 'no version output'}); reinstall FFmpeg or set"
            f" {name}: in the settings to one that works",
        )
    flavour = "jellyfin-ffmpeg" if is_jellyfin_ffmpeg(path, version) else "not jellyfin-ffmpeg"
    return Check(name, "ok", f"{path} (version {version}, {flavour})")


def is_jellyfin_ffmpeg(path: Path, version: str) -> bool:
    return "jellyfin" in version.lower() or str(path).startswith(str(JELLYFIN_FFMPEG_DIR))


def parse_version(text: str) -> str | None:
    """``ffmpeg version 7.1.1-1+b1 Copyright ...`` -> ``7.1.1-1+b1``."""
    match = re.search(r"\bversion\s+(\S+)", text)
    return match.group(1) if match else None


def parse_encoders(text: str) -> set[str]:
    """Encoder names from ``ffmpeg -hide_banner -encoders`` (lines like `` V....D libx264 ...``)."""
    names: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and re.fullmatch(r"[VAS][F.][S.][X.][B.][D.]", parts[0]):
            names.add(parts[1])
    return names


def check_encoders(listed: set[str] | None, *, has_gpu: bool) -> list[Check]:
    """One line per encoder castui may use; NVENC missing matters only where there is a GPU."""
    if listed is None:
        return [Check("encoders", "error", "could not list ffmpeg's encoders (see ffmpeg above)")]
    out: list[Check] = []
    for name in ENCODERS:
        if name in listed:
            out.append(Check(f"encoder {name}", "ok", "present"))
        elif name == "libx264":
            out.append(
                Check(
                    f"encoder {name}",
                    "error",
                    "missing: castui cannot encode H.264 on the CPU; install an FFmpeg built"
                    " with libx264 (Debian's ffmpeg or jellyfin-ffmpeg)",
                )
            )
        elif name == "libx265":
            out.append(
                Check(
                    f"encoder {name}",
                    "warning",
                    "missing: profiles that output HEVC cannot encode on the CPU; install an"
                    " FFmpeg built with libx265",
                )
            )
        elif has_gpu:
            out.append(
                Check(
                    f"encoder {name}",
                    "warning",
                    "missing although an NVIDIA GPU is here: install jellyfin-ffmpeg (or an"
                    " FFmpeg built with NVENC) to encode on the GPU",
                )
            )
        else:
            out.append(Check(f"encoder {name}", "ok", "not in this FFmpeg (no NVIDIA GPU here)"))
    return out


def check_gpus(gpus: Sequence[GpuReading] | NoGpu) -> Check:
    """NVML: the GPUs it sees, or why none (a warning: castui encodes on the CPU then)."""
    if isinstance(gpus, NoGpu):
        reason = gpus.reason.removeprefix("no GPU: ")
        return Check("gpu", "warning", f"no NVIDIA driver: CPU encoding only ({reason})")
    if not gpus:
        return Check("gpu", "warning", "no NVIDIA GPU found by NVML: CPU encoding only")
    parts = []
    for g in gpus:
        temp = f", {g.temperature_c} C" if g.temperature_c is not None else ""
        parts.append(f"GPU {g.index}: {g.name}{temp}")
    return Check("gpu", "ok", "; ".join(parts))


def check_nvenc(status: NvencStatus | None, *, listed: bool, has_gpu: bool) -> Check:
    """The one-frame NVENC test (``None``: not run, because there was nothing to test)."""
    if status is None:
        why = "no NVIDIA GPU" if not has_gpu else "this FFmpeg has no h264_nvenc"
        if has_gpu and listed:
            why = "skipped"
        level: Level = "warning" if has_gpu else "ok"
        return Check("nvenc test", level, f"not run ({why}): CPU encoding (libx264)")
    if status.available:
        return Check("nvenc test", "ok", f"{status.reason}: castui encodes on the GPU")
    return Check("nvenc test", "warning", f"NVENC unusable: {status.reason}; CPU encoding only")


def check_inotify(
    max_user_watches: int | None,
    max_user_instances: int | None,
    watched_folders: Mapping[str, int],
) -> list[Check]:
    """The kernel's inotify limits against the folders castui watches with events.

    Each watched folder takes one watch, and the limit is per user: Jellyfin's real-time
    monitor (same user on most installs) watches the same folders again, so castui asks for
    twice its own count before it calls the limit enough.
    """
    folders = sum(watched_folders.values())
    out: list[Check] = []
    if max_user_watches is None:
        out.append(Check("inotify watches", "warning", "cannot read fs.inotify.max_user_watches"))
    else:
        need = 2 * folders
        if need > max_user_watches:
            target = max(524288, 1 << (need - 1).bit_length())
            out.append(
                Check(
                    "inotify watches",
                    "warning",
                    f"fs.inotify.max_user_watches is {max_user_watches}, but the watched"
                    f" libraries have {folders} folders (x2 with Jellyfin watching them too):"
                    f" raise it with `sudo sysctl fs.inotify.max_user_watches={target}` and"
                    " persist it in /etc/sysctl.d/90-castui.conf (until then castui falls back"
                    " to polling)",
                )
            )
        else:
            out.append(
                Check(
                    "inotify watches",
                    "ok",
                    f"fs.inotify.max_user_watches {max_user_watches} for {folders} watched folders",
                )
            )
    if max_user_instances is None:
        out.append(
            Check("inotify instances", "warning", "cannot read fs.inotify.max_user_instances")
        )
    elif max_user_instances < 8 + len(watched_folders):
        out.append(
            Check(
                "inotify instances",
                "warning",
                f"fs.inotify.max_user_instances is {max_user_instances}: too few for"
                f" {len(watched_folders)} watched libraries and other programs; raise it with"
                " `sudo sysctl fs.inotify.max_user_instances=1024` (persist it in"
                " /etc/sysctl.d/90-castui.conf)",
            )
        )
    else:
        out.append(
            Check("inotify instances", "ok", f"fs.inotify.max_user_instances {max_user_instances}")
        )
    return out


def check_database(database: Path, mount: Mount | None, write_problems: Sequence[str]) -> Check:
    """The database must be on a local disk (SQLite locking) and its folder writable."""
    if mount is not None and mount.is_network:
        return Check(
            "database",
            "error",
            f"{database} is on a {mount.fs_type} share ({mount.mount_point}); SQLite locking is"
            " unsafe there: set `database:` to a file on a local disk",
        )
    if write_problems:
        return Check("database", "error", write_problems[0])
    where = (
        f"on {mount.fs_type} ({mount.mount_point})" if mount is not None else "filesystem unknown"
    )
    return Check("database", "ok", f"{database} {where}, local, writable")


def check_library(
    library: LibrarySettings,
    *,
    is_dir: bool,
    mount: Mount | None,
    watch: str,
    folders: int | None,
) -> Check:
    """A library: there, on which filesystem, and how castui notices new files in it.

    ``watch`` is the watcher's own sentence for the mode it would pick (``choose_kind``).
    """
    name = f"library {library.name}"
    if not is_dir:
        return Check(
            name,
            "error",
            f"{library.path} is missing or not a folder (not mounted?): mount it or fix"
            " `path:` in the settings",
        )
    fs = f"{mount.fs_type}" if mount is not None else "unknown filesystem"
    count = f", {folders} folders" if folders is not None else ""
    if library.watch is WatchMode.EVENTS and mount is not None and mount.is_network:
        return Check(
            name,
            "warning",
            f"{library.path} ({fs}{count}) is a network share but watch: events; inotify"
            " misses files written by other machines: use watch: auto or poll",
        )
    return Check(name, "ok", f"{library.path} ({fs}{count}); watch: {watch}")


def check_jellyfin(exit_code_: int, lines: Sequence[str], problems: Sequence[str]) -> Check:
    """The Jellyfin health check's verdict in one line (``castui jellyfin check`` for detail)."""
    if exit_code_ == 0:
        oks = [line.strip().removeprefix("ok").strip() for line in lines if "  ok " in line]
        return Check("jellyfin", "ok", "; ".join(oks) or "healthy")
    level: Level = "warning" if exit_code_ == 1 else "error"
    detail = "; ".join(problems) or "failed"
    return Check("jellyfin", level, f"{detail} (details: castui jellyfin check)")


# --- readers (the real machine) ----------------------------------------------------------------


def check_redis(
    shown_url: str,
    version: str | None,
    conf: Mapping[str, str] | None,
    *,
    error: str | None = None,
    allow_unsafe: bool = False,
) -> Check:
    """The shared queue (``queue.backend: redis``): reachable, its version, and whether it
    keeps what it acknowledges (else the redis.conf lines to add)."""
    from castui_core.queue.redis import (
        REDIS_CONF_LINES,
        config_disabled_message,
        missing_conf_lines,
    )

    if error is not None:
        return Check("redis", "error", error)
    where = f"Redis {version or '?'} at {shown_url}"
    unsafe: Level = "warning" if allow_unsafe else "error"
    if conf is None:
        return Check("redis", unsafe, config_disabled_message(shown_url))
    missing = missing_conf_lines(conf)
    if missing:
        lines = "; ".join(missing)
        return Check(
            "redis",
            unsafe,
            f"{where} could lose acknowledged queue changes: add to its redis.conf: {lines}",
        )
    fsync = conf.get("appendfsync", "?")
    return Check(
        "redis",
        "ok",
        f"{where}, reachable; {REDIS_CONF_LINES[0]}, appendfsync {fsync}, "
        "maxmemory-policy noeviction",
    )


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def count_folders(root: Path, *, follow_symlinks: bool = False) -> int | None:
    """Folders under ``root`` including itself (one inotify watch each)."""
    if not root.is_dir():
        return None
    count = 0
    for _dirpath, _dirnames, _files in os.walk(root, followlinks=follow_symlinks):
        count += 1
    return count


async def _tool_facts(name: str, configured: Path | None) -> tuple[Path | None, str | None, str]:
    """Where the tool is and its version; what went wrong as text (for the line)."""
    try:
        path = await asyncio.to_thread(find_tool, name, configured)  # type: ignore[arg-type]
    except CastuiError as exc:
        return None, None, str(exc)
    try:
        done = await run_bounded(
            [str(path), "-hide_banner", "-version"], timeout_s=20, capture_stdout=True
        )
    except OSError as exc:  # TimeoutError included
        return path, None, str(exc) or type(exc).__name__
    version = parse_version(done.stdout.decode("utf-8", errors="replace"))
    return path, version, f"exit {done.returncode}"


async def _encoders(ffmpeg: Path) -> set[str] | None:
    try:
        done = await run_bounded(
            [str(ffmpeg), "-hide_banner", "-encoders"], timeout_s=20, capture_stdout=True
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return parse_encoders(done.stdout.decode("utf-8", errors="replace"))


def _read_gpus() -> Sequence[GpuReading] | NoGpu:
    from castui_core.guardrails.gpu import open_gpu_backend

    backend = open_gpu_backend()
    if isinstance(backend, NoGpu):
        return backend
    try:
        return backend.sample()
    except GpuUnavailableError as exc:
        return NoGpu(f"no GPU: {exc.reason}")
    finally:
        backend.close()


async def _jellyfin(settings: Settings) -> Check:
    from castui_core.integrations.jellyfin.client import JellyfinClient
    from castui_core.integrations.jellyfin.health import check_health

    jf = settings.jellyfin
    assert jf is not None
    try:
        client = JellyfinClient(
            jf.url, jf.api_key_value(), timeout_s=jf.timeout_s, verify_tls=jf.verify_tls
        )
        async with client:
            report = await check_health(client, settings)
    except CastuiError as exc:  # no key file, say: a settings problem
        return Check("jellyfin", "error", str(exc))
    return check_jellyfin(report.exit_code, report.lines(), report.problems)


async def redis_check(settings: Settings) -> Check:
    from castui_core.queue.redis import RedisQueue, redact_url

    q = settings.queue
    assert q.url is not None  # the settings validator requires it for backend redis
    shown = redact_url(q.url.get_secret_value())
    try:
        queue = await RedisQueue.connect(
            q.url.get_secret_value(),
            password=q.password_value(),
            prefix=q.prefix,
            require_durable=None,  # reported here instead of refused
            socket_timeout_s=5.0,
        )
        try:
            version = (await queue.server_info()).get("redis_version")
            conf = await queue.persistence_settings()
        finally:
            await queue.close()
    except CastuiError as exc:
        return check_redis(shown, None, None, error=str(exc))
    return check_redis(shown, version, conf, allow_unsafe=q.allow_unsafe_persistence)


async def run_doctor(settings: Settings, *, inotify_dir: Path = INOTIFY_DIR) -> list[Check]:
    """Every check on this machine, in the order they are printed."""
    from castui_core.ingest.watcher import WatchKind, choose_kind

    checks: list[Check] = []
    ffmpeg, ff_version, ff_error = await _tool_facts("ffmpeg", settings.ffmpeg)
    checks.append(check_tool("ffmpeg", ffmpeg, ff_version, ff_error))
    ffprobe, fp_version, fp_error = await _tool_facts("ffprobe", settings.ffprobe)
    checks.append(check_tool("ffprobe", ffprobe, fp_version, fp_error))

    gpus = await asyncio.to_thread(_read_gpus)
    has_gpu = not isinstance(gpus, NoGpu) and bool(gpus)
    listed = await _encoders(ffmpeg) if ffmpeg is not None and ff_version is not None else None
    checks.extend(check_encoders(listed, has_gpu=has_gpu))
    has_nvenc = listed is not None and "h264_nvenc" in listed
    status = None
    if ffmpeg is not None and has_nvenc and has_gpu:
        status = await detect_nvenc(ffmpeg)
    checks.append(check_nvenc(status, listed=has_nvenc, has_gpu=has_gpu))
    checks.append(check_gpus(gpus))

    mounts_of: dict[Path, Mount | None] = {}

    def mount_of(path: Path) -> Mount | None:
        if path not in mounts_of:
            mounts_of[path] = filesystem_of(path)
        return mounts_of[path]

    db_mount = await asyncio.to_thread(mount_of, settings.database)
    problems = await asyncio.to_thread(data_dir_problems, settings.database)
    checks.append(check_database(settings.database, db_mount, problems))
    if settings.queue.backend == "redis":
        checks.append(await redis_check(settings))

    watched: dict[str, int] = {}
    library_checks: list[Check] = []
    for lib in settings.libraries:
        is_dir = await asyncio.to_thread(lib.path.is_dir)
        mount = await asyncio.to_thread(mount_of, lib.path)  # cached: choose_kind reads it
        folders = (
            await asyncio.to_thread(count_folders, lib.path, follow_symlinks=lib.follow_symlinks)
            if is_dir
            else None
        )
        kind, why = choose_kind(
            lib.watch, lib.path, settings.scan.poll_interval_s, mount_of=mount_of
        )
        if kind is WatchKind.EVENTS and folders is not None:
            watched[lib.name] = folders
        library_checks.append(
            check_library(lib, is_dir=is_dir, mount=mount, watch=why, folders=folders)
        )
    watches = await asyncio.to_thread(read_int, inotify_dir / "max_user_watches")
    instances = await asyncio.to_thread(read_int, inotify_dir / "max_user_instances")
    checks.extend(check_inotify(watches, instances, watched))
    checks.extend(library_checks)

    if settings.jellyfin is not None:
        checks.append(await _jellyfin(settings))
    return checks
