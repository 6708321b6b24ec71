"""``castui --no-ui``: the engine as a service, one log line per event.

Human text on a terminal, ``--log-format json`` for journald/Loki. Progress is shown
sparingly (every 10 % or 60 s per job) so a months-long journal stays readable. SIGTERM and
SIGINT stop claiming, give running jobs ``service.shutdown_grace_s`` to finish, then cancel
and requeue them; SIGHUP reloads the settings. ``--once`` scans, drains the queue, prints a
summary and exits 0 (all succeeded), 1 (a job failed) or 2 (configuration error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import io
import json
import logging
import logging.handlers
import os
import signal
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from castui.cli_args import apply_node
from castui.scan_view import format_bytes
from castui_core.bus import Subscription
from castui_core.control import ControlServer
from castui_core.datadir import prepare_data_dir
from castui_core.engine import Engine
from castui_core.errors import CastuiError
from castui_core.events import (
    Event,
    FileDecided,
    GpuSample,
    GuardrailCleared,
    GuardrailTripped,
    JobCancelled,
    JobFinished,
    JobNote,
    JobOutput,
    JobProgress,
    JobQueued,
    JobStarted,
    JobStateChanged,
    LibraryState,
    LogLine,
    QueueState,
    ScanFinished,
    ScanProblem,
    ScanProgress,
    ScanStarted,
)
from castui_core.notify import Notifier
from castui_core.paths import display_text, is_utf8, json_safe, path_json
from castui_core.queue.open import open_queue
from castui_core.settings import Settings, load_settings
from castui_core.store import Job, JobState, Store

logger = logging.getLogger("castui")

_PROGRESS_STEP = 10.0  # percent
_PROGRESS_EVERY_S = 60.0


_JOBS_REMEMBERED = 10_000
_JOB_EVENTS = (
    JobQueued,
    JobStarted,
    JobProgress,
    JobNote,
    JobFinished,
    JobCancelled,
    JobStateChanged,
)


class EventFormatter:
    """Turns events into log lines, dropping the high-rate ones that would flood a journal."""

    def __init__(self, clock: object = time.monotonic, node: str | None = None) -> None:
        self._clock = clock
        self._last_progress: dict[str, tuple[float, float]] = {}
        self.node = node or socket.gethostname()
        # path -> (job id, library), learnt from JobQueued/JobStateChanged: most job events
        # carry only the path, and a log line about a job must say which job, where.
        self._jobs: dict[str, tuple[int | None, str]] = {}

    def context(self, event: Event) -> dict[str, Any] | None:
        """``job_id``, ``library`` and ``node`` for a line about a job (None otherwise), so
        every line about one job can be found with one grep or one JSON filter."""
        path = getattr(event, "path", None)
        if isinstance(event, JobStateChanged):
            self._remember(event.path, event.job_id, event.library)
        elif isinstance(event, JobQueued):
            known = self._jobs.get(event.path)
            self._remember(event.path, known[0] if known else None, event.library)
        if not isinstance(path, str) or not isinstance(event, _JOB_EVENTS):
            return None
        job_id, library = self._jobs.get(path, (None, ""))
        return {"job_id": job_id, "library": library, "node": self.node}

    def _remember(self, path: str, job_id: int | None, library: str) -> None:
        self._jobs.pop(path, None)
        self._jobs[path] = (job_id, library)
        while len(self._jobs) > _JOBS_REMEMBERED:  # oldest first: dicts keep insertion order
            del self._jobs[next(iter(self._jobs))]

    def line(self, event: Event) -> tuple[str, str] | None:
        """``(level, text)`` for one event, or None to leave it out of the log.

        The text is one printable line (``display_text``): a file name holding a newline must
        not forge a log line, and one that is not UTF-8 must not stop the log (or the service).
        """
        out = self._line(event)
        return None if out is None else (out[0], display_text(out[1]))

    def _line(self, event: Event) -> tuple[str, str] | None:
        if isinstance(event, JobProgress):
            return self._progress(event)
        if isinstance(event, GpuSample | ScanProgress | FileDecided | JobOutput):
            return None
        if isinstance(event, JobQueued):
            why = "; ".join(event.reasons)
            return "info", f"queued {event.action} {event.path} ({why}) [{event.outcome}]"
        if isinstance(event, JobStarted):
            return "info", f"started {event.action} {event.path} with {event.encoder}"
        if isinstance(event, JobFinished):
            self._last_progress.pop(event.path, None)
            if event.status == "done":
                after = event.bytes_after or 0
                return "info", (
                    f"done {event.action} {event.path} -> {event.output_path}"
                    f" ({format_bytes(event.bytes_before)} -> {format_bytes(after)},"
                    f" {event.seconds:.0f} s, {event.encoder})"
                )
            level = "info" if event.status == "skipped" else "warning"
            return level, f"{event.status} {event.path}: {event.reason}"
        if isinstance(event, JobNote):
            return "info", f"{event.path}: {event.message}"
        if isinstance(event, JobCancelled):
            return "info", f"cancelled {event.path}: {event.reason}"
        if isinstance(event, GuardrailTripped):
            return "warning", event.reason
        if isinstance(event, GuardrailCleared):
            return "info", f"cleared: {event.name}" + (f" ({event.reason})" if event.reason else "")
        if isinstance(event, LibraryState):
            tail = f": {event.reason}" if event.reason else ""
            level = "warning" if event.state == "paused" else "info"
            return level, f"library {event.library}: {event.state}{tail}"
        if isinstance(event, QueueState):
            state = "paused" if event.paused else "resumed"
            by = f" by {event.actor}" if event.actor else ""
            return "info", f"queue {state}{by}" + (f": {event.reason}" if event.reason else "")
        if isinstance(event, ScanStarted):
            return "info", f"scan {event.library}: {event.root}"
        if isinstance(event, ScanProblem):
            return "warning", f"scan {event.library}: {event.path}: {event.reason}"
        if isinstance(event, ScanFinished):
            counts = ", ".join(f"{n} {a}" for a, n in event.counts if n)
            return "info", (
                f"scan {event.library} finished: {event.files} files ({counts or 'none'}),"
                f" {format_bytes(event.bytes_to_process)} to process, {event.seconds:.1f} s"
            )
        if isinstance(event, LogLine):
            return event.level, event.message
        return "debug", f"{type(event).__name__}: {event}"

    def _progress(self, event: JobProgress) -> tuple[str, str] | None:
        now = float(self._clock())  # type: ignore[operator]
        percent = event.percent or 0.0
        last = self._last_progress.get(event.path)
        if last is not None:
            last_percent, last_time = last
            if percent - last_percent < _PROGRESS_STEP and now - last_time < _PROGRESS_EVERY_S:
                return None
        self._last_progress[event.path] = (percent, now)
        parts = [f"{percent:.0f}%"]
        if event.speed:
            parts.append(f"{event.speed:.1f}x")
        if event.eta_s is not None:
            parts.append(f"ETA {event.eta_s:.0f} s")
        return "info", f"progress {event.path}: {' '.join(parts)}"


class JsonLines(logging.Formatter):
    """One JSON object per record, valid UTF-8 whatever the file names in it.

    An event's str field that is not valid UTF-8 (a file name with surrogate escapes) is
    written as ``path_json`` writes it: the display form plus ``<field>_bytes_b64``.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if job is not None:
            data.update(job)
        event = getattr(record, "event", None)
        if event is not None:
            data["event"] = type(event).__name__
            for key, value in asdict(event).items():
                if key in data:
                    continue
                if isinstance(value, str) and not is_utf8(value):
                    data.update(path_json(value, key))
                else:
                    data[key] = value
        if record.exc_info:  # an unexpected error's traceback: what a bug report needs
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(json_safe(data), ensure_ascii=False, default=str)


class TextLines(logging.Formatter):
    """The text log: a line about a job ends with ``[job=N library=L node=H]``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job = getattr(record, "job", None)
        if job is None:
            return text
        number = job["job_id"] if job["job_id"] is not None else "-"
        return f"{text} [job={number} library={job['library'] or '-'} node={job['node']}]"


class _PrivateRotatingFile(logging.handlers.TimedRotatingFileHandler):
    """Every log file (the first and each one after a rotation) is created 0600."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        return io.TextIOWrapper(open(fd, "ab"), encoding=self.encoding, errors=self.errors)


def setup_logging(settings: Settings, fmt: str, stream: TextIO) -> Path:
    """Log to ``stream`` (text or JSON lines) and to a daily-rotated file in the data dir."""
    log_dir = settings.database.parent / "logs"
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(log_dir, 0o700)  # the log lists the user's library: theirs alone, whatever umask
    log_file = log_dir / "castui.log"
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    console = logging.StreamHandler(stream)
    text = TextLines("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
    console.setFormatter(JsonLines() if fmt == "json" else text)
    logger.addHandler(console)
    rotating = _PrivateRotatingFile(
        log_file,
        when="midnight",
        backupCount=settings.service.log_retention_days,
        encoding="utf-8",
    )
    rotating.setFormatter(JsonLines())
    logger.addHandler(rotating)
    return log_file


async def _log_events(sub: Subscription, formatter: EventFormatter) -> None:
    async for event in sub:
        job = formatter.context(event)
        line = formatter.line(event)
        if line is None:
            continue
        level, text = line
        extra = {"event": event, "job": job}
        logger.log(logging.getLevelName(level.upper()), text, extra=extra)


async def run_headless(args: argparse.Namespace) -> int:
    # What is imported by now (the settings models, the engine, PyAV: some 0.5 M objects)
    # lives as long as the process. Moved out of the collector's sight, no collection walks
    # it again, the one at interpreter exit included: 0.2-0.35 s less at the end of a --once
    # run on the 2-core machine, and shorter full collections in a service running for months.
    gc.freeze()
    settings = apply_node(load_settings(args.config), args)  # --node, --role
    # Before the log set-up: an unwritable folder is one sentence naming it, not a traceback.
    await asyncio.to_thread(prepare_data_dir, settings.database)
    log_file = setup_logging(settings, args.log_format, sys.stderr)
    source = settings.source or "built-in defaults"
    logger.info("castui headless starting (settings: %s, log: %s)", source, log_file)
    once: bool = args.once
    engine = Engine(settings, watch=not once, scan_at_start=True)
    # --node/--role outlive every reload: SIGHUP's, a dashboard's save, the socket's reload.
    engine.settings_overrides = functools.partial(apply_node, args=args)
    formatter = EventFormatter(node=engine.node)  # --node's name, not the host's
    viewer = asyncio.create_task(_log_events(engine.bus.subscribe(), formatter))
    metrics = None
    if settings.metrics.enabled:
        from castui_core.metrics import Metrics

        metrics = Metrics(engine.bus, node=engine.node)  # every series labelled node
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop(name: str) -> None:
        logger.info("%s received: stopping", name)
        stop.set()

    async def reload() -> None:
        try:
            new = apply_node(load_settings(args.config), args)
        except CastuiError as exc:
            logger.error("SIGHUP: settings not reloaded: %s", exc)
            return
        await engine.reload(new)

    reload_tasks: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(reload())
        reload_tasks.add(task)
        task.add_done_callback(reload_tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    # --once serves the socket too: a dashboard opened meanwhile attaches instead of starting
    # a second engine. Claimed before the engine starts, so one opened during start waits.
    control = ControlServer(engine)
    notifier: Notifier | None = None
    gave_up: str | None = None
    try:
        await control.claim()
        await engine.start()
        await control.start()
        if metrics is not None:
            metrics.serve(settings.metrics.listen, engine)
        if settings.notify is not None and engine.role != "worker":  # the library host tells
            notifier = Notifier(engine.queue, settings.notify, engine.bus)
        if once:
            gave_up = await drain(
                engine,
                stop,
                report_every_s=getattr(args, "status_every", 60.0),
                max_wait_s=getattr(args, "max_wait", None),
            )
        else:
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if notifier is not None:  # undelivered notifications stay in the outbox for next start
            await notifier.close()
        await engine.stop()
        await control.stop()  # after: no second engine starts while this one winds down
        if metrics is not None:
            metrics.close()
        engine.bus.close()
        with contextlib.suppress(asyncio.CancelledError):
            await viewer
    if not once:
        logger.info("castui headless stopped")
        return 0
    queued, dead = await _leftovers(settings)
    return print_summary(engine, queued=queued if gave_up else 0, waiting=gave_up, dead=dead)


async def drain(
    engine: Engine, stop: asyncio.Event, *, report_every_s: float, max_wait_s: float | None
) -> str | None:
    """``--once``: wait until the queue is drained; ``None`` then, else why it gave up.

    A guardrail (schedule, free space, load) can hold queued jobs for hours: every
    ``report_every_s`` the reason is logged, so a waiting run never looks hung, and SIGTERM or
    ``max_wait_s`` ends the wait with that reason (the summary then says what is still queued
    and why, and the exit code is 1: the run did not do its work).
    """
    loop = asyncio.get_running_loop()
    deadline = None if max_wait_s is None else loop.time() + max_wait_s
    idle = asyncio.create_task(engine.wait_idle())
    stopped = asyncio.create_task(stop.wait())
    last_reason = "stopped before the queue was drained"
    try:
        while True:
            timeout = report_every_s
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - loop.time()))
            await asyncio.wait(
                {idle, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if idle.done():
                idle.result()  # an engine error propagates
                return None
            waiting = await waiting_reason(engine)
            if waiting is not None:
                last_reason = waiting[1]
            if stopped.done():
                return last_reason
            if deadline is not None and loop.time() >= deadline:
                logger.warning("--max-wait of %s reached: stopping", _seconds(max_wait_s or 0))
                return last_reason
            if waiting is not None:
                count, reason = waiting
                logger.warning("waiting: %s queued: %s", _jobs(count), reason)
    finally:
        for task in (idle, stopped):
            task.cancel()
        for task in (idle, stopped):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def waiting_reason(engine: Engine) -> tuple[int, str] | None:
    """How many jobs are queued and why none of them runs; ``None`` when none is queued."""
    jobs = await engine.queue.active_jobs()
    queued = [j for j in jobs if j.state is JobState.QUEUED]
    if not queued:
        return None
    reasons: list[str] = []
    if await engine.store.is_paused():
        reasons.append("the queue is paused (resume it from the dashboard)")
    # A guard's reason starts "waiting: ..." (it stands alone in the dashboard); here it
    # follows "N jobs queued:", which says that already.
    reasons.extend(r.removeprefix("waiting: ") for r in engine.guardrails.active.values())
    now = time.time()
    if not reasons and all(j.run_after > now for j in queued):
        first = min(j.run_after for j in queued)
        when = time.strftime("%H:%M:%S", time.localtime(first))
        reasons.append(f"each waits to be retried, the first at {when}")
    if not reasons:
        running = len(jobs) - len(queued)
        reasons.append(f"{_jobs(running)} running" if running else "waiting for a free worker")
    return len(queued), "; ".join(reasons)


async def _leftovers(settings: Settings) -> tuple[int, list[Job]]:
    """Jobs still queued (or handed back by the stop) and every dead job, read after the
    engine stopped from the queue the settings name: what the summary must not leave out."""
    async with Store.open(
        settings.database, reclaim_on_open=False, event_retention_s=None
    ) as store:
        queue = await open_queue(settings, store)
        try:
            active = await queue.active_jobs()
            dead = await queue.history(states=[JobState.DEAD], limit=1000)
        finally:
            if queue is not store:
                await queue.close()
    return len(active), dead


def print_summary(
    engine: Engine, *, queued: int = 0, waiting: str | None = None, dead: list[Job] | None = None
) -> int:
    """The last lines of ``--once``; exit 1 when anything is left for a person to see to:
    a failure, a dead job (nothing retries it by itself) or jobs still queued."""
    summary = engine.summary
    dead = dead or []
    print(
        f"summary: {len(summary.done)} done, {len(summary.failed)} failed, {len(dead)} dead,"
        f" {format_bytes(max(0, summary.bytes_saved))} saved"
    )
    for outcome in summary.failed:
        print(f"failed: {outcome.path}: {outcome.reason}")
    for job in dead:
        print(f"dead: #{job.id} {job.path}: {job.reason or 'no reason recorded'}")
    if dead:
        print(f"retry them with: castui retry {' '.join(str(j.id) for j in dead)} (or --dead)")
    if waiting is not None and queued:
        print(f"{_jobs(queued)} still queued: {waiting}")
    return 1 if summary.failed or dead or (waiting is not None and queued) else 0


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _seconds(s: float) -> str:
    return f"{s:g} s"
