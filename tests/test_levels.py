"""H.264/HEVC level tables: ffprobe encodings, normalisation and limit checks."""

from __future__ import annotations

import pytest

from castui_core.levels import (
    CAST_MAX_LEVEL,
    H264_LEVELS,
    HEVC_LEVELS,
    VideoCodec,
    level_display,
    level_from_ffprobe,
    level_limit_problems,
    level_names,
    level_rank,
    normalize_level,
)


@pytest.mark.parametrize(
    ("codec", "raw", "expected"),
    [
        pytest.param("h264", 41, "4.1", id="h264-41"),
        pytest.param("h264", 40, "4", id="h264-40"),
        pytest.param("h264", 42, "4.2", id="h264-42"),
        pytest.param("h264", 51, "5.1", id="h264-51"),
        pytest.param("h264", 10, "1", id="h264-10"),
        pytest.param("h264", 11, "1.1", id="h264-11"),
        pytest.param("h264", 9, "1b", id="h264-9-is-1b"),
        pytest.param("h264", 62, "6.2", id="h264-62"),
        pytest.param("h264", 0, None, id="h264-0"),
        pytest.param("h264", -99, None, id="h264-minus-99"),
        pytest.param("h264", 43, None, id="h264-43-no-such-level"),
        pytest.param("h264", 99, None, id="h264-99-garbage"),
        pytest.param("hevc", 153, "5.1", id="hevc-153"),
        pytest.param("hevc", 150, "5", id="hevc-150"),
        pytest.param("hevc", 156, "5.2", id="hevc-156"),
        pytest.param("hevc", 120, "4", id="hevc-120"),
        pytest.param("hevc", 123, "4.1", id="hevc-123"),
        pytest.param("hevc", 93, "3.1", id="hevc-93"),
        pytest.param("hevc", 30, "1", id="hevc-30"),
        pytest.param("hevc", 186, "6.2", id="hevc-186"),
        pytest.param("hevc", 100, None, id="hevc-100-not-divisible-by-3"),
        pytest.param("hevc", 41, None, id="hevc-41-h264-style"),
        pytest.param("hevc", 0, None, id="hevc-0"),
        pytest.param("hevc", -99, None, id="hevc-minus-99"),
        pytest.param("hevc", 33, None, id="hevc-33-no-level-1.1"),
    ],
)
def test_level_from_ffprobe(codec: VideoCodec, raw: int, expected: str | None) -> None:
    assert level_from_ffprobe(codec, raw) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(4.1, "4.1", id="float-4.1"),
        pytest.param("4.1", "4.1", id="str-4.1"),
        pytest.param(41, "4.1", id="int-41-ffprobe-style"),
        pytest.param("41", "4.1", id="str-41-ffprobe-style"),
        pytest.param("4.0", "4", id="str-4.0"),
        pytest.param(4.0, "4", id="float-4.0"),
        pytest.param(4, "4", id="int-4"),
        pytest.param(40, "4", id="int-40"),
        pytest.param(5.2, "5.2", id="float-5.2"),
        pytest.param(" 5.1 ", "5.1", id="whitespace"),
        pytest.param("1b", "1b", id="1b"),
        pytest.param("1B", "1b", id="1B-upper"),
        pytest.param(10, "1", id="int-10-is-level-1"),
        pytest.param("high", "high", id="not-a-number-passes-through"),
    ],
)
def test_normalize_level(value: str | float | int, expected: str) -> None:
    assert normalize_level(value) == expected


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        pytest.param("4", "4.0", id="4"),
        pytest.param("4.1", "4.1", id="4.1"),
        pytest.param("1b", "1b", id="1b"),
    ],
)
def test_level_display(level: str, shown: str) -> None:
    assert level_display(level) == shown


@pytest.mark.parametrize(
    ("codec", "lower", "higher"),
    [
        pytest.param("h264", "4.1", "4.2", id="h264-4.1-4.2"),
        pytest.param("h264", "1", "1b", id="h264-1-1b"),
        pytest.param("h264", "1b", "1.1", id="h264-1b-1.1"),
        pytest.param("h264", "4.2", "5", id="h264-4.2-5"),
        pytest.param("hevc", "5", "5.1", id="hevc-5-5.1"),
        pytest.param("hevc", "4.1", "5", id="hevc-4.1-5"),
    ],
)
def test_level_rank_orders_levels(codec: VideoCodec, lower: str, higher: str) -> None:
    assert level_rank(codec, lower) < level_rank(codec, higher)


def test_level_names_cover_tables_and_cast_max() -> None:
    assert level_names("h264") == tuple(H264_LEVELS)
    assert level_names("hevc") == tuple(HEVC_LEVELS)
    for codec, cap in CAST_MAX_LEVEL.items():
        assert cap in level_names(codec)


@pytest.mark.parametrize(
    ("codec", "level", "width", "height", "fps", "profile"),
    [
        pytest.param("h264", "4.1", 1920, 1080, 30, "high", id="h264-1080p30-fits-4.1"),
        pytest.param("h264", "4", 1920, 1080, 30, "high", id="h264-1080p30-fits-4.0"),
        pytest.param("h264", "4.1", 1280, 720, 60, "high", id="h264-720p60-fits-4.1"),
        pytest.param("h264", "3.2", 1280, 720, 60, "high", id="h264-720p60-fits-3.2"),
        pytest.param("h264", "4.2", 1920, 1080, 60, "high", id="h264-1080p60-fits-4.2"),
        pytest.param("h264", "5.1", 3840, 2160, 30, "high", id="h264-2160p30-fits-5.1"),
        pytest.param("h264", "5.2", 3840, 2160, 60, "high", id="h264-2160p60-fits-5.2"),
        pytest.param("hevc", "5.1", 3840, 2160, 60, "main10", id="hevc-2160p60-fits-5.1"),
        pytest.param("hevc", "5", 3840, 2160, 30, "main10", id="hevc-2160p30-fits-5.0"),
        pytest.param("hevc", "4.1", 1920, 1080, 60, "main", id="hevc-1080p60-fits-4.1"),
    ],
)
def test_level_limits_fit(
    codec: VideoCodec, level: str, width: int, height: int, fps: float, profile: str
) -> None:
    problems = level_limit_problems(
        codec, level, width=width, height=height, fps=fps, maxrate_kbps=None, profile=profile
    )
    assert problems == []


@pytest.mark.parametrize(
    ("codec", "level", "width", "height", "fps", "fragments"),
    [
        pytest.param(
            "h264",
            "4.1",
            1920,
            1080,
            60,
            ("1920x1080 at 60 fps exceeds level 4.1", "at most 30.1 fps"),
            id="h264-1080p60-exceeds-4.1",
        ),
        pytest.param(
            "h264",
            "3.1",
            1280,
            720,
            60,
            ("1280x720 at 60 fps exceeds level 3.1", "at most 30.0 fps"),
            id="h264-720p60-exceeds-3.1",
        ),
        pytest.param(
            "h264",
            "4.1",
            3840,
            2160,
            24,
            ("3840x2160 needs 32400 macroblocks per frame; level 4.1 allows 8192",),
            id="h264-2160p-frame-size-exceeds-4.1",
        ),
        pytest.param(
            "h264",
            "4",
            3840,
            2160,
            24,
            ("level 4.0 allows 8192",),
            id="h264-2160p-frame-size-exceeds-4.0-display",
        ),
        pytest.param(
            "h264",
            "5.1",
            3840,
            2160,
            60,
            ("3840x2160 at 60 fps exceeds level 5.1",),
            id="h264-2160p60-exceeds-5.1",
        ),
        pytest.param(
            "hevc",
            "5",
            3840,
            2160,
            60,
            ("3840x2160 at 60 fps exceeds level 5.0", "at most 32.2 fps"),
            id="hevc-2160p60-exceeds-5.0",
        ),
        pytest.param(
            "hevc",
            "4.1",
            3840,
            2160,
            24,
            ("3840x2160 has 8294400 luma samples; level 4.1 allows 2228224",),
            id="hevc-2160p-picture-size-exceeds-4.1",
        ),
    ],
)
def test_level_limits_exceeded(
    codec: VideoCodec,
    level: str,
    width: int,
    height: int,
    fps: float,
    fragments: tuple[str, ...],
) -> None:
    problems = level_limit_problems(
        codec, level, width=width, height=height, fps=fps, maxrate_kbps=None, profile="high"
    )
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0]


@pytest.mark.parametrize(
    ("codec", "level", "profile", "maxrate", "problem"),
    [
        pytest.param("h264", "4.1", "main", 50_000, None, id="h264-main-at-50000"),
        pytest.param(
            "h264",
            "4.1",
            "main",
            50_001,
            "maxrate 50001 kb/s exceeds level 4.1 (50000 kb/s)",
            id="h264-main-above-50000",
        ),
        pytest.param("h264", "4.1", "high", 62_500, None, id="h264-high-1.25x-at-62500"),
        pytest.param("h264", "4.1", "high", 60_000, None, id="h264-high-1.25x-allows-60000"),
        pytest.param(
            "h264",
            "4.1",
            "high",
            62_501,
            "maxrate 62501 kb/s exceeds level 4.1 (62500 kb/s)",
            id="h264-high-above-62500",
        ),
        pytest.param(
            "h264",
            "4",
            "baseline",
            25_000,
            "maxrate 25000 kb/s exceeds level 4.0 (20000 kb/s)",
            id="h264-baseline-4.0-no-1.25x",
        ),
        pytest.param("h264", "4", "high", 25_000, None, id="h264-high-4.0-25000"),
        pytest.param("hevc", "5.1", "main10", 40_000, None, id="hevc-5.1-at-40000"),
        pytest.param(
            "hevc",
            "5.1",
            "main10",
            40_001,
            "maxrate 40001 kb/s exceeds level 5.1 (40000 kb/s)",
            id="hevc-5.1-above-40000",
        ),
        pytest.param("h264", "4.1", "high", None, None, id="no-maxrate"),
    ],
)
def test_level_maxrate(
    codec: VideoCodec, level: str, profile: str, maxrate: int | None, problem: str | None
) -> None:
    problems = level_limit_problems(
        codec, level, width=16, height=16, fps=1, maxrate_kbps=maxrate, profile=profile
    )
    assert problems == ([] if problem is None else [problem])


def test_size_and_maxrate_problems_are_both_reported() -> None:
    problems = level_limit_problems(
        "h264", "4.1", width=1920, height=1080, fps=60, maxrate_kbps=80_000, profile="high"
    )
    assert len(problems) == 2
    assert "60 fps exceeds level 4.1" in problems[0]
    assert "maxrate 80000 kb/s" in problems[1]
