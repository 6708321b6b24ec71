"""Nodes: several castui engines sharing one queue (issue 13).

A node is one castui process. The host that holds the library runs ``role: all`` (scan, watch,
senders and its own workers); a GPU box runs ``role: worker`` and only claims and converts. The
same files are often mounted at another path on the worker, so each node has a ``path_map``
(library path as the scanning host sees it -> this node's mount). Jobs always carry the scanning
host's path; a worker maps it in before touching files and maps its output back out when it
completes, so the queue, the catalog and Jellyfin all keep speaking the library host's paths.

The mapping rules here are pure (table-tested in ``tests/test_node_map.py``); only
:func:`check_roots` and :func:`check_files` look at the file system, and they are meant to run
in a thread. The start check is both: each library root is a readable, writable directory, and
the files the queue knows there (a sample of the library's newest jobs) are found through the
map, which catches a map or mount that points at an existing but wrong folder.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from castui_core.errors import CastuiError

ROLES = ("all", "worker")

#: How often a node tells the queue it is alive (the nodes table judges "offline" on it).
HEARTBEAT_S = 5.0
# A node whose last heartbeat is older than this many heartbeat intervals shows as offline.
OFFLINE_AFTER_BEATS = 3


class NodeConfigError(CastuiError):
    """This node's path map does not reach the library: it stays up but claims nothing."""


def default_node_name() -> str:
    """The host name: what an operator recognises in the nodes table without configuring."""
    return socket.gethostname().split(".")[0] or "castui"


def worker_owner(node: str, pid: int, index: int) -> str:
    """A worker's lease owner, ``"{node}:{pid}/w{index}"``: the node prefix lets history and the
    job detail say which machine ran a job, the pid which process, the index which worker."""
    return f"{node}:{pid}/w{index}"


def node_of_owner(owner: str | None) -> str | None:
    """The node part of a lease owner (``None`` when there is none). Owners written before
    nodes existed (``"1234/w0"``) have no node part and give ``None``."""
    if not owner or ":" not in owner:
        return None
    return owner.rsplit(":", 1)[0] or None


def _norm(path: str) -> str:
    """Normalise a prefix or path for comparison: no trailing slash (except the root)."""
    text = os.path.normpath(path) if path else path
    return text


def _under(path: str, prefix: str) -> str | None:
    """The remainder of ``path`` below ``prefix`` ('' when equal), or ``None`` when ``path`` is
    not inside it. Whole components only: ``/media/tv2`` is not under ``/media/tv``."""
    if prefix == "/":
        return path[1:] if path.startswith("/") else None
    if path == prefix:
        return ""
    if path.startswith(prefix + "/"):
        return path[len(prefix) + 1 :]
    return None


def _apply(path: str, pairs: Iterable[tuple[str, str]]) -> str:
    best: tuple[int, str, str] | None = None
    norm = _norm(path)
    for src, dst in pairs:
        src_n = _norm(src)
        rest = _under(norm, src_n)
        if rest is None:
            continue
        if best is None or len(src_n) > best[0]:
            best = (len(src_n), rest, _norm(dst))
    if best is None:
        return path
    _, rest, dst = best
    return str(PurePosixPath(dst) / rest) if rest else dst


def map_in(path: str, path_map: Mapping[str, str]) -> str:
    """The library host's ``path`` as this node sees it (longest matching prefix wins; a path
    no entry covers is returned unchanged: that node sees the same path)."""
    return _apply(path, path_map.items())


def map_out(path: str, path_map: Mapping[str, str]) -> str:
    """This node's ``path`` as the library host sees it (the inverse of :func:`map_in`)."""
    return _apply(path, ((dst, src) for src, dst in path_map.items()))


def validate_path_map(path_map: Mapping[str, str]) -> list[str]:
    """Problems with the map itself (pure): relative paths, or two library paths mapped onto
    the same mount (``map_out`` could not tell them apart)."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for src, dst in path_map.items():
        for label, value in (("library path", src), ("mount", dst)):
            if not value.startswith("/"):
                problems.append(
                    f"node.path_map: the {label} {value!r} is not absolute; write the full path."
                )
        dst_n = _norm(dst)
        if dst_n in seen:
            problems.append(
                f"node.path_map: {seen[dst_n]!r} and {src!r} both map to {dst!r}; "
                "give each library path its own mount."
            )
        seen[dst_n] = src
    return problems


@dataclass(frozen=True, slots=True)
class RootProblem:
    """One library root this node cannot use, with what to fix."""

    library: str
    root: str
    mapped: str
    message: str


def root_problem(
    library: str,
    root: str,
    mapped: str,
    *,
    exists: bool,
    is_dir: bool,
    readable: bool,
    writable: bool,
) -> RootProblem | None:
    """The rule for one root, given what the file system said (pure, so table-tested)."""
    via = f" (mapped from {root})" if mapped != root else ""
    fix = (
        "mount the library there or fix node.path_map in the settings"
        if mapped != root
        else "mount the library there or add a node.path_map entry for this node"
    )
    if not exists:
        msg = f"library {library!r}: {mapped}{via} does not exist on this node; {fix}."
    elif not is_dir:
        msg = f"library {library!r}: {mapped}{via} is not a directory; {fix}."
    elif not (readable and writable):
        need = "readable and writable" if not readable else "writable"
        msg = (
            f"library {library!r}: {mapped}{via} is not {need} by this node's user "
            f"(uid {os.getuid()}); fix the mount's permissions or run castui as its owner."
        )
    else:
        return None
    return RootProblem(library=library, root=root, mapped=mapped, message=msg)


def check_roots(
    roots: Mapping[str, Iterable[str]], path_map: Mapping[str, str]
) -> list[RootProblem]:
    """Check each library root, mapped, on this file system (blocking: run in a thread).

    ``roots`` is library name -> its roots as the library host sees them.
    """
    problems: list[RootProblem] = []
    for library, lib_roots in roots.items():
        for root in lib_roots:
            mapped = map_in(root, path_map)
            exists = os.path.exists(mapped)
            is_dir = os.path.isdir(mapped)
            problem = root_problem(
                library,
                root,
                mapped,
                exists=exists,
                is_dir=is_dir,
                readable=is_dir and os.access(mapped, os.R_OK | os.X_OK),
                writable=is_dir and os.access(mapped, os.W_OK | os.X_OK),
            )
            if problem is not None:
                problems.append(problem)
    return problems


#: How many of a library's newest jobs the start check looks for (any one found passes).
EXPECTED_SAMPLE = 20
#: Job states whose file should be there: a cancelled job's file often vanished (that is why
#: ingest cancelled it), so it proves nothing either way.
# Failed and dead jobs are left out: their files are the ones people delete or rename.
_EXPECTED_STATES = frozenset({"queued", "running", "done"})


def job_files(state: str, path: str, output_path: str | None) -> tuple[str, ...]:
    """Where a job's file should be now, as the library host sees it (pure): a done job's
    output first (the replace layout moved the source into the archive), then its source (a
    layout that keeps it, or an original restored since); nothing for a cancelled, failed or
    dead job, whose file is often deleted or renamed by its owner and so proves nothing."""
    if state not in _EXPECTED_STATES:
        return ()
    if state == "done" and output_path:
        return (output_path, path) if output_path != path else (path,)
    return (path,)


def _entry_for(path: str, path_map: Mapping[str, str]) -> tuple[str, str] | None:
    """The ``path_map`` entry that maps ``path`` (longest prefix), or None."""
    found = [(s, d) for s, d in path_map.items() if _under(_norm(path), _norm(s)) is not None]
    return max(found, key=lambda e: len(_norm(e[0])), default=None)


def files_problem(
    library: str,
    root: str,
    samples: Sequence[Sequence[str]],
    path_map: Mapping[str, str],
    present: Container[str],
) -> RootProblem | None:
    """The rule for a library's expected files (pure, so table-tested).

    ``samples``: each known job's candidate files (:func:`job_files`, library host's paths);
    ``present``: the mapped paths that exist on this node. Passes when the queue knows no
    file under ``root`` (an empty library) or any one of them is there: a file deleted since
    proves nothing; none at all means the mount or the map points at the wrong place.
    """
    known = [
        [c for c in candidates if _under(_norm(c), _norm(root)) is not None]
        for candidates in samples
    ]
    known = [k for k in known if k]  # jobs from before the library moved are not expected
    if not known or any(map_in(c, path_map) in present for k in known for c in k):
        return None
    first = known[0][0]
    mapped = map_in(first, path_map)
    entry = _entry_for(first, path_map)
    how = (
        f"node.path_map {entry[0]} -> {entry[1]}"
        if entry is not None
        else "no node.path_map entry (the same path as on the library host)"
    )
    return RootProblem(
        library=library,
        root=root,
        mapped=mapped,
        message=(
            f"library {library!r}: none of the {len(known)} file(s) the queue knows there is"
            f" on this node, e.g. {mapped} (the queue's {first}, mapped with {how}); mount"
            " the library there or fix node.path_map in the settings."
        ),
    )


def check_files(
    expected: Mapping[str, tuple[str, Sequence[Sequence[str]]]], path_map: Mapping[str, str]
) -> list[RootProblem]:
    """Look for each library's expected files on this file system (blocking: run in a thread).

    ``expected`` is library name -> (its root, its jobs' candidate files), library host's paths.
    """
    problems: list[RootProblem] = []
    for library, (root, samples) in expected.items():
        mapped = {map_in(c, path_map) for candidates in samples for c in candidates}
        present = {p for p in mapped if os.path.exists(p)}
        problem = files_problem(library, root, samples, path_map, present)
        if problem is not None:
            problems.append(problem)
    return problems


def is_online(last_seen: float, now: float, heartbeat_s: float) -> bool:
    """A node is online while its last heartbeat is younger than a few intervals."""
    return now - last_seen <= OFFLINE_AFTER_BEATS * heartbeat_s


def nvenc_refusal(
    role: str, preference: str, available: bool | None, reason: str | None
) -> str | None:
    """Why a node must not claim because the settings want NVENC and it has none (pure).

    Only a ``worker`` refuses: another node can take its jobs, so claiming them here would
    only burn their attempts. A lone ``all`` node keeps the single-host rule (castui_core
    .ffmpeg.nvenc.choose_backend): its jobs fail with the NVENC reason, where a person sees it.
    """
    if role != "worker" or preference != "nvenc" or available:
        return None
    why = reason or "NVENC was not detected"
    return (
        f"operational.encoder is nvenc but this node has no working NVENC ({why}); its jobs "
        "are left for another node. Fix the GPU driver, or set encoder: auto on this node."
    )
