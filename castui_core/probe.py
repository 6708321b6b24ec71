"""Probing media files into ``MediaInfo``.

PyAV reads a container header in-process roughly 40x faster than spawning ffprobe per file,
but a corrupt file can hang or crash a demuxer, and a crash in C code kills the whole process.
So probes run in a small pool of worker *processes* that are reused across files; a probe that
takes longer than the timeout gets its worker killed and replaced, and a worker that dies
(segfault) is replaced too. A file that crashed PyAV is retried once with an ``ffprobe``
subprocess (with the same timeout), which also serves as the fallback for what PyAV does not
expose. Either way the file ends as a ``ProbeFailure`` with a reason, never as a dead engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import stat
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from castui_core.errors import ProbeError
from castui_core.media import (
    COLOR_TRANSFERS,
    FIELD_ORDERS,
    AudioStream,
    MediaInfo,
    ProbeFailure,
    SubtitleStream,
    VideoStream,
)
from castui_core.subproc import run_bounded

ProbeResult = MediaInfo | ProbeFailure
ProbeFn = Callable[[str], MediaInfo]

_PRIMARIES = {1: "bt709", 2: "unknown", 5: "bt470bg", 6: "smpte170m", 9: "bt2020", 12: "p3"}
_SPACES = {0: "gbr", 1: "bt709", 2: "unknown", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
_DOLBY_VISION_TAGS = {"dvh1", "dvhe", "dva1", "dvav"}
_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC


def _file_size(path: str) -> int:
    """Size of a regular file; ``ProbeError`` for what cannot be probed at all."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise ProbeError(path, "file not found") from exc
    except PermissionError as exc:
        raise ProbeError(path, "permission denied (cannot read the file)") from exc
    except OSError as exc:
        raise ProbeError(path, f"cannot read: {exc.strerror}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ProbeError(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ProbeError(path, "not a regular file")
    if st.st_size == 0:
        raise ProbeError(path, "empty file (0 bytes)")
    return st.st_size


def _fps(rate: Any) -> float | None:
    if rate is None:
        return None
    try:
        value = float(rate)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _tag_bitrate(metadata: dict[str, str]) -> int | None:
    """MKV stores per-stream bitrate in a ``BPS`` (or ``BPS-eng``) statistics tag."""
    for key in ("BPS", "BPS-eng", "bps"):
        value = metadata.get(key)
        if value and value.strip().isdigit():
            return int(value)
    return None


def _codec_name(cc: Any) -> str:
    """The codec name as ffprobe prints it (``mp3``), not PyAV's decoder name (``mp3float``)."""
    try:
        return str(cc.codec.canonical_name)
    except Exception:
        return str(cc.name)


def _decodable(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "r")
    except Exception:
        return False
    return True


def normalise_rotation(value: Any) -> int:
    """A display rotation as 0/90/180/270 degrees counter-clockwise (ffmpeg says -90 for 270;
    a matrix that is not a quarter turn, or junk, counts as 0: castui only plans whole turns)."""
    try:
        degrees = round(float(value))
    except (TypeError, ValueError):
        return 0
    degrees %= 360
    return degrees if degrees in (0, 90, 180, 270) else 0


def _pyav_rotation(container: Any, stream: Any) -> int:
    """The first video stream's display rotation, from its first decoded frame.

    PyAV 18 exposes the display matrix only on frames (``VideoFrame.rotation``; streams have a
    setter but no getter), so one frame is decoded (a few ms; the probe reads no more packets
    after it). A stream that cannot be decoded here has rotation 0: the ffprobe path reads
    ``side_data_list`` instead, and tests check that both agree.

    The decoder runs on one thread: FFmpeg's default (one per core, frame threading) spends
    more starting its threads than decoding one frame, and frame threading holds the first
    frame back until each thread has a packet. That was 1.6 of a small file's 2.7 ms probe.
    """
    import av

    try:
        cc = stream.codec_context
        cc.thread_count = 1
        cc.thread_type = "NONE"
        for frame in container.decode(stream):
            return normalise_rotation(getattr(frame, "rotation", 0))
    except (av.FFmpegError, ValueError, EOFError):
        return 0
    return 0


def probe_pyav(path: str) -> MediaInfo:
    """Probe one file with PyAV (blocking; call it in a worker process)."""
    import av

    size = _file_size(path)
    try:
        container = av.open(path, mode="r")
    except PermissionError as exc:
        raise ProbeError(path, "permission denied (cannot read the file)") from exc
    except av.error.InvalidDataError as exc:
        raise ProbeError(path, "not a media file (FFmpeg: invalid data)") from exc
    except av.FFmpegError as exc:
        raise ProbeError(path, f"cannot open as media: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise ProbeError(path, f"cannot read: {exc.strerror or exc}") from exc
    with container:
        video: list[VideoStream] = []
        audio: list[AudioStream] = []
        subs: list[SubtitleStream] = []
        attachments = 0
        stream_list: list[Any] = list(container.streams)
        for s in stream_list:
            disposition = int(s.disposition)
            metadata = dict(s.metadata)
            if s.type == "video":
                if disposition & _ATTACHED_PIC:
                    attachments += 1
                    continue
                cc: Any = s.codec_context
                sar = cc.sample_aspect_ratio or s.sample_aspect_ratio or Fraction(1, 1)
                tag = str(getattr(cc, "codec_tag", "") or "").lower()
                level = cc.level if isinstance(cc.level, int) and cc.level > 0 else None
                video.append(
                    VideoStream(
                        index=s.index,
                        codec=_codec_name(cc),
                        profile=cc.profile or None,
                        level=level,
                        pix_fmt=cc.format.name if cc.format is not None else None,
                        width=cc.width,
                        height=cc.height,
                        sar_num=sar.numerator or 1,
                        sar_den=sar.denominator or 1,
                        avg_fps=_fps(s.average_rate),
                        r_fps=_fps(s.base_rate) or _fps(s.guessed_rate),
                        field_order=FIELD_ORDERS.get(int(cc.field_order or 0), "unknown"),
                        color_transfer=COLOR_TRANSFERS.get(int(cc.color_trc or 2), "unknown"),
                        color_primaries=_PRIMARIES.get(int(cc.color_primaries or 2), "unknown"),
                        color_space=_SPACES.get(int(cc.colorspace or 2), "unknown"),
                        bit_rate=cc.bit_rate or _tag_bitrate(metadata),
                        dolby_vision=tag in _DOLBY_VISION_TAGS,
                        decodable=_decodable(_codec_name(cc)),
                        rotation=(
                            _pyav_rotation(container, s)
                            if not video and _decodable(_codec_name(cc))
                            else 0
                        ),
                    )
                )
            elif s.type == "audio":
                cc = s.codec_context
                audio.append(
                    AudioStream(
                        index=s.index,
                        codec=_codec_name(cc),
                        profile=cc.profile or None,
                        channels=cc.channels,
                        layout=cc.layout.name if cc.layout is not None else None,
                        sample_rate=cc.sample_rate or None,
                        bit_rate=cc.bit_rate or _tag_bitrate(metadata),
                        language=_language(s.language),
                        default=bool(disposition & 1),
                        title=metadata.get("title"),
                    )
                )
            elif s.type == "subtitle":
                subs.append(
                    SubtitleStream(
                        index=s.index,
                        codec=_codec_name(s.codec_context),
                        language=_language(s.language),
                        default=bool(disposition & 1),
                        forced=bool(disposition & 64),
                        title=metadata.get("title"),
                    )
                )
            elif s.type == "attachment":
                attachments += 1
        try:
            chapters = len(container.chapters())
        except Exception:
            chapters = 0
        duration = container.duration / 1_000_000 if container.duration else None
        return MediaInfo(
            path=path,
            size=size,
            format_name=container.format.name,
            duration_s=duration,
            bit_rate=container.bit_rate or None,
            video=tuple(video),
            audio=tuple(audio),
            subtitles=tuple(subs),
            attachments=attachments,
            chapters=chapters,
            prober="pyav",
        )


def _language(value: Any) -> str | None:
    if not value or value == "und":
        return None
    return str(value)


def _ratio(text: Any) -> float | None:
    if not text or text in {"0/0", "N/A"}:
        return None
    try:
        return _fps(Fraction(str(text)))
    except (ValueError, ZeroDivisionError):
        return None


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def media_info_from_ffprobe(path: str, size: int, data: dict[str, Any]) -> MediaInfo:
    """Build ``MediaInfo`` from ``ffprobe -show_format -show_streams -show_chapters`` JSON."""
    fmt = data.get("format") or {}
    video: list[VideoStream] = []
    audio: list[AudioStream] = []
    subs: list[SubtitleStream] = []
    attachments = 0
    for s in data.get("streams") or []:
        kind = s.get("codec_type")
        tags = {str(k): str(v) for k, v in (s.get("tags") or {}).items()}
        disp = s.get("disposition") or {}
        lang = _language(tags.get("language"))
        if kind == "video":
            if disp.get("attached_pic"):
                attachments += 1
                continue
            sar = _ratio_parts(s.get("sample_aspect_ratio"))
            side = s.get("side_data_list") or []
            dovi = any("DOVI" in str(d.get("side_data_type", "")) for d in side)
            rotation = next(
                (
                    normalise_rotation(d.get("rotation"))
                    for d in side
                    if d.get("side_data_type") == "Display Matrix"
                ),
                0,
            )
            tag = str(s.get("codec_tag_string", "")).lower()
            video.append(
                VideoStream(
                    index=int(s.get("index", 0)),
                    codec=str(s.get("codec_name", "unknown")),
                    profile=s.get("profile"),
                    level=_int(s.get("level")),
                    pix_fmt=s.get("pix_fmt"),
                    width=int(s.get("width") or 0),
                    height=int(s.get("height") or 0),
                    sar_num=sar[0],
                    sar_den=sar[1],
                    avg_fps=_ratio(s.get("avg_frame_rate")),
                    r_fps=_ratio(s.get("r_frame_rate")),
                    field_order=str(s.get("field_order", "unknown")),
                    color_transfer=str(s.get("color_transfer", "unknown")),
                    color_primaries=str(s.get("color_primaries", "unknown")),
                    color_space=str(s.get("color_space", "unknown")),
                    bit_rate=_int(s.get("bit_rate")) or _tag_bitrate(tags),
                    dolby_vision=dovi or tag in _DOLBY_VISION_TAGS,
                    decodable=s.get("codec_name") not in (None, "none", "unknown"),
                    rotation=rotation,
                )
            )
        elif kind == "audio":
            audio.append(
                AudioStream(
                    index=int(s.get("index", 0)),
                    codec=str(s.get("codec_name", "unknown")),
                    profile=s.get("profile"),
                    channels=int(s.get("channels") or 0),
                    layout=s.get("channel_layout"),
                    sample_rate=_int(s.get("sample_rate")),
                    bit_rate=_int(s.get("bit_rate")) or _tag_bitrate(tags),
                    language=lang,
                    default=bool(disp.get("default")),
                    title=tags.get("title"),
                )
            )
        elif kind == "subtitle":
            subs.append(
                SubtitleStream(
                    index=int(s.get("index", 0)),
                    codec=str(s.get("codec_name", "unknown")),
                    language=lang,
                    default=bool(disp.get("default")),
                    forced=bool(disp.get("forced")),
                    title=tags.get("title"),
                )
            )
        elif kind == "attachment":
            attachments += 1
    duration = fmt.get("duration")
    try:
        duration_s: float | None = float(duration) if duration not in (None, "N/A") else None
    except ValueError:
        duration_s = None
    return MediaInfo(
        path=path,
        size=size,
        format_name=str(fmt.get("format_name", "unknown")),
        duration_s=duration_s,
        bit_rate=_int(fmt.get("bit_rate")),
        video=tuple(video),
        audio=tuple(audio),
        subtitles=tuple(subs),
        attachments=attachments,
        chapters=len(data.get("chapters") or []),
        prober="ffprobe",
    )


def _ratio_parts(text: Any) -> tuple[int, int]:
    try:
        num, den = (int(x) for x in str(text).split(":"))
    except (TypeError, ValueError):
        return (1, 1)
    return (num, den) if num > 0 and den > 0 else (1, 1)


async def probe_ffprobe(ffprobe: Path, path: str, *, timeout: float = 30.0) -> MediaInfo:  # noqa: ASYNC109
    """Probe with an ffprobe subprocess (killed after ``timeout``)."""
    size = _file_size(path)
    argv = [
        str(ffprobe), "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", "-show_chapters", "--", path,
    ]  # fmt: skip
    try:
        done = await run_bounded(argv, timeout_s=timeout, capture_stdout=True)
    except TimeoutError:
        raise ProbeError(path, f"ffprobe did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise ProbeError(path, f"cannot run {ffprobe}: {exc.strerror}") from exc
    if done.returncode != 0:
        detail = done.last_stderr_line() or f"exit code {done.returncode}"
        raise ProbeError(path, f"ffprobe cannot read it: {detail}")
    try:
        data = json.loads(done.stdout)
    except ValueError as exc:
        raise ProbeError(path, "ffprobe printed invalid JSON") from exc
    return media_info_from_ffprobe(path, size, data)


# --- the worker pool ---------------------------------------------------------------------------

_BATCH = 16


def _worker_main(conn: multiprocessing.connection.Connection, probe_fn: ProbeFn) -> None:
    """Worker process loop: receive batches of paths, send one result per path."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for path in batch:
            result: ProbeResult
            try:
                result = probe_fn(path)
            except ProbeError as exc:
                result = ProbeFailure(path=path, size=_safe_size(path), reason=exc.reason)
            except Exception as exc:
                reason = f"probe failed: {type(exc).__name__}: {exc}"
                result = ProbeFailure(path=path, size=_safe_size(path), reason=reason)
            try:
                conn.send(result)
            except (BrokenPipeError, OSError):
                return


def _safe_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, probe_fn: ProbeFn) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn: multiprocessing.connection.Connection = parent
        self.process = ctx.Process(
            target=_worker_main, args=(child, probe_fn), daemon=True, name="castui-probe"
        )
        self.process.start()
        child.close()

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            with contextlib.suppress(OSError):
                self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class ProbePool:
    """Reusable probe worker processes with a per-file timeout.

    One thread in this process serves each worker (blocking pipe reads stay off the event
    loop). Use ``probe_many`` from async code; it yields results as they complete.

    Workers start when work arrives. With ``idle_timeout_s`` they also stop once no probe has
    run for that long: each one holds PyAV and FFmpeg's libraries (about 40 MB), which made an
    idle engine's process tree twice its own size while nothing needed probing. The next
    probe starts them again (a spawn costs about 0.3 s, once per burst of work).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout: float = 30.0,
        probe_fn: ProbeFn = probe_pyav,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.size = workers or min(4, os.cpu_count() or 1)
        self.timeout = timeout
        self.idle_timeout_s = idle_timeout_s
        self._probe_fn = probe_fn
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._started = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._busy = 0  # batches taking or holding a worker
        self._last_used = time.monotonic()
        self._reaper: threading.Thread | None = None
        self._closed = False
        #: Set while no worker runs because they were stopped for being idle (tests and
        #: benchmarks wait on it); cleared when work starts one again.
        self.stopped_idle = threading.Event()
        self.idle_stops = 0  # times the workers were stopped for being idle
        self.replaced = 0  # workers killed or lost and replaced (for tests and logs)
        #: Files handed to the workers so far: what ``castui scan`` reports as "probed", so a
        #: rescan's "0 probed" counts every open a worker made (copies checked included).
        self.probed = 0

    @property
    def running(self) -> int:
        """Worker processes started and not stopped (busy or idle)."""
        with self._lock:
            return self._started

    def _take_worker(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("probe pool is closed")
            self._busy += 1
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            if self._started < self.size:
                self._started += 1
                self.stopped_idle.clear()
                self._start_reaper()
                try:
                    return _Worker(self._ctx, self._probe_fn)
                except BaseException:
                    self._started -= 1
                    self._busy -= 1
                    raise
        return self._idle.get()

    def _give_back(self, worker: _Worker) -> None:
        self._idle.put(worker)
        with self._cond:
            self._busy -= 1
            self._last_used = time.monotonic()
            self._cond.notify_all()

    def _start_reaper(self) -> None:
        """(Lock held.) One thread stops idle workers after ``idle_timeout_s`` of no work."""
        if self.idle_timeout_s is None or self._reaper is not None:
            return
        self._reaper = threading.Thread(target=self._reap, name="castui-probe-idle", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        assert self.idle_timeout_s is not None
        while True:
            stopping: list[_Worker] = []
            with self._cond:
                if self._closed:
                    return
                if self._busy or not self._started:
                    self._cond.wait()
                    continue
                left = self._last_used + self.idle_timeout_s - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                while True:  # every started worker is idle here: take them all
                    try:
                        stopping.append(self._idle.get_nowait())
                    except queue.Empty:
                        break
                self._started -= len(stopping)
                self.idle_stops += 1
            for worker in stopping:
                worker.stop()
            with self._cond:
                if not self._started:
                    self.stopped_idle.set()

    def _replace(self, worker: _Worker, *, kill: bool) -> _Worker:
        worker.stop(kill=kill)
        self.replaced += 1
        return _Worker(self._ctx, self._probe_fn)

    def run_batch(self, paths: Sequence[str], emit: Callable[[ProbeResult], None]) -> None:
        """Probe ``paths`` on one worker (blocking); ``emit`` each result as it arrives."""
        worker = self._take_worker()
        pending = list(paths)
        with self._lock:
            self.probed += len(pending)
        try:
            while pending:
                worker.conn.send(pending)
                while pending:
                    try:
                        ready = worker.conn.poll(self.timeout)
                        result = worker.conn.recv() if ready else None
                    except (EOFError, OSError):
                        ready, result = True, None
                    if result is not None:
                        pending.pop(0)
                        emit(result)
                        continue
                    path = pending.pop(0)
                    if not ready:
                        reason = f"probe did not finish within {self.timeout:g} s (demuxer hung)"
                        worker = self._replace(worker, kill=True)
                        emit(ProbeFailure(path, _safe_size(path), reason, {"hung": True}))
                    else:
                        worker.process.join(timeout=5)
                        code = worker.process.exitcode
                        how = (
                            f"signal {signal.Signals(-code).name}"
                            if code is not None and code < 0
                            else f"exit code {code}"
                        )
                        reason = f"the demuxer crashed on this file ({how})"
                        worker = self._replace(worker, kill=False)
                        emit(ProbeFailure(path, _safe_size(path), reason, {"crashed": True}))
                    break  # resend what is left of the batch to the new worker
        finally:
            self._give_back(worker)

    async def probe_many(
        self, paths: Iterable[str] | AsyncIterable[str]
    ) -> AsyncIterator[ProbeResult]:
        """Probe every path on the pool; yield results in completion order.

        ``paths`` may be an async iterable still being produced (a walk in progress):
        batches are dispatched as soon as they fill, so probing overlaps the walk.
        """
        loop = asyncio.get_running_loop()
        results: asyncio.Queue[ProbeResult | None] = asyncio.Queue()
        semaphore = asyncio.Semaphore(self.size)
        tasks: set[asyncio.Task[None]] = set()

        def emit(result: ProbeResult) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: the scan was abandoned
                loop.call_soon_threadsafe(results.put_nowait, result)

        async def run(chunk: list[str]) -> None:
            async with semaphore:
                await asyncio.to_thread(self.run_batch, chunk, emit)

        def dispatch(chunk: list[str]) -> None:
            task = asyncio.create_task(run(chunk))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def produce() -> int:
            total = 0
            batch: list[str] = []
            if isinstance(paths, AsyncIterable):
                async for path in paths:
                    batch.append(path)
                    if len(batch) >= _BATCH:
                        dispatch(batch)
                        total, batch = total + len(batch), []
            else:
                for path in paths:
                    batch.append(path)
                    if len(batch) >= _BATCH:
                        dispatch(batch)
                        total, batch = total + len(batch), []
            if batch:
                dispatch(batch)
                total += len(batch)
            return total

        producer = asyncio.create_task(produce())
        received = 0
        try:
            while not producer.done():
                # Wait for a result or for the producer to finish, whichever comes first.
                getter = asyncio.ensure_future(results.get())
                await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    result = getter.result()
                    if result is not None:
                        received += 1
                        yield result
                else:
                    getter.cancel()
            total = producer.result()
            while received < total:
                result = await results.get()
                if result is not None:
                    received += 1
                    yield result
            await asyncio.gather(*tasks)
        finally:
            producer.cancel()
            for task in tasks:
                task.cancel()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            worker.stop()

    def __enter__(self) -> ProbePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
