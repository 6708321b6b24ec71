#!/usr/bin/env python3
"""Stand-in for an ffmpeg with a working NVENC, for engine tests on a machine without a GPU.

castui builds a real NVENC command line; this shim rewrites the NVENC-only parts into their
libx264 equivalents and execs the real ffmpeg, so the engine drives a real encode that it
believes runs on the GPU (pause/resume on GPU temperature, session caps). With
``CASTUI_SHIM_REALTIME=1`` the input is read at its native rate (``-re``), so an encode lasts
as long as the clip and tests can act in the middle of it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys

DROP_WITH_VALUE = {
    "-hwaccel", "-hwaccel_output_format", "-tune", "-rc", "-spatial-aq", "-temporal-aq",
    "-rc-lookahead", "-bf", "-b_ref_mode",
}  # fmt: skip


def rewrite(args: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else ""
        if arg in DROP_WITH_VALUE:
            i += 2
            continue
        if arg == "-cq":
            out += ["-crf", value]
            i += 2
            continue
        if arg == "-b:v" and value == "0":
            i += 2
            continue
        if arg == "-preset" and re.fullmatch(r"p\d", value):
            out += ["-preset", "ultrafast"]
            i += 2
            continue
        if arg in ("h264_nvenc", "hevc_nvenc"):
            out.append("libx264" if arg == "h264_nvenc" else "libx265")
        elif "scale_cuda" in arg:
            arg = re.sub(r"scale_cuda=([^,]*?):format=(nv12|p010)", r"scale=\1,format=yuv420p", arg)
            out.append(arg.replace("scale_cuda", "scale"))
        elif arg == "-i" and os.environ.get("CASTUI_SHIM_REALTIME") == "1":
            out += ["-re", "-i"]
        else:
            out.append(arg)
        i += 1
    return out


def main() -> None:
    real = os.environ.get("CASTUI_REAL_FFMPEG") or shutil.which("ffmpeg") or "ffmpeg"
    args = rewrite(sys.argv[1:])
    os.execv(real, [real, *args])


if __name__ == "__main__":
    main()
