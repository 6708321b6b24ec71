"""Pytest fixtures that start the stand-in Jellyfin (tests/jellyfin_standin.py).

Import the fixtures in a test module that uses them:
``from jellyfin_fixtures import jellyfin, jellyfin12  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jellyfin_standin import StandinJellyfin


@pytest.fixture
def jellyfin() -> Iterator[StandinJellyfin]:
    """A stand-in Jellyfin 10.10 on 127.0.0.1 (legacy auth forms still accepted), with a
    short monitor delay; add libraries with ``add_library`` and files, then ``scan()``."""
    server = StandinJellyfin(version="10.10.7", monitor_delay_s=0.3).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jellyfin12() -> Iterator[StandinJellyfin]:
    """A stand-in Jellyfin 12.0: only ``Authorization: MediaBrowser Token=`` is accepted."""
    server = StandinJellyfin(version="12.0.0", monitor_delay_s=0.3).start()
    try:
        yield server
    finally:
        server.stop()
