"""ruff over the code base, with the settings in pyproject.toml (``make lint`` runs the same
check). ruff comes with the ``test`` extra (``pip install -e '.[test]'``); without it these
tests skip, or fail when ``lint`` is in FLEETDECK_REQUIRE.
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


def ruff() -> str:
    path = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not os.access(path, os.X_OK):
        need("lint", "no ruff binary (pip install ruff)")
    return path


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
