"""Table tests of castui_core.nodes' pure rules (path maps, owners, the root check's rule)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from castui_core.nodes import (
    check_files,
    check_roots,
    files_problem,
    is_online,
    job_files,
    map_in,
    map_out,
    node_of_owner,
    nvenc_refusal,
    root_problem,
    validate_path_map,
    worker_owner,
)

MAP = {"/media": "/mnt/nas", "/media/tv": "/srv/tv", "/": "/chroot"}


@pytest.mark.parametrize(
    ("path", "path_map", "expected"),
    [
        ("/media/a.mkv", {}, "/media/a.mkv"),  # no map: same path
        ("/media/a.mkv", {"/media": "/mnt/nas"}, "/mnt/nas/a.mkv"),
        ("/media", {"/media": "/mnt/nas"}, "/mnt/nas"),  # the root itself
        ("/media/", {"/media/": "/mnt/nas/"}, "/mnt/nas"),  # trailing slashes ignored
        ("/media2/a.mkv", {"/media": "/mnt/nas"}, "/media2/a.mkv"),  # whole components only
        ("/media/tv/s1/e1.mkv", MAP, "/srv/tv/s1/e1.mkv"),  # longest prefix wins
        ("/media/film/x.mkv", MAP, "/mnt/nas/film/x.mkv"),
        ("/other/x.mkv", MAP, "/chroot/other/x.mkv"),  # "/" covers everything else
        ("/media/ä ö/x y.mkv", {"/media": "/m"}, "/m/ä ö/x y.mkv"),
    ],
)
def test_map_in(path: str, path_map: dict[str, str], expected: str) -> None:
    assert map_in(path, path_map) == expected


@pytest.mark.parametrize(
    ("path", "path_map", "expected"),
    [
        ("/mnt/nas/a.mkv", {"/media": "/mnt/nas"}, "/media/a.mkv"),
        (
            "/srv/tv/s1/e1.mkv",
            {"/media": "/mnt/nas", "/media/tv": "/srv/tv"},
            "/media/tv/s1/e1.mkv",
        ),
        ("/elsewhere/a.mkv", {"/media": "/mnt/nas"}, "/elsewhere/a.mkv"),
        ("/mnt/nas2/a.mkv", {"/media": "/mnt/nas"}, "/mnt/nas2/a.mkv"),
    ],
)
def test_map_out(path: str, path_map: dict[str, str], expected: str) -> None:
    assert map_out(path, path_map) == expected


@pytest.mark.parametrize("path", ["/media/tv/s1/e1.mkv", "/media/film/x.mkv", "/media"])
def test_map_round_trip(path: str) -> None:
    m = {"/media": "/mnt/nas", "/media/tv": "/srv/tv"}
    assert map_out(map_in(path, m), m) == path


@pytest.mark.parametrize(
    ("path_map", "fragments"),
    [
        ({"/a": "/b"}, []),
        ({"a": "/b"}, ["library path 'a' is not absolute"]),
        ({"/a": "b"}, ["mount 'b' is not absolute"]),
        ({"/a": "/m", "/b": "/m/"}, ["both map to"]),
    ],
)
def test_validate_path_map(path_map: dict[str, str], fragments: list[str]) -> None:
    problems = validate_path_map(path_map)
    assert len(problems) == len(fragments)
    for problem, fragment in zip(problems, fragments, strict=True):
        assert fragment in problem


@pytest.mark.parametrize(
    ("owner", "node"),
    [
        (worker_owner("gpu-1", 42, 3), "gpu-1"),
        ("gpu-1:42/w3", "gpu-1"),
        ("1234/w0", None),  # before nodes: no node part
        (None, None),
        ("", None),
    ],
)
def test_node_of_owner(owner: str | None, node: str | None) -> None:
    assert node_of_owner(owner) == node


def test_worker_owner_format() -> None:
    assert worker_owner("nas", 7, 0) == "nas:7/w0"


@pytest.mark.parametrize(
    ("exists", "is_dir", "readable", "writable", "fragment"),
    [
        (True, True, True, True, None),
        (False, False, False, False, "does not exist on this node"),
        (True, False, False, False, "is not a directory"),
        (True, True, True, False, "is not writable"),
        (True, True, False, False, "is not readable and writable"),
    ],
)
def test_root_problem_rule(
    exists: bool, is_dir: bool, readable: bool, writable: bool, fragment: str | None
) -> None:
    problem = root_problem(
        "TV",
        "/media/tv",
        "/mnt/tv",
        exists=exists,
        is_dir=is_dir,
        readable=readable,
        writable=writable,
    )
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None
        assert fragment in problem.message
        assert "'TV'" in problem.message and "/mnt/tv" in problem.message
        if not exists or not is_dir:
            assert "(mapped from /media/tv)" in problem.message
            assert "node.path_map" in problem.message


def test_check_roots_on_real_directories(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    link = tmp_path / "mount"
    os.symlink(lib, link)
    assert check_roots({"Films": ["/library/films"]}, {"/library/films": str(link)}) == []
    missing = check_roots({"Films": ["/library/films"]}, {"/library/films": str(tmp_path / "no")})
    assert [p.library for p in missing] == ["Films"]
    assert "does not exist" in missing[0].message
    afile = tmp_path / "file"
    afile.write_text("x")
    assert "not a directory" in check_roots({"F": [str(afile)]}, {})[0].message


@pytest.mark.parametrize(
    ("age", "online"), [(0.0, True), (14.9, True), (15.0, True), (15.1, False)]
)
def test_is_online(age: float, online: bool) -> None:
    assert is_online(1000.0 - age, 1000.0, 5.0) is online


@pytest.mark.parametrize(
    ("role", "preference", "available", "refuses"),
    [
        ("worker", "nvenc", False, True),
        ("worker", "nvenc", None, True),
        ("worker", "nvenc", True, False),
        ("worker", "auto", False, False),  # auto falls back to the CPU: it can do the job
        ("worker", "cpu", False, False),
        ("all", "nvenc", False, False),  # a lone host: jobs fail with the reason, seen there
    ],
)
def test_nvenc_refusal(role: str, preference: str, available: bool | None, refuses: bool) -> None:
    why = nvenc_refusal(role, preference, available, "no driver")
    assert (why is not None) is refuses
    if why is not None:
        assert "no driver" in why and "another node" in why


def test_node_and_role_flags_override_the_settings() -> None:
    from castui.cli import build_parser
    from castui.cli_args import apply_node
    from castui_core.settings import parse_settings

    settings = parse_settings("node: {name: nas, path_map: {/media: /mnt/media}}\n")
    args = build_parser().parse_args(["--no-ui", "--node", "gpu-1", "--role", "worker"])
    changed = apply_node(settings, args)
    assert (changed.node.name, changed.node.role) == ("gpu-1", "worker")
    assert changed.node.path_map == {"/media": "/mnt/media"}  # the rest stays
    assert apply_node(settings, build_parser().parse_args(["--no-ui"])) is settings
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--node", "bad name"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--role", "boss"])


def test_a_relative_path_map_is_refused_by_the_settings() -> None:
    from castui_core.errors import ConfigError
    from castui_core.settings import parse_settings

    with pytest.raises(ConfigError, match="not absolute"):
        parse_settings("node: {path_map: {media: /mnt/media}}\n")


@pytest.mark.parametrize(
    ("state", "path", "output", "expected"),
    [
        ("queued", "/m/a.mkv", None, ("/m/a.mkv",)),
        ("running", "/m/a.mkv", None, ("/m/a.mkv",)),
        ("done", "/m/a.mkv", "/m/a.mp4", ("/m/a.mp4", "/m/a.mkv")),  # output first
        ("done", "/m/a.mp4", "/m/a.mp4", ("/m/a.mp4",)),  # remuxed in place
        ("done", "/m/a.mkv", None, ("/m/a.mkv",)),  # skipped: nothing written
        ("failed", "/m/a.mkv", None, ()),  # people delete what failed: proves nothing
        ("dead", "/m/a.mkv", None, ()),
        ("cancelled", "/m/a.mkv", None, ()),  # its file often vanished: proves nothing
    ],
)
def test_job_files(state: str, path: str, output: str | None, expected: tuple[str, ...]) -> None:
    assert job_files(state, path, output) == expected


NAS = {"/media": "/mnt/nas"}


@pytest.mark.parametrize(
    ("samples", "path_map", "present", "fragments"),
    [
        ([], NAS, set(), None),  # an empty library: nothing expected, passes
        ([("/media/a.mkv",)], NAS, {"/mnt/nas/a.mkv"}, None),
        ([("/media/a.mp4", "/media/a.mkv")], NAS, {"/mnt/nas/a.mkv"}, None),  # restored
        ([("/media/a.mkv",), ("/media/b.mkv",)], NAS, {"/mnt/nas/b.mkv"}, None),  # one is enough
        ([("/old/a.mkv",)], NAS, set(), None),  # outside the root (library moved): not expected
        ([("/media/a.mkv",)], {}, {"/media/a.mkv"}, None),  # no map: the same path
        (
            [("/media/a.mkv",), ("/media/b.mkv",)],
            NAS,
            {"/media/a.mkv"},  # there on the library host's path, not through the map
            ["none of the 2 file(s)", "/mnt/nas/a.mkv", "/media/a.mkv", "/media -> /mnt/nas"],
        ),
        (
            [("/media/a.mkv",)],
            {},
            set(),
            ["/media/a.mkv", "no node.path_map entry"],
        ),
        (
            [("/media/tv/e1.mkv",)],
            {"/media": "/mnt/nas", "/media/tv": "/srv/tv"},
            {"/mnt/nas/tv/e1.mkv"},
            ["/srv/tv/e1.mkv", "/media/tv -> /srv/tv"],  # names the entry that was used
        ),
    ],
)
def test_files_problem_rule(
    samples: list[tuple[str, ...]],
    path_map: dict[str, str],
    present: set[str],
    fragments: list[str] | None,
) -> None:
    problem = files_problem("TV", "/media", samples, path_map, present)
    if fragments is None:
        assert problem is None
        return
    assert problem is not None and problem.library == "TV"
    assert "'TV'" in problem.message and "node.path_map" in problem.message
    for fragment in fragments:
        assert fragment in problem.message, problem.message


def test_check_files_with_two_node_roots(tmp_path: Path) -> None:
    """The library host's folder seen by one node through a symlink (its files are there)
    and by another through a map onto an existing but wrong folder: the root check passes
    for both; only the expected files tell them apart."""
    lib = tmp_path / "lib"
    (lib / "Show").mkdir(parents=True)
    (lib / "Show" / "e1.mkv").write_bytes(b"x")
    good = tmp_path / "good-mount"
    good.symlink_to(lib, target_is_directory=True)
    wrong = tmp_path / "wrong-mount"
    wrong.mkdir()
    # The queue speaks the library host's paths: /library/tv/...
    expected = {"TV": ("/library/tv", [("/library/tv/Show/e1.mp4", "/library/tv/Show/e1.mkv")])}
    good_map = {"/library/tv": str(good)}
    wrong_map = {"/library/tv": str(wrong)}
    assert check_roots({"TV": ["/library/tv"]}, good_map) == []
    assert check_roots({"TV": ["/library/tv"]}, wrong_map) == []  # a directory: passes
    assert check_files(expected, good_map) == []
    (problem,) = check_files(expected, wrong_map)
    assert str(wrong / "Show" / "e1.mp4") in problem.message
    assert f"/library/tv -> {wrong}" in problem.message
    assert check_files({"TV": ("/library/tv", [])}, wrong_map) == []  # no known jobs
