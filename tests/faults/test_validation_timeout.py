"""Issue 10 item 6: validation obeys the encode's stall and time limits and kills the group.

The integrity read (``ffmpeg -xerror ... -f null -``) used to be bounded only by a fixed
600 s, whatever ``stall_timeout_s``/``job_timeout_s`` said, and its timeout killed only the
direct child: behind a wrapper script (a packaged ffmpeg launcher), the real reader survived.
Here ffmpeg is a ``/bin/sh`` wrapper around ``validation_shim.py``: encodes are real, and
the integrity read starts a child and hangs (or reports progress forever).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from validation_shim import alive, await_until, kill_leftovers, recorded_pids, write_wrapper

from castui_core.convert import Converter, ConvertOptions
from castui_core.probe import ProbePool
from castui_core.profiles import builtin_profiles
from castui_core.subproc import run_bounded
from castui_core.swap import Journal
from castui_core.tools import Tools

P1080 = builtin_profiles()["chromecast-1080p"]
FFPROBE = Path(shutil.which("ffprobe") or "ffprobe")


@pytest.fixture
def pid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    pids = tmp_path / "validation-pids"
    monkeypatch.setenv("CASTUI_VALIDATE_PIDS", str(pids))
    yield pids
    kill_leftovers(pids)


async def _convert(source: Path, wrapper: Path, tmp_path: Path, options: ConvertOptions):  # type: ignore[no-untyped-def]
    with ProbePool(1, timeout=30) as pool:
        converter = Converter(
            tools=Tools(ffmpeg=wrapper, ffprobe=FFPROBE),
            pool=pool,
            journal=Journal(tmp_path / "journal"),
        )
        # Far below the old fixed 600 s: the limits must come from the options.
        async with asyncio.timeout(60):
            return await converter.convert(source, options)


def _castui_temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if ".castui-" in p.name]


@pytest.mark.parametrize(
    ("mode", "limits", "expected"),
    [
        ("hang", {"stall_timeout_s": 2.0}, "reading the whole output made no progress for 2 s"),
        (
            "busy",
            {"stall_timeout_s": 120.0, "timeout_s": 4.0},
            "reading the whole output did not finish within 4 s",
        ),
    ],
)
async def test_validation_obeys_the_job_limits_and_kills_the_wrapper_and_its_child(
    samples: dict[str, Path],
    tmp_path: Path,
    pid_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    limits: dict[str, float],
    expected: str,
) -> None:
    monkeypatch.setenv("CASTUI_VALIDATE", mode)
    library = tmp_path / "lib"
    library.mkdir()
    source = library / "movie.avi"
    shutil.copyfile(samples["mpeg4.avi"], source)
    before = source.read_bytes()
    options = ConvertOptions(profile=P1080, encoder="cpu", **limits)  # type: ignore[arg-type]

    outcome = await _convert(source, write_wrapper(tmp_path), tmp_path, options)

    assert outcome.status == "failed", outcome
    assert outcome.failure_kind == "validation", outcome
    assert expected in (outcome.reason or ""), outcome.reason
    pids = recorded_pids(pid_file)
    assert len(pids) == 3, pids  # wrapper (sh), shim, the shim's child
    await await_until(lambda: not any(alive(p) for p in pids), 10, "the validation processes")
    assert source.read_bytes() == before
    assert _castui_temps(library) == []


async def test_helper_timeout_kills_the_whole_process_group(
    tmp_path: Path, pid_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_bounded (ffprobe, capability probes): same rule, the group dies on timeout."""
    monkeypatch.setenv("CASTUI_VALIDATE", "hang")
    wrapper = write_wrapper(tmp_path)
    with pytest.raises(TimeoutError):
        await run_bounded([str(wrapper), "-xerror"], timeout_s=3.0)
    pids = recorded_pids(pid_file)
    assert len(pids) == 3, pids
    await await_until(lambda: not any(alive(p) for p in pids), 10, "the helper's processes")
