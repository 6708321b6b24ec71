"""Where a converted file goes in the library: the replace, version and mirror layouts.

Pure policy (nothing here touches the disk; the callers list folders in a thread), so every
rule is table-tested. Why layouts exist: Jellyfin keys items by path, so an output written
beside its source is a second movie or a second episode. ``replace`` puts the output in the
source's place and moves the original into ``<library>/.castui/originals/<relative path>``,
a hidden folder on the same filesystem (the move is a rename: no copy, no space) that neither
Jellyfin nor castui's scanner reads. ``version`` keeps the source and names the output as a
Jellyfin alternate version. ``mirror`` writes a separate tree (``output_dir``).

Jellyfin's grouping rule (``Emby.Naming/Video/VideoListResolver.cs``,
``IsEligibleForMultiVersion``/``GetVideosGroupedByVersion``): all videos of one folder become
versions of one movie only when the folder name is longer than one character and *every*
video's name (without extension) starts with the folder name, case-insensitively, followed by
nothing, by ``-`` (after trimming spaces) or only by ``[...]`` tags, and they share one year.
Movies are resolved that way; episodes are not (Jellyfin before 12 lists each file of an
episode as its own episode), so ``version`` never applies to episodes here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Literal

#: castui's hidden folder at the top of each library (never scanned, never served).
CASTUI_DIR = ".castui"
ORIGINALS_DIR = "originals"

LayoutName = Literal["replace", "version", "mirror"]

_EPISODE = re.compile(
    r"(?i)(?:^|[^a-z0-9])s\d{1,4}[ ._-]*e\d{1,4}|(?:^|[^0-9])\d{1,2}x\d{2,3}(?:\D|$)"
)
_SEASON_DIR = re.compile(r"(?i)^(?:season|series|staffel|saison|temporada)[ ._-]*\d+$|^specials$")
_TAGS = re.compile(r"\[([^]]*)\]")


def archive_root(library_root: Path) -> Path:
    """``<library>/.castui/originals``: where the replace layout keeps originals."""
    return library_root / CASTUI_DIR / ORIGINALS_DIR


def archive_path(library_root: Path, source: Path) -> Path:
    """Where ``source``'s original goes: the archive mirrors its path in the library."""
    return archive_root(library_root) / source.relative_to(library_root)


def in_castui_dir(library_root: Path, path: PurePath) -> bool:
    """Whether ``path`` lies in the library's ``.castui`` folder (never media to convert)."""
    try:
        relative = path.relative_to(library_root)
    except ValueError:
        return False
    return bool(relative.parts) and relative.parts[0] == CASTUI_DIR


def label_from_profile(profile: str) -> str:
    """A version label from a profile name: ``chromecast-1080p`` -> ``Chromecast 1080p``."""
    words = [w for w in re.split(r"[-_ ]+", profile) if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or "Cast"


def version_stem(stem: str, label: str) -> str:
    """``Movie (2019)`` + ``Chromecast`` -> ``Movie (2019) - Chromecast``."""
    return f"{stem} - {label}"


def is_episode(source: PurePath) -> bool:
    """An episode by Jellyfin's usual naming (``S01E02``, ``1x02``) or its season folder."""
    return bool(_EPISODE.search(source.stem)) or bool(_SEASON_DIR.match(source.parent.name))


def _eligible(folder: str, stem: str) -> bool:
    """Jellyfin's ``IsEligibleForMultiVersion`` for one file name without extension."""
    if not stem.casefold().startswith(folder.casefold()):
        return False
    rest = stem[len(folder) :].strip()
    return not rest or rest[0] == "-" or not _TAGS.sub("", rest).strip()


def version_problem(source: PurePath, label: str, siblings: Iterable[str] = ()) -> str | None:
    """Why Jellyfin would *not* show ``<stem> - <label>`` as a version of ``source``.

    ``siblings``: names of the other videos in the folder (castui's own outputs included).
    None means Jellyfin groups them: the version layout can be used for this file.
    """
    folder = source.parent.name
    if is_episode(source):
        return (
            "an episode: Jellyfin before 12 lists each file of an episode as its own episode,"
            " not as versions"
        )
    if len(folder) <= 1:
        return "Jellyfin groups versions only inside a movie's own folder"
    for stem in (source.stem, version_stem(source.stem, label)):
        if not _eligible(folder, stem):
            return (
                f"the file name {stem!r} does not start with its folder's name {folder!r}"
                " followed by ' - ' (Jellyfin's rule for versions)"
            )
    others = [n for n in siblings if not _eligible(folder, PurePath(n).stem)]
    if others:
        return (
            f"the folder also holds {others[0]!r}, which is not a version of it: Jellyfin"
            " groups a folder's videos only when every name starts with the folder's name"
        )
    return None


@dataclass(frozen=True)
class LayoutChoice:
    """What to do with one source: the layout actually used and its placement inputs."""

    layout: LayoutName | Literal["skip"]
    #: ``output_dir`` for the mirror layout.
    output_dir: Path | None = None
    #: The archive root (replace with ``originals: archive``).
    archive_root: Path | None = None
    #: The version label (version layout).
    version_label: str | None = None
    #: Why the configured layout was not used (version -> replace / skip).
    note: str | None = None


def choose(
    layout: LayoutName,
    *,
    source: PurePath,
    library_root: Path | None,
    output_dir: Path | None,
    originals: Literal["archive", "delete"],
    label: str,
    fallback: Literal["replace", "skip"],
    siblings: Iterable[str] = (),
) -> LayoutChoice:
    """The layout for ``source`` in a library configured with ``layout``.

    Without a library root (a file converted outside every library) nothing can be archived
    relative to a library: the output goes beside the source as before layouts existed.
    """
    if layout == "mirror":
        return LayoutChoice("mirror", output_dir=output_dir)
    if layout == "version":
        problem = version_problem(source, label, siblings)
        if problem is None:
            return LayoutChoice("version", version_label=label)
        if fallback == "skip":
            return LayoutChoice("skip", note=f"version layout not possible: {problem}")
        note = f"replace layout used: {problem}"
        layout = "replace"
    else:
        note = None
    root = archive_root(library_root) if library_root and originals == "archive" else None
    return LayoutChoice("replace", archive_root=root, note=note)


#: Files Jellyfin attaches to a video by name: subtitles, metadata and artwork.
SUBTITLE_EXTENSIONS = frozenset({"srt", "ass", "ssa", "vtt", "sub", "idx", "sup", "smi"})
SIDECAR_EXTENSIONS = SUBTITLE_EXTENSIONS | frozenset({"nfo", "jpg", "jpeg", "png", "tbn", "webp"})


def sidecars_of(stem: str, names: Iterable[str]) -> list[str]:
    """The names in ``names`` that belong to the video ``<stem>.<ext>`` the way Jellyfin
    matches them: ``<stem>.<anything>.<ext>``, ``<stem>.<ext>`` or ``<stem>-<kind>.<ext>``
    (``-poster.jpg``), with a sidecar extension. Case-sensitive, as on Linux."""
    found = []
    for name in names:
        base, dot, ext = name.rpartition(".")
        if not dot or ext.lower() not in SIDECAR_EXTENSIONS:
            continue
        if base == stem or base.startswith((f"{stem}.", f"{stem}-")):
            found.append(name)
    return sorted(found)


def sidecar_plan(
    old_stem: str, new_stem: str, names: Iterable[str], *, layout: LayoutName
) -> list[tuple[str, str]]:
    """``(existing name, name for the output)`` pairs that keep sidecars matching the output.

    - replace: the output keeps the source's stem (``Movie.mkv`` -> ``Movie.mp4``), so nothing
      moves; only where the stem had to be shortened (a name too long for the filesystem)
      are the sidecars renamed to the new stem.
    - version: the source stays with its sidecars; the *subtitles* get a second name for the
      version (a hard link: no space), because Jellyfin attaches a subtitle only to the
      video whose name it starts with. Artwork and ``.nfo`` belong to the movie, not a file.
    - mirror: the output lives in another tree; nothing beside the source changes.
    """
    if layout == "mirror" or new_stem == old_stem:
        return []
    taken = set(names)
    pairs = []
    for name in sidecars_of(old_stem, taken):
        if new_stem.startswith(old_stem) and name.startswith(new_stem):
            continue  # already the output's own (a version's sidecar)
        ext = name.rpartition(".")[2].lower()
        if layout == "version" and ext not in SUBTITLE_EXTENSIONS:
            continue
        target = new_stem + name[len(old_stem) :]
        if target not in taken:
            pairs.append((name, target))
    return pairs
