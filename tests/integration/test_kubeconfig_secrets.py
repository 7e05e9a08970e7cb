"""Stored kubeconfigs hold inline credentials only, and reads never reach the cluster:
through the real console over HTTP, with the official client and the KMock Kubernetes
API mock (tests/k8s_mock.py), which counts the requests it receives. The hostile
kubeconfig's exec plugin would create a marker file; it must never appear."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import insert

from console.secrets import SecretBox, load_keys
from console.storage.models import StoredSecret
from tests.harness import ConsoleHarness
from tests.k8s_mock import KubeMock

NS, NAME = "prod", "web"
REPO = Path(__file__).resolve().parents[2]


def kubeconfig(server: str, user: dict, cluster: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "mock",
            "clusters": [{"name": "mock", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "ci", "user": user}],
            "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "ci", "namespace": NS}}]}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("kubeconfig")
    mock = KubeMock().start()
    try:
        mock.seed(NS, NAME, "registry.example.com/web:1.0", replicas=2)
        target = {"image": "registry.example.com/web", "deployment": NAME, "context": "mock", "poll_interval": 0.05}
        apps = {"shop": {"driver": "kubernetes", "timeout": 30, "target": {**target, "kubeconfig_secret": "legacy"}},
                "web": {"driver": "kubernetes", "timeout": 60, "target": {**target, "kubeconfig_secret": "good"}}}
        harness = ConsoleHarness(root / "console", apps=apps).start()
        harness.root, harness.mock = root, mock
        harness.admin = harness.api_token("admin", "admin")
        harness.deployer = harness.api_token("deployer", "ci")
        harness.viewer = harness.api_token("viewer", "viewer")
        yield harness
        harness.close()
    finally:
        mock.stop()


def exec_user(marker) -> dict:
    """An exec credential plugin that leaves ``marker`` behind and hands out a token."""
    credential = json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                             "status": {"token": "stolen"}})
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/sh",
                     "args": ["-c", f"touch {marker}; echo '{credential}'"]}}


@pytest.mark.parametrize("user, cluster, field", [
    ("exec", None, "users[0].user.exec"),
    ({"auth-provider": {"name": "oidc", "config": {"client-id": "x"}}}, None, "users[0].user.auth-provider"),
    ({"tokenFile": "/etc/shadow"}, None, "users[0].user.tokenFile"),
    ({"client-certificate": "/etc/ssl/c.pem", "client-key": "/etc/ssl/k.pem"}, None,
     "users[0].user.client-certificate"),
    ({"token": "t"}, {"certificate-authority": "/etc/ssl/ca.pem"}, "clusters[0].cluster.certificate-authority"),
    ({"token": "t", "password": "p"}, None, "users[0].user.password"),
])
def test_store_refuses_plugins_and_file_references_naming_the_field(env, user, cluster, field):
    marker = env.root / "stored.marker"
    if user == "exec":
        user = exec_user(marker)
    value = yaml.safe_dump(kubeconfig(env.mock.url, user, cluster))
    resp = env.request("POST", "/api/v1/secrets", {"name": "hostile", "kind": "kubeconfig", "value": value},
                       token=env.admin)
    assert resp.status == 422, resp.body
    error = resp.json()["error"]
    assert error["code"] == "secret_kubeconfig_refused" and error["details"] == {"field": field}
    assert field in error["message"]
    names = [s["name"] for s in env.request("GET", "/api/v1/secrets", token=env.admin).json()["secrets"]]
    assert "hostile" not in names
    assert not marker.exists()


def test_store_accepts_inline_token_and_inline_client_certificate(env):
    for user in ({"token": "abc"}, {"client-certificate-data": "Y2VydA==", "client-key-data": "a2V5"}):
        value = yaml.safe_dump(kubeconfig(env.mock.url, user, {"certificate-authority-data": "Y2E="}))
        resp = env.request("POST", "/api/v1/secrets", {"name": "fine", "kind": "kubeconfig", "value": value},
                           token=env.admin)
        assert resp.status == 201, resp.body


def test_a_hostile_kubeconfig_stored_earlier_never_runs_on_read_or_deploy(env):
    marker = env.root / "loaded.marker"
    # As an older console stored it: encrypted under the console's key, never checked.
    box = SecretBox(load_keys(env.config.secret_key_file))
    hostile = yaml.safe_dump(kubeconfig(env.mock.url, exec_user(marker)))
    now = time.time()
    env.services.db.run(lambda s: s.execute(insert(StoredSecret).values(
        name="legacy", kind="kubeconfig", ciphertext=box.encrypt(hostile), created_at=now, updated_at=now,
        updated_by="user:admin")))
    before = env.mock.requests

    resp = env.request("GET", "/api/v1/apps/shop", token=env.viewer)
    assert not marker.exists(), "a viewer's GET ran the kubeconfig's exec plugin"
    assert env.mock.requests == before, "a read-only GET contacted the cluster"
    assert resp.status == 200, resp.body
    assert resp.json()["instances"] is None

    resp = env.request("POST", "/api/v1/apps/shop/deploys", {"version": "2.0"}, token=env.deployer)
    assert resp.status == 202, resp.body
    deploy_id = resp.json()["id"]
    deadline = time.monotonic() + 30
    while (d := env.request("GET", f"/api/v1/deploys/{deploy_id}", token=env.deployer).json())["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert d["state"] == "failed"
    assert "users[0].user.exec" in d["error"] and "refused" in d["error"]
    assert not marker.exists(), "a deploy ran the stored kubeconfig's exec plugin"
    assert env.mock.requests == before


def test_reads_answer_from_the_last_deploy_without_contacting_the_cluster(env):
    m = env.mock
    good = yaml.safe_dump(kubeconfig(m.url, {"token": "test-token"}))
    assert env.request("POST", "/api/v1/secrets", {"name": "good", "kind": "kubeconfig", "value": good},
                       token=env.admin).status == 201
    before = m.requests
    first = env.request("GET", "/api/v1/apps/web", token=env.viewer).json()
    assert first["instances"] is None and "deploy" in first["error"]
    assert m.requests == before

    resp = env.request("POST", "/api/v1/apps/web/deploys", {"version": "2.0"}, token=env.deployer)
    assert resp.status == 202, resp.body
    m.wait_for(NS, NAME, lambda d: d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0"))
    m.complete(NS, NAME)
    deadline = time.monotonic() + 60
    while (d := env.request("GET", f"/api/v1/deploys/{resp.json()['id']}", token=env.deployer).json())[
            "state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert d["state"] == "succeeded", d

    after_deploy = m.requests
    shown = env.request("GET", "/api/v1/apps/web", token=env.viewer).json()
    assert [i["version"] for i in shown["instances"]] == ["2.0"]
    assert m.requests == after_deploy, "a read-only GET contacted the cluster"


def test_cli_secrets_set_refuses_an_exec_kubeconfig_naming_the_field(env):
    marker = env.root / "cli.marker"
    cli_env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_DATA_DIR=str(env.config.data_dir))
    cli_env.pop("FLEETDECK_CONFIG", None)

    def secrets_set(name: str, value: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "console.cli", "secrets", "set", name, "--kind", "kubeconfig"],
                              input=value, env=cli_env, capture_output=True, text=True, timeout=60)

    refused = secrets_set("cli-hostile", yaml.safe_dump(kubeconfig(env.mock.url, exec_user(marker))))
    assert refused.returncode == 2, refused.stdout
    assert "users[0].user.exec" in refused.stderr and "refused" in refused.stderr
    names = [s["name"] for s in env.request("GET", "/api/v1/secrets", token=env.admin).json()["secrets"]]
    assert "cli-hostile" not in names
    misnamed = secrets_set("no spaces allowed", yaml.safe_dump(kubeconfig(env.mock.url, {"token": "abc"})))
    assert misnamed.returncode == 2 and "a secret name is" in misnamed.stderr, (misnamed.returncode, misnamed.stderr)
    stored = secrets_set("cli-fine", yaml.safe_dump(kubeconfig(env.mock.url, {"token": "abc"})))
    assert stored.returncode == 0, stored.stderr
    names = [s["name"] for s in env.request("GET", "/api/v1/secrets", token=env.admin).json()["secrets"]]
    assert "cli-fine" in names
    assert not marker.exists()
