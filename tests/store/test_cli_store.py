"""`castui queue`, `castui history` and `castui db backup` against a real settings file + DB.

Sync tests: the handlers call ``asyncio.run`` themselves, as the real CLI does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from castui.cli_store import register, run_db_backup, run_history, run_queue
from castui_core.errors import SchemaTooNewError
from castui_core.store import SCHEMA_VERSION, JobResult, Progress, Store

REQUIRED_KEYS = {
    "path",
    "state",
    "action",
    "reason",
    "output_path",
    "source_size",
    "output_size",
    "attempts",
    "started_at",
    "finished_at",
}


@pytest.fixture
def config(tmp_path: Path, isolated_home: Path) -> Path:
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(f"database: {tmp_path / 'data' / 'castui.db'}\n", encoding="utf-8")
    return cfg


def database(config: Path) -> Path:
    return config.parent / "data" / "castui.db"


async def populate(db: Path) -> None:
    async with Store.open(db) as store:
        await store.enqueue("/m/done.mkv", "movies", "transcode", ["video: hevc"])
        job = await store.claim("w")
        assert job is not None
        await store.complete(
            job.id,
            job.token,
            JobResult(output_path="/m/done.mp4", source_size=2_000_000, output_size=900_000),
        )
        await store.enqueue("/m/bad.mkv", "tv", "remux")
        job = await store.claim("w")
        assert job is not None
        await store.fail(job.id, job.token, "source is truncated", retryable=False)
        await store.enqueue("/m/running.mkv", "movies", "transcode")
        job = await store.claim("w")
        assert job is not None
        await store.heartbeat(job.id, job.token, Progress(percent=37.0, speed=3.2))
        await store.enqueue("/m/waiting.mkv", "movies", "remux", ["audio: ac3"])


def ns(config: Path, **kw: object) -> argparse.Namespace:
    return argparse.Namespace(config=str(config), **kw)


def test_queue_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(populate(database(config)))
    assert run_queue(ns(config, json=True)) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["path"], r["state"]) for r in rows] == [
        ("/m/running.mkv", "running"),
        ("/m/waiting.mkv", "queued"),
    ]
    assert all(set(r) >= REQUIRED_KEYS for r in rows)
    assert rows[0]["progress"]["percent"] == 37.0 and rows[0]["started_at"] is not None


def test_history_json_and_state_filter(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(populate(database(config)))
    assert run_history(ns(config, json=True, state=None, library=None, limit=50)) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["path"], r["state"]) for r in rows] == [
        ("/m/bad.mkv", "failed"),
        ("/m/done.mkv", "done"),
    ]
    assert all(set(r) >= REQUIRED_KEYS for r in rows)
    done = rows[1]
    assert (done["source_size"], done["output_size"], done["output_path"]) == (
        2_000_000,
        900_000,
        "/m/done.mp4",
    )
    assert done["finished_at"].endswith("+00:00") and done["attempts"] == 1
    assert rows[0]["reason"] == "source is truncated"
    assert run_history(ns(config, json=True, state=["failed"], library=None, limit=50)) == 0
    assert [r["state"] for r in json.loads(capsys.readouterr().out)] == ["failed"]
    assert run_history(ns(config, json=True, state=None, library="movies", limit=50)) == 0
    assert [r["path"] for r in json.loads(capsys.readouterr().out)] == ["/m/done.mkv"]


def test_human_tables(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich folds long cells on a narrow terminal
    asyncio.run(populate(database(config)))
    assert run_queue(ns(config, json=False)) == 0
    out = capsys.readouterr().out
    assert "running.mkv" in out and "37%" in out
    assert run_history(ns(config, json=False, state=None, library=None, limit=50)) == 0
    out = capsys.readouterr().out
    assert "source is truncated" in out and "1.9 MiB" in out


def test_missing_database_is_not_created(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_queue(ns(config, json=True)) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert run_history(ns(config, json=False, state=None, library=None, limit=5)) == 0
    assert "no finished jobs" in capsys.readouterr().out
    assert not database(config).exists()


def test_db_backup(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(populate(database(config)))
    dest = tmp_path / "copy.db"
    assert run_db_backup(ns(config, path=str(dest), force=False)) == 0
    assert "backed up" in capsys.readouterr().out
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 4
    finally:
        conn.close()


def test_too_new_database_is_reported(config: Path) -> None:
    db = database(config)
    asyncio.run(populate(db))
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(SchemaTooNewError):
        run_queue(ns(config, json=True))


def test_parser_registration(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="castui")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["history", "--json", "--state", "dead", "--config", str(config)])
    assert args.state == ["dead"] and args.limit == 50 and args.handler is run_history
    args = parser.parse_args(["db", "backup", "/tmp/x.db", "--config", str(config)])
    assert args.handler is run_db_backup and args.path == "/tmp/x.db"
    args = parser.parse_args(["queue", "--json"])
    assert args.handler is run_queue and args.config is None


def test_through_main(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from castui.cli import main

    assert main(["queue", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    dest = config.parent / "exists.db"
    dest.write_bytes(b"")
    assert main(["db", "backup", str(dest), "--config", str(config)]) == 1
    assert "already exists" in capsys.readouterr().err
