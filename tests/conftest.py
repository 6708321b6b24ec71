from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from media import make_samples
from redis_server import redis_server, redis_url  # noqa: F401  (fixtures for every test)


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


def pytest_unconfigure(config: pytest.Config) -> None:
    """Fail (instead of hanging) when a test leaves a non-daemon thread behind.

    An unclosed store keeps aiosqlite's worker thread alive, and the interpreter then waits
    for it forever at exit: CI would sit until its time limit with every test green.
    """
    import os
    import sys
    import threading
    import time

    leaked = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    deadline = time.monotonic() + 5  # closing threads get a moment, all together
    for thread in leaked:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    leaked = [t for t in leaked if t.is_alive()]
    if leaked:
        names = ", ".join(sorted({t.name for t in leaked}))
        sys.stderr.write(
            f"\nFAILED: {len(leaked)} non-daemon thread(s) left running after the tests"
            f" ({names}); something was not closed, and the process would never exit.\n"
        )
        sys.stderr.flush()
        os._exit(3)
