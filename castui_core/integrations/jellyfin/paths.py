"""castui's paths as Jellyfin sees them (``jellyfin.path_map``), component-wise, longest first.

Why: Jellyfin often runs in a container or on another machine, where the same folder has
another name (``/srv/media/movies`` here is ``/data/movies`` there). A path Jellyfin does not
know is accepted with 204 and silently dropped, so every path castui sends goes through this
mapping, and the health check proves each library lands inside a Jellyfin library location.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath


def under(path: str, root: str) -> bool:
    """``path`` is ``root`` or inside it, by whole components (``/a/bc`` is not under ``/a/b``)."""
    p, r = PurePosixPath(path), PurePosixPath(root)
    return p == r or r in p.parents


def to_jellyfin(path: str, path_map: Mapping[str, str]) -> str:
    """Map ``path`` with the longest matching castui prefix; unmapped paths stay as they are
    (the common case: castui and Jellyfin on one machine)."""
    for prefix in sorted(path_map, key=lambda p: len(PurePosixPath(p).parts), reverse=True):
        if under(path, prefix):
            rest = PurePosixPath(path).relative_to(PurePosixPath(prefix))
            target = PurePosixPath(path_map[prefix]) / rest
            return str(target)
    return path


def location_for(path: str, locations: Iterable[str]) -> str | None:
    """The Jellyfin library location holding ``path`` (the deepest one), or ``None``."""
    best: str | None = None
    for loc in locations:
        if under(path, loc) and (
            best is None or len(PurePosixPath(loc).parts) > len(PurePosixPath(best).parts)
        ):
            best = loc
    return best
