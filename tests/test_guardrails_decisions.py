"""Table tests of the pure guardrail decisions (no clock, no GPU, no disk)."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from castui_core.guardrails import (
    LoadLimits,
    Window,
    disk_reason,
    format_gb,
    in_window,
    load_reason,
    next_window_start,
    parse_window,
    schedule_reason,
    session_cap_reason,
    temperature_state,
)

GB = 1_000_000_000

# --- GPU temperature with hysteresis -----------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "temp", "paused", "reason"),
    [
        (False, 70, False, None),
        (False, 84, False, None),
        (False, 85, True, "paused: GPU 0 at 85 °C ≥ 85 °C (resumes at 75)"),
        (False, 86, True, "paused: GPU 0 at 86 °C ≥ 85 °C (resumes at 75)"),
        (True, 90, True, "paused: GPU 0 at 90 °C ≥ 85 °C (resumes at 75)"),
        (True, 80, True, "paused: GPU 0 at 80 °C, cooling down (limit 85 °C, resumes at 75)"),
        (True, 76, True, "paused: GPU 0 at 76 °C, cooling down (limit 85 °C, resumes at 75)"),
        (True, 75, False, None),  # "resume at or below"
        (True, 74, False, None),
        (False, 80, False, None),  # in the band without having tripped: runs
        (True, None, False, None),  # unreadable never pauses (or it could never clear)
        (False, None, False, None),
    ],
)
def test_temperature_state(
    previous: bool, temp: int | None, paused: bool, reason: str | None
) -> None:
    assert temperature_state(previous, temp, 85, 75) == (paused, reason)


def test_temperature_state_names_the_gpu() -> None:
    assert temperature_state(False, 91, 85, 75, index=2) == (
        True,
        "paused: GPU 2 at 91 °C ≥ 85 °C (resumes at 75)",
    )


# --- disk ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "needed", "min_free", "expected"),
    [
        (int(3.1 * GB), 0, 20 * GB, "waiting: 3.1 GB free on /media < 20 GB"),
        (
            int(18 * GB),
            int(4.2 * GB),
            20 * GB,
            "waiting: 18 GB free on /media < 20 GB plus the 4.2 GB estimated output",
        ),
        (
            int(21 * GB),
            int(4.2 * GB),
            20 * GB,
            "waiting: 21 GB free on /media < 20 GB plus the 4.2 GB estimated output",
        ),
        (
            int(1 * GB),
            int(4.2 * GB),
            0,
            "waiting: 1 GB free on /media < the 4.2 GB estimated output",
        ),
        (int(0.25 * GB), 0, 1 * GB, "waiting: 250 MB free on /media < 1 GB"),
        (int(19.96 * GB), 0, 20 * GB, "waiting: 19.96 GB free on /media < 20 GB"),
        (25 * GB, int(4.2 * GB), 20 * GB, None),
        (int(24.2 * GB), int(4.2 * GB), 20 * GB, None),  # exactly the reserve left: fits
        (20 * GB, 0, 20 * GB, None),
        (0, 0, 0, None),
        (5 * GB, -1, 0, None),  # a nonsense estimate is treated as 0
    ],
)
def test_disk_reason(free: int, needed: int, min_free: int, expected: str | None) -> None:
    assert disk_reason(free, needed, min_free, "/media") == expected


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 MB"), (20 * GB, "20 GB"), (int(3.14 * GB), "3.1 GB"), (int(0.5 * GB), "500 MB")],
)
def test_format_gb(n: int, text: str) -> None:
    assert format_gb(n) == text


# --- load ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "mem", "limits", "tripped", "expected"),
    [
        (95.0, 40.0, LoadLimits(), False, None),  # no limits configured
        (95.0, 40.0, LoadLimits(max_cpu_percent=80), False, "waiting: CPU load 95% > 80%"),
        (80.0, 40.0, LoadLimits(max_cpu_percent=80), False, None),  # "above" the limit only
        (
            50.0,
            93.0,
            LoadLimits(max_cpu_percent=80, max_memory_percent=90),
            False,
            "waiting: memory use 93% > 90%",
        ),
        (
            99.0,
            93.0,
            LoadLimits(max_cpu_percent=80, max_memory_percent=90),
            False,
            "waiting: CPU load 99% > 80%; memory use 93% > 90%",
        ),
        (
            78.0,
            40.0,
            LoadLimits(max_cpu_percent=80),
            True,
            "waiting: CPU load 78%, not yet below 75% (limit 80%)",
        ),
        (75.0, 40.0, LoadLimits(max_cpu_percent=80), True, None),
        (78.0, 40.0, LoadLimits(max_cpu_percent=80), False, None),
        (None, 40.0, LoadLimits(max_cpu_percent=80), False, None),  # no CPU reading yet
        (
            3.0,
            40.0,
            LoadLimits(max_cpu_percent=4),
            True,
            "waiting: CPU load 3%, not yet below 2% (limit 4%)",
        ),
    ],
)
def test_load_reason(
    cpu: float | None, mem: float | None, limits: LoadLimits, tripped: bool, expected: str | None
) -> None:
    assert load_reason(cpu, mem, limits, tripped=tripped) == expected


# --- schedule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "windows", "inside"),
    [
        (time(3, 0), ("01:00-07:00",), True),
        (time(1, 0), ("01:00-07:00",), True),  # start included
        (time(7, 0), ("01:00-07:00",), False),  # end excluded
        (time(0, 59), ("01:00-07:00",), False),
        (time(12, 0), ("01:00-07:00",), False),
        (time(23, 0), ("22:00-06:00",), True),  # crosses midnight
        (time(0, 30), ("22:00-06:00",), True),
        (time(5, 59), ("22:00-06:00",), True),
        (time(6, 0), ("22:00-06:00",), False),
        (time(21, 59), ("22:00-06:00",), False),
        (time(14, 0), ("01:00-07:00", "13:00-15:00"), True),
        (time(10, 0), ("01:00-07:00", "13:00-15:00"), False),
        (time(10, 0), (), True),  # empty schedule: always
        (time(10, 0), ("00:00-00:00",), True),  # start == end: the whole day
    ],
)
def test_in_window(now: time, windows: tuple[str, ...], inside: bool) -> None:
    assert in_window(now, windows) is inside


@pytest.mark.parametrize(
    ("now", "windows", "expected"),
    [
        (datetime(2024, 5, 1, 12, 0), ("01:00-07:00",), datetime(2024, 5, 2, 1, 0)),
        (datetime(2024, 5, 1, 0, 30), ("01:00-07:00",), datetime(2024, 5, 1, 1, 0)),
        (
            datetime(2024, 5, 1, 1, 0),
            ("01:00-07:00",),
            datetime(2024, 5, 2, 1, 0),
        ),  # strictly after
        (datetime(2024, 5, 1, 12, 0), ("22:00-06:00",), datetime(2024, 5, 1, 22, 0)),
        (datetime(2024, 5, 1, 23, 0), ("22:00-06:00",), datetime(2024, 5, 2, 22, 0)),
        (
            datetime(2024, 5, 1, 10, 0),
            ("01:00-07:00", "13:00-15:00"),
            datetime(2024, 5, 1, 13, 0),
        ),
        (datetime(2024, 12, 31, 23, 0), ("01:00-07:00",), datetime(2025, 1, 1, 1, 0)),
    ],
)
def test_next_window_start(now: datetime, windows: tuple[str, ...], expected: datetime) -> None:
    assert next_window_start(now, windows) == expected


def test_next_window_start_of_empty_schedule_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty schedule"):
        next_window_start(datetime(2024, 5, 1), ())


@pytest.mark.parametrize(
    ("now", "windows", "expected"),
    [
        (
            datetime(2024, 5, 1, 12, 0),
            ("01:00-07:00",),
            "outside processing window 01:00–07:00 (next start 01:00)",
        ),
        (
            datetime(2024, 5, 1, 10, 0),
            ("01:00-07:00", "13:00-15:00"),
            "outside processing windows 01:00–07:00, 13:00–15:00 (next start 13:00)",
        ),
        (datetime(2024, 5, 1, 2, 0), ("01:00-07:00",), None),
        (datetime(2024, 5, 1, 2, 0), (), None),
    ],
)
def test_schedule_reason(now: datetime, windows: tuple[str, ...], expected: str | None) -> None:
    assert schedule_reason(now, windows) == expected


def test_parse_window() -> None:
    assert parse_window("22:00-06:00") == Window(time(22), time(6))
    assert str(parse_window("01:00-07:30")) == "01:00–07:30"
    for bad in ("01:00", "1am-7am", "25:00-07:00"):
        with pytest.raises(ValueError, match="not a window"):
            parse_window(bad)


# --- NVENC session cap -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "ours", "nvml", "expected"),
    [
        (None, 10, 10, None),
        (3, 2, None, None),
        (3, 3, None, "waiting: 3 NVENC sessions in use ≥ cap 3 (castui 3)"),
        (3, 1, 3, "waiting: 3 NVENC sessions in use ≥ cap 3 (castui 1, all processes 3)"),
        (3, 2, 1, None),  # NVML has not seen castui's newest encode yet: ours counts
        (3, 3, 1, "waiting: 3 NVENC sessions in use ≥ cap 3 (castui 3, all processes 1)"),
        (2, 0, 5, "waiting: 5 NVENC sessions in use ≥ cap 2 (castui 0, all processes 5)"),
    ],
)
def test_session_cap_reason(
    cap: int | None, ours: int, nvml: int | None, expected: str | None
) -> None:
    assert session_cap_reason(cap, ours, nvml) == expected
