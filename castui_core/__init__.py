"""castui core: settings, profiles, probing, decisions and (later) queue and encoding.

This package is the engine behind both the Textual dashboard and headless mode, so it must
never import textual or rich (an import-linter contract and a test enforce that).
"""

__version__ = "0.1.0"
