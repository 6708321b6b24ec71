"""The Textual dashboard (``castui`` with no arguments). Build it with :func:`make_app`."""

from castui.tui.app import CastuiApp, make_app

__all__ = ["CastuiApp", "make_app"]
