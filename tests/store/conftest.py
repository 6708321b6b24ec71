"""Fixtures for the store tests: a temp database, an injectable clock, real worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_helpers import FakeClock, Worker

from castui_core.store import Store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "castui.sqlite3"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with Store.open(
        db_path, clock=clock, lease_seconds=60, max_attempts=3, backoff_base_s=10
    ) as s:
        yield s


@pytest.fixture
def spawn() -> Iterator[type[Worker]]:
    started: list[Worker] = []

    class _Tracked(Worker):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield _Tracked
    for w in started:
        w.close()
