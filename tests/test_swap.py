"""The safe swap: placement rules, commit, refusal to overwrite, and crash recovery.

The crash tests run ``commit`` in a child process that SIGKILLs itself right after a given
step (no cleanup code runs, like a power cut minus the page cache), then run ``recover`` here
and check the one promise that matters: the original's bytes are never lost, no temp is left,
and a final file, when there is one, is the new content.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from castui_core.errors import (
    InsufficientSpaceError,
    OutputExistsError,
    SourceChangedError,
    SwapError,
)
from castui_core.ffmpeg.command import AudioOut, EncodePlan
from castui_core.fsinfo import filesystem_of
from castui_core.media import AudioStream, MediaInfo, VideoStream
from castui_core.profiles import Profile
from castui_core.swap import (
    Journal,
    Placement,
    Step,
    abort,
    begin,
    check_free_space,
    commit,
    estimate_output_size,
    plan_placement,
    recover,
)

ORIGINAL = b"original source bytes \x00\xff" * 400
NEW = b"new validated mp4 bytes" * 300

# --- placement ---------------------------------------------------------------------------------


def test_placement_next_to_source() -> None:
    p = plan_placement(Path("/m/Films/Movie (2010).mkv"), token="j7")
    assert p.final == Path("/m/Films/Movie (2010).mp4")
    assert p.temp == Path("/m/Films/.Movie (2010).castui-j7.tmp.mp4")
    assert p.backup is None
    assert p.source == Path("/m/Films/Movie (2010).mkv")


def test_placement_mirrors_the_library_under_output_dir() -> None:
    p = plan_placement(
        Path("/lib/TV/Show/S01/E01.avi"),
        library_root=Path("/lib"),
        output_dir=Path("/out"),
        token="t",
    )
    assert p.final == Path("/out/TV/Show/S01/E01.mp4")
    assert p.temp.parent == Path("/out/TV/Show/S01")
    assert p.backup is None
    flat = plan_placement(Path("/lib/a/b.mkv"), output_dir=Path("/out"), token="t")
    assert flat.final == Path("/out/b.mp4")


def test_placement_outside_library_is_refused() -> None:
    with pytest.raises(SwapError, match="not inside the library"):
        plan_placement(
            Path("/elsewhere/x.mkv"), library_root=Path("/lib"), output_dir=Path("/o"), token="t"
        )


@pytest.mark.parametrize("token", ["", "a/b"])
def test_placement_rejects_bad_tokens(token: str) -> None:
    with pytest.raises(SwapError):
        plan_placement(Path("/m/x.mkv"), token=token)


def test_same_name_gets_an_original_backup() -> None:
    p = plan_placement(Path("/m/Movie.mp4"), token="t")
    assert p.final == Path("/m/Movie.mp4")
    assert p.backup == Path("/m/Movie.original.mp4")
    upper = plan_placement(Path("/m/Movie.MP4"), token="t")  # same file on SMB/exFAT
    assert upper.backup == Path("/m/Movie.original.MP4")
    assert upper.final == Path("/m/Movie.mp4")
    mirrored = plan_placement(
        Path("/lib/a/Movie.mp4"), library_root=Path("/lib"), output_dir=Path("/lib"), token="t"
    )
    assert mirrored.backup == Path("/lib/a/Movie.original.mp4")


@pytest.mark.parametrize(
    "name", ["-rf 'quoted' \"x\".mkv", "$(echo pwned) `x`.mkv", "Amélie – 東京 🎬.mkv", "a\nb.mkv"]
)
def test_odd_names_place_and_commit(tmp_path: Path, name: str) -> None:
    source = tmp_path / name
    source.write_bytes(ORIGINAL)
    p = plan_placement(source, token="odd")
    assert p.final.name == name[: -len(".mkv")] + ".mp4"
    journal = Journal(tmp_path / "journal")
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    result = commit(journal, p, delete_source=True)
    assert p.final.read_bytes() == NEW
    assert result.source_deleted and not source.exists()


def test_temp_name_fits_name_max() -> None:
    stem = "é" * 126  # 252 bytes
    p = plan_placement(Path(f"/m/{stem}.mkv"), token="tok")
    assert len(os.fsencode(p.temp.name)) <= 255
    assert p.temp.name.endswith(".castui-tok.tmp.mp4")


# --- commit ------------------------------------------------------------------------------------


def _setup(tmp_path: Path, name: str = "Movie.mkv") -> tuple[Journal, Placement]:
    library = tmp_path / "lib"
    library.mkdir(exist_ok=True)
    source = library / name
    source.write_bytes(ORIGINAL)
    return Journal(tmp_path / "journal"), plan_placement(source, token="job1")


def _restart(journal: Journal) -> Journal:
    """The process that owned ``journal`` is gone; a new start opens the same folder."""
    journal.close()
    return Journal(journal.directory)


def _temps(p: Placement) -> list[str]:
    return sorted(n for n in os.listdir(p.temp.parent) if ".castui-" in n)


@pytest.mark.parametrize("delete_source", [False, True])
def test_commit_next_to_source(tmp_path: Path, delete_source: bool) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=delete_source)
    assert json.loads(next(journal.directory.glob("*.json")).read_text())["step"] == "encoding"
    p.temp.write_bytes(NEW)
    result = commit(journal, p, delete_source=delete_source)
    assert p.final.read_bytes() == NEW
    assert result.final == p.final and result.backup is None
    assert result.source_deleted is delete_source
    assert (result.bytes_before, result.bytes_after) == (len(ORIGINAL), len(NEW))
    assert p.source.exists() is not delete_source
    if not delete_source:
        assert p.source.read_bytes() == ORIGINAL
    assert _temps(p) == [] and journal.entries() == []


@pytest.mark.parametrize("delete_source", [False, True])
def test_commit_same_name_moves_source_to_backup(tmp_path: Path, delete_source: bool) -> None:
    journal, p = _setup(tmp_path, "Movie.mp4")
    assert p.backup is not None
    begin(journal, p, delete_source=delete_source)
    p.temp.write_bytes(NEW)
    result = commit(journal, p, delete_source=delete_source)
    assert p.final.read_bytes() == NEW
    assert result.source_deleted is delete_source
    if delete_source:
        assert not p.backup.exists() and result.backup is None
    else:
        assert p.backup.read_bytes() == ORIGINAL and result.backup == p.backup
    assert _temps(p) == [] and journal.entries() == []


def test_commit_refuses_an_existing_final_and_touches_nothing(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    p.final.write_bytes(b"someone else's file")
    entry_before = journal.entries()
    with pytest.raises(OutputExistsError, match="castui never overwrites a file it did not write"):
        commit(journal, p, delete_source=True)
    assert p.final.read_bytes() == b"someone else's file"
    assert p.source.read_bytes() == ORIGINAL
    assert p.temp.read_bytes() == NEW
    assert journal.entries() == entry_before  # still "encoding": nothing happened
    with pytest.raises(OutputExistsError):
        begin(journal, p, delete_source=True)


def test_commit_refuses_an_existing_backup(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path, "Movie.mp4")
    assert p.backup is not None
    p.backup.write_bytes(b"an older backup")
    with pytest.raises(OutputExistsError):
        begin(journal, p, delete_source=False)
    p.temp.write_bytes(NEW)
    with pytest.raises(OutputExistsError, match=re.escape("Movie.original.mp4 already exists")):
        commit(journal, p, delete_source=False)
    assert p.source.read_bytes() == ORIGINAL
    assert p.backup.read_bytes() == b"an older backup"


def test_commit_needs_a_nonempty_temp(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    with pytest.raises(SwapError, match="missing or empty"):
        commit(journal, p, delete_source=True)
    p.temp.write_bytes(b"")
    with pytest.raises(SwapError, match="missing or empty"):
        commit(journal, p, delete_source=True)
    assert p.source.read_bytes() == ORIGINAL


def test_changed_source_is_neither_replaced_nor_deleted(tmp_path: Path) -> None:
    """The output is of the old content: placing it would be a stale copy (issue 10 #3)."""
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.source.write_bytes(ORIGINAL + b"edited meanwhile")
    p.temp.write_bytes(NEW)
    with pytest.raises(SourceChangedError, match="source changed during encode"):
        commit(journal, p, delete_source=True)
    abort(journal, p)
    assert p.source.read_bytes() == ORIGINAL + b"edited meanwhile"
    assert not p.final.exists() and _temps(p) == []


def test_abort_removes_temps_and_keeps_the_source(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW[:100])
    p.sidecar_temp(".eng.sup").write_bytes(b"sup")
    assert len(_temps(p)) == 2
    abort(journal, p)
    assert _temps(p) == [] and journal.entries() == []
    assert p.source.read_bytes() == ORIGINAL and not p.final.exists()


# --- crash at every step -----------------------------------------------------------------------

_CHILD = """
import json, os, signal, sys
from pathlib import Path
from castui_core.swap import Journal, Placement, commit
cfg = json.loads(sys.argv[1])
p = Placement(Path(cfg["source"]), Path(cfg["final"]), Path(cfg["temp"]),
              Path(cfg["backup"]) if cfg["backup"] else None)
def hook(step):
    if step == cfg["crash_at"]:
        os.kill(os.getpid(), signal.SIGKILL)
commit(Journal(Path(cfg["journal"])), p, delete_source=cfg["delete"],
       sidecar_temps=[Path(t) for t in cfg["sidecars"]], _after_step=hook)
"""

CRASH_POINTS = [
    "validated",
    "source_moved-pending",
    "source_moved",
    "placed-pending",
    "placed",
    "source_deleted-pending",
    "source_deleted",
    "done",
]


def _crash_commit(
    journal: Journal,
    p: Placement,
    *,
    delete: bool,
    crash_at: str,
    sidecars: tuple[Path, ...] = (),
) -> None:
    cfg = {
        "source": str(p.source),
        "final": str(p.final),
        "temp": str(p.temp),
        "backup": None if p.backup is None else str(p.backup),
        "journal": str(journal.directory),
        "delete": delete,
        "crash_at": crash_at,
        "sidecars": [str(t) for t in sidecars],
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(cfg)], capture_output=True, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def _check_promise(p: Placement, *, delete: bool, rolled_forward: bool) -> None:
    """The original is never lost, no temp is left, and a final file is the new content."""
    assert _temps(p) == []
    originals = [q for q in (p.source, p.backup) if q is not None and q.exists()]
    original_kept = any(q.read_bytes() == ORIGINAL for q in originals)
    final_new = p.final.exists() and p.final.read_bytes() == NEW
    if rolled_forward:
        assert final_new
        assert original_kept is not delete  # deleted exactly when asked
    else:
        assert original_kept
        assert p.source.read_bytes() == ORIGINAL  # back under its own name
    if p.final.exists() and not final_new:
        assert p.final == p.source and p.final.read_bytes() == ORIGINAL


CRASH_CASES = [
    pytest.param(crash_at, same_name, delete, id=f"{crash_at}-{same}-{keep}")
    for crash_at in CRASH_POINTS
    for same_name, same in ((False, "next-to"), (True, "same-name"))
    for delete, keep in ((False, "keep"), (True, "delete"))
    if (same_name or not crash_at.startswith("source_moved"))
    and (delete or not crash_at.startswith("source_deleted"))
]


@pytest.mark.parametrize(("crash_at", "same_name", "delete"), CRASH_CASES)
def test_crash_after_each_step_then_recover(
    tmp_path: Path, crash_at: str, same_name: bool, delete: bool
) -> None:
    journal, p = _setup(tmp_path, "Movie.mp4" if same_name else "Movie.mkv")
    begin(journal, p, delete_source=delete)
    p.temp.write_bytes(NEW)
    sidecar = p.temp.with_name(p.temp_prefix + ".eng.sup")  # as the converter names them
    sidecar.write_bytes(b"SUB")
    _crash_commit(journal, p, delete=delete, crash_at=crash_at, sidecars=(sidecar,))
    if crash_at != "done":
        assert len(journal.entries()) == 1
    lines = recover(_restart(journal))
    assert journal.entries() == []
    assert len(lines) == (0 if crash_at == "done" else 1)
    assert all(line.startswith("recovered: ") for line in lines)
    _check_promise(p, delete=delete, rolled_forward=True)
    assert p.final.with_name(f"{p.final.stem}.eng.sup").read_bytes() == b"SUB"


@pytest.mark.parametrize("same_name", [False, True], ids=["next-to", "same-name"])
def test_crash_during_encoding_removes_the_partial_temp(tmp_path: Path, same_name: bool) -> None:
    journal, p = _setup(tmp_path, "Movie.mp4" if same_name else "Movie.mkv")
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW[:50])  # the encoder died mid-file
    p.sidecar_temp(".eng.sup").write_bytes(b"partial")
    lines = recover(_restart(journal))
    assert lines == [
        f"recovered: removed the partial output for {p.source} (crash during the encode)"
    ]
    _check_promise(p, delete=True, rolled_forward=False)
    assert journal.entries() == []


def test_crash_between_link_and_unlink_of_the_temp(tmp_path: Path) -> None:
    """Crash inside the no-overwrite rename: temp and final are one file under two names."""
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    _crash_commit(journal, p, delete=True, crash_at="validated")
    os.link(p.temp, p.final)
    lines = recover(_restart(journal))
    assert "finished placing" in lines[0]
    _check_promise(p, delete=True, rolled_forward=True)


def test_crash_between_link_and_unlink_of_the_source(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path, "Movie.mp4")
    assert p.backup is not None
    begin(journal, p, delete_source=False)
    p.temp.write_bytes(NEW)
    _crash_commit(journal, p, delete=False, crash_at="validated")
    os.link(p.source, p.backup)
    recover(_restart(journal))
    _check_promise(p, delete=False, rolled_forward=True)
    assert p.backup.read_bytes() == ORIGINAL


def test_source_moved_but_temp_lost_restores_the_original_name(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path, "Movie.mp4")
    assert p.backup is not None
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    _crash_commit(journal, p, delete=True, crash_at="source_moved")
    p.temp.unlink()  # e.g. someone cleaned up hidden files before castui restarted
    lines = recover(_restart(journal))
    assert lines[0].startswith(f"recovered: restored {p.source} from Movie.original.mp4")
    _check_promise(p, delete=True, rolled_forward=False)
    assert not p.backup.exists()


def test_validated_but_temp_lost_just_drops_the_entry(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    _crash_commit(journal, p, delete=True, crash_at="validated")
    p.temp.unlink()
    assert recover(_restart(journal))[0].startswith("recovered: nothing to finish")
    assert p.source.read_bytes() == ORIGINAL and not p.final.exists()


def test_placed_recovery_keeps_a_source_that_changed(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    _crash_commit(journal, p, delete=True, crash_at="placed")
    p.source.write_bytes(b"replaced by the user")
    recover(_restart(journal))
    assert p.source.read_bytes() == b"replaced by the user"
    assert p.final.read_bytes() == NEW


def test_abort_after_source_moved_puts_the_original_back(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path, "Movie.mp4")
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    _crash_commit(journal, p, delete=True, crash_at="source_moved")
    abort(journal, p)
    _check_promise(p, delete=True, rolled_forward=False)
    assert journal.entries() == []


def test_unreadable_journal_entry_is_reported_and_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    journal.directory.mkdir()
    bad = journal.directory / "broken.json"
    bad.write_text("{not json")
    assert recover(_restart(journal)) == [
        f"journal entry {bad} is unreadable: left for you to inspect"
    ]
    assert bad.exists()


def test_journal_records_source_identity(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    ((_, entry),) = journal.entries()
    assert entry is not None
    st = p.source.stat()
    assert (entry.source_size, entry.source_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert entry.step is Step.ENCODING and entry.delete_source and entry.placement == p
    assert [n for n in os.listdir(journal.directory) if n.endswith(".tmp")] == []


# --- free space and size estimate --------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


def test_free_space_with_injected_usage(tmp_path: Path) -> None:
    seen: list[str] = []

    def usage(path: str) -> Usage:
        seen.append(path)
        return Usage(10**12, 0, 400_000_000)

    check_free_space(tmp_path / "not" / "yet", 300_000_000, usage=usage)
    assert seen == [str(tmp_path)]  # measured at the nearest existing parent
    mount = filesystem_of(tmp_path)
    where = mount.mount_point if mount else str(tmp_path)
    with pytest.raises(InsufficientSpaceError) as err:
        check_free_space(tmp_path, 1_200_000_000, min_free_bytes=20 * 10**9, usage=usage)
    assert (
        str(err.value) == f"need 1.2 GB for the output, 400 MB free on {where} (keep 20.0 GB free)"
    )
    with pytest.raises(InsufficientSpaceError, match="keep"):
        check_free_space(tmp_path, 300_000_000, min_free_bytes=200_000_000, usage=usage)


def test_free_space_on_the_real_filesystem(tmp_path: Path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    check_free_space(tmp_path, 1)
    with pytest.raises(InsufficientSpaceError) as err:
        check_free_space(tmp_path, free + 10**15)
    mount = filesystem_of(tmp_path)
    assert mount is not None
    assert f" free on {mount.mount_point}" in str(err.value)


def _plan(video: str, audio: tuple[AudioOut, ...]) -> EncodePlan:
    return EncodePlan(
        args=(),
        video=video,  # type: ignore[arg-type]
        backend="cpu",
        encoder="copy" if video == "copy" else "libx264",
        audio_plan=audio,
        subtitle_plan=(),
        sidecars=(),
        notes=(),
        width=1920,
        height=1080,
        fps=24.0,
        filters=None,
    )


def test_estimate_output_size() -> None:
    profile = Profile()
    info = MediaInfo(
        path="/m/x.mkv",
        size=8_000_000_000,
        format_name="matroska,webm",
        duration_s=3600.0,
        video=(VideoStream(0, "hevc", width=3840, height=2160),),
        audio=(
            AudioStream(1, "truehd", channels=8),
            AudioStream(2, "aac", channels=2, bit_rate=128_000),
        ),
    )
    assert estimate_output_size(info, _plan("copy", ()), profile) == 8_800_000_000
    audio = (
        AudioOut(1, "aac", "truehd", 2, None, True),
        AudioOut(2, "copy", "aac", 2, None, False),
    )
    expected = 3600 * (10_000_000 + 160_000 + 128_000) / 8 * 1.1
    assert estimate_output_size(info, _plan("encode", audio), profile) == int(expected)
    small = MediaInfo(path="/m/y.avi", size=1000, format_name="avi", duration_s=3600.0)
    assert estimate_output_size(small, _plan("encode", audio), profile) == 1100


def test_source_is_kept_when_the_placed_file_is_damaged(tmp_path: Path) -> None:
    """Deleting the original re-checks that the new file is really there and not empty."""
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)

    def damage(step: str) -> None:
        if step == "placed":
            p.final.write_bytes(b"")

    result = commit(journal, p, delete_source=True, _after_step=damage)
    assert not result.source_deleted
    assert p.source.read_bytes() == ORIGINAL


def test_commit_places_sidecars_before_deleting_the_source(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    styles = (p.sidecar_temp(".eng.sup"), p.temp.with_name(p.temp_prefix + ".fre.forced.mks"))
    for temp in styles:
        temp.write_bytes(b"SUB")
    seen: list[bool] = []

    def check(step: str) -> None:
        if step == "placed":
            seen.append((p.final.parent / "Movie.eng.sup").exists() and p.source.exists())

    commit(journal, p, delete_source=True, sidecar_temps=styles, _after_step=check)
    assert seen == [True]
    assert (p.final.parent / "Movie.eng.sup").read_bytes() == b"SUB"
    assert (p.final.parent / "Movie.fre.forced.mks").read_bytes() == b"SUB"
    assert _temps(p) == [] and not p.source.exists()


def test_existing_sidecar_name_is_refused_before_anything_moves(tmp_path: Path) -> None:
    journal, p = _setup(tmp_path)
    begin(journal, p, delete_source=True)
    p.temp.write_bytes(NEW)
    temp = p.sidecar_temp(".eng.sup")
    temp.write_bytes(b"SUB")
    (p.final.parent / "Movie.eng.sup").write_bytes(b"the user's own subtitles")
    with pytest.raises(OutputExistsError, match=re.escape("Movie.eng.sup")):
        commit(journal, p, delete_source=True, sidecar_temps=(temp,))
    assert (p.final.parent / "Movie.eng.sup").read_bytes() == b"the user's own subtitles"
    assert p.source.read_bytes() == ORIGINAL and not p.final.exists()
    abort(journal, p)
    assert _temps(p) == []
