"""FFmpeg command building and progress parsing: pure functions, no processes.

The job runner starts the processes; this package only decides *what* to run and how to read
``-progress`` output, so both can be tested exactly without a GPU or real media.
"""

from castui_core.ffmpeg.command import (
    DEFAULT_NVDEC_CODECS,
    AudioOut,
    CommandError,
    EncodePlan,
    Sidecar,
    SubtitleOut,
    build_command,
    build_sidecar_commands,
)
from castui_core.ffmpeg.progress import Progress, ProgressParser

__all__ = [
    "DEFAULT_NVDEC_CODECS",
    "AudioOut",
    "CommandError",
    "EncodePlan",
    "Progress",
    "ProgressParser",
    "Sidecar",
    "SubtitleOut",
    "build_command",
    "build_sidecar_commands",
]
