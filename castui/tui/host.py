"""What a screen may use of the app: :class:`DashboardHost`.

Why a protocol and not ``CastuiApp``: screens imported the app module for its type and the
app imported every screen, a cycle that made any screen's import pull in the whole app. It
also kept the surface honest: a screen gets the engine only as
:class:`~castui_core.api.EngineAPI` (commands and reads, the same local or attached), the
live state, and the few app services below, never ``engine.store`` or the app's internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from castui.tui.state import LiveState
from castui_core.api import EngineAPI
from castui_core.settings import Settings
from castui_core.store import Job


class DashboardHost(Protocol):
    """The app as the screens see it (``CastuiApp`` implements it; checked in ``app.py``)."""

    engine: EngineAPI
    attached: bool
    clock: Callable[[], float]
    state: LiveState
    disk: dict[str, int | str]
    running_jobs: list[Job]
    queued_jobs: list[Job]

    @property
    def settings(self) -> Settings: ...

    def run_command(self, label: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run an engine command off the key handler; failures become notifications."""

    def open_job(self, job_id: int) -> None: ...
