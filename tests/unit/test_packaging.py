"""Packaging: an installed (non-editable) Fleetdeck has every module, and the agent is a
distribution of its own (agent/setup.py) that needs only psutil and PyYAML and installs
alone into a fresh virtualenv, offline from a wheelhouse."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def test_every_source_folder_is_found_by_setup():
    packaged = set(find_packages(where=str(REPO), include=["console*", "agents*", "collectors*"]))
    for top in ("console", "agents", "collectors"):
        for folder in [REPO / top, *(p for p in (REPO / top).rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts or "migrations" in folder.relative_to(REPO).parts:
                continue  # migrations ship as package data of console.storage
            if any(folder.glob("*.py")):
                name = ".".join(folder.relative_to(REPO).parts)
                assert name in packaged, f"{name} has modules but no __init__.py: a wheel would lack it"


def clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH (so nothing is imported from this checkout) and
    without Fleetdeck's own variables."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("FLEETDECK_")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """Both wheels, built as docs/install.md says, from a scratch copy of the sources (the
    build leaves build/ and *.egg-info behind, which stay out of the checkout)."""
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in ("console", "agents", "collectors"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    (src / "agent").mkdir()
    shutil.copy2(REPO / "setup.py", src / "setup.py")
    shutil.copy2(REPO / "agent" / "setup.py", src / "agent" / "setup.py")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), ".", "./agent"],
                          cwd=src, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def wheel_facts(path: Path) -> tuple[set[str], list[str], str]:
    """(top-level names, Requires-Dist lines, entry_points.txt) of a wheel."""
    with zipfile.ZipFile(path) as whl:
        names = whl.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta = whl.read(f"{info}/METADATA").decode()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    tops = {n.split("/")[0] for n in names} - {info}
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    return tops, requires, entry_points


def requirement_name(spec: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", spec).group(0).lower()


def test_the_agent_wheel_holds_the_agent_only_and_needs_psutil_and_pyyaml(dist):
    tops, requires, entry_points = wheel_facts(next(dist.glob("fleetdeck_agent-*.whl")))
    assert tops == {"agents", "collectors"}
    assert sorted(requirement_name(r) for r in requires) == ["psutil", "pyyaml"]
    assert re.search(r"^fleetdeck-agent = agents\.cli:main$", entry_points, re.M)


def test_the_console_wheel_depends_on_the_agent_distribution(dist):
    tops, requires, entry_points = wheel_facts(next(dist.glob("fleetdeck-*.whl")))
    assert tops == {"console"}
    assert "fleetdeck-agent==0.1.0" in requires
    assert "psutil" not in {requirement_name(r) for r in requires}  # it comes with the agent
    assert re.search(r"^fleetdeck = console\.cli:main$", entry_points, re.M)
    assert "fleetdeck-agent" not in entry_points


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_agent_installs_alone_offline_into_a_fresh_venv(dist, tmp_path):
    agent_wheel = next(dist.glob("fleetdeck_agent-*.whl"))
    _, requires, _ = wheel_facts(agent_wheel)
    wheelhouse = tmp_path / "wheelhouse"
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:",
                          "-d", str(wheelhouse), *requires], env=clean_env(), capture_output=True, text=True,
                         timeout=300)
    assert got.returncode == 0, got.stdout + got.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    empty = tree_bytes(venv)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    installed = subprocess.run([*pip, "install", "-q", "--no-index", "--find-links", str(wheelhouse),
                                "--find-links", str(dist), "fleetdeck-agent"],
                               env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run([*pip, "list", "--format", "json"], env=clean_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)} - {"pip", "setuptools"}
    assert names == {"fleetdeck-agent", "psutil", "pyyaml"}
    # Installed size, as docs/install.md reports it (4.7 MiB measured): far below the console's.
    assert tree_bytes(venv) - empty < 8 * MiB
    helped = subprocess.run([str(venv / "bin" / "fleetdeck-agent"), "--help"], env=clean_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "enrol" in helped.stdout, helped.stderr
    # It runs: collects a batch (psutil, /proc) and reports the unreachable console.
    once = subprocess.run([str(venv / "bin" / "fleetdeck-agent"), "--once", "--console", "http://127.0.0.1:9",
                           "--token", "t", "--host", "pkg-test", "--config", os.devnull],
                          env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert once.returncode == 2 and "cannot reach the console" in once.stderr, once.stdout + once.stderr
    absent = subprocess.run([str(venv / "bin" / "python"), "-c", "import console"], env=clean_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert absent.returncode == 1 and "No module named 'console'" in absent.stderr
