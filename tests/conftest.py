from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from media import make_samples


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real tiny media files of every source shape (made once per test session)."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed: .ci/run installs it (apt-get install ffmpeg)")
    return make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME/XDG dirs at a temp dir so a developer's real settings are never read."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.delenv("CASTUI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return home
