"""``castui queue``, ``castui history`` and ``castui db backup``.

Looking must never change anything: ``queue`` and ``history`` open the store without
reclaiming leases or pruning the audit log, and do not create a database that is not there
yet. ``CastuiError``s propagate to ``castui.cli.main``, which prints them and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from castui.cli_args import add_config
from castui_core.datadir import data_dir_problems
from castui_core.errors import CastuiError, ConfigError
from castui_core.paths import display_path, display_text, json_safe, path_json
from castui_core.queue.open import open_queue
from castui_core.queue.protocol import JobQueue
from castui_core.settings import Settings, load_settings
from castui_core.store import FINISHED_STATES, Job, JobState, Store
from castui_core.store.confirmations import StoredConfirmation
from castui_core.store.watch_history import StoredWatchHistory

if TYPE_CHECKING:
    from rich.text import Text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the store subcommands to the main ``castui`` parser."""
    queue = subparsers.add_parser(
        "queue",
        help="list queued and running conversion jobs, and dead ones (they wait for you)",
    )
    add_config(queue)
    queue.add_argument("--json", action="store_true", help="print a JSON array")
    queue.set_defaults(handler=run_queue, func=run_queue)

    history = subparsers.add_parser(
        "history", help="list finished jobs: done, failed, dead, cancelled (newest first)"
    )
    add_config(history)
    history.add_argument("--json", action="store_true", help="print a JSON array")
    history.add_argument(
        "--state",
        choices=[str(s) for s in FINISHED_STATES],
        action="append",
        help="only jobs in this state (repeatable)",
    )
    history.add_argument("--library", metavar="NAME", help="only jobs from this library")
    history.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most N jobs (default 50)"
    )
    history.set_defaults(handler=run_history, func=run_history)

    retry = subparsers.add_parser(
        "retry",
        help="put dead, failed or cancelled jobs back in the queue with fresh attempts",
        description="Requeue jobs by id (see `castui queue` / `castui history`), or every dead"
        " job with --dead. A running service picks them up within seconds. Audit-logged with"
        " actor 'cli'.",
    )
    add_config(retry)
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="job ids to retry")
    retry.add_argument("--dead", action="store_true", help="retry every dead job")
    retry.set_defaults(handler=run_retry, func=run_retry)

    db = subparsers.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    backup = db_sub.add_parser(
        "backup",
        help="copy the live database to PATH (safe while castui is running)",
    )
    add_config(backup)
    backup.add_argument("path", metavar="PATH", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    backup.set_defaults(handler=run_db_backup, func=run_db_backup)


# --- handlers ---------------------------------------------------------------------------


def run_queue(args: argparse.Namespace) -> int:
    """Active jobs, then dead ones: a dead job is never retried by itself, so it is listed
    where people look for what castui still has to do."""
    database = _readable_database(args)
    jobs: list[Job] = []
    if database.exists():
        settings = load_settings(args.config)
        jobs = asyncio.run(_read_jobs(settings, active=True))
        jobs += asyncio.run(_read_jobs(settings, active=False, states=["dead"], limit=1000))
    if args.json:
        _print_json(jobs)
    else:
        _print_queue(jobs, database)
    return 0


def run_history(args: argparse.Namespace) -> int:
    database = _readable_database(args)
    states = getattr(args, "state", None)
    if isinstance(states, str):
        states = [states]
    jobs: list[Job] = []
    if database.exists():
        jobs = asyncio.run(
            _read_jobs(
                load_settings(args.config),
                active=False,
                states=states,
                library=getattr(args, "library", None),
                limit=getattr(args, "limit", 50),
            )
        )
    confirmed, watched = (
        asyncio.run(_read_confirmations(database, [j.id for j in jobs])) if jobs else ({}, {})
    )
    if args.json:
        _print_json(jobs, confirmed, watched)
    else:
        _print_history(jobs, database, confirmed, watched)
    return 0


async def _read_confirmations(
    database: Path, ids: list[int]
) -> tuple[dict[int, StoredConfirmation], dict[int, StoredWatchHistory]]:
    """Jellyfin's verdict and the watch history per job (empty without Jellyfin)."""
    async with Store.open(database, reclaim_on_open=False, event_retention_s=None) as store:
        return await store.jellyfin_confirmations(ids), await store.watch_history(ids)


def _readable_database(args: argparse.Namespace) -> Path:
    """The database path, once its folder is known to be usable (SQLite's WAL writes beside
    the database even to read): else the same sentence as every other entry point, exit 2."""
    database = load_settings(args.config).database
    problems = data_dir_problems(database)
    if problems:
        raise ConfigError(problems[0])
    return database


def run_db_backup(args: argparse.Namespace) -> int:
    database = load_settings(args.config).database
    dest = Path(args.path).expanduser()
    written = asyncio.run(_backup(database, dest, overwrite=bool(getattr(args, "force", False))))
    from rich.console import Console  # here, not at the top: `castui scan` never needs it

    Console(highlight=False).print(f"backed up {database} to {written}")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    ids: list[int] = list(args.ids or [])
    if not ids and not args.dead:
        raise CastuiError("name the jobs to retry (castui retry ID...) or use --dead")
    database = _readable_database(args)
    if not database.exists():
        raise CastuiError(f"no database at {database} yet: there is nothing to retry")
    retried = asyncio.run(_retry(load_settings(args.config), ids, dead=bool(args.dead)))
    from rich.console import Console  # here, not at the top: `castui scan` never needs it

    out = Console(highlight=False, soft_wrap=True)
    if not retried:
        out.print("no dead jobs to retry")
    for job in retried:
        out.print(f"retrying #{job.id} {job.path}")
    return 0


async def _retry(settings: Settings, ids: list[int], *, dead: bool) -> list[Job]:
    """The store's retry (the dashboard's too), one job at a time; the first that cannot be
    retried stops with the store's reason (e.g. "job #7 is queued; only failed, dead or
    cancelled jobs can be retried")."""
    async with looking_queue(settings) as queue:
        if dead:
            ids = [*ids, *(j.id for j in await queue.history(states=["dead"], limit=100_000))]
        retried: list[Job] = []
        for job_id in dict.fromkeys(ids):
            retried.append(await queue.retry(job_id, actor="cli"))
        return retried


@asynccontextmanager
async def looking_queue(settings: Settings) -> AsyncIterator[JobQueue]:
    """The queue the settings name (this host's database, or the shared Redis), opened for a
    look: nothing reclaimed or pruned on the way."""
    async with Store.open(
        settings.database, reclaim_on_open=False, event_retention_s=None
    ) as store:
        queue = await open_queue(settings, store)
        try:
            yield queue
        finally:
            if queue is not store:
                await queue.close()


async def _read_jobs(
    settings: Settings,
    *,
    active: bool,
    states: list[str] | None = None,
    library: str | None = None,
    limit: int = 50,
) -> list[Job]:
    async with looking_queue(settings) as queue:
        if active:
            return await queue.active_jobs()
        return await queue.history(states=states, library=library, limit=limit)


async def _backup(database: Path, dest: Path, *, overwrite: bool) -> Path:
    async with Store.open(database, reclaim_on_open=False, event_retention_s=None) as store:
        return await store.backup(dest, overwrite=overwrite)


# --- output -----------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def job_to_json(job: Job) -> dict[str, Any]:
    """The JSON shape of a job for ``--json`` (stable keys; times are ISO 8601 UTC)."""
    r = job.result
    p = job.progress
    return {
        "id": job.id,
        **path_json(job.path),  # + path_bytes_b64 for a name that is not UTF-8
        "library": job.library,
        "state": str(job.state),
        "action": str(job.action),
        "reasons": list(job.reasons),
        "reason": job.reason,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        **(path_json(r.output_path, "output_path") if r.output_path else {"output_path": None}),
        "source_size": r.source_size,
        "output_size": r.output_size,
        "bytes_saved": r.bytes_saved,
        "duration_s": r.duration_s,
        "encoder": r.encoder,
        "command": r.command_line or None,
        "exit_code": r.exit_code,
        "stderr_tail": r.stderr_tail,
        "progress": None
        if p is None
        else {"percent": p.percent, "fps": p.fps, "speed": p.speed, "eta_s": p.eta_s},
        "lease_owner": job.lease_owner,
        "rerun_requested": job.rerun_requested,
        "created_at": _iso(job.created_at),
        "run_after": _iso(job.run_after),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _print_json(
    jobs: list[Job],
    confirmed: dict[int, StoredConfirmation] | None = None,
    watched: dict[int, StoredWatchHistory] | None = None,
) -> None:
    confirmed = confirmed or {}
    watched = watched or {}
    data = json_safe(
        [
            job_to_json(j)
            | ({"jellyfin": _confirmation_json(confirmed[j.id])} if j.id in confirmed else {})
            | (
                {
                    "watch_history": {
                        "status": watched[j.id].status,
                        "message": watched[j.id].message,
                    }
                }
                if j.id in watched
                else {}
            )
            for j in jobs
        ]
    )
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
    sys.stdout.write("\n")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _local(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _print_queue(jobs: list[Job], database: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = Console(highlight=False)
    if not jobs:
        out.print(f"no queued, running or dead jobs ({database})")
        return
    dead = sum(1 for j in jobs if j.state is JobState.DEAD)
    title = f"castui queue — {len(jobs) - dead} active"
    if dead:
        title += f", {dead} dead (castui retry --dead)"
    table = Table(title=title)
    for column in ("id", "state", "action", "progress", "prio", "try", "path", "why"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        if job.state is JobState.RUNNING and job.progress and job.progress.percent is not None:
            progress = f"{job.progress.percent:.0f}%"
            if job.progress.speed is not None:
                progress += f" {job.progress.speed:.1f}x"
        elif job.state is JobState.QUEUED:
            progress = f"after {_local(job.run_after)}" if job.attempts else ""
        else:
            progress = ""
        table.add_row(
            str(job.id),
            str(job.state),
            str(job.action),
            progress,
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
            Text(display_path(job.path)),
            Text(display_text(job.reason or "; ".join(job.reasons))),
        )
    out.print(table)


def _confirmation_json(c: StoredConfirmation) -> dict[str, Any]:
    return {"status": c.status, "generation": c.generation, "reasons": list(c.reasons),
            "message": c.message, "item_id": c.item_id, "at": _iso(c.at)}  # fmt: skip


def _print_history(
    jobs: list[Job],
    database: Path,
    confirmed: dict[int, StoredConfirmation] | None = None,
    watched: dict[int, StoredWatchHistory] | None = None,
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = Console(highlight=False)
    if not jobs:
        out.print(f"no finished jobs ({database})")
        return
    confirmed = confirmed or {}
    table = Table(title=f"castui history — newest {len(jobs)}")
    columns = ["finished", "state", "action", "path", "before", "after", "reason"]
    for column in columns + (["jellyfin"] if confirmed else []):
        table.add_column(column, overflow="fold")
    for job in jobs:
        row: list[str | Text] = [
            _local(job.finished_at),
            str(job.state),
            str(job.action),
            Text(display_path(job.path)),
            _size(job.result.source_size),
            _size(job.result.output_size),
            Text(display_text(job.reason or "")),
        ]
        if confirmed:  # "Jellyfin would transcode: ..." is a failure to look at: red
            c = confirmed.get(job.id)
            style = "green" if c and c.status == "direct_play" else "red" if c else ""
            cell = Text(c.message if c else "", style=style)
            w = (watched or {}).get(job.id)
            if w is not None:  # "watch history: restored for 2 users", "lost: ..."
                lost = w.status in ("lost", "unknown")
                cell.append(f"\n{w.message}", style="red" if lost else "")
            row.append(cell)
        table.add_row(*row)
    out.print(table)
