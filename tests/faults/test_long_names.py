"""Issue 10 item 9: too-long names are settled before the encode, never after it.

A 250-byte source name that castui converts to its own name needs a backup name
``<stem>.original.<ext>``, 259 bytes: before, the whole encode ran, the swap failed with
ENAMETOOLONG and the job was retried (re-encoded) as if it might work next time. Now every
name castui will create is fitted to the destination's NAME_MAX/PATH_MAX before the encode
(the stem is shortened), and when no name fits at all the job fails at once, not retried.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from realtime_site import FFMPEG, castui, clip, hidden, make_site

from castui_core.swap import plan_placement

# NameLimits and NameTooLongError are imported in the tests that use them, so that the
# real-process tests below also run (and fail) on a castui without them.


def _fits(path: Path, limits: Any) -> bool:
    return (
        len(os.fsencode(path.name)) <= limits.name_max and len(os.fsencode(path)) < limits.path_max
    )


@pytest.mark.parametrize(
    ("name", "sidecars"),
    [
        ("x" * 246 + ".mp4", ()),  # same name: the backup is the long one
        ("é" * 123 + "a.mp4", ()),  # 251 bytes of 2-byte characters
        ("y" * 250 + ".ts", ()),  # the output name is longer than the source's
        ("z" * 240 + ".mkv", (".eng.sup", ".fre.forced.mks")),
    ],
)
def test_every_name_fits_this_filesystem(tmp_path: Path, name: str, sidecars: tuple[str]) -> None:
    from castui_core.swap import NameLimits

    source = tmp_path / name
    limits = NameLimits.of(tmp_path)
    p = plan_placement(source, token="0123abcd", limits=limits, sidecar_suffixes=sidecars)
    created = [p.final, p.temp, *(p.sidecar_temp(s) for s in sidecars)]
    created += [p.final.with_name(p.final.stem + s) for s in sidecars]
    if p.backup is not None:
        created.append(p.backup)
        assert p.backup.name.endswith(".original.mp4")
    for path in created:
        assert _fits(path, limits), (len(os.fsencode(path.name)), path.name)
        path.write_bytes(b"")  # the filesystem agrees
    assert p.final.suffix == ".mp4" and p.final.stem in source.stem
    assert p.temp.name.startswith(".") and ".castui-0123abcd.tmp" in p.temp.name


def test_no_name_fits_fails_before_anything_with_the_reason(tmp_path: Path) -> None:
    from castui_core.errors import NameTooLongError
    from castui_core.swap import NameLimits

    with pytest.raises(NameTooLongError, match="exceeds this filesystem's limits"):
        plan_placement(tmp_path / "movie.mkv", token="t", limits=NameLimits(name_max=6))
    deep = Path("/" + "d" * 60)
    with pytest.raises(NameTooLongError, match="move the file to a shorter folder"):
        plan_placement(deep / "m.mkv", token="t", limits=NameLimits(path_max=len(str(deep)) + 4))


def test_a_250_byte_name_converts_in_place_and_keeps_the_original(
    tmp_path: Path, samples: dict[str, Path]
) -> None:
    site = make_site(tmp_path)
    name = "x" * 246 + ".mp4"  # MPEG-4 video in MP4: transcoded to its own name
    source = site["lib"] / name
    original = _mpeg4_in_mp4(samples["mpeg4.avi"], source)
    result = castui(site, "convert", str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("done transcode")
    # The default (replace) layout archives the original under its own 250-byte name.
    archived = site["lib"] / ".castui" / "originals" / name
    assert archived.read_bytes() == original
    assert [p for p in site["lib"].iterdir() if p.name.endswith(".original.mp4")] == []
    assert source.exists() and source.read_bytes() != original
    assert hidden(site["lib"]) == []


def _mpeg4_in_mp4(avi: Path, target: Path) -> bytes:
    """The sample's MPEG-4 video and MP3 audio, stream-copied into an MP4 named ``target``."""
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(avi), "-c", "copy", "-f", "mp4", str(target)],
        check=True,
    )
    return target.read_bytes()


def test_no_fitting_name_fails_at_once_and_is_not_retried(tmp_path: Path) -> None:
    # An output folder so deep that not even "m.mp4" fits PATH_MAX (4095 bytes) there.
    deep = tmp_path / "out"
    while len(os.fsencode(deep)) < 4092 - 251:
        deep = deep / ("d" * 250)
    deep = deep / ("e" * (4092 - len(os.fsencode(deep)) - 1))
    os.makedirs(deep)
    assert len(os.fsencode(deep)) == 4092
    (tmp_path / "site").mkdir()
    site = make_site(tmp_path / "site")
    settings = (
        site["settings"]
        .read_text()
        .replace("    watch: false\n", f"    watch: false\n    output_dir: {deep}\n")
    )
    site["settings"].write_text(settings)
    clip(site["lib"] / "movie.avi", 1)
    result = castui(site, "--no-ui", "--once")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "summary: 0 done, 1 failed" in result.stdout
    assert "exceeds this filesystem's limits" in result.stdout
    assert " started " not in result.stderr  # failed before any encode
    queue = json.loads(castui(site, "queue", "--json").stdout)
    assert queue == []  # not waiting for a retry
    history = json.loads(castui(site, "history", "--json").stdout)
    assert [(Path(j["path"]).name, j["state"], j["attempts"]) for j in history] == [
        ("movie.avi", "failed", 1)
    ]
