"""castui: the command line, the Textual dashboard and headless mode on one core."""

from castui_core import __version__

__all__ = ["__version__"]
