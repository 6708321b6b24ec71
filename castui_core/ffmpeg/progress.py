"""Parse ffmpeg's ``-progress pipe:1`` output into typed snapshots.

ffmpeg writes blocks of ``key=value`` lines (every ``-stats_period``, 0.5 s by default), each
closed by ``progress=continue`` or ``progress=end``. The values are awkward: ``N/A``, negative
times (``-ss`` with stream copy), padded numbers (``speed=   0x``), exponent form
(``speed=4.22e+03x``), and ``out_time_ms`` that is really microseconds (a long-standing FFmpeg
quirk). The parser is fed lines and never reads a clock, so it is tested exactly with tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One progress block: what ffmpeg reported plus percent/ETA against the known duration."""

    frame: int | None
    fps: float | None
    out_time_s: float | None
    speed: float | None  # media seconds per wall second (1.0 = real time)
    total_size: int | None  # bytes written so far
    bitrate_kbps: float | None
    percent: float | None  # 0..100, None when the duration is unknown
    eta_s: float | None  # wall seconds left, None without a positive speed
    done: bool


def _number(raw: str | None, *, suffix: str = "") -> float | None:
    """A finite float from a progress value, or None for ``N/A``/empty/garbage."""
    if raw is None:
        return None
    text = raw.strip()
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)].strip()
    if not text or text.upper() == "N/A":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _clock(raw: str | None) -> float | None:
    """``HH:MM:SS.micro`` (the ``out_time`` key), possibly negative, as seconds."""
    if raw is None:
        return None
    text = raw.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    parts = text.lstrip("-").split(":")
    if len(parts) != 3:
        return None
    try:
        h, m, s = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        return None
    return sign * (h * 3600 + m * 60 + s)


class ProgressParser:
    """Feed lines with ``feed``; a ``Progress`` comes back each time a block ends.

    ``duration_s`` is the source's duration (None when unknown: no percent, and ETA only from
    the speed is impossible, so also None).
    """

    def __init__(self, duration_s: float | None) -> None:
        self.duration_s = duration_s if duration_s is not None and duration_s > 0 else None
        self._block: dict[str, str] = {}
        self.last: Progress | None = None

    def feed(self, line: str) -> Progress | None:
        """Take one line (with or without newline); return a snapshot at ``progress=...``."""
        text = line.strip()
        if not text or "=" not in text:
            return None
        key, _, value = text.partition("=")
        key = key.strip()
        value = value.strip()
        if key != "progress":
            self._block[key] = value
            return None
        snapshot = self._snapshot(done=value == "end")
        self._block = {}
        self.last = snapshot
        return snapshot

    def feed_text(self, text: str) -> list[Progress]:
        """Feed a whole chunk of output; return every snapshot it completed."""
        out: list[Progress] = []
        for line in text.splitlines():
            snap = self.feed(line)
            if snap is not None:
                out.append(snap)
        return out

    def _out_time(self) -> float | None:
        block = self._block
        for key in ("out_time_us", "out_time_ms"):  # both are microseconds
            micro = _number(block.get(key))
            if micro is not None:
                return micro / 1_000_000
        return _clock(block.get("out_time"))

    def _snapshot(self, *, done: bool) -> Progress:
        block = self._block
        frame_f = _number(block.get("frame"))
        out_time = self._out_time()
        speed = _number(block.get("speed"), suffix="x")
        size_f = _number(block.get("total_size"))
        bitrate = _number(block.get("bitrate"), suffix="kbits/s")
        percent: float | None = None
        eta: float | None = None
        if self.duration_s is not None:
            # Even at the end the percent comes from out_time, not a forced 100: an encode that
            # stopped early (truncated source) must show it.
            if out_time is not None:
                percent = min(100.0, max(0.0, out_time / self.duration_s * 100.0))
            if out_time is not None and speed is not None and speed > 0:
                remaining = max(0.0, self.duration_s - max(0.0, out_time))
                eta = 0.0 if done else remaining / speed
        if done and eta is None and self.duration_s is not None:
            eta = 0.0
        return Progress(
            frame=int(frame_f) if frame_f is not None and frame_f >= 0 else None,
            fps=_number(block.get("fps")),
            out_time_s=out_time,
            speed=speed,
            total_size=int(size_f) if size_f is not None and size_f >= 0 else None,
            bitrate_kbps=bitrate,
            percent=percent,
            eta_s=eta,
            done=done,
        )
