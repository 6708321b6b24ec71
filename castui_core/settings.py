"""Settings: where they are looked up, what they mean, and errors a person can act on.

Lookup order (first hit wins): ``--config PATH``, ``$CASTUI_CONFIG``, ``./settings.yaml``,
the user config dir (``~/.config/castui/settings.yaml``), then the built-in defaults. An
explicitly named file that does not exist is an error rather than a silent fallback, so a typo
in a service unit never makes castui run on defaults.

Every key is validated by pydantic with ``extra="forbid"``; errors are turned into one line per
problem naming the field path, the bad value and what is allowed (``ConfigError.problems``).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from castui_core.errors import ConfigError
from castui_core.profiles import (
    BUILTIN_PROFILES,
    DEFAULT_PROFILE,
    ProblemList,
    Profile,
    resolve_profiles,
)

ENV_CONFIG = "CASTUI_CONFIG"
APP_NAME = "castui"

#: File extensions treated as media when walking a library (lower case, no dot).
DEFAULT_EXTENSIONS: tuple[str, ...] = (
    "mkv", "mp4", "m4v", "mov", "avi", "wmv", "asf", "flv", "webm", "ts", "m2ts", "mts",
    "mpg", "mpeg", "vob", "ogm", "ogv", "3gp", "divx", "rm", "rmvb",
)  # fmt: skip

#: Names never picked up: downloads in progress, temp files, hidden files, castui's own
#: ``.original`` backups and sample clips. A pattern ending in ``/`` matches a directory.
DEFAULT_IGNORE: tuple[str, ...] = (
    "*.part", "*.partial", "*.!qB", "*.tmp", "*.crdownload", ".*", "*.original.*", "Sample/",
)  # fmt: skip


def user_config_file() -> Path:
    return platformdirs.user_config_path(APP_NAME) / "settings.yaml"


def default_database() -> Path:
    return platformdirs.user_data_path(APP_NAME) / "castui.db"


def default_library_path() -> Path:
    return Path(platformdirs.user_videos_dir())


def _absolute(value: Path) -> Path:
    """``~`` expanded; relative paths refused (a service's working directory is arbitrary)."""
    value = value.expanduser()
    if not value.is_absolute():
        raise ValueError("must be an absolute path")
    return value


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


class WatchMode(StrEnum):
    """How a library notices new files (``true`` means ``auto``, ``false`` means ``off``)."""

    AUTO = "auto"  # inotify events on local disks, polling on network shares
    EVENTS = "events"
    POLL = "poll"
    OFF = "off"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class LibrarySettings(_Strict):
    """One media library (a folder tree Jellyfin serves)."""

    name: str = Field(min_length=1)
    path: AbsolutePath
    profile: str = DEFAULT_PROFILE
    watch: WatchMode = WatchMode.AUTO
    delete_source: bool = Field(
        False, description="Remove the original after its replacement is in place and verified."
    )
    output_dir: AbsolutePath | None = Field(
        None, description="Write outputs to a mirrored tree here instead of next to the source."
    )
    follow_symlinks: bool = False
    jellyfin: bool | None = Field(
        None,
        description="Tell Jellyfin about this library's changes (default: yes when a jellyfin"
        " server is configured).",
    )
    layout: Literal["replace", "version", "mirror"] = Field(
        "replace",
        description="replace: the output takes the source's place and the original moves to"
        " <library>/.castui/originals; version: '<stem> - <label>.mp4' beside the source;"
        " mirror: a separate tree under output_dir. Default: mirror when output_dir is set.",
    )
    originals: Literal["archive", "delete"] = Field(
        "archive",
        description="What happens to a replaced original: archive (restorable) or delete (after"
        " validation). Default: delete when the old delete_source: true is set.",
    )
    version_label: str | None = Field(
        None,
        min_length=1,
        description="Label of the version layout's files (default: from the profile name).",
    )
    version_fallback: Literal["replace", "skip"] = Field(
        "replace",
        description="A file whose folder Jellyfin would not group as versions: replace, or skip.",
    )
    originals_keep_days: float | None = Field(
        None, gt=0, description="Purge archived originals older than this (default: never)."
    )

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        """Settings files written before layouts keep their meaning.

        ``output_dir`` alone meant a mirrored tree, ``delete_source: true`` meant the original
        goes once the output is verified: both still do, so an upgrade changes nothing for
        them. ``delete_source`` stays readable (and is derived from ``originals``) because
        older code paths and the Jellyfin notification ask it.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "layout" not in data:
            data["layout"] = "mirror" if data.get("output_dir") is not None else "replace"
        old = data.get("delete_source")
        if "originals" not in data:
            data["originals"] = "delete" if old is True else "archive"
        elif old is True and data["originals"] != "delete":
            raise ValueError(
                "delete_source: true contradicts originals: archive; keep only originals:"
            )
        data["delete_source"] = data["originals"] == "delete"
        if data["layout"] == "mirror" and data.get("output_dir") is None:
            raise ValueError("layout: mirror needs output_dir: (the folder of the mirrored tree)")
        if data["layout"] != "mirror" and data.get("output_dir") is not None:
            raise ValueError(
                f"output_dir is only used by layout: mirror (this library has layout:"
                f" {data['layout']}); remove output_dir or set layout: mirror"
            )
        return data

    @field_validator("watch", mode="before")
    @classmethod
    def _watch_bool(cls, value: Any) -> Any:
        if value is True:
            return WatchMode.AUTO
        if value is False or value is None:
            return WatchMode.OFF
        if isinstance(value, str) and value.lower() in {"true", "yes", "on"}:
            return WatchMode.AUTO
        if isinstance(value, str) and value.lower() in {"false", "no"}:
            return WatchMode.OFF
        return value


class OperationalSettings(_Strict):
    """How much work runs at once."""

    max_concurrent_jobs: int = Field(1, ge=1, le=16)
    encoder: Literal["auto", "nvenc", "cpu"] = Field(
        "auto", description="auto: NVENC when a working NVIDIA encoder is found, else CPU."
    )
    min_free_gb: float = Field(
        5.0, ge=0, description="Free space to keep on the destination filesystem."
    )
    stall_timeout_s: float = Field(
        120.0, gt=0, description="An encode with no progress for this long is stopped."
    )
    job_timeout_s: float | None = Field(
        None, gt=0, description="Stop any single encode that runs longer (default: none)."
    )


class ScanSettings(_Strict):
    """How libraries are walked and probed."""

    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    probe_workers: int | None = Field(
        None, ge=1, le=32, description="Probe processes; default: number of CPUs (at most 4)."
    )
    probe_timeout_s: float = Field(
        30.0, gt=0, le=600, description="A file whose probe takes longer is rejected."
    )
    probe_idle_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="The engine stops its probe processes after this long without a probe"
        " (each holds ~40 MB) and starts them again when a file needs probing.",
    )
    settle_seconds: float = Field(
        30.0,
        ge=0,
        description="A new or changed file is queued once its size and mtime were stable"
        " this long (so half-copied files are never picked up).",
    )
    rescan_interval_s: float = Field(
        6 * 3600.0, ge=60, description="Periodic reconciliation scan of every library."
    )
    poll_interval_s: float = Field(
        60.0, ge=1, description="How often a polled library (network share) is checked."
    )

    @field_validator("extensions")
    @classmethod
    def _normalize_ext(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(dict.fromkeys(v.strip().lower().lstrip(".") for v in value))
        if any(not v for v in cleaned):
            raise ValueError("extensions must not be empty strings")
        return cleaned


class GuardrailSettings(_Strict):
    """Limits under which no new job starts (and, for the GPU, running encodes pause)."""

    gpu_max_temp_c: int = Field(85, ge=40, le=110, description="Pause above this.")
    gpu_resume_temp_c: int = Field(75, ge=30, le=105, description="Resume at or below this.")
    nvenc_max_sessions: int | None = Field(
        None, ge=1, le=64, description="Cap on concurrent NVENC encodes (consumer GPUs: 3-8)."
    )
    max_cpu_percent: float | None = Field(
        None, gt=0, le=100, description="No new job while system CPU load is above this."
    )
    max_memory_percent: float | None = Field(
        None, gt=0, le=100, description="No new job while memory use is above this."
    )
    schedule: tuple[str, ...] = Field(
        (),
        description="Processing windows like '01:00-07:00' (local time; may cross midnight)."
        " Empty: always.",
    )
    outside_schedule: Literal["finish", "pause"] = Field(
        "finish", description="Running jobs when a window closes: finish them, or pause them."
    )
    sample_interval_s: float = Field(5.0, gt=0, le=300)

    @field_validator("schedule")
    @classmethod
    def _windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for window in value:
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", window):
                raise ValueError(f"{window!r} is not a window like '01:00-07:00'")
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> GuardrailSettings:
        if self.gpu_resume_temp_c >= self.gpu_max_temp_c:
            raise ProblemList(
                [("gpu_resume_temp_c", f"must be below gpu_max_temp_c ({self.gpu_max_temp_c})")]
            )
        return self


class MetricsSettings(_Strict):
    """Optional Prometheus endpoint (loopback by default)."""

    enabled: bool = False
    listen: str = Field("127.0.0.1:9108", pattern=r"^[^\s:]+:\d{1,5}$")


NotifyKind = Literal["dead", "guardrail_held", "jellyfin_unreachable", "daily_summary"]


class NotifySettings(_Strict):
    """Notifications through Apprise (``urls`` carry tokens: never logged, never shown)."""

    urls: tuple[SecretStr, ...] = Field(
        (), description="Apprise URLs (e.g. ntfys://ntfy.sh/topic, tgram://bot/chat)."
    )
    urls_file: AbsolutePath | None = Field(
        None, description="A file with one Apprise URL per line (keeps tokens out of settings)."
    )
    on: tuple[NotifyKind, ...] = ("dead", "guardrail_held", "jellyfin_unreachable")
    guardrail_held_after_s: float = Field(
        3600.0, ge=1, description="Notify when a guardrail has held work back this long."
    )
    daily_summary_at: str | None = Field(
        None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time."
    )
    timeout_s: float = Field(30.0, gt=0, description="Give up one delivery try after this.")

    def url_list(self) -> list[str]:
        """The URLs, from ``urls`` and ``urls_file`` (read when called: a rotated token works
        after a reload)."""
        found = [u.get_secret_value() for u in self.urls]
        if self.urls_file is not None:
            try:
                text = self.urls_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"notify.urls_file: cannot read {self.urls_file}: {exc.strerror}"
                ) from exc
            found += [ln.strip() for ln in text.splitlines() if ln.strip() and ln[0] != "#"]
        return found


class ServiceSettings(_Strict):
    """Headless service behaviour."""

    shutdown_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM, let running jobs finish this long, then requeue."
    )
    log_retention_days: int = Field(14, ge=1, le=3650)
    lease_seconds: float = Field(
        60.0,
        ge=2,
        le=3600,
        description="A job whose worker stopped heartbeating (crash, kill -9) is handed to"
        " another worker after this long.",
    )


ENV_JELLYFIN_KEY = "CASTUI_JELLYFIN_API_KEY"


def _read_key(api_key: SecretStr | None, api_key_file: Path | None, env: str, where: str) -> str:
    """An API key from the settings, its file (read now: a rotated file is picked up on
    reload) or the environment, in that order; "" when none is set. ``where`` prefixes the
    message of a file that cannot be read ("jellyfin.", "arr sonarr: ")."""
    if api_key is not None:
        return api_key.get_secret_value().strip()
    if api_key_file is not None:
        try:
            return api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{where}api_key_file {api_key_file} cannot be read"
                f" ({exc.strerror}); check the path and that castui's user may read it"
            ) from exc
    return os.environ.get(env, "").strip()


class JellyfinSettings(_Strict):
    """The Jellyfin server castui tells about every change and asks about direct play.

    The API key comes from ``api_key``, ``api_key_file`` or ``$CASTUI_JELLYFIN_API_KEY`` (in
    that order). It is a ``SecretStr`` so no repr, log line or error shows it; it is sent only
    in the Authorization header, never in a URL, and never written to the database.
    """

    url: str = Field(
        pattern=r"^https?://[^\s?#@]+$",
        description="Jellyfin's address with any base path, e.g. http://127.0.0.1:8096 (no"
        " query string or user info: the key never goes in a URL).",
    )
    api_key: SecretStr | None = None
    api_key_file: AbsolutePath | None = None
    path_map: dict[str, str] = Field(
        default_factory=dict,
        description="castui path prefix -> the same folder as Jellyfin sees it (component-wise,"
        " longest prefix first), for Jellyfin in a container or on another machine.",
    )
    user: str | None = Field(None, description="Jellyfin user asked for PlaybackInfo.")
    verify_tls: bool = True
    timeout_s: float = Field(10.0, gt=0, le=300)
    batch_window_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="Changes are gathered this long and sent in one request per batch.",
    )
    confirm: bool = Field(
        True,
        description="After each swap, ask Jellyfin (as `user`) whether it will direct-play the"
        " output on the library profile's Cast generation; shown in history and job detail.",
    )
    confirm_poll_s: float = Field(
        10.0, gt=0, le=600, description="How often Jellyfin's new items are listed while waiting."
    )
    confirm_give_up_s: float = Field(
        900.0,
        gt=0,
        le=86_400,
        description="A confirmation Jellyfin has not answered this long after the swap is"
        " recorded as unconfirmed.",
    )
    pause_while: Literal["off", "playing", "transcoding"] = Field(
        "off",
        description="Hold new encodes and pause running ones while Jellyfin users are playing"
        " anything (playing) or only while Jellyfin itself transcodes (transcoding).",
    )
    sessions_poll_s: float = Field(
        15.0, ge=1, le=3600, description="How often Jellyfin's sessions are checked."
    )

    @field_validator("path_map")
    @classmethod
    def _absolute_prefixes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{k} -> {v}" for k, v in value.items() if not (k[:1] == v[:1] == "/")]
        if bad:
            raise ValueError(f"both sides must be absolute paths: {', '.join(bad)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_url(cls, data: Any) -> Any:
        # Checked before the field so the error line never echoes the URL: a key pasted into
        # it (?api_key=…, user:key@host) must not end up in a log or a terminal.
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str) and ("?" in url or "@" in url or "#" in url):
            raise ProblemList(
                [
                    (
                        "url",
                        "must be Jellyfin's address only, with no query string, fragment or"
                        " user info (the API key never goes in a URL: use api_key_file)",
                    )
                ]
            )
        return data

    @model_validator(mode="after")
    def _one_key_source(self) -> JellyfinSettings:
        if self.api_key is not None and self.api_key_file is not None:
            raise ProblemList([("api_key", "set api_key or api_key_file, not both")])
        return self

    def api_key_value(self) -> str:
        """The key, read now (a rotated key file is picked up on reload); ConfigError says
        where to put it when there is none."""
        key = _read_key(self.api_key, self.api_key_file, ENV_JELLYFIN_KEY, "jellyfin.")
        if not key:
            raise ConfigError(
                "jellyfin: no API key; create one in Jellyfin's Dashboard > API Keys and put it"
                f" in jellyfin.api_key_file (or ${ENV_JELLYFIN_KEY})"
            )
        return key


class ArrSettings(_Strict):
    """A Sonarr or Radarr that must rescan a series/movie after castui renamed its file.

    Why: a file that changed name looks missing to Sonarr/Radarr (and can trigger a
    re-download). The key comes from ``api_key``, ``api_key_file`` or
    ``$CASTUI_<NAME>_API_KEY`` (``CASTUI_SONARR_API_KEY`` for an entry named "sonarr"); it is
    sent only in the ``X-Api-Key`` header and never logged or stored.
    """

    kind: Literal["sonarr", "radarr"]
    name: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_-]*$",
        description="How castui calls this entry (default: the kind); names the key's variable.",
    )
    url: str = Field(
        pattern=r"^https?://[^\s?#@]+$",
        description="Sonarr/Radarr's address with any URL base, e.g. http://127.0.0.1:8989 (no"
        " query string or user info: the key never goes in a URL).",
    )
    api_key: SecretStr | None = None
    api_key_file: AbsolutePath | None = None
    path_map: dict[str, str] = Field(
        default_factory=dict,
        description="castui path prefix -> the same folder as Sonarr/Radarr sees it.",
    )
    libraries: tuple[str, ...] = Field(
        (), description="castui libraries whose swaps it hears about (empty: all)."
    )
    timeout_s: float = Field(10.0, gt=0, le=300)
    verify_tls: bool = True

    @model_validator(mode="after")
    def _defaults(self) -> ArrSettings:
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        if self.api_key is not None and self.api_key_file is not None:
            raise ProblemList([("api_key", "set api_key or api_key_file, not both")])
        bad = [f"{k} -> {v}" for k, v in self.path_map.items() if not (k[:1] == v[:1] == "/")]
        if bad:
            raise ProblemList([("path_map", f"both sides must be absolute: {', '.join(bad)}")])
        return self

    @property
    def key_env(self) -> str:
        return f"CASTUI_{self.name.upper().replace('-', '_')}_API_KEY"

    def api_key_value(self) -> str:
        """The key, read now; ConfigError says where to put it when there is none."""
        key = _read_key(self.api_key, self.api_key_file, self.key_env, f"arr {self.name}: ")
        if not key:
            raise ConfigError(
                f"arr {self.name}: no API key; copy it from {self.kind.title()}'s Settings >"
                f" General > Security into api_key_file (or ${self.key_env})"
            )
        return key

    def notifies(self, library: str) -> bool:
        return not self.libraries or library in self.libraries


ENV_REDIS_PASSWORD = "CASTUI_REDIS_PASSWORD"


class QueueSettings(_Strict):
    """Where the job queue lives: SQLite in ``database`` (one host, the default) or one Redis
    shared by several hosts (castui_core/queue/redis.py).

    The Redis password comes from ``password_file``, else the environment variable named by
    ``password_env``, else the URL; ``url`` is a ``SecretStr`` so no repr or log shows it.
    """

    backend: Literal["sqlite", "redis"] = "sqlite"
    url: SecretStr | None = Field(
        None, description="redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock"
    )
    password_file: AbsolutePath | None = None
    password_env: str = Field(ENV_REDIS_PASSWORD, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    prefix: str = Field("castui", pattern=r"^[A-Za-z0-9_.:-]+$", max_length=64)
    allow_unsafe_persistence: bool = Field(
        False,
        description="Run even when Redis could lose acknowledged changes (AOF off, eviction"
        " on, or CONFIG disabled so castui cannot check): a warning instead of a refusal.",
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> QueueSettings:
        if self.backend == "redis":
            if self.url is None:
                raise ProblemList([("url", "backend redis needs url: redis://host:6379/0")])
            scheme = self.url.get_secret_value().split(":", 1)[0].lower()
            if scheme not in ("redis", "rediss", "unix"):
                raise ProblemList([("url", "must start with redis://, rediss:// or unix://")])
        return self

    def password_value(self) -> str | None:
        """The Redis password (file read now: a rotated file works after a reload), or
        ``None`` to use the URL's own (or none)."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ConfigError(
                    f"queue.password_file {self.password_file} cannot be read"
                    f" ({exc.strerror}); check the path and that castui's user may read it"
                ) from exc
        return os.environ.get(self.password_env, "").strip() or None


class NodeSettings(_Strict):
    """This castui process as one node of several sharing a queue (castui_core/nodes.py).

    ``role: worker`` only claims and converts (no scan, watch or senders); ``path_map`` maps the
    library host's paths (what jobs carry) onto this node's mounts, longest prefix first.
    """

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=64,
        description="Shown in the nodes table and job history (default: the host name).",
    )
    role: Literal["all", "worker"] = "all"
    path_map: dict[str, str] = Field(
        default_factory=dict,
        description="Library path as the scanning host sees it -> this node's mount.",
    )

    @field_validator("path_map")
    @classmethod
    def _absolute_paths(cls, value: dict[str, str]) -> dict[str, str]:
        from castui_core.nodes import validate_path_map

        problems = validate_path_map(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def node_name(self) -> str:
        from castui_core.nodes import default_node_name

        return self.name or default_node_name()


class Settings(_Strict):
    """The whole settings file."""

    database: AbsolutePath = Field(default_factory=default_database)
    ffmpeg: AbsolutePath | None = None
    ffprobe: AbsolutePath | None = None
    libraries: tuple[LibrarySettings, ...] = Field(
        default_factory=lambda: (LibrarySettings(name="Videos", path=default_library_path()),)
    )
    profiles: dict[str, Profile] = Field(default_factory=dict)
    operational: OperationalSettings = Field(default_factory=OperationalSettings)
    scan: ScanSettings = Field(default_factory=ScanSettings)
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    node: NodeSettings = Field(default_factory=NodeSettings)
    jellyfin: JellyfinSettings | None = None
    notify: NotifySettings | None = None
    arr: tuple[ArrSettings, ...] = Field(
        (), description="Sonarr/Radarr entries asked to rescan after each committed swap."
    )
    # The ids are the dashboard's (castui/keymap.py): the core never imports the UI, so they
    # are checked by `castui config check` and by the dashboard at start, not here.
    keymap: dict[str, str] = Field(
        default_factory=dict,
        description="Dashboard keys by binding id, e.g. castui.scan: f5 (comma-separate several).",
    )

    @field_validator("arr")
    @classmethod
    def _unique_arr_names(cls, value: tuple[ArrSettings, ...]) -> tuple[ArrSettings, ...]:
        names = [a.name for a in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two entries are called {', '.join(twice)}: give each a name")
        return value

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file these settings were read from (``None``: built-in defaults)."""
        return self._source

    @model_validator(mode="before")
    @classmethod
    def _resolve_profiles(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        user = data.get("profiles") or {}
        if not isinstance(user, dict):
            raise ProblemList([("profiles", "must be a mapping of profile name -> fields")])
        data["profiles"] = resolve_profiles(user)
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems = cross_problems(
            [(lib.name, lib.path, lib.profile) for lib in self.libraries],
            profiles={name: p.extends for name, p in self.profiles.items()},
            database=self.database,
        )
        if problems:
            raise ProblemList(problems)
        return self

    def profile_for(self, library: LibrarySettings) -> Profile:
        return self.profiles[library.profile]

    def notifies_jellyfin(self, library: LibrarySettings) -> bool:
        """Whether this library's changes go to Jellyfin (on by default once configured)."""
        return self.jellyfin is not None and library.jellyfin is not False

    def library_named(self, name: str) -> LibrarySettings:
        for lib in self.libraries:
            if lib.name == name:
                return lib
        known = ", ".join(lib.name for lib in self.libraries) or "none"
        raise ConfigError(f"no library named {name!r} (configured: {known})")


def cross_problems(
    libraries: list[tuple[str, Path, str]],
    *,
    profiles: dict[str, str | None],
    database: Path | None,
) -> list[tuple[str, str]]:
    """Problems between fields: unknown profiles, reused library names, libraries that contain
    each other, a database inside a library.

    A plain function of the parts, not only the model's validator: when a field is invalid
    pydantic never runs the model's checks, and ``config check`` must still list these (see
    :func:`_raw_cross_problems`). ``libraries`` is ``(name, path, profile)`` per library,
    ``profiles`` maps each profile name to the one it extends.
    """
    problems: list[tuple[str, str]] = []
    known = ", ".join(sorted(profiles))
    for name, extends in profiles.items():
        if extends is not None and extends not in profiles:
            problems.append(
                (f"profiles.{name}.extends", f"{extends!r} is not a profile; known: {known}")
            )
    seen_names: set[str] = set()
    for i, (name, _path, profile) in enumerate(libraries):
        if profile not in profiles:
            problems.append(
                (f"libraries.{i}.profile", f"{profile!r} is not a profile; known: {known}")
            )
        if name in seen_names:
            problems.append((f"libraries.{i}.name", f"{name!r} is used twice"))
        seen_names.add(name)
    # Real paths: a symlink or ``..`` must not hide that two libraries share files. A file in
    # both would be queued by both scans, with either library's profile and output rules.
    real = [(name, path, _real(path)) for name, path, _profile in libraries]
    for i, (name, path, resolved) in enumerate(real):
        for j, (other, other_path, other_resolved) in enumerate(real):
            if j == i or not resolved.is_relative_to(other_resolved):
                continue
            if resolved == other_resolved and j > i:
                continue  # the same folder twice: reported once, at the later library
            how = "the same folder as" if resolved == other_resolved else "inside"
            shown = f"{path}" if path == resolved else f"{path} (really {resolved})"
            problems.append(
                (
                    f"libraries.{i}.path",
                    f"library {name!r} at {shown} is {how} library {other!r} at {other_path};"
                    " each file must belong to one library: remove one of them, or point them"
                    " at folders that do not contain each other",
                )
            )
    if database is not None:
        db_real = _real(database)
        for name, _path, resolved in real:
            if db_real.is_relative_to(resolved):
                problems.append(
                    (
                        "database",
                        f"{database} is inside library {name!r}; keep the database on"
                        " local disk, outside the media folders",
                    )
                )
    return problems


def _real(path: Path) -> Path:
    """``path`` with symlinks and ``..`` resolved as far as it exists (it may not be mounted)."""
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):  # a symlink loop: compare it as written
        return Path(os.path.normpath(path))


def _raw_cross_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """:func:`cross_problems` on unvalidated data, skipping parts too malformed to compare.

    Used when some field is invalid (so the model's own cross-checks never ran): one
    ``config check`` then lists an unknown profile name along with a bad field elsewhere.
    """
    user = data.get("profiles") or {}
    profiles: dict[str, str | None] = {name: None for name in BUILTIN_PROFILES}
    if isinstance(user, dict):
        for name, body in user.items():
            extends = body.get("extends") if isinstance(body, dict) else None
            profiles[str(name)] = extends if isinstance(extends, str) else None
    raw_libraries = data.get("libraries")
    libraries: list[tuple[str, Path, str]] = []
    if isinstance(raw_libraries, list):
        for lib in raw_libraries:
            if not isinstance(lib, dict):
                return []  # indexes would no longer match the field errors' paths
            name, path = lib.get("name"), lib.get("path")
            profile = lib.get("profile", DEFAULT_PROFILE)
            if not isinstance(path, str) or not isinstance(profile, str):
                return []
            absolute = Path(path).expanduser()
            if not absolute.is_absolute():
                return []
            libraries.append((str(name), absolute, profile))
    database = data.get("database")
    db = Path(database).expanduser() if isinstance(database, str) else None
    return cross_problems(
        libraries, profiles=profiles, database=db if db is not None and db.is_absolute() else None
    )


def find_settings_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file to use, following the documented lookup order.

    ``None`` means no file anywhere: run on the built-in defaults. The path is absolute: a
    service started with ``--config settings.yaml`` hands its file's path to dashboards
    (and reloads it) from other working directories.
    """
    if explicit is not None:
        path = Path(explicit).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(
                f"settings file {path} does not exist; check --config, or copy"
                " settings.sample.yaml there"
            )
        return path
    env = os.environ.get(ENV_CONFIG)
    if env:
        path = Path(env).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"${ENV_CONFIG} points to {path}, which does not exist")
        return path
    for candidate in (Path.cwd() / "settings.yaml", user_config_file()):
        if candidate.is_file():
            return candidate
    return None


def load_settings(explicit: str | os.PathLike[str] | None = None) -> Settings:
    """Find, read and validate the settings. Raises ``ConfigError`` with readable problems."""
    path = find_settings_file(explicit)
    if path is None:
        return Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"settings file {path} is not UTF-8 text") from exc
    settings = parse_settings(text, source=path)
    settings._source = path
    return settings


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that notes every key given twice in one mapping.

    Plain YAML keeps the last of two equal keys: a second ``libraries:`` block silently drops
    the first, and castui runs on half the settings the person wrote.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[str, int] = {}
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            line = key_node.start_mark.line + 1
            key = str(key_node.value)
            if key in first_line:
                self.duplicates.append(
                    (
                        key,
                        f"given twice (lines {first_line[key]} and {line}); YAML would keep only"
                        " the second: merge them into one",
                    )
                )
            else:
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: Path | str) -> tuple[Any, list[str]]:
    """The YAML document and one problem line per duplicated key."""
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from exc
    finally:
        loader.dispose()
    return data, [f"{key}: {why}" for key, why in loader.duplicates]


def parse_settings(text: str, *, source: Path | str = "<settings>") -> Settings:
    """Validate settings from YAML text; every problem found is listed in one ``ConfigError``."""
    data, problems = _load_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings (key: value)")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems.extend(format_problems(exc))
        # A field error stops pydantic before the model's cross-checks: run them on the raw
        # data so an unknown profile is reported in the same run as a bad number.
        for loc, message in _raw_cross_problems(data):
            line = f"{loc}: {message}"
            if line not in problems:
                problems.append(line)
    else:
        if not problems:
            return settings
    raise ConfigError(f"{source}: invalid settings", problems=tuple(problems))


def format_problems(exc: ValidationError) -> tuple[str, ...]:
    """One line per problem: ``field.path: bad value: what is wrong / allowed``."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        kind = err["type"]
        if kind == "value_error":
            msg = msg.removeprefix("Value error, ")
            # Cross-field checks report "field: message" lines relative to ``loc``.
            for line in msg.splitlines():
                field, sep, rest = line.partition(": ")
                if sep and " " not in field:
                    path = f"{loc}.{field}" if loc and not field.startswith(loc) else field
                    lines.append(f"{path}: {rest}")
                else:
                    lines.append(f"{loc or 'settings'}: {_shown(err.get('input'))}{line}")
            continue
        if kind == "extra_forbidden":
            lines.append(f"{loc}: unknown setting (check its spelling; see settings.sample.yaml)")
            continue
        if kind == "missing":
            lines.append(f"{loc}: required but missing")
            continue
        lines.append(f"{loc}: {_shown(err.get('input'))}{msg}")
    return tuple(lines)


def _shown(value: Any) -> str:
    """The offending value as a prefix (``'4.3': ``), omitted for whole mappings."""
    if isinstance(value, dict | list | tuple) or value is None:
        return ""
    return f"{str(value)!r}: " if isinstance(value, Path) else f"{value!r}: "
