"""The container image: what the Dockerfile, compose.yaml and the guide promise, and the image
itself built and run (``CASTUI_CONTAINER_TEST=1``: minutes, root, buildah and debootstrap).

The fast tests read the files as an operator's tools would (the Dockerfile's instructions,
compose.yaml as YAML, the guide's ``sh container`` blocks) and check them against each other
and against castui's own settings model, so a changed port, path or grace period in one place
cannot silently disagree with the others. The slow one runs scripts/container-smoke, which
builds the unchanged Dockerfile and runs castui inside it.
"""

from __future__ import annotations

import http.server
import importlib.util
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from castui_core.settings import ServiceSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
GUIDE = ROOT / "docs" / "operations.md"
SMOKE = ROOT / "scripts" / "container-smoke"
IMAGE_SETTINGS = ROOT / "contrib" / "container" / "settings.yaml"
HEALTHCHECK = ROOT / "contrib" / "container" / "healthcheck.py"


# -- reading the files -----------------------------------------------------------------


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` per instruction: comments dropped, continuations joined."""
    joined: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result = []
    for line in joined:
        keyword, _, rest = line.strip().partition(" ")
        result.append((keyword.upper(), " ".join(rest.split())))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, from its FROM on."""
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def final(keyword: str) -> list[str]:
    return [args for kw, args in final_stage() if kw == keyword]


def arg_defaults(stage: list[tuple[str, str]]) -> dict[str, str]:
    found = {}
    for keyword, args in stage:
        if keyword == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            found[name] = value.strip('"')
    return found


def env_of_final() -> dict[str, str]:
    found: dict[str, str] = {}
    for args in final("ENV"):
        for item in shlex.split(args):
            name, _, value = item.partition("=")
            found[name] = value
    return found


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    found = compose()["services"][name]
    assert isinstance(found, dict)
    return found


def seconds(duration: str) -> float:
    """A compose duration (``90s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def guide_commands() -> list[str]:
    """Each command of the guide's ``sh container`` blocks (continuations joined)."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh container\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


def mounts(argv: list[str]) -> dict[str, str]:
    """``-v SOURCE:TARGET[:ro]`` of a ``docker run`` command, by target."""
    found = {}
    for flag, value in itertools.pairwise(argv):
        if flag in ("-v", "--volume"):
            source, target = value.split(":")[:2]
            found[target] = source
    return found


def smoke_module() -> ModuleType:
    """scripts/container-smoke as a module (it has no .py suffix, so no plain import)."""
    spec = importlib.util.spec_from_loader(
        "container_smoke", SourceFileLoader("container_smoke", str(SMOKE))
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_grace() -> float:
    return ServiceSettings().shutdown_grace_s


# -- the Dockerfile ---------------------------------------------------------------------


def test_the_image_builds_from_debian_bookworm_with_a_wheel_builder_stage() -> None:
    froms = [args for kw, args in instructions() if kw == "FROM"]
    assert froms[0].split()[0].startswith("debian:bookworm"), froms
    builder = [s for s in stages() if " AS builder" in s[0][1]]
    assert builder, "a builder stage makes the wheels"
    assert any(kw == "RUN" and "pip wheel" in args for kw, args in builder[0])
    # The final stage does not start from the builder: no compiler or build venv in it.
    assert "builder" not in final_stage()[0][1]
    install = [args for args in final("RUN") if "pip install" in args]
    assert install and "--no-index" in install[0] and "python3 -m venv /opt/castui" in install[0]


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    """.dockerignore is an allow-list: a COPY of a path it does not let in fails the build
    elsewhere, and anything more (a .venv, a database) would bloat or leak into the context."""
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    assert "*" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    sources = []
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
    for entry in allowed:
        assert any(s == entry or s.startswith(entry + "/") for s in sources), entry


def test_debians_ffmpeg_without_recommends() -> None:
    apt = [args for args in final("RUN") if "apt-get install" in args]
    assert apt, "the final stage installs packages with apt"
    assert "--no-install-recommends" in apt[0]
    assert re.search(r"\bffmpeg\b", apt[0])


def test_the_apt_mirror_is_a_build_argument_that_defaults_to_debians_own_sources() -> None:
    base = stages()[0]
    assert arg_defaults(base).get("APT_MIRROR") == ""
    run = next(args for kw, args in base if kw == "RUN")
    # Sources are only rewritten when the argument is given.
    assert 'if [ -n "$APT_MIRROR" ]' in run
    # No mirror's host name is written into the project's container files.
    for path in (DOCKERFILE, COMPOSE, SMOKE):
        assert "deb.debian.org" not in path.read_text(encoding="utf-8"), path


def test_it_runs_as_a_non_root_user_with_uid_1000() -> None:
    (user,) = final("USER")
    defaults = arg_defaults(final_stage())
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], user)
    assert resolved == "1000:1000"
    assert "useradd --uid" in " ".join(final("RUN"))


def test_stop_signal_healthcheck_volume_and_nvidia() -> None:
    assert final("STOPSIGNAL") == ["SIGTERM"]
    (health,) = final("HEALTHCHECK")
    command = health.split(" CMD ", 1)[1]
    assert command.startswith('["/opt/castui/bin/python"'), "exec form, the venv's Python"
    assert "/opt/castui/healthcheck.py" in command
    copies = " ".join(final("COPY"))
    assert "contrib/container/healthcheck.py /opt/castui/healthcheck.py" in copies
    assert final("VOLUME") == ['["/data"]']
    env = env_of_final()
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,video,utility"
    assert env["CASTUI_CONFIG"] == "/config/settings.yaml"
    assert "contrib/container/settings.yaml /config/settings.yaml" in copies


def test_the_images_settings_put_the_database_on_the_volume_and_serve_healthz() -> None:
    """The default settings the image ships are valid castui settings (castui's own loader),
    keep state on /data, read /media, and turn on the listener the HEALTHCHECK asks."""
    settings = load_settings(IMAGE_SETTINGS)
    assert settings.database.parent == Path("/data")
    assert [lib.path for lib in settings.libraries] == [Path("/media")]
    assert settings.metrics.enabled
    url = env_of_final()["CASTUI_HEALTHCHECK_URL"]
    assert url == f"http://{settings.metrics.listen}/healthz"


# -- the HEALTHCHECK command ------------------------------------------------------------


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"status": "fail"}' if self.status != 200 else b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[str, type[_Answer]]]:
    handler = type("Answer", (_Answer,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz", handler
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CASTUI_HEALTHCHECK_URL": url}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_healthcheck_passes_on_200_and_fails_on_503_or_silence(
    health_server: tuple[str, type[_Answer]],
) -> None:
    url, handler = health_server
    ok = _healthcheck(url)
    assert ok.returncode == 0 and '"ok"' in ok.stdout
    handler.status = 503
    stuck = _healthcheck(url)
    assert stuck.returncode == 1 and '"fail"' in stuck.stdout
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    gone = _healthcheck(f"http://127.0.0.1:{port}/nothing-here")  # 503 again, other path
    assert gone.returncode == 1
    for done in (stuck, gone):
        assert "Traceback" not in done.stdout + done.stderr


def test_the_healthcheck_says_why_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _healthcheck(f"http://127.0.0.1:{port}/healthz")
    assert done.returncode == 1
    assert "metrics.enabled" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# -- compose.yaml -----------------------------------------------------------------------


def test_compose_runs_castui_with_a_grace_period_no_shorter_than_shutdown_grace() -> None:
    castui = service("castui")
    assert "profiles" not in castui, "castui runs without a profile"
    assert castui["stop_signal"] == "SIGTERM"
    grace = seconds(str(castui["stop_grace_period"]))
    assert grace >= default_grace()
    assert castui["user"] == "1000:1000"
    volumes = [str(v) for v in castui["volumes"]]
    assert "castui-data:/data" in volumes
    assert any(v.endswith(":/media") for v in volumes)
    text = COMPOSE.read_text(encoding="utf-8")
    for line in ("# deploy:", "#         - driver: nvidia", "#           count: all"):
        assert line in text, f"the GPU reservation, commented: {line}"
    assert "queue: {backend: redis" in text  # how castui is pointed at the redis profile


def test_the_jellyfin_profile_shares_the_media_mount_at_the_same_path() -> None:
    jellyfin = service("jellyfin")
    assert jellyfin["profiles"] == ["jellyfin"]
    assert str(jellyfin["image"]).split(":")[0] == "jellyfin/jellyfin"
    media = {str(v) for v in service("castui")["volumes"] if str(v).endswith(":/media")}
    assert media and media <= {str(v) for v in jellyfin["volumes"]}


def test_the_redis_profile_keeps_acknowledged_changes() -> None:
    redis = service("redis")
    assert redis["profiles"] == ["redis"]
    assert redis["image"] == "redis:7"
    command = " ".join(str(c) for c in redis["command"])
    for option in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert option in command
    assert "redis-data:/data" in [str(v) for v in redis["volumes"]]
    assert set(compose()["volumes"]) >= {"castui-data", "redis-data"}


def _redis_profile_shell(folder: Path) -> list[str]:
    """The redis service's command as its container would run it ($$ is compose's escape of
    $), moved onto a Unix socket in ``folder`` (no TCP port) with its AOF there too."""
    command = [str(c) for c in service("redis")["command"]]
    assert command[:2] == ["sh", "-c"]
    script = command[2].replace("$$", "$")
    return ["sh", "-c", f"{script} --port 0 --unixsocket {folder}/redis.sock --dir {folder}"]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_the_redis_profiles_command_starts_a_redis_castui_accepts(tmp_path: Path) -> None:
    """Debian's real redis-server runs the profile's command: it needs a password, and has
    the three settings castui's Redis queue refuses to run without."""
    import redis

    env = {**os.environ, "REDIS_PASSWORD": "s3cret pass"}
    proc = subprocess.Popen(
        _redis_profile_shell(tmp_path), env=env, stdout=subprocess.PIPE, text=True
    )
    ready = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ready to accept connections" in line.lower():
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert ready.wait(20), "redis-server did not start"
        socket_path = str(tmp_path / "redis.sock")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=socket_path).ping()
        client = redis.Redis(unix_socket_path=socket_path, password="s3cret pass")
        config = {
            **client.config_get("appendonly"),
            **client.config_get("appendfsync"),
            **client.config_get("maxmemory-policy"),
        }
        assert config == {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory-policy": "noeviction",
        }
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_redis_profile_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_PASSWORD": ""}
    done = subprocess.run(
        _redis_profile_shell(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 1
    assert "set REDIS_PASSWORD" in done.stdout


# -- the guide -------------------------------------------------------------------------


def test_the_guides_container_commands_match_the_image_and_compose() -> None:
    commands = guide_commands()
    castui = service("castui")
    runs = [shlex.split(c) for c in commands if c.startswith("docker run -d ")]
    assert runs, "the guide shows how to run the image"
    image_tags = set()
    for argv in runs:
        volumes = mounts(argv)
        assert volumes.get("/data") == "castui-data", argv
        assert "/media" in volumes, argv
        timeout = float(argv[argv.index("--stop-timeout") + 1])
        assert timeout >= default_grace()
        assert timeout == seconds(str(castui["stop_grace_period"]))
        image_tags.add(argv[-1])
    assert str(castui["image"]) in image_tags  # compose and the guide run the same tag
    for command in commands:
        argv = shlex.split(command.split(" && ")[0])
        if argv[:2] == ["docker", "stop"]:
            assert float(argv[argv.index("-t") + 1]) >= default_grace()
        if "--profile" in argv:
            profile = argv[argv.index("--profile") + 1]
            assert [profile] == service(profile)["profiles"]
        if argv[:2] == ["docker", "run"] and "--rm" in argv:
            assert mounts(argv).get("/data") == "castui-data", argv
    # Every castui subcommand the guide runs in the container exists.
    for command in commands:
        argv = shlex.split(command)
        if argv[:3] == ["docker", "exec", "castui"] and argv[3] == "castui":
            sub = argv[4]
            done = subprocess.run(
                [sys.executable, "-m", "castui", sub, "--help"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, f"castui {sub}: {done.stderr}"
    assert "nox -s container" in GUIDE.read_text(encoding="utf-8")


# -- the smoke script's pure parts ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "deb http://m.example/debian bookworm main\n",
            [("http://m.example/debian", ["bookworm"])],
        ),
        (
            "# deb http://old/ bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m/d"
            " bookworm-security main # trailing\ndeb-src http://m/d bookworm main\n",
            [("http://m/d", ["bookworm-security"])],
        ),
        ("deb cdrom:[Debian]/ bookworm main\n", [("cdrom:[Debian]/", ["bookworm"])]),
    ],
)
def test_one_line_sources(text: str, expected: list[tuple[str, list[str]]]) -> None:
    assert smoke_module().one_line_sources(text) == expected


def test_deb822_sources_and_the_mirrors_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.example/archive\nURIs: http://m.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://s.example/debian-security/\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.example/\nSuites: bookworm\n"
    )
    (etc / "sources.list.d" / "other.sources").write_text(
        "Types: deb\nURIs: https://vendor.example/apt\nSuites: cloud-sdk-bookworm\n"
    )
    smoke = smoke_module()
    monkeypatch.delenv("APT_MIRROR", raising=False)
    monkeypatch.delenv("APT_SECURITY_MIRROR", raising=False)
    assert smoke.apt_mirrors(etc) == ("http://m.example/debian", "http://s.example/debian-security")
    (etc / "sources.list.d" / "debian.sources").unlink()
    with pytest.raises(smoke.CannotRun, match="APT_MIRROR"):
        smoke.apt_mirrors(etc)


def test_the_base_image_name_is_the_dockerfiles_first_from_fully_qualified() -> None:
    assert smoke_module().base_image_name() == "docker.io/library/debian:bookworm-slim"


# -- the image itself -----------------------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("CASTUI_CONTAINER_TEST") != "1",
    reason="builds the image (minutes, root, buildah, debootstrap): CASTUI_CONTAINER_TEST=1",
)
@pytest.mark.timeout(1800)
def test_the_image_builds_and_runs_castui() -> None:
    done = subprocess.run(
        [sys.executable, str(SMOKE)], capture_output=True, text=True, timeout=1700, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "container-smoke: all checks passed" in output
    assert "SMOKE: castui exited 0 after SIGTERM" in output
    assert re.search(r"^summary: .* 0 failed", output, re.MULTILINE)
