"""Developer sessions: ``nox -s lint typecheck tests``; ``nox -s bench`` for benchmarks;
``nox -s container`` builds and runs the container image (root, buildah, debootstrap)."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
    # Every bench runs even when an earlier one misses its goal (it prints and saves its
    # table, then exits 1): one missed goal must not hide the other figures.
    python = str(Path(session.bin) / "python")
    missed = [
        script.name
        for script in sorted(Path("bench").glob("bench_*.py"))
        if subprocess.run([python, str(script), *session.posargs], check=False).returncode
    ]
    if missed:
        session.error(f"missed a goal or failed: {', '.join(missed)} (see the tables above)")


@nox.session(venv_backend="none")
def container(session: nox.Session) -> None:
    """Build the container image from the Dockerfile with buildah and run it (minutes; root).

    Not a default session: it needs root, buildah and debootstrap (apt), and the Debian mirror
    apt uses. scripts/container-smoke says what it checks; arguments go to it (--rebuild-base).
    """
    session.run("scripts/container-smoke", *session.posargs, external=True)
