"""Probe functions that misbehave on purpose, imported by probe worker processes in tests."""

from __future__ import annotations

import os
import signal
import time

from castui_core.media import MediaInfo
from castui_core.probe import probe_pyav


def faulty_probe(path: str) -> MediaInfo:
    """Hang forever on names containing 'hang', segfault on 'crash', else probe for real."""
    if "hang" in os.path.basename(path):
        time.sleep(3600)
    if "crash" in os.path.basename(path):
        os.kill(os.getpid(), signal.SIGSEGV)
    return probe_pyav(path)
