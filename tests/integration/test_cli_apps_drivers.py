"""``fleetdeck apps`` with a Docker, an SSH and a Kubernetes app configured together: the
CLI runs as a real process against a real console and shows each app's target in its
driver's terms (listing apps reaches no engine, host or cluster)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ConsoleHarness

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-apps")
    inventory = {"hosts": {name: {"address": "127.0.0.1", "port": 22, "user": "deploy", "key": "k"}
                           for name in ("web-1", "web-2", "web-3")},
                 "groups": {"web": ["web-1", "web-2"]}}
    apps = {
        "shop": {"target": {"image": "registry.example.com/shop", "replicas": 3}},
        "blog": {"driver": "ssh", "target": {"hosts": ["web", "web-3"], "deploy_to": "/srv/blog",
                                             "batches": {"type": "fixed", "size": 2}}},
        "api": {"driver": "kubernetes", "target": {"image": "registry.example.com/api", "deployment": "api-server",
                                                   "namespace": "prod", "kubeconfig_secret": "absent"}},
        "jobs": {"driver": "kubernetes", "target": {"image": "registry.example.com/jobs",
                                                    "kubeconfig_secret": "absent"}},
    }
    harness = ConsoleHarness(root / "console", apps=apps, inventory=inventory).start()
    harness.cli_env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_URL=harness.url,
                           FLEETDECK_TOKEN=harness.api_token("viewer", "cli"))
    harness.cli_env.pop("FLEETDECK_CONFIG", None)
    yield harness
    harness.close()


def cli(env: ConsoleHarness, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], env=env.cli_env, capture_output=True,
                          text=True, timeout=60)


def test_apps_lists_every_driver_with_its_own_target(env):
    proc = cli(env, "apps")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["APP", "DRIVER", "TARGET", "STRATEGY", "CURRENT", "IN", "PROGRESS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"shop", "blog", "api", "jobs"}
    assert "registry.example.com/shop (3 replicas)" in rows["shop"] and "rolling" in rows["shop"]
    assert "/srv/blog on web, web-3" in rows["blog"] and "batches of 2" in rows["blog"]
    assert "prod/api-server (registry.example.com/api)" in rows["api"]
    assert "jobs (context namespace) (registry.example.com/jobs)" in rows["jobs"]
    assert [rows[n].split()[1] for n in ("shop", "blog", "api", "jobs")] == ["docker", "ssh", "kubernetes",
                                                                              "kubernetes"]


def test_apps_json_keeps_each_driver_summary(env):
    proc = cli(env, "apps", "--json")
    assert proc.returncode == 0, proc.stderr
    by_name = {a["name"]: a for a in json.loads(proc.stdout)}
    assert by_name["blog"]["target"]["deploy_to"] == "/srv/blog"
    assert by_name["api"]["target"]["namespace"] == "prod"
    assert by_name["shop"]["target"]["image"] == "registry.example.com/shop"
