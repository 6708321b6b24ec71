"""``-progress pipe:1`` parsing: table-driven over ffmpeg's quirks, plus one real ffmpeg run."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from castui_core.ffmpeg import Progress, ProgressParser

BLOCK = """frame=120
fps=59.94
stream_0_0_q=28.0
bitrate=1234.5kbits/s
total_size=1048576
out_time_us=5000000
out_time_ms=5000000
out_time=00:00:05.000000
dup_frames=0
drop_frames=0
speed=2.5x
progress=continue
"""


def _last(text: str, duration: float | None = 10.0) -> Progress:
    snaps = ProgressParser(duration).feed_text(text)
    assert snaps, "no snapshot"
    return snaps[-1]


def test_full_block() -> None:
    snap = _last(BLOCK)
    assert snap == Progress(
        frame=120,
        fps=59.94,
        out_time_s=5.0,
        speed=2.5,
        total_size=1048576,
        bitrate_kbps=1234.5,
        percent=50.0,
        eta_s=2.0,
        done=False,
    )


@pytest.mark.parametrize(
    ("lines", "field", "expected"),
    [
        ("speed=   0x", "speed", 0.0),
        ("speed=4.22e+03x", "speed", 4220.0),
        ("speed=N/A", "speed", None),
        ("speed=1.01x", "speed", 1.01),
        ("out_time_us=N/A", "out_time_s", None),
        ("out_time_us=-23220", "out_time_s", -0.02322),
        ("out_time_ms=2500000", "out_time_s", 2.5),  # out_time_ms is microseconds too
        ("out_time_us=N/A\nout_time_ms=1500000", "out_time_s", 1.5),
        ("out_time=00:01:02.500000", "out_time_s", 62.5),
        ("out_time=-00:00:00.023220", "out_time_s", -0.02322),
        ("frame=N/A", "frame", None),
        ("frame=  42", "frame", 42),
        ("fps=0.00", "fps", 0.0),
        ("bitrate=N/A", "bitrate_kbps", None),
        ("bitrate=  96.3kbits/s", "bitrate_kbps", 96.3),
        ("total_size=N/A", "total_size", None),
        ("total_size=-1", "total_size", None),
        ("total_size=44", "total_size", 44),
        ("speed=nanx", "speed", None),
        ("speed=garbage", "speed", None),
    ],
)
def test_quirky_values(lines: str, field: str, expected: float | None) -> None:
    snap = _last(lines + "\nprogress=continue\n")
    value = getattr(snap, field)
    if expected is None or isinstance(expected, int):
        assert value == expected
    else:
        assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("duration", "lines", "percent", "eta"),
    [
        (10.0, "out_time_us=2500000\nspeed=0.5x", 25.0, 15.0),
        (10.0, "out_time_us=-500000\nspeed=1x", 0.0, 10.0),  # negative clamps to 0
        (10.0, "out_time_us=12000000\nspeed=2x", 100.0, 0.0),  # beyond duration clamps
        (10.0, "out_time_us=2000000\nspeed=   0x", 20.0, None),  # no ETA at zero speed
        (10.0, "out_time_us=N/A\nspeed=1x", None, None),
        (None, "out_time_us=2000000\nspeed=1x", None, None),  # unknown duration
        (0.0, "out_time_us=2000000\nspeed=1x", None, None),  # zero duration = unknown
    ],
)
def test_percent_and_eta(
    duration: float | None, lines: str, percent: float | None, eta: float | None
) -> None:
    snap = _last(lines + "\nprogress=continue\n", duration)
    assert snap.percent == (pytest.approx(percent) if percent is not None else None)
    assert snap.eta_s == (pytest.approx(eta) if eta is not None else None)


def test_blocks_are_independent_and_end_is_done() -> None:
    parser = ProgressParser(4.0)
    text = (
        "frame=10\nout_time_us=1000000\nspeed=1x\nprogress=continue\n"
        "out_time_us=4000000\nspeed=2x\nprogress=end\n"
    )
    first, second = parser.feed_text(text)
    assert not first.done and first.frame == 10 and first.percent == pytest.approx(25.0)
    assert second.done and second.frame is None  # audio-only style block: no frame key
    assert second.percent == pytest.approx(100.0) and second.eta_s == 0.0
    assert parser.last == second


def test_feed_returns_none_until_block_ends_and_ignores_noise() -> None:
    parser = ProgressParser(None)
    assert parser.feed("frame=1\n") is None
    assert parser.feed("\n") is None
    assert parser.feed("not a key value line") is None
    snap = parser.feed("progress=continue\r\n")
    assert snap is not None and snap.frame == 1 and snap.percent is None


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_real_ffmpeg_progress_output() -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    args = [
        ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-progress", "pipe:1", "-nostats",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
        "-c:v", "libx264", "-preset", "ultrafast", "-f", "null", "-",
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    snaps = ProgressParser(1.0).feed_text(result.stdout)
    assert snaps and snaps[-1].done
    assert all(not s.done for s in snaps[:-1])
    assert snaps[-1].percent == pytest.approx(100.0, abs=5.0)
    assert snaps[-1].frame == 25
