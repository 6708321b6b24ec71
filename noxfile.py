"""Developer sessions: ``nox -s lint typecheck tests``; ``nox -s bench`` for benchmarks."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests): results printed as tables and saved under .bench/."""
    session.install("-e", ".")
    for script in ("bench/bench_scan.py", "bench/bench_store.py", "bench/bench_convert.py"):
        session.run("python", script, *session.posargs)
