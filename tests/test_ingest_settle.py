"""The settle tracker, deterministically: fake clock, fake stats."""

from __future__ import annotations

import pytest

from castui_core.ingest.settle import FileStat, SettleTracker, Verdict


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _st(size: int, mtime: int = 1) -> FileStat:
    return FileStat(size, mtime, 7)


def test_growing_file_is_rechecked_until_unchanged_for_the_window() -> None:
    clock = FakeClock()
    tracker = SettleTracker(30, clock=clock)
    tracker.nominate("/lib/a.mkv", "L", _st(10))
    assert tracker.next_deadline() == 1030
    clock.now = 1029.9
    assert tracker.due() == []
    clock.now = 1030
    assert tracker.due() == ["/lib/a.mkv"]
    # It grew since the event: not settled, not failed, looked at again one window later.
    assert tracker.observe("/lib/a.mkv", _st(20, 2)) == (Verdict.WAITING, None)
    assert tracker.next_deadline() == 1060
    clock.now = 1060
    assert tracker.due() == ["/lib/a.mkv"]
    verdict, settled = tracker.observe("/lib/a.mkv", _st(20, 2))
    assert verdict is Verdict.SETTLED
    assert settled is not None and settled.stat == _st(20, 2) and settled.library == "L"
    assert len(tracker) == 0 and tracker.next_deadline() is None


def test_event_stat_lets_the_last_write_settle_after_one_window() -> None:
    clock = FakeClock()
    tracker = SettleTracker(5, clock=clock)
    for i in range(100):  # a hundred rapid events on one path
        clock.now += 0.01
        tracker.nominate("/lib/a.mkv", "L", _st(i + 1, i + 1))
    last_write = clock.now
    clock.now = last_write + 5
    assert tracker.due() == ["/lib/a.mkv"]
    verdict, _ = tracker.observe("/lib/a.mkv", _st(100, 100))
    assert verdict is Verdict.SETTLED
    assert tracker.due() == []


def test_unknown_first_stat_needs_a_second_look() -> None:
    clock = FakeClock()
    tracker = SettleTracker(1, clock=clock)
    tracker.nominate("/lib/a.mkv", "L")
    clock.now += 1
    results = tracker.check_due(lambda p: _st(5))
    assert [(p, v) for p, v, _ in results] == [("/lib/a.mkv", Verdict.WAITING)]
    clock.now += 1
    results = tracker.check_due(lambda p: _st(5))
    assert [(p, v) for p, v, _ in results] == [("/lib/a.mkv", Verdict.SETTLED)]


def test_vanished_and_forgotten_paths() -> None:
    clock = FakeClock()
    tracker = SettleTracker(1, clock=clock)
    tracker.nominate("/lib/a.mkv", "L", _st(1))
    tracker.nominate("/lib/d/b.mkv", "L", _st(1))
    tracker.nominate("/lib/d/c.mkv", "L", _st(1))
    assert sorted(tracker.forget_under("/lib/d")) == ["/lib/d/b.mkv", "/lib/d/c.mkv"]
    clock.now += 1
    assert tracker.due() == ["/lib/a.mkv"]
    assert tracker.observe("/lib/a.mkv", None) == (Verdict.GONE, None)
    assert tracker.forget("/lib/a.mkv") is False
    assert tracker.next_deadline() is None


def test_retry_later_counts_retries_and_waits_the_given_delay() -> None:
    clock = FakeClock()
    tracker = SettleTracker(1, clock=clock)
    tracker.nominate("/lib/a.mkv", "L", _st(1))
    clock.now += 1
    [(_, verdict, settled)] = tracker.check_due(lambda p: _st(1))
    assert verdict is Verdict.SETTLED and settled is not None and settled.retries == 0
    tracker.retry_later(settled, 10)
    clock.now += 9.9
    assert tracker.due() == []
    clock.now += 0.1
    [(_, verdict, again)] = tracker.check_due(lambda p: _st(1))
    assert verdict is Verdict.SETTLED and again is not None and again.retries == 1


def test_negative_window_is_refused() -> None:
    with pytest.raises(ValueError):
        SettleTracker(-1)
