"""Fixtures for the dashboard tests (helpers live in tui_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tui_helpers import write_settings

from castui_core.settings import Settings, load_settings


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    return write_settings(tmp_path)


@pytest.fixture
def settings(settings_file: Path) -> Settings:
    return load_settings(settings_file)
