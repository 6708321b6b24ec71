"""Walking and scanning real directories with real media files."""

from __future__ import annotations

import fnmatch
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_castui
from media import SAMPLES

from castui_core.bus import EventBus
from castui_core.decide import Action
from castui_core.events import FileDecided, ScanFinished, ScanProblem, ScanProgress, ScanStarted
from castui_core.probe import ProbePool
from castui_core.profiles import builtin_profiles
from castui_core.scan import IgnoreRules, Scanner, ScanTarget, walk_media
from castui_core.settings import DEFAULT_EXTENSIONS, DEFAULT_IGNORE

RULES = IgnoreRules(DEFAULT_EXTENSIONS, DEFAULT_IGNORE)
PROFILE = builtin_profiles()["chromecast-1080p"]


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _walk(root: Path, *, follow: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    found = list(
        walk_media(
            root, RULES, follow_symlinks=follow, on_problem=lambda p, r: problems.append((p, r))
        )
    )
    return [os.path.relpath(p, root) for p in found], problems


def test_walk_filters_extensions_and_ignore_globs(tmp_path: Path) -> None:
    for name in [
        "a/movie.mkv", "a/movie.MP4", "a/notes.nfo", "a/cover.jpg", "a/dl.mkv.part",
        "a/x.partial", "a/y.!qB", "a/z.tmp", "a/.hidden.mkv", "a/film.original.mkv",
        "a/Sample/sample.mkv", "a/.git/objects/blob.mkv", "b/c/deep.ts",
    ]:  # fmt: skip
        _touch(tmp_path / name)
    found, problems = _walk(tmp_path)
    assert found == ["a/movie.MP4", "a/movie.mkv", "b/c/deep.ts"]
    assert problems == []


def test_walk_survives_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    _touch(tmp_path / "lib" / "show" / "ep1.mkv")
    (tmp_path / "lib" / "show" / "loop").symlink_to(tmp_path / "lib")
    (tmp_path / "lib" / "dangling.mkv").symlink_to(tmp_path / "nowhere.mkv")
    found, problems = _walk(tmp_path / "lib")
    assert found == ["show/ep1.mkv"]  # symlinks not followed by default
    found, problems = _walk(tmp_path / "lib", follow=True)
    assert found == ["show/ep1.mkv"]
    assert any("symlink loop" in reason for _, reason in problems)
    assert any("broken symlink" in reason for _, reason in problems)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_walk_reports_unreadable_directories(tmp_path: Path) -> None:
    _touch(tmp_path / "ok" / "a.mkv")
    locked = tmp_path / "locked"
    _touch(locked / "b.mkv")
    locked.chmod(0)
    try:
        found, problems = _walk(tmp_path)
    finally:
        locked.chmod(0o755)
    assert found == ["ok/a.mkv"]
    assert problems and "cannot read directory" in problems[0][1]


async def test_scan_decides_every_file_and_publishes_events(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    library = tmp_path / "library"
    for name, path in samples.items():
        dest = library / ("sub" if name.endswith(".mkv") else "") / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    bus = EventBus()
    sub = bus.subscribe()
    with ProbePool(2, timeout=20) as pool:
        scanner = Scanner(pool, rules=RULES, bus=bus)
        report = await scanner.scan(ScanTarget("Movies", (library,), PROFILE))
    by_name = {Path(f.path).name: f for f in report.files}
    # audio_only.m4a is not a video extension, so the walk skips it.
    expected = {s.name: s for s in SAMPLES if s.name != "audio_only.m4a"}
    assert set(by_name) == {*expected, "empty.mkv", "garbage.mkv"}
    for name, sample in expected.items():
        assert by_name[name].action.value == sample.action, (name, by_name[name].decision)
        if sample.reason:
            assert any(sample.reason in r for r in by_name[name].decision.reasons), name
    assert by_name["empty.mkv"].decision.reasons == ("empty file (0 bytes)",)
    assert by_name["garbage.mkv"].action is Action.REJECT
    assert report.bytes_to_process == sum(f.size for f in report.files if f.action.needs_work)

    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    assert isinstance(events[0], ScanStarted)
    assert isinstance(events[-1], ScanFinished)
    assert events[-1].files == len(report.files)
    decided = [e for e in events if isinstance(e, FileDecided)]
    assert sorted(e.path for e in decided) == sorted(f.path for f in report.files)
    last_progress = [e for e in events if isinstance(e, ScanProgress)][-1]
    assert last_progress.walk_done and last_progress.decided == len(report.files)


async def test_scan_of_missing_root_reports_a_problem(tmp_path: Path) -> None:
    bus = EventBus()
    sub = bus.subscribe()
    with ProbePool(1) as pool:
        report = await Scanner(pool, rules=RULES, bus=bus).scan(
            ScanTarget("Gone", (tmp_path / "unmounted",), PROFILE)
        )
    assert report.files == []
    assert [p.reason for p in report.problems] == ["does not exist (missing or not mounted)"]
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    assert any(isinstance(e, ScanProblem) for e in events)


def test_cli_scan_json_on_real_files(samples: dict[str, Path], tmp_path: Path) -> None:
    odd = tmp_path / 'it\'s a "$HOME" fïlm.mkv'
    shutil.copy(samples["high10.mkv"], odd)
    notes = _touch(tmp_path / "notes.txt", b"hello")
    result = run_castui(
        "scan", "--json", str(samples["compliant.mp4"]), str(odd), str(notes),
        str(samples["empty.mkv"]), home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    actions = {Path(d["path"]).name: d["action"] for d in data}
    assert actions == {
        "compliant.mp4": "skip",
        odd.name: "transcode",
        "notes.txt": "reject",
        "empty.mkv": "reject",
    }
    assert all({"path", "action", "reasons"} <= set(d) for d in data)
    assert "Traceback" not in result.stderr


def test_cli_scan_table_and_summary(samples: dict[str, Path], tmp_path: Path) -> None:
    result = run_castui("scan", str(samples["compliant.mkv"].parent), home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "container matroska is not MP4" in result.stdout
    # compliant.mp4 plus compliant.mkv, whose output name holds that Cast-ready copy.
    assert "2 skip" in result.stdout and "would be processed" in result.stdout


def test_cli_scan_unknown_profile_is_a_clear_error(tmp_path: Path) -> None:
    result = run_castui("scan", "--profile", "tv-9000", str(tmp_path), home=tmp_path)
    assert result.returncode == 2
    assert "'tv-9000' is not a profile" in result.stderr
    assert "Traceback" not in result.stderr


def test_scan_json_lines_are_what_the_encoder_makes_of_each_file() -> None:
    """``castui scan --json`` encodes a decision once and each file's path and size apart:
    every line must still be what the JSON encoder makes of the file's whole object."""
    from castui.scan_view import _ENCODER, _file_json, _json_lines, write_json_lines
    from castui_core.decide import Decision
    from castui_core.scan import ScannedFile

    names = [
        "/m/plain.mkv",
        '/m/quote " and \\ backslash.mkv',
        "/m/new\nline\t.mkv",
        "/m/été 東京 🎬.mkv",
        os.fsdecode(b"/m/latin1 \xe9t\xe9.mkv"),  # not UTF-8: path_bytes_b64
        "/m/\u202eevil.mkv",
    ]
    decisions = [
        Decision(Action.SKIP, ("plays directly",)),
        Decision(Action.REJECT, ('a reason with "size": 0, in it', "\x1b[31m")),
        Decision(Action.TRANSCODE, ()),
        Decision(Action.REMUX, (os.fsdecode(b"bad \xff byte"),)),
    ]
    files = [
        ScannedFile(library=lib, path=name, size=size, decision=decision)
        for lib in ("films", os.fsdecode(b"lib \xfe"))
        for name in names
        for decision in decisions
        for size in (0, 12_345_678_901)
    ]
    lines = list(_json_lines(files, None))
    assert lines == [_ENCODER.encode(_file_json(f, None)) for f in files]
    out = io.StringIO()
    write_json_lines(out, lines)
    parsed = json.loads(out.getvalue())
    assert [p["size"] for p in parsed] == [f.size for f in files]
    assert parsed[0] == {
        "path": "/m/plain.mkv",
        "action": "skip",
        "reasons": ["plays directly"],
        "size": 0,
        "library": "films",
    }
    empty = io.StringIO()
    write_json_lines(empty, [])
    assert empty.getvalue() == "[]\n"


def test_ignore_rules_match_what_fnmatchcase_matches() -> None:
    """The globs are one regular expression now; a name is ignored exactly when a glob
    matches it under ``fnmatchcase`` (case-sensitive, ``[...]`` sets, ``dir/`` patterns)."""
    globs = [*DEFAULT_IGNORE, "*[abc]?.mkv", "sample*", "Extras/", "[!x]*.nfo/", "a\\b*"]
    rules = IgnoreRules(DEFAULT_EXTENSIONS, globs)
    names = ["x.part", "x.PART", ".hidden", "film.original.mkv", "Sample", "sample", "Extras",
             "extras", "ya.nfo", "xa.nfo", "a\\bc", "ab", "Xa.mkv", "xca.mkv", "cz.mkv",
             "film.mkv", "film.!qB", "[x].mkv", "*"]  # fmt: skip
    for name in names:
        file_globs = [g for g in globs if not g.endswith("/")]
        dir_globs = [g[:-1] for g in globs if g.endswith("/")]
        assert rules.ignores_file(name) == any(fnmatch.fnmatchcase(name, g) for g in file_globs)
        by_glob = any(fnmatch.fnmatchcase(name, g) for g in dir_globs)
        assert rules.ignores_dir(name) == (name.startswith(".") or by_glob), name
    assert not IgnoreRules(DEFAULT_EXTENSIONS, []).ignores_file(".x")
