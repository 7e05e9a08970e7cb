"""ruff and mypy over the code base, with the settings in pyproject.toml (``make lint`` runs
the same checks). Both come with the ``test`` extra (``pip install -e '.[test]'``); without
them these tests skip, or fail when ``lint`` is in FLEETDECK_REQUIRE.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
LINTED = ("console", "agents", "collectors", "tests", "bench")  # as the Makefile's lint target


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not os.access(path, os.X_OK):
        need("lint", f"no {name} binary (pip install -e '.[test]')")
    return path


def ruff() -> str:
    return tool("ruff")


def test_the_code_base_passes_ruff():
    proc = subprocess.run([ruff(), "check", "--no-cache", "--output-format", "concise", *LINTED],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_does_report_problems_under_the_linted_folders():
    # The linter is live with the repository's settings, and a module in console/ is not
    # excluded by them: an unused import, an unused variable and an undefined name are flagged.
    source = "import os\n\n\ndef f():\n    unused = 1\n    return missing\n"
    proc = subprocess.run([ruff(), "check", "--no-cache", "--output-format", "concise",
                           "--stdin-filename", "console/lint_probe.py", "-"],
                          cwd=REPO, input=source, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for code in ("F401", "F841", "F821"):
        assert code in proc.stdout, proc.stdout


def mypy(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    # No cache: the run sees the files as they are, and leaves nothing in the checkout.
    return subprocess.run([tool("mypy"), "--no-incremental", "--cache-dir", os.devnull, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_the_code_base_passes_mypy():
    # The files and settings of pyproject.toml [tool.mypy]: console/, agents/, collectors/.
    proc = mypy()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout, proc.stdout


def test_mypy_does_report_problems_with_the_repository_settings(tmp_path):
    # The checker is live with pyproject.toml's settings: the body of an unannotated
    # function is checked (check_untyped_defs), an Optional used without a check is
    # flagged (union-attr), and an unneeded `type: ignore` is reported (warn_unused_ignores).
    probe = tmp_path / "console" / "typing_probe.py"
    probe.parent.mkdir()
    probe.write_text("from __future__ import annotations\n\n\n"
                     "def first(items: dict[str, str], key: str) -> str:\n"
                     "    return items.get(key).upper()\n\n\n"
                     "def untyped():\n"
                     "    return len(1)\n\n\n"
                     "count: int = 1  # type: ignore[assignment]\n")
    proc = mypy("--config-file", str(REPO / "pyproject.toml"), str(probe), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for code in ("[union-attr]", "[arg-type]", "[unused-ignore]"):
        assert code in proc.stdout, proc.stdout
