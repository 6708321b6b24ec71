"""A ``dead`` job is never silent: ``--once`` and ``castui queue`` list it with its reason, and
``castui retry`` puts it back, as the dashboard can. Issue 10 #4 (the "dead" half).

The dead job is made the way the engine makes one: a real SQLite store, a claimed job whose
last attempt failed with a retryable error (here the ENOSPC of a full disk).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cli_helpers import run_castui

from castui_core.store import JobState, Store

REASON = "ffmpeg: No space left on device (the disk filled up during the encode)"


async def _bury(database: Path, path: Path) -> int:
    async with Store.open(database, max_attempts=1) as store:
        await store.enqueue(str(path), "Movies", "transcode", ["video: mpeg4"])
        claimed = await store.claim("old-run/w0")
        assert claimed is not None
        job = await store.fail(claimed.id, claimed.token, REASON, retryable=True)
        assert job.state is JobState.DEAD
        return job.id


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    lib = tmp_path / "lib"
    lib.mkdir()
    settings = tmp_path / "settings.yaml"
    database = tmp_path / "state" / "castui.db"
    settings.write_text(
        f"database: {database}\n"
        "libraries:\n"
        f"  - {{name: Movies, path: {lib}, watch: false}}\n"
        "operational: {encoder: cpu, min_free_gb: 0}\n",
        encoding="utf-8",
    )
    return {"root": tmp_path, "lib": lib, "settings": settings, "database": database}


def test_once_lists_a_dead_job_and_exits_1(site: dict[str, Path]) -> None:
    job_id = asyncio.run(_bury(site["database"], site["root"] / "elsewhere" / "film.mkv"))
    result = run_castui("--no-ui", "--once", "--config", str(site["settings"]), home=site["root"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 dead" in result.stdout
    assert f"dead: #{job_id} " in result.stdout and "film.mkv" in result.stdout
    assert REASON in result.stdout
    assert f"castui retry {job_id}" in result.stdout


def test_queue_lists_dead_jobs_and_retry_requeues_them(site: dict[str, Path]) -> None:
    first = asyncio.run(_bury(site["database"], site["lib"] / "one.mkv"))
    second = asyncio.run(_bury(site["database"], site["lib"] / "two.mkv"))
    config = ["--config", str(site["settings"])]

    table = run_castui("queue", *config, home=site["root"])
    assert table.returncode == 0, table.stderr
    assert "2 dead" in table.stdout and "castui retry --dead" in table.stdout
    listed = run_castui("queue", "--json", *config, home=site["root"])
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["state"], r["reason"]) for r in rows] == [
        (second, "dead", REASON),
        (first, "dead", REASON),
    ]

    one = run_castui("retry", str(first), *config, home=site["root"])
    assert one.returncode == 0, one.stderr
    assert f"retrying #{first}" in one.stdout
    again = run_castui("retry", str(first), *config, home=site["root"])
    assert again.returncode == 1
    assert "is queued; only failed, dead or cancelled jobs can be retried" in again.stderr

    rest = run_castui("retry", "--dead", *config, home=site["root"])
    assert rest.returncode == 0, rest.stderr
    assert f"retrying #{second}" in rest.stdout and f"#{first}" not in rest.stdout

    rows = json.loads(run_castui("queue", "--json", *config, home=site["root"]).stdout)
    assert sorted((r["id"], r["state"], r["attempts"]) for r in rows) == [
        (first, "queued", 0),
        (second, "queued", 0),
    ]
    nothing = run_castui("retry", "--dead", *config, home=site["root"])
    assert nothing.returncode == 0 and "no dead jobs to retry" in nothing.stdout


def test_retry_is_audit_logged_as_cli(site: dict[str, Path]) -> None:
    job_id = asyncio.run(_bury(site["database"], site["lib"] / "one.mkv"))
    done = run_castui("retry", str(job_id), "--config", str(site["settings"]), home=site["root"])
    assert done.returncode == 0, done.stderr

    async def actors() -> list[str | None]:
        async with Store.open(site["database"], reclaim_on_open=False) as store:
            events = await store.list_events(job_id=job_id)
        return [e.actor for e in events]

    assert "cli" in asyncio.run(actors())


def test_retry_needs_ids_or_dead(site: dict[str, Path]) -> None:
    result = run_castui("retry", "--config", str(site["settings"]), home=site["root"])
    assert result.returncode == 1
    assert "castui retry ID" in result.stderr and "Traceback" not in result.stderr
