"""``castui doctor``: the pure checks table-tested with chosen facts, and the real command on
this machine (real ffmpeg, real /proc, real mount table, NVML as it is here)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run_castui

from castui_core.doctor import (
    Check,
    check_database,
    check_encoders,
    check_gpus,
    check_inotify,
    check_jellyfin,
    check_library,
    check_nvenc,
    check_tool,
    exit_code,
    parse_encoders,
    parse_version,
)
from castui_core.ffmpeg.nvenc import NvencStatus
from castui_core.fsinfo import Mount
from castui_core.guardrails.gpu import GpuReading, NoGpu
from castui_core.settings import LibrarySettings, WatchMode

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
EXT4 = Mount("/", "ext4", "/dev/sda1")
NFS = Mount("/srv/media", "nfs4", "nas:/export/media")


@pytest.mark.parametrize(
    ("levels", "code"),
    [
        ((), 0),
        (("ok", "ok"), 0),
        (("ok", "warning"), 1),
        (("warning", "error", "ok"), 2),
        (("error",), 2),
    ],
)
def test_exit_code_is_the_worst_line(levels: tuple[str, ...], code: int) -> None:
    checks = [Check(f"c{i}", level, "x") for i, level in enumerate(levels)]  # type: ignore[arg-type]
    assert exit_code(checks) == code


@pytest.mark.parametrize(
    ("watches", "instances", "folders", "levels", "says"),
    [
        (524288, 128, {"Movies": 1200}, ("ok", "ok"), "524288 for 1200 watched folders"),
        # castui and Jellyfin each need a watch per folder: 6,000 folders need 12,000.
        (8192, 128, {"Movies": 6000}, ("warning", "ok"), "fs.inotify.max_user_watches=524288"),
        (8192, 128, {"Movies": 5000, "Shows": 1000}, ("warning", "ok"), "6000 folders"),
        (1_000_000, 128, {"Huge": 700_000}, ("warning", "ok"), "max_user_watches=2097152"),
        (524288, 4, {"Movies": 10}, ("ok", "warning"), "max_user_instances=1024"),
        (None, None, {}, ("warning", "warning"), "cannot read"),
        (8192, 128, {}, ("ok", "ok"), "for 0 watched folders"),
    ],
)
def test_inotify_limits_against_watched_folders(
    watches: int | None,
    instances: int | None,
    folders: dict[str, int],
    levels: tuple[str, str],
    says: str,
) -> None:
    checks = check_inotify(watches, instances, folders)
    assert tuple(c.level for c in checks) == levels
    assert any(says in c.message for c in checks), checks
    for c in checks:
        if c.level == "warning" and c.message.startswith("fs.inotify"):
            assert "sudo sysctl" in c.message and "/etc/sysctl.d/" in c.message


@pytest.mark.parametrize(
    ("mount", "problems", "level", "says"),
    [
        (EXT4, [], "ok", "on ext4 (/), local, writable"),
        (NFS, [], "error", "nfs4 share (/srv/media); SQLite locking is unsafe"),
        (Mount("/mnt/x", "fuse.sshfs", "h:/"), [], "error", "set `database:`"),
        (EXT4, ["cannot write castui's folder /var/lib/castui (Permission denied)"], "error",
         "Permission denied"),
        (None, [], "ok", "filesystem unknown"),
    ],
)  # fmt: skip
def test_database_must_be_local_and_writable(
    mount: Mount | None, problems: list[str], level: str, says: str
) -> None:
    check = check_database(Path("/srv/media/castui.db"), mount, problems)
    assert check.level == level
    assert says in check.message


@pytest.mark.parametrize(
    ("watch", "mount", "is_dir", "level", "says"),
    [
        (WatchMode.AUTO, EXT4, True, "ok", "(ext4, 3 folders); watch: inotify events"),
        (WatchMode.EVENTS, NFS, True, "warning", "use watch: auto or poll"),
        (WatchMode.POLL, NFS, True, "ok", "(nfs4, 3 folders)"),
        (WatchMode.AUTO, None, False, "error", "missing or not a folder"),
    ],
)
def test_library_filesystem_and_watch_mode(
    watch: WatchMode, mount: Mount | None, is_dir: bool, level: str, says: str
) -> None:
    lib = LibrarySettings(name="Movies", path=Path("/srv/media/movies"), watch=watch)
    check = check_library(
        lib, is_dir=is_dir, mount=mount, watch="inotify events", folders=3 if is_dir else None
    )
    assert check.name == "library Movies"
    assert check.level == level
    assert says in check.message


def test_tools_and_versions() -> None:
    ok = check_tool("ffmpeg", Path("/usr/bin/ffmpeg"), "5.1.9-0+deb12u1", None)
    assert ok.level == "ok" and "not jellyfin-ffmpeg" in ok.message
    jf = check_tool("ffmpeg", Path("/usr/lib/jellyfin-ffmpeg/ffmpeg"), "7.0.2-Jellyfin", None)
    assert jf.level == "ok" and "(version 7.0.2-Jellyfin, jellyfin-ffmpeg)" in jf.message
    missing = check_tool("ffprobe", None, None, "ffprobe not found: install FFmpeg")
    assert missing.level == "error" and "install FFmpeg" in missing.message
    broken = check_tool("ffmpeg", Path("/opt/ffmpeg"), None, "exit 127")
    assert broken.level == "error" and "does not run (exit 127)" in broken.message
    assert parse_version("ffmpeg version 7.1.1-1+b1 Copyright (c) 2000-2025") == "7.1.1-1+b1"
    assert parse_version("garbage") is None


def test_encoders_from_the_real_ffmpeg_listing() -> None:
    listing = subprocess.run(
        [FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    names = parse_encoders(listing)
    assert "libx264" in names and "aac" in names
    assert "Encoders:" not in names and "------" not in names


@pytest.mark.parametrize(
    ("listed", "has_gpu", "levels"),
    [
        ({"libx264", "libx265", "h264_nvenc", "hevc_nvenc"}, True, ["ok"] * 4),
        ({"libx264", "libx265"}, False, ["ok"] * 4),
        ({"libx264", "libx265"}, True, ["ok", "ok", "warning", "warning"]),
        ({"libx265"}, False, ["error", "ok", "ok", "ok"]),
        ({"libx264"}, False, ["ok", "warning", "ok", "ok"]),
    ],
)
def test_encoders_needed_here(listed: set[str], has_gpu: bool, levels: list[str]) -> None:
    checks = check_encoders(listed, has_gpu=has_gpu)
    assert [c.level for c in checks] == levels
    assert [c.name for c in checks] == [
        "encoder libx264", "encoder libx265", "encoder h264_nvenc", "encoder hevc_nvenc",
    ]  # fmt: skip


def test_gpu_and_nvenc_lines() -> None:
    none = check_gpus(NoGpu("no GPU: libnvidia-ml.so.1 was not found"))
    assert none.level == "warning"
    assert none.message.startswith("no NVIDIA driver: CPU encoding only")
    gpus = check_gpus([GpuReading(0, "NVIDIA RTX 4060", 48, 0, 0)])
    assert gpus.level == "ok" and "GPU 0: NVIDIA RTX 4060, 48 C" in gpus.message
    works = check_nvenc(NvencStatus(True, "h264_nvenc encoded a test frame"), listed=True,
                        has_gpu=True)  # fmt: skip
    assert works.level == "ok"
    fails = check_nvenc(NvencStatus(False, "driver too old"), listed=True, has_gpu=True)
    assert fails.level == "warning" and "driver too old" in fails.message
    assert check_nvenc(None, listed=True, has_gpu=False).level == "ok"
    assert check_nvenc(None, listed=False, has_gpu=True).level == "warning"


def test_jellyfin_verdict() -> None:
    lines = [
        "Jellyfin at http://j",
        "  ok   reachable: j (Jellyfin 10.10.3)",
        "  ok   API key accepted",
    ]
    assert check_jellyfin(0, lines, ()).level == "ok"
    down = check_jellyfin(1, lines[:1], ("unreachable: connection refused",))
    assert down.level == "warning" and "connection refused" in down.message
    refused = check_jellyfin(2, lines[:2], ("API key refused: 401",))
    assert refused.level == "error" and "castui jellyfin check" in refused.message


def _site(tmp_path: Path, library: Path) -> Path:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"database: {tmp_path}/state/castui.db\nlibraries:\n  - name: Movies\n    path: {library}\n"
    )
    return settings


def _no_nvidia_driver() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return True
    return False


def test_doctor_on_this_machine(tmp_path: Path) -> None:
    library = tmp_path / "movies"
    (library / "A" / "B").mkdir(parents=True)
    settings = _site(tmp_path, library)
    text = run_castui("doctor", "--config", str(settings), home=tmp_path, timeout=120)
    raw = run_castui("doctor", "--json", "--config", str(settings), home=tmp_path, timeout=120)
    assert "Traceback" not in text.stderr + raw.stderr
    report = json.loads(raw.stdout)
    levels = {c["name"]: c["level"] for c in report["checks"]}
    assert report["exit_code"] == raw.returncode == text.returncode
    assert raw.returncode == {"ok": 0, "warning": 1, "error": 2}[report["worst"]]
    assert raw.returncode < 2, text.stdout  # nothing on this machine stops castui
    for name in ("ffmpeg", "ffprobe", "encoder libx264", "database", "library Movies"):
        assert levels[name] == "ok", text.stdout
    assert {"gpu", "nvenc test", "inotify watches", "inotify instances"} <= set(levels)
    messages = {c["name"]: c["message"] for c in report["checks"]}
    assert (
        f"{library} (" in messages["library Movies"] and "3 folders" in messages["library Movies"]
    )
    if _no_nvidia_driver():
        assert levels["gpu"] == "warning"
        assert messages["gpu"].startswith("no NVIDIA driver: CPU encoding only")
        assert raw.returncode == 1
    # The text form: one line per check, the verdict first.
    lines = text.stdout.splitlines()
    assert lines[0].startswith("castui doctor (settings: ")
    assert len([ln for ln in lines if ln.startswith("  ")]) == len(report["checks"])
    assert any(ln.split()[:2] == ["ok", "database"] for ln in lines)
    assert not (tmp_path / "state").exists()  # looking creates nothing


def test_doctor_names_a_missing_library_as_an_error(tmp_path: Path) -> None:
    settings = _site(tmp_path, tmp_path / "not-mounted")
    done = run_castui("doctor", "--config", str(settings), home=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout
    (line,) = [ln for ln in done.stdout.splitlines() if "library Movies" in ln]
    assert line.split()[0] == "error"
    assert "missing or not a folder (not mounted?)" in line


def test_low_inotify_limit_read_from_the_kernel_files(tmp_path: Path) -> None:
    """run_doctor reads the limits from the files it is given and counts real folders: 40
    folders watched with inotify against a limit of 50 is a warning naming the sysctl."""
    from castui_core.doctor import run_doctor
    from castui_core.settings import load_settings

    library = tmp_path / "movies"
    for i in range(39):
        (library / f"Film {i}").mkdir(parents=True)
    proc = tmp_path / "inotify"
    proc.mkdir()
    (proc / "max_user_watches").write_text("50\n")
    (proc / "max_user_instances").write_text("128\n")
    settings = load_settings(str(_site(tmp_path, library)))
    checks = {c.name: c for c in asyncio.run(run_doctor(settings, inotify_dir=proc))}
    assert checks["inotify watches"].level == "warning"
    assert "is 50, but the watched libraries have 40 folders" in checks["inotify watches"].message
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in checks["inotify watches"].message
    assert checks["inotify instances"].level == "ok"
    assert "40 folders); watch: inotify events" in checks["library Movies"].message
