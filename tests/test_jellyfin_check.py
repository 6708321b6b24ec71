"""``castui jellyfin check`` as a real process against the stand-in Jellyfin.

Exit codes: 0 healthy, 1 unreachable, 2 a settings problem (key refused, a library that
Jellyfin would silently drop). The output names what is wrong and never holds the API key.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import run_castui
from jellyfin_fixtures import jellyfin, jellyfin12  # noqa: F401
from jellyfin_standin import StandinJellyfin

pytestmark = pytest.mark.timeout(120)


def write_settings(home: Path, server: StandinJellyfin, key: str, **extra: Any) -> Path:
    movies, shows = home / "media" / "movies", home / "media" / "shows"
    movies.mkdir(parents=True, exist_ok=True)
    shows.mkdir(parents=True, exist_ok=True)
    key_file = home / "jellyfin.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    data: dict[str, Any] = {
        "database": str(home / "state" / "castui.db"),
        "libraries": [
            {"name": "Movies", "path": str(movies)},
            {"name": "Shows", "path": str(shows)},
        ],
        "jellyfin": {"url": server.url, "api_key_file": str(key_file), **extra},
    }
    path = home / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def check(home: Path, settings: Path) -> tuple[int, str]:
    done = run_castui("jellyfin", "check", "--config", str(settings), home=home, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_healthy_on_12_0(jellyfin12: StandinJellyfin, tmp_path: Path) -> None:  # noqa: F811
    settings = write_settings(tmp_path, jellyfin12, jellyfin12.api_key)
    jellyfin12.add_library("Movies", [str(tmp_path / "media" / "movies")])
    jellyfin12.add_library("Shows", [str(tmp_path / "media" / "shows")], "tvshows")
    code, out = check(tmp_path, settings)
    assert code == 0, out
    assert "reachable: standin (Jellyfin 12.0.0)" in out
    assert "API key accepted" in out and "may list libraries: Movies, Shows" in out
    assert f"library Shows: {tmp_path}/media/shows is in Jellyfin's Shows" in out
    assert out.rstrip().endswith("ok")
    assert jellyfin12.api_key not in out


def test_a_library_outside_every_jellyfin_library_is_named(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = write_settings(tmp_path, jellyfin, jellyfin.api_key)
    jellyfin.add_library("Movies", [str(tmp_path / "media" / "movies")])
    code, out = check(tmp_path, settings)
    assert code == 2, out
    assert f"FAIL library Shows: {tmp_path}/media/shows is in no Jellyfin library" in out
    assert "silently drop" in out and "path_map" in out
    assert "library Movies" in out and "1 problem(s)" in out


def test_path_map_makes_a_containerised_jellyfin_healthy(
    jellyfin: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    settings = write_settings(tmp_path, jellyfin, jellyfin.api_key, path_map={str(media): "/data"})
    jellyfin.add_library("Movies", ["/data/movies"])
    jellyfin.add_library("Shows", ["/data/shows"])
    code, out = check(tmp_path, settings)
    assert code == 0, out
    assert f"{media}/movies -> /data/movies is in Jellyfin's Movies" in out


def test_a_wrong_key_exits_2_and_is_never_printed(
    jellyfin12: StandinJellyfin,  # noqa: F811
    tmp_path: Path,
) -> None:
    wrong = uuid.uuid4().hex
    settings = write_settings(tmp_path, jellyfin12, wrong)
    code, out = check(tmp_path, settings)
    assert code == 2, out
    assert "reachable: standin (Jellyfin 12.0.0)" in out  # reachable, but:
    assert "API key refused" in out and "answered 401" in out
    assert wrong not in out and jellyfin12.api_key not in out


def test_unreachable_exits_1(jellyfin: StandinJellyfin, tmp_path: Path) -> None:  # noqa: F811
    settings = write_settings(tmp_path, jellyfin, jellyfin.api_key)
    jellyfin.down()
    code, out = check(tmp_path, settings)
    assert code == 1, out
    assert "unreachable: cannot reach Jellyfin" in out
    assert jellyfin.api_key not in out


def test_not_configured_says_how(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"database": str(tmp_path / "castui.db")}))
    code, out = check(tmp_path, settings)
    assert code == 2 and "jellyfin is not configured" in out, out
    assert "Traceback" not in out
