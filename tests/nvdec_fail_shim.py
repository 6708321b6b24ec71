#!/usr/bin/env python3
"""Stand-in for an ffmpeg on a GPU whose NVDEC does not take the source (AV1 before Ampere, an
oversize stream): a GPU-decode command (``-hwaccel cuda``) fails with the exact lines ffmpeg
5.1 prints when CPU frames reach the CUDA filters (captured from a real run); any other
command runs on the real ffmpeg through ``nvenc_shim``'s rewrite, so NVENC "works" on CPU
frames. With ``CASTUI_SHIM_NO_NVENC=1`` an NVENC command fails as on a GPU without NVENC
(ffmpeg 5.1's "No capable devices found"), so the job must end on libx264.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nvenc_shim import rewrite

EPILOGUE = (
    "Error initializing output stream 0:0 -- Error while opening encoder for output stream "
    "#0:0 - maybe incorrect parameters such as bit_rate, rate, width or height\n"
    "Conversion failed!\n"
)

FILTER_FAILURE = (
    "Impossible to convert between the formats supported by the filter 'graph 0 input from "
    "stream 0:0' and the filter 'auto_scale_0'\n"
    "Error reinitializing filters!\n"
    "Failed to inject frame into filter network: Function not implemented\n"
    "Error while processing the decoded data for stream #0:0\n"
)


def main() -> None:
    args = sys.argv[1:]
    if "-hwaccel" in args:
        sys.stderr.write(FILTER_FAILURE + EPILOGUE)
        sys.exit(1)
    if os.environ.get("CASTUI_SHIM_NO_NVENC") == "1" and any(a.endswith("_nvenc") for a in args):
        sys.stderr.write("[h264_nvenc @ 0x55d0c4a1c2c0] No capable devices found\n" + EPILOGUE)
        sys.exit(1)
    real = os.environ.get("CASTUI_REAL_FFMPEG") or shutil.which("ffmpeg") or "ffmpeg"
    os.execv(real, [real, *rewrite(args)])


if __name__ == "__main__":
    main()
