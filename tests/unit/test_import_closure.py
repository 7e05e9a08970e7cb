"""The agent's import closure stays small (docs/architecture.md): psutil, PyYAML and
the standard library only, checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tornado", "sqlalchemy", "docker", "kubernetes", "paramiko", "orjson")
# Top-level modules outside the standard library the agent may load.
ALLOWED_THIRD_PARTY = {"agents", "collectors", "yaml", "_yaml", "psutil", "cython_runtime"}
ALLOWED_PREFIXES = ("_psutil", "_cython_")  # extension modules of psutil and PyYAML

# Reports the top-level modules the agent's imports added to a fresh interpreter
# (site hooks such as setuptools' _distutils_hack are loaded before and left out).
PROBE = """
import sys
before = set(sys.modules)
import json
import agents, agents.agent, agents.cli, agents.client, agents.config
import collectors, collectors.host
samples = list(collectors.host.HostCollector().collect())
added = {n.split(".")[0] for n in set(sys.modules) - before}
everything = {n.split(".")[0] for n in sys.modules}
print(json.dumps({"samples": len(samples), "added": sorted(added), "all": sorted(everything)}))
"""


def run_probe() -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_agent_import_closure_excludes_console_dependencies():
    report = run_probe()
    assert report["samples"] > 0
    loaded = [name for name in FORBIDDEN if name in report["all"]]
    assert loaded == [], f"agent imports pulled in {loaded}"


def test_agent_import_closure_is_stdlib_yaml_and_psutil_only():
    modules = set(run_probe()["added"])
    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    extra = sorted(m for m in modules - stdlib if not m.startswith(ALLOWED_PREFIXES) and m not in ALLOWED_THIRD_PARTY)
    assert extra == [], f"unexpected third-party modules in the agent: {extra}"
