"""The base of every screen that follows the live state."""

from __future__ import annotations

from typing import cast

from textual.screen import Screen

from castui.tui.host import DashboardHost


class LiveScreen(Screen[None]):
    """A screen the app tells when parts of the live state changed (see ``state.py``)."""

    @property
    def castui(self) -> DashboardHost:
        """The app, as much of it as a screen may use (no import of the app module)."""
        return cast(DashboardHost, self.app)

    def live_changed(self, changed: set[str]) -> None:
        """Refresh what ``changed`` touches; the default does nothing."""

    def on_screen_resume(self) -> None:
        # Whatever happened while another screen was shown.
        self.live_changed({"jobs", "progress", "guards", "log", "libraries"})
