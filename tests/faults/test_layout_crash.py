"""kill -9 at every step of archiving an original and of restoring it, then a restart.

The replace layout's promise: the original is never lost and never left half-moved. Each
case runs the real swap (or restore) in a child process that SIGKILLs itself right after
one step (the test hooks the swap already offers), then a fresh start's ``recover`` (its own
journal, the dead owner's lock free) must leave the original, with its bytes, mode and mtime,
in exactly one place: home (rolled back, or restored) or the archive (rolled forward).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from castui_core.layout import archive_path, archive_root
from castui_core.originals import reconcile
from castui_core.store import Store
from castui_core.store.originals import OriginalRecord
from castui_core.swap import (
    Journal,
    Placement,
    RestoreStep,
    begin,
    commit,
    plan_placement,
    plan_restore,
    recover,
    restore,
)

ORIGINAL = b"ORIGINAL MEDIA " * 4096
NEW = b"NEW CASTUI OUTPUT " * 3000
MTIME_NS = 1_500_000_000_123_456_789
MODE = 0o640

_ARCHIVE_CHILD = """
import json, os, signal, sys
from pathlib import Path
from castui_core.swap import Journal, Placement, commit
cfg = json.loads(sys.argv[1])
p = Placement(Path(cfg["source"]), Path(cfg["final"]), Path(cfg["temp"]), Path(cfg["backup"]))
def hook(step):
    if step == cfg["crash_at"]:
        os.kill(os.getpid(), signal.SIGKILL)
commit(Journal(Path(cfg["journal"])), p, delete_source=False, _after_step=hook)
"""

_RESTORE_CHILD = """
import json, os, signal, sys
from pathlib import Path
from castui_core.swap import Journal, RestorePlan, restore
cfg = json.loads(sys.argv[1])
plan, _, _ = RestorePlan.from_json(cfg["plan"])
def hook(step):
    if step == cfg["crash_at"]:
        os.kill(os.getpid(), signal.SIGKILL)
restore(Journal(Path(cfg["journal"])), plan, _after_step=hook)
"""

ARCHIVE_STEPS = [
    "validated",
    "source_moved-pending",
    "source_moved",
    "placed-pending",
    "placed",
    "done",
]
RESTORE_STEPS = [
    "begun",
    "output_aside-pending",
    "output_aside",
    "original_back-pending",
    "original_back",
    "output_removed-pending",
    "output_removed",
    "done",
]


def _library(tmp_path: Path, name: str) -> tuple[Path, Path]:
    root = tmp_path / "media"
    source = root / "Show" / "Season 01" / name
    source.parent.mkdir(parents=True)
    source.write_bytes(ORIGINAL)
    os.chmod(source, MODE)
    os.utime(source, ns=(MTIME_NS, MTIME_NS))
    return root, source


def _is_original(path: Path) -> bool:
    if not path.exists():
        return False
    st = os.stat(path)
    return (
        path.read_bytes() == ORIGINAL
        and st.st_mtime_ns == MTIME_NS
        and (st.st_mode & 0o777) == MODE
    )


def _leftovers(*folders: Path) -> list[str]:
    return sorted(
        n for folder in folders if folder.is_dir() for n in os.listdir(folder) if ".castui-" in n
    )


def _run(child: str, cfg: dict[str, object]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", child, json.dumps(cfg)], capture_output=True, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def _archived_swap(tmp_path: Path, name: str) -> tuple[Path, Journal, Placement]:
    root, source = _library(tmp_path, name)
    journal = Journal(tmp_path / "journal")
    p = plan_placement(source, library_root=root, archive_root=archive_root(root), token="job1")
    assert p.backup == archive_path(root, source)
    begin(journal, p, delete_source=False)
    p.temp.write_bytes(NEW)
    return root, journal, p


@pytest.mark.parametrize("name", ["Show - S01E01.mkv", "Show - S01E01.mp4"])
@pytest.mark.parametrize("crash_at", ARCHIVE_STEPS)
def test_kill_9_while_archiving_loses_nothing(tmp_path: Path, crash_at: str, name: str) -> None:
    _root, journal, p = _archived_swap(tmp_path, name)
    assert p.backup is not None
    cfg = {
        "source": str(p.source),
        "final": str(p.final),
        "temp": str(p.temp),
        "backup": str(p.backup),
        "journal": str(journal.directory),
        "crash_at": crash_at,
    }
    _run(_ARCHIVE_CHILD, cfg)
    journal.close()  # the parent's begin() owned the entry too: this "process" is gone now
    lines = recover(Journal(journal.directory))
    assert crash_at == "done" or lines, "recovery said nothing about the interrupted swap"
    rolled_forward = p.final.exists() and p.final.read_bytes() == NEW
    at_home, in_archive = _is_original(p.source), _is_original(p.backup)
    assert at_home != in_archive  # the original, intact, in exactly one place
    if crash_at == "validated":
        assert not rolled_forward or in_archive
    if rolled_forward:
        assert in_archive and not (p.source.exists() and p.source != p.final)
    else:
        assert at_home and not p.backup.exists()
    if crash_at != "validated":  # the archive step was journaled or done: forward
        assert rolled_forward and in_archive
    assert _leftovers(p.final.parent) == []
    assert list(journal.directory.glob("*.json")) == []


def _restore_setup(tmp_path: Path, name: str) -> tuple[Path, Path, Journal, Placement]:
    _root, journal, p = _archived_swap(tmp_path, name)
    commit(journal, p, delete_source=False)
    assert p.backup is not None and _is_original(p.backup) and p.final.read_bytes() == NEW
    return p.backup, p.final, journal, p


@pytest.mark.parametrize("name", ["Show - S01E01.mkv", "Show - S01E01.mp4"])
@pytest.mark.parametrize("crash_at", RESTORE_STEPS)
def test_kill_9_while_restoring_finishes_the_restore(
    tmp_path: Path, crash_at: str, name: str
) -> None:
    archive, output, journal, p = _restore_setup(tmp_path, name)
    plan = plan_restore(archive, p.source, output, token="r1")
    cfg = {
        "plan": plan.to_json(RestoreStep.BEGUN, "x"),
        "journal": str(journal.directory),
        "crash_at": crash_at,
    }
    _run(_RESTORE_CHILD, cfg)
    journal.close()
    recover(Journal(journal.directory))
    assert _is_original(p.source)  # home again: bytes, mode, mtime
    assert not archive.exists()
    if p.source != output:
        assert not output.exists()  # castui's own, unchanged output was removed
    assert _leftovers(p.source.parent) == []
    assert list((journal.directory / "restores").glob("*.json")) == []


def test_a_live_owners_restore_is_left_alone(tmp_path: Path) -> None:
    """Another process's restore in progress is not "recovered" under its feet."""
    archive, output, journal, p = _restore_setup(tmp_path, "Show - S01E01.mkv")
    plan = plan_restore(archive, p.source, output, token="r1")

    class Stop(Exception):
        pass

    def stop(step: str) -> None:
        if step == "output_aside":
            raise Stop

    with pytest.raises(Stop):
        restore(journal, plan, _after_step=stop)  # this journal (a live process) owns it
    other = Journal(journal.directory)
    assert recover(other) == []
    assert archive.exists() and not output.exists()  # untouched: the owner lives
    journal.close()  # the owner is gone
    assert any("restored" in line for line in recover(other))
    assert _is_original(p.source) and not archive.exists()
    other.close()


def test_a_crash_between_the_files_and_the_database_is_reconciled(tmp_path: Path) -> None:
    archive, output, journal, p = _restore_setup(tmp_path, "Show - S01E01.mkv")

    async def scenario() -> None:
        async with Store.open(tmp_path / "castui.db") as store:
            st = os.stat(archive)
            await store.record_original(
                OriginalRecord(
                    library="Media",
                    path=str(p.source),
                    archive=str(archive),
                    output=str(output),
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    archived_at=1.0,
                )
            )
            plan = plan_restore(archive, p.source, output, token="r1")
            restore(journal, plan)  # files done; the process "dies" before the database
            assert [r.state for r in await store.list_originals()] == ["archived"]
            lines = await reconcile(store)
            assert lines and "recorded the restore" in lines[0]
            assert await store.list_originals() == []
            marker = await store.restored_marker(str(p.source))
            assert marker is not None  # not converted again

    asyncio.run(scenario())
    journal.close()
