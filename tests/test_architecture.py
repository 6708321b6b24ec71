"""castui_core must stay usable without the UI (headless mode, tests, other front ends)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_core_imports_no_ui_library() -> None:
    code = (
        "import sys, pkgutil, importlib, castui_core\n"
        "for m in pkgutil.walk_packages(castui_core.__path__, 'castui_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'textual', 'rich', 'castui'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_import_linter_contract() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every contract in pyproject.toml is checked: none may be broken, and none skipped.
    contracts = Path(__file__).parents[1].joinpath("pyproject.toml").read_text()
    expected = contracts.count("[[tool.importlinter.contracts]]")
    assert f"{expected} kept, 0 broken" in result.stdout
