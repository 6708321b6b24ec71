"""One error tree for everything castui reports to a person.

Every error carries a message that says what went wrong *and what to do about it*; the CLI
prints ``str(error)`` and exits with ``error.exit_code`` instead of showing a traceback.
Errors from sqlite3, NVML, subprocesses and the file system are translated into these where
they enter castui (``raise ... from exc``) so callers only ever catch ``CastuiError``.
"""

from __future__ import annotations


class CastuiError(Exception):
    """Base class: a problem castui can explain to the user."""

    exit_code: int = 1
    #: How a job that fails with this error is classified (``ConvertOutcome.failure_kind``).
    failure_kind: str = "environment"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ProblemsError(CastuiError):
    """An error made of several independent problems, each on its own line when printed, so
    one message tells the whole story (every invalid setting, every failed check)."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return "\n".join([self.message, *(f"  - {p}" for p in self.problems)])


class ConfigError(ProblemsError):
    """The settings file is missing, unreadable or invalid.

    ``problems`` lists one line per invalid field (``field.path: bad value: what is allowed``)
    so ``castui config check`` can print all of them at once.
    """

    exit_code = 2
    failure_kind = "config"


# A settings change asked for through the engine API (the settings screen, an attached
# dashboard) that the settings model refuses is not a broken file but a refused edit:
#
#   CastuiError
#   ├── ProblemsError
#   │   └── ConfigError        the file on disk is missing, unreadable or invalid
#   └── SettingsRejected       an edit refused; ``problems``: (dotted path, the model's message)


class SettingsRejected(CastuiError):
    """Edits refused by the settings model: nothing was written.

    ``problems`` pairs each field's dotted path (``guardrails.gpu_max_temp_c``) with the
    model's own message, so a settings screen can mark the field and show why.
    """

    exit_code = 2
    failure_kind = "config"

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        lines = (f"  - {path}: {why}" for path, why in self.problems)
        return "\n".join([self.message, *lines])


class ToolNotFoundError(CastuiError):
    """ffmpeg or ffprobe could not be found."""

    exit_code = 2


class ProbeError(CastuiError):
    """A file could not be probed (unreadable, not media, corrupt, or the demuxer hung)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(CastuiError):
    """The queue/catalog database could not be opened, read or written."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer castui; it is refused, never modified."""

    exit_code = 2


class LeaseLostError(StoreError):
    """A worker's lease on a job was taken over; that worker must not touch the job's files."""

    failure_kind = "lease_lost"


class JobNotFoundError(StoreError):
    """An operator action named a job that does not exist (or is not in a state that allows it)."""


# The shared queue (castui_core.queue.redis) adds two StoreErrors:
#
#   StoreError
#   ├── QueueUnreachableError  "queue unreachable: <why>": Redis down, refused, timed out, auth
#   └── QueueUnsafeError       Redis would lose acknowledged changes (AOF off, evicting keys)
#
# Neither message ever contains a password: URLs are shown without their credentials.


class QueueUnreachableError(StoreError):
    """The shared queue (Redis) did not answer; workers stop claiming until it is back."""


class QueueUnsafeError(StoreError):
    """The shared queue's server could lose acknowledged transitions; castui refuses to use it
    (unless the operator explicitly allows unsafe persistence)."""

    exit_code = 2


class ValidationError(ProblemsError):
    """A converted file failed validation; the source was not touched.

    ``problems`` lists every check that failed, in plain words, so one message tells the whole
    story (a truncated file usually fails several checks at once).
    """


class SwapError(CastuiError):
    """Putting a validated output in place failed; the journal says what is left to finish."""


class OutputExistsError(SwapError):
    """The output (or backup) name is taken by a file castui did not write: it is never replaced."""

    failure_kind = "output_exists"


class SourceChangedError(SwapError):
    """The source was replaced or modified during its job: the output is of the old content.

    Not the file's fault and not a failure of the new content: the output is discarded and
    the job requeued (no attempt used) so the new content is converted.
    """

    failure_kind = "source_changed"


class NameTooLongError(SwapError):
    """A name castui must create does not fit this filesystem's NAME_MAX/PATH_MAX.

    Checked before the encode; it will fail the same way every time, so it is not retried.
    """

    failure_kind = "name_too_long"


class InsufficientSpaceError(CastuiError):
    """Not enough free space for the output (plus the free space the user asked to keep)."""

    failure_kind = "disk_space"


# Jellyfin (castui_core.integrations.jellyfin): every failure talking to the server is one of
#
#   JellyfinError                 (base; ``retryable`` says whether waiting can fix it)
#   ├── JellyfinUnreachable       connection refused/reset, DNS, TLS, timeout: retried
#   ├── JellyfinServerError       5xx: retried
#   └── JellyfinConfigError       stops the batch; the operator must change something
#       ├── JellyfinAuthError     401 (key missing/invalid) or 403 (key not allowed)
#       └── JellyfinRequestError  400/404 and other 4xx (wrong URL base, unknown item, bad body)
#
# No message ever contains the API key: it travels only in the Authorization header.


class JellyfinError(CastuiError):
    """Talking to Jellyfin failed. ``status`` is the HTTP status when there was an answer."""

    failure_kind = "jellyfin"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JellyfinUnreachable(JellyfinError):
    """No answer from Jellyfin (not running, wrong host/port, TLS failure, timeout)."""

    retryable = True


class JellyfinServerError(JellyfinError):
    """Jellyfin answered with a 5xx: its own problem, usually passing (a restart, an upgrade)."""

    retryable = True


class JellyfinConfigError(JellyfinError):
    """Jellyfin refused the request in a way only a settings change fixes; retrying is futile."""

    exit_code = 2


class JellyfinAuthError(JellyfinConfigError):
    """401: the API key is missing or not valid; 403: the key may not do this."""


class JellyfinRequestError(JellyfinConfigError):
    """400/404 and other 4xx: the URL does not lead to Jellyfin's API or the request is wrong."""


class ArrError(CastuiError):
    """Talking to Sonarr/Radarr failed (``retryable``: no answer or a 5xx; else a settings
    problem: a key refused, a URL that is not its API)."""

    failure_kind = "arr"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ArrUnreachable(ArrError):
    """No answer, a timeout or a 5xx: castui retries with backoff."""

    retryable = True


class ArrConfigError(ArrError):
    """401/403/404 or an answer that is not Sonarr/Radarr's: only a settings change fixes it."""

    exit_code = 2
