"""Layouts (replace / version / mirror) and the originals archive, on a real library.

Real ffmpeg conversions through the real ``castui`` command, real renames, a real SQLite file:
a library with a movie in its own folder and an episode in a season folder, each with an
``.srt`` sidecar. Every check reads the files themselves (bytes, mode, mtime), not castui's
word for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from pathlib import Path, PurePath

import pytest
from cli_helpers import run_castui

from castui_core.ingest.watcher import wanted_path
from castui_core.layout import (
    archive_path,
    choose,
    in_castui_dir,
    label_from_profile,
    sidecar_plan,
    sidecars_of,
    version_problem,
)
from castui_core.originals import at_start
from castui_core.scan import IgnoreRules, walk_media
from castui_core.settings import LibrarySettings, load_settings
from castui_core.store import Store
from castui_core.store.originals import OriginalRecord

MOVIE = "Movie (2019)/Movie (2019).mkv"
EPISODE = "Show/Season 01/Show - S01E01.mkv"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- pure policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "siblings", "groups"),
    [
        ("Movie (2019)/Movie (2019).mkv", [], True),
        ("Movie (2019)/Movie (2019) - 1080p.mkv", ["Movie (2019) - 4K.mkv"], True),
        ("Movie (2019)/movie (2019).mkv", ["Movie (2019) [4K].mkv"], True),  # case, tags
        # The version would be "... [remux] - Chromecast": not "-" right after the name.
        ("Movie (2019)/Movie (2019) [remux].mkv", [], False),
        ("Movies/Movie (2019).mkv", [], False),  # a shared folder: name does not start with it
        ("Movie (2019)/Movie (2019).mkv", ["Other Film.mkv"], False),  # another movie there
        ("M/M.mkv", [], False),  # Jellyfin wants a folder name longer than one character
        ("Show/Season 01/Show - S01E01.mkv", [], False),  # episodes: not before Jellyfin 12
        ("Show/Show - 1x02.mkv", [], False),
        ("Movie (2019)/Movie (2019)extended.mkv", [], False),  # no " - " after the name
    ],
)
def test_jellyfin_version_rule(source: str, siblings: list[str], groups: bool) -> None:
    problem = version_problem(PurePath(source), "Chromecast", siblings)
    assert (problem is None) is groups, problem


def test_choose_falls_back_or_skips_where_jellyfin_would_not_group() -> None:
    root = Path("/lib")
    kwargs = {"library_root": root, "output_dir": None, "originals": "archive", "label": "Cast"}
    movie = choose("version", source=root / MOVIE, fallback="skip", **kwargs)  # type: ignore[arg-type]
    assert movie.layout == "version" and movie.version_label == "Cast"
    episode = choose("version", source=root / EPISODE, fallback="replace", **kwargs)  # type: ignore[arg-type]
    assert episode.layout == "replace" and episode.archive_root == root / ".castui/originals"
    assert episode.note is not None and "episode" in episode.note
    skipped = choose("version", source=root / EPISODE, fallback="skip", **kwargs)  # type: ignore[arg-type]
    assert skipped.layout == "skip" and skipped.note is not None
    deleting = choose(
        "replace",
        source=root / MOVIE,
        library_root=root,
        output_dir=None,
        originals="delete",
        label="Cast",
        fallback="replace",
    )
    assert deleting.archive_root is None  # originals: delete never archives
    assert label_from_profile("chromecast-1080p") == "Chromecast 1080p"
    assert archive_path(root, root / MOVIE) == root / ".castui/originals" / MOVIE
    assert in_castui_dir(root, root / ".castui/originals/x.mkv")
    assert not in_castui_dir(root, root / "Show/.castui/x.mkv")


@pytest.mark.parametrize(
    ("old", "new", "layout", "expected"),
    [
        # replace keeps the stem: nothing to move (the common case)
        ("Movie", "Movie", "replace", []),
        # replace with a stem shortened to fit the filesystem: the sidecars follow it
        (
            "Long name",
            "Long na",
            "replace",
            [
                ("Long name.en.srt", "Long na.en.srt"),
                ("Long name.nfo", "Long na.nfo"),
                ("Long name-poster.jpg", "Long na-poster.jpg"),
            ],
        ),
        # version: subtitles only, the version's own ones are not doubled again
        ("Movie", "Movie - Cast", "version", [("Movie.en.srt", "Movie - Cast.en.srt")]),
        ("Movie", "Movie - Cast", "mirror", []),
    ],
)
def test_sidecars_keep_matching_the_output(
    old: str, new: str, layout: str, expected: list[tuple[str, str]]
) -> None:
    names = [
        f"{old}.mkv",
        f"{old}.en.srt",
        f"{old}.nfo",
        f"{old}-poster.jpg",
        f"{old}extra.srt",  # another video's (no "." or "-" after the stem)
        "Other.en.srt",
    ]
    if layout == "version":
        names.append(f"{new}.de.srt")  # already the version's own
    got = sidecar_plan(old, new, names, layout=layout)  # type: ignore[arg-type]
    assert sorted(got) == sorted(expected)
    assert sidecars_of(old, names) == sorted(
        n for n in names if n.startswith((f"{old}.", f"{old}-")) and not n.endswith(".mkv")
    )


def test_old_settings_keep_their_meaning(tmp_path: Path) -> None:
    """An existing settings file behaves as before: output_dir mirrors, delete_source deletes."""
    mirror = LibrarySettings(name="a", path=tmp_path, output_dir=tmp_path / "cast")
    assert mirror.layout == "mirror" and mirror.originals == "archive"
    deleting = LibrarySettings(name="a", path=tmp_path, delete_source=True)
    assert deleting.layout == "replace" and deleting.originals == "delete"
    assert deleting.delete_source
    new = LibrarySettings(name="a", path=tmp_path)
    assert new.layout == "replace" and new.originals == "archive" and not new.delete_source
    for bad in (
        {"layout": "mirror"},
        {"layout": "replace", "output_dir": str(tmp_path / "x")},
        {"delete_source": True, "originals": "archive"},
    ):
        with pytest.raises(ValueError, match=r"output_dir|contradicts"):
            LibrarySettings(name="a", path=tmp_path, **bad)


def test_the_archive_is_never_walked_nor_watched(tmp_path: Path) -> None:
    """Even with an ignore list that lets hidden folders in, .castui is not media."""
    archived = tmp_path / ".castui/originals/Movie (2019)/Movie (2019).mkv"
    archived.parent.mkdir(parents=True)
    archived.write_bytes(b"x")
    (tmp_path / "Movie (2019)").mkdir()
    (tmp_path / "Movie (2019)/Movie (2019).mp4").write_bytes(b"y")
    rules = IgnoreRules(["mkv", "mp4"], [])  # no ".*" pattern
    found = list(walk_media(tmp_path, rules, follow_symlinks=False, on_problem=lambda *_: None))
    assert found == [str(tmp_path / "Movie (2019)/Movie (2019).mp4")]
    assert not wanted_path(str(tmp_path), str(archived), rules, is_dir=False)
    assert not wanted_path(str(tmp_path), str(tmp_path / ".castui"), rules, is_dir=True)
    assert wanted_path(str(tmp_path), str(tmp_path / "Movie (2019)/a.mkv"), rules, is_dir=False)


# --- real conversions per layout -------------------------------------------------------------


def _library(tmp_path: Path, samples: dict[str, Path], **lib: object) -> tuple[Path, Path]:
    """``Movie (2019)/Movie (2019).mkv`` and ``Show/Season 01/Show - S01E01.mkv``, each with
    an ``.srt`` (mode 0640, an old mtime), and settings for one library with ``lib``."""
    root = tmp_path / "media"
    for rel in (MOVIE, EPISODE):
        path = root / rel
        path.parent.mkdir(parents=True)
        shutil.copy(samples["compliant.mkv"], path)
        os.chmod(path, 0o640)
        os.utime(path, ns=(1_500_000_000_000_000_000, 1_500_000_000_123_456_789))
        path.with_suffix(".en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
        path.with_name(path.stem + "-poster.jpg").write_bytes(b"\xff\xd8poster")
        path.with_suffix(".nfo").write_text("<movie/>")
    settings = tmp_path / "settings.yaml"
    body = {
        "database": str(tmp_path / "db" / "castui.db"),
        "libraries": [{"name": "Media", "path": str(root), **lib}],
    }
    settings.write_text(json.dumps(body))  # JSON is YAML
    return root, settings


def _convert(settings: Path, home: Path, *paths: Path) -> str:
    result = run_castui(
        "convert", "--config", str(settings), "--encoder", "cpu", *map(str, paths), home=home
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _list(settings: Path, home: Path) -> dict[str, object]:
    result = run_castui("originals", "list", "--json", "--config", str(settings), home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_replace_archives_the_original_and_restore_and_purge_undo_it(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    root, settings = _library(tmp_path, samples)
    movie, episode = root / MOVIE, root / EPISODE
    before = {p: (_digest(p), os.stat(p)) for p in (movie, episode)}
    _convert(settings, tmp_path, movie, episode)

    for source in (movie, episode):
        archived = archive_path(root, source)
        st = os.stat(archived)
        assert _digest(archived) == before[source][0]  # the same bytes...
        assert st.st_mode == before[source][1].st_mode  # ...mode...
        assert st.st_mtime_ns == before[source][1].st_mtime_ns  # ...and mtime
        assert not source.exists()  # Jellyfin sees one file per movie/episode
        assert source.with_suffix(".mp4").stat().st_size > 0
        # The stem did not change, so the sidecar still matches the output: nothing moved.
        assert source.with_suffix(".en.srt").exists()
    visible = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.suffix in (".mkv", ".mp4") and not in_castui_dir(root, p)
    )
    assert visible == [str(Path(MOVIE).with_suffix(".mp4")), str(Path(EPISODE).with_suffix(".mp4"))]

    listed = _list(settings, tmp_path)
    originals = listed["originals"]
    assert isinstance(originals, list) and len(originals) == 2
    by_path = {o["path"]: o for o in originals}
    assert by_path[str(movie)]["output"] == str(movie.with_suffix(".mp4"))
    assert by_path[str(movie)]["size"] == before[movie][1].st_size
    totals = listed["totals"]
    assert isinstance(totals, dict)
    assert totals["Media"]["count"] == 2
    assert totals["Media"]["bytes"] == before[movie][1].st_size + before[episode][1].st_size

    # A second run recognises its own work: nothing converted again.
    again = _convert(settings, tmp_path, movie.with_suffix(".mp4"))
    assert "(plays directly)" in again and "done" not in again

    # Restore the movie: byte-identical, castui's output gone, not converted again.
    result = run_castui(
        "originals", "restore", "--config", str(settings), str(movie), home=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _digest(movie) == before[movie][0]
    assert os.stat(movie).st_mtime_ns == before[movie][1].st_mtime_ns
    assert os.stat(movie).st_mode == before[movie][1].st_mode
    assert not movie.with_suffix(".mp4").exists()
    assert not archive_path(root, movie).exists()
    assert "restored 1" in result.stdout
    rerun = _convert(settings, tmp_path, movie)
    assert "restored from the archive on purpose" in rerun
    assert not movie.with_suffix(".mp4").exists()

    # Purge frees exactly the episode's original.
    dry = run_castui("originals", "purge", "--dry-run", "--config", str(settings), home=tmp_path)
    assert dry.returncode == 0 and archive_path(root, episode).exists()
    assert f"({before[episode][1].st_size} bytes)" in dry.stdout
    young = run_castui(
        "originals", "purge", "--older-than", "30d", "--config", str(settings), home=tmp_path
    )
    assert "purged 0" in young.stdout and archive_path(root, episode).exists()
    purged = run_castui("originals", "purge", "--config", str(settings), home=tmp_path)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert "purged 1 original(s), freed" in purged.stdout
    assert f"({before[episode][1].st_size} bytes)" in purged.stdout
    assert not archive_path(root, episode).exists()
    assert not (root / ".castui/originals/Show").exists()  # empty folders go too
    assert episode.with_suffix(".mp4").exists()  # the output stays
    assert _list(settings, tmp_path)["originals"] == []

    # Asked to, castui converts the restored movie again (and archives it again).
    asked = run_castui(
        "originals", "convert-again", "--config", str(settings), str(movie), home=tmp_path
    )
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "done remux" in _convert(settings, tmp_path, movie)
    assert _digest(archive_path(root, movie)) == before[movie][0]


def test_restore_keeps_an_output_that_changed_since_castui_wrote_it(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    root, settings = _library(tmp_path, samples)
    movie = root / MOVIE
    digest = _digest(movie)
    _convert(settings, tmp_path, movie)
    output = movie.with_suffix(".mp4")
    with output.open("ab") as f:
        f.write(b"edited by someone")
    result = run_castui(
        "originals", "restore", "--config", str(settings), str(output), home=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _digest(movie) == digest
    assert output.read_bytes().endswith(b"edited by someone")  # not castui's any more: kept
    assert "changed since castui wrote it" in result.stdout


def test_version_layout_keeps_the_source_and_falls_back_for_episodes(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    root, settings = _library(tmp_path, samples, layout="version", version_label="Chromecast")
    movie, episode = root / MOVIE, root / EPISODE
    digest = _digest(movie)
    out = _convert(settings, tmp_path, movie, episode)
    version = movie.with_name("Movie (2019) - Chromecast.mp4")
    assert version.stat().st_size > 0 and _digest(movie) == digest  # both, grouped by Jellyfin
    # The version gets the subtitles too (a hard link: no space); artwork and .nfo are the
    # movie's, so they stay single.
    linked = version.with_name("Movie (2019) - Chromecast.en.srt")
    assert linked.stat().st_ino == movie.with_suffix(".en.srt").stat().st_ino
    assert not version.with_name("Movie (2019) - Chromecast-poster.jpg").exists()
    assert not version.with_name("Movie (2019) - Chromecast.nfo").exists()
    assert not movie.with_suffix(".mp4").exists()
    # The episode: Jellyfin would list two episodes, so the replace layout is used.
    assert episode.with_suffix(".mp4").exists() and not episode.exists()
    assert archive_path(root, episode).exists()
    assert "replace layout used" in out and "episode" in out


def test_version_layout_can_skip_instead(samples: dict[str, Path], tmp_path: Path) -> None:
    root, settings = _library(tmp_path, samples, layout="version", version_fallback="skip")
    episode = root / EPISODE
    out = _convert(settings, tmp_path, episode)
    assert "version layout not possible" in out
    assert episode.exists() and not episode.with_suffix(".mp4").exists()
    assert load_settings(settings).libraries[0].version_fallback == "skip"


def test_mirror_layout_is_todays_output_dir(samples: dict[str, Path], tmp_path: Path) -> None:
    root, settings = _library(tmp_path, samples, output_dir=str(tmp_path / "cast"))
    movie = root / MOVIE
    _convert(settings, tmp_path, movie)
    assert (tmp_path / "cast" / MOVIE).with_suffix(".mp4").exists()
    assert movie.exists() and not (root / ".castui").exists()


def test_scan_says_where_jellyfin_would_not_group_versions(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    _root, settings = _library(tmp_path, samples, layout="version")
    result = run_castui("scan", "--json", "--config", str(settings), home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    files = {
        Path(f["path"]).name: f
        for f in json.loads(result.stdout)
        if isinstance(f, dict) and "path" in f
    }
    episode = " ".join(files["Show - S01E01.mkv"]["reasons"])
    assert "version layout not possible, replace used" in episode and "episode" in episode
    movie = " ".join(files["Movie (2019).mkv"]["reasons"])
    assert "version layout" not in movie


def _old_layout(tmp_path: Path, samples: dict[str, Path], **lib: object) -> tuple[Path, Path]:
    """A library converted the way castui did before layouts: ``<stem>.mp4`` beside the kept
    source, recorded in the outputs table; then the settings gain ``lib`` (a layout)."""
    root, settings = _library(tmp_path, samples)
    body = json.loads(settings.read_text())
    body["libraries"][0]["path"] = str(tmp_path / "elsewhere")  # outside every library:
    settings.write_text(json.dumps(body))  # castui convert writes beside, as it used to
    _convert(settings, tmp_path, root / MOVIE, root / EPISODE)
    assert (root / MOVIE).exists() and (root / MOVIE).with_suffix(".mp4").exists()
    body["libraries"][0] = {"name": "Media", "path": str(root), **lib}
    settings.write_text(json.dumps(body))
    return root, settings


def test_old_layout_outputs_are_recognised_and_migrated_to_replace(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    root, settings = _old_layout(tmp_path, samples)
    movie, episode = root / MOVIE, root / EPISODE
    digest = _digest(movie)
    again = _convert(settings, tmp_path, movie, episode)
    assert again.count("castui already converted it") == 2  # not converted again
    assert movie.exists()  # and nothing moved by that

    dry = run_castui("layout", "migrate", "--dry-run", "--config", str(settings), home=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would move 2 file(s)" in dry.stdout and movie.exists()

    done = run_castui("layout", "migrate", "--config", str(settings), home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "moved 2 file(s)" in done.stdout
    assert not movie.exists() and _digest(archive_path(root, movie)) == digest
    assert movie.with_suffix(".mp4").exists() and episode.with_suffix(".mp4").exists()
    assert len(_list(settings, tmp_path)["originals"]) == 2  # type: ignore[arg-type]
    # ...and restorable like any archived original.
    back = run_castui("originals", "restore", "--config", str(settings), str(movie), home=tmp_path)
    assert back.returncode == 0, back.stdout + back.stderr
    assert _digest(movie) == digest and not movie.with_suffix(".mp4").exists()
    # A second migrate finds nothing left to move.
    twice = run_castui("layout", "migrate", "--config", str(settings), home=tmp_path)
    assert "moved 0 file(s)" in twice.stdout


def test_old_layout_outputs_are_migrated_to_version_where_jellyfin_groups(
    samples: dict[str, Path], tmp_path: Path
) -> None:
    root, settings = _old_layout(tmp_path, samples, layout="version", version_label="Cast")
    movie, episode = root / MOVIE, root / EPISODE
    again = _convert(settings, tmp_path, movie)
    assert "castui already converted it: Movie (2019).mp4 (an earlier layout" in again
    done = run_castui("layout", "migrate", "--config", str(settings), home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    version = movie.with_name("Movie (2019) - Cast.mp4")
    assert version.exists() and movie.exists() and not movie.with_suffix(".mp4").exists()
    assert version.with_name("Movie (2019) - Cast.en.srt").exists()
    # The episode cannot be a version (Jellyfin would list two episodes): left, and said.
    assert episode.with_suffix(".mp4").exists()
    assert "Show - S01E01.mp4: left as it is: an episode" in done.stdout
    # The renamed version is still castui's: a rerun skips the movie.
    assert "castui already converted it" in _convert(settings, tmp_path, movie)


def test_retention_purges_only_originals_older_than_keep_days(tmp_path: Path) -> None:
    """``originals_keep_days`` at a service start: the old original goes, the young stays."""
    root = tmp_path / "media"
    old, young = archive_path(root, root / "a/Old.mkv"), archive_path(root, root / "b/New.mkv")
    for path, data in ((old, b"o" * 5000), (young, b"y" * 7000)):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    settings = load_settings(None).model_copy(
        update={
            "libraries": (
                LibrarySettings(name="Media", path=root, originals_keep_days=30),
                LibrarySettings(name="Kept", path=tmp_path / "kept"),
            )
        }
    )

    async def scenario() -> list[str]:
        async with Store.open(tmp_path / "castui.db") as store:
            now = time.time()
            for path, age_days in ((old, 31), (young, 29)):
                st = path.stat()
                await store.record_original(
                    OriginalRecord(
                        library="Media",
                        path=str(root / path.relative_to(root / ".castui/originals")),
                        archive=str(path),
                        output=None,
                        size=st.st_size,
                        mtime_ns=st.st_mtime_ns,
                        archived_at=now - age_days * 86400,
                    )
                )
            lines = await at_start(settings, store)
            assert [r.archive for r in await store.list_originals()] == [str(young)]
            return lines

    lines = asyncio.run(scenario())
    assert not old.exists() and young.exists()
    assert lines == ["Media: purged 1 archived original(s) older than 30 days (5000 bytes freed)"]


def test_a_full_disk_says_how_much_the_archive_holds(tmp_path: Path) -> None:
    """The archive is on the library's disk: a refused job says what purging would free."""
    from types import SimpleNamespace

    from castui_core.errors import InsufficientSpaceError
    from castui_core.swap import check_free_space

    archived = archive_path(tmp_path, tmp_path / "Movie (2019)/Movie (2019).mkv")
    archived.parent.mkdir(parents=True)
    archived.write_bytes(b"x" * 3_000_000)
    with pytest.raises(InsufficientSpaceError) as refused:
        check_free_space(
            tmp_path,
            5_000_000,
            usage=lambda _p: SimpleNamespace(free=1_000_000),
            archive=archived.parents[1],
        )
    assert "the archive of originals" in str(refused.value)
    assert "holds 3 MB: `castui originals purge` frees it" in str(refused.value)
