"""Rules the suite itself keeps: a missing optional library goes through ``need()`` like a
missing service, so naming the service in ``FLEETDECK_REQUIRE`` turns the skip into a failure.

Each case runs pytest in a child interpreter where the library cannot be imported
(``sys.modules[name] = None`` makes ``import name`` raise ImportError)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_WITHOUT = ("import sys, pytest\n"
               "for name in sys.argv[1].split(','):\n"
               "    sys.modules[name] = None\n"
               "sys.exit(pytest.main(sys.argv[2:]))\n")


def pytest_without(libraries: str, node: str, require: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEETDECK_REQUIRE": require,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT, libraries, node, "-q", "-rsf", "-p", "no:cacheprovider",
                           "-p", "no:randomly"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("libraries, node, service", [
    ("playwright,playwright.sync_api", "tests/browser/test_login_redirects.py", "browser"),
    ("kubernetes_validate", "tests/unit/test_deploy_files.py::test_schema_validation_does_catch_mistakes",
     "kubernetes_validate"),
])
def test_a_missing_library_skips_or_fails_as_its_service_is_required(libraries, node, service):
    skipped = pytest_without(libraries, node, require="")
    assert skipped.returncode == 0, skipped.stdout[-3000:]
    assert f"{service} unavailable" in skipped.stdout and "skipped" in skipped.stdout, skipped.stdout[-3000:]
    assert " passed" not in skipped.stdout

    failed = pytest_without(libraries, node, require=service)
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert f"required service '{service}' unavailable" in failed.stdout, failed.stdout[-3000:]
