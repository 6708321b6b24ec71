"""``castui scan`` remembers probes in the catalog: unchanged files are not opened again.

Everything runs the real ``castui scan`` process on real media files with a real SQLite
database. Probes are counted by the probe pool itself (every file a worker opened), which the
command reports on stderr, and cross-checked against the catalog rows it wrote.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.process
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import castui_env, run_castui

from castui_core.probe import ProbePool, probe_pyav
from castui_core.store import CatalogEntry, Store
from castui_core.store.catalog import scan_label

PROBED = re.compile(r"catalog: (\d+) files probed, (\d+) unchanged files not probed again")


@pytest.fixture
def library(samples: dict[str, Path], tmp_path: Path) -> Path:
    """A library of real samples of every shape (a Cast-ready copy beside its source too)."""
    root = tmp_path / "library"
    for name in ("compliant.mp4", "compliant.mkv", "high10.mkv", "empty.mkv", "garbage.mkv"):
        folder = root / name.replace(".", "_")
        folder.mkdir(parents=True)
        shutil.copy2(samples[name], folder / name)
    # compliant.mkv's output name (compliant.mp4) holds a Cast-ready copy: a copy check.
    shutil.copy2(samples["compliant.mp4"], root / "compliant_mkv" / "compliant.mp4")
    return root


def _settings(tmp_path: Path, library: Path) -> Path:
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"database: {tmp_path / 'castui.db'}\n"
        f"libraries:\n  - name: films\n    path: {library}\n    profile: chromecast-1080p\n"
    )
    return config


def _scan(tmp_path: Path, *args: str) -> tuple[list[dict[str, object]], int, int]:
    """Run ``castui scan --json``: (the files it printed, files probed, files reused)."""
    result = run_castui("scan", "--json", *args, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    match = PROBED.search(result.stderr)
    assert match, result.stderr
    return json.loads(result.stdout), int(match[1]), int(match[2])


def _rows(tmp_path: Path) -> dict[str, tuple[int, int, int]]:
    conn = sqlite3.connect(tmp_path / "castui.db")
    try:
        rows = conn.execute("SELECT path, size, mtime_ns, inode FROM files").fetchall()
    finally:
        conn.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_unchanged_rescan_probes_nothing_and_prints_the_same(library: Path, tmp_path: Path) -> None:
    config = _settings(tmp_path, library)
    first, probed, reused = _scan(tmp_path, "--config", str(config))
    files = sorted(str(p) for p in library.rglob("*.m*"))
    assert sorted(str(f["path"]) for f in first) == files
    assert probed == len(files) and reused == 0
    assert sorted(_rows(tmp_path)) == files  # every probe written back

    second, probed, reused = _scan(tmp_path, "--config", str(config))
    assert second == first
    assert probed == 0 and reused == len(files)

    fresh, probed, reused = _scan(tmp_path, "--config", str(config), "--fresh")
    assert fresh == first
    assert probed == len(files) and reused == 0


def test_changed_files_are_probed_again_and_vanished_ones_forgotten(
    library: Path, samples: dict[str, Path], tmp_path: Path
) -> None:
    config = _settings(tmp_path, library)
    first, _, _ = _scan(tmp_path, "--config", str(config))
    total = len(first)
    # Touched: same bytes, a new mtime.
    touched = library / "high10_mkv" / "high10.mkv"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    # Rewritten with other bytes of the same size, the old mtime put back: the inode differs.
    replaced = library / "garbage_mkv" / "garbage.mkv"
    old = replaced.stat()
    fresh_copy = replaced.with_name("new.tmp")
    fresh_copy.write_bytes(b"still not a video file\n".ljust(old.st_size, b"!"))
    os.utime(fresh_copy, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(fresh_copy, replaced)
    # Vanished.
    gone = library / "empty_mkv" / "empty.mkv"
    gone.unlink()

    second, probed, reused = _scan(tmp_path, "--config", str(config))
    assert probed == 2 and reused == total - 3
    assert {f["path"]: f["action"] for f in second}[str(touched)] == "transcode"
    assert str(gone) not in {f["path"] for f in second}
    rows = _rows(tmp_path)
    assert str(gone) not in rows
    assert rows[str(touched)][1] == touched.stat().st_mtime_ns
    assert rows[str(replaced)][2] == replaced.stat().st_ino
    # A swap to a file of another shape changes the answer, not only the count.
    shutil.copy2(samples["compliant.mp4"], touched)
    third, probed, _ = _scan(tmp_path, "--config", str(config))
    assert probed == 1
    # (MP4 inside a .mkv name: the streams play, the file is remuxed to .mp4.)
    assert {f["path"]: f["action"] for f in third}[str(touched)] == "remux"


def test_explicit_paths_use_the_catalog_too(library: Path, tmp_path: Path) -> None:
    folder = library / "high10_mkv"
    first, probed, _ = _scan(tmp_path, str(folder))
    assert probed == 1
    second, probed, reused = _scan(tmp_path, str(folder))
    assert (second, probed, reused) == (first, 0, 1)


async def test_scan_rows_and_engine_rows_keep_their_meaning(library: Path, tmp_path: Path) -> None:
    """A scan queues nothing, so its rows are labelled as a scan's and the engine's diff (its
    own library's rows) still probes and queues those files; a row the engine wrote is reused
    by a scan while the file is unchanged, and stays when the file vanishes (the engine
    cancels its queued job then, and needs the row to do so)."""
    config = _settings(tmp_path, library)
    acted = library / "high10_mkv" / "high10.mkv"
    vanished = library / "was here.mkv"
    st = acted.stat()
    info = probe_pyav(str(acted))
    async with Store.open(tmp_path / "castui.db") as store:
        await store.upsert_files(
            [
                CatalogEntry(
                    str(acted), "films", st.st_size, st.st_mtime_ns, st.st_ino,
                    probe=info.to_json(), decision="transcode", reasons=("engine",),
                ),
                CatalogEntry(
                    str(vanished), "films", 10, 10, 1, probe={"failure": "x"}, decision="reject"
                ),
            ]
        )  # fmt: skip
    files, probed, reused = _scan(tmp_path, "--config", str(config))
    assert reused == 1 and probed == len(files) - 1
    assert {f["path"]: f["action"] for f in files}[str(acted)] == "transcode"
    async with Store.open(tmp_path / "castui.db") as store:
        engine = await store.fingerprints("films")  # what the engine's diff reads
        scans = await store.fingerprints(scan_label("films"))
        known = await store.known_files(library="films")  # what a scan reads
    assert set(engine) == {str(acted), str(vanished)}
    assert set(scans) == {str(p) for p in library.rglob("*.m*")} - {str(acted)}
    assert set(known) == set(engine) | set(scans)

    # Touched: the scan probes it again and labels the row as its own, so the engine's next
    # scan does not take the new fingerprint for "queued already".
    os.utime(acted, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _, probed, _ = _scan(tmp_path, "--config", str(config))
    assert probed == 1
    async with Store.open(tmp_path / "castui.db") as store:
        assert set(await store.fingerprints("films")) == {str(vanished)}


def test_two_scans_at_once_both_succeed(library: Path, tmp_path: Path) -> None:
    config = _settings(tmp_path, library)
    cmd = [sys.executable, "-m", "castui", "scan", "--json", "--config", str(config)]
    env = castui_env(tmp_path)
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    assert json.loads(outs[0][0]) == json.loads(outs[1][0])
    assert sorted(_rows(tmp_path)) == sorted(str(p) for p in library.rglob("*.m*"))
    _, probed, _ = _scan(tmp_path, "--config", str(config))
    assert probed == 0


async def test_probe_pool_stops_when_idle_and_starts_again_on_new_work(
    samples: dict[str, Path],
) -> None:
    # Only this pool's processes: an earlier test's pool (same pytest worker) may still be
    # letting its last probe process go under load, and that is not this pool's doing.
    others = {p.pid for p in multiprocessing.active_children() if p.name == "castui-probe"}

    def workers() -> list[multiprocessing.process.BaseProcess]:
        return [
            p
            for p in multiprocessing.active_children()
            if p.name == "castui-probe" and p.pid not in others
        ]

    path = str(samples["compliant.mp4"])
    with ProbePool(2, timeout=20, idle_timeout_s=0.3) as pool:
        assert pool.running == 0 and not workers()  # nothing to probe: nothing started
        first = [r async for r in pool.probe_many([path])]
        assert pool.running == 1 and len(workers()) == 1
        assert await asyncio.to_thread(pool.stopped_idle.wait, 30)
        assert pool.running == 0 and not workers() and pool.idle_stops == 1
        again = [r async for r in pool.probe_many([path])]
        assert again == first and pool.running == 1 and not pool.stopped_idle.is_set()
        assert await asyncio.to_thread(pool.stopped_idle.wait, 30)
        assert pool.idle_stops == 2 and not workers()


async def test_probe_pool_without_idle_timeout_keeps_its_workers(
    samples: dict[str, Path],
) -> None:
    with ProbePool(1, timeout=20) as pool:
        [r async for r in pool.probe_many([str(samples["compliant.mp4"])])]
        # What an idle timeout of 0.3 s would have stopped long before this wait ends.
        assert not await asyncio.to_thread(pool.stopped_idle.wait, 1.0)
        assert pool.running == 1


def test_without_a_usable_database_the_scan_still_answers(library: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the database's folder should be\n")
    config = tmp_path / "settings.yaml"
    config.write_text(
        f"database: {blocker / 'castui.db'}\n"
        f"libraries:\n  - name: films\n    path: {library}\n    profile: chromecast-1080p\n"
    )
    result = run_castui("scan", "--json", "--config", str(config), home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "every file is probed" in result.stderr and "Traceback" not in result.stderr
    assert len(json.loads(result.stdout)) == len(list(library.rglob("*.m*")))


def test_catalog_json_of_a_probe_is_what_asdict_made(samples: dict[str, Path]) -> None:
    """``MediaInfo.to_json`` skips ``asdict``'s deep copy: the catalog text must not change
    (rows written before stay byte-identical to rows written now)."""
    import dataclasses

    for name in ("compliant.mp4", "compliant.mkv", "high10.mkv"):
        info = probe_pyav(str(samples[name]))
        assert info.video and info.audio
        made = info.to_json()
        assert json.dumps(made) == json.dumps(dataclasses.asdict(info))
        assert type(made["video"]) is list and made["video"][0] is not info.video[0].__dict__
