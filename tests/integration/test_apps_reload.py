"""Apps reload without a restart on a real ``fleetdeck serve``: SIGHUP, ``fleetdeck apps
reload`` and ``POST /api/v1/apps/reload``; an invalid file is refused whole and the apps in
use stay; a deploy running during the reload keeps its definition (real dockerd)."""
from __future__ import annotations

import signal
import subprocess
import sys

import yaml

from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import http, wait_for
from tests.integration.procs import REPO, ConsoleProcess
from tests.integration.test_deploy_docker import containers

ONE, TWO = run_app("reload-one"), run_app("reload-two")
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")


def app(image: str, replicas: int, slow_start: bool = False) -> dict:
    target = {"image": image, "replicas": replicas, "stop_timeout": 1, "labels": run_labels()}
    if slow_start:  # each container serves after 4 s: the deploy is surely running during the reload
        target["command"] = ["sh", "-c", "sleep 4; exec httpd -f -p 8080 -h /www"]
    return {"target": target, "strategy": {"type": "recreate"}, "timeout": 90,
            "health_check": {"type": "http", "path": "/healthz", "port": 8080, "interval": 0.3,
                             "start_period": 30}}


def test_apps_reload_on_sighup_and_cli_refuses_an_invalid_file_whole(tmp_path, docker_client, docker_images):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"apps": {ONE: app(docker_images, 2, slow_start=True)}}))
    (tmp_path / "data").mkdir()
    console = ConsoleProcess(tmp_path / "data", FLEETDECK_CONFIG=str(config))
    console.start()
    try:
        admin, deployer = (console.api_token(f"t-{role}", role) for role in ("admin", "deployer"))

        def api(method: str, path: str, body: bytes | None = None, token: str = admin):
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            return http(method, console.url + path, body, headers)

        def apps() -> dict:
            return {a["name"]: a for a in api("GET", "/api/v1/apps").json()}

        def deploy_state(deploy_id: int) -> str:
            return api("GET", f"/api/v1/deploys/{deploy_id}").json()["state"]

        assert list(apps()) == [ONE]
        started = api("POST", f"/api/v1/apps/{ONE}/deploys", b'{"version": "1.0"}', deployer).json()
        wait_for(lambda: deploy_state(started["id"]) == "running", 30, "the deploy to start")

        # SIGHUP while it runs: ONE drops to 1 replica without the sleep, TWO is added.
        config.write_text(yaml.safe_dump({"apps": {ONE: app(docker_images, 1), TWO: app(docker_images, 1)}}))
        console.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: TWO in apps(), 30, "SIGHUP to add the second app")
        assert deploy_state(started["id"]) == "running"
        assert apps()[ONE]["target"]["replicas"] == 1
        wait_for(lambda: deploy_state(started["id"]) in FINAL, 90, "the running deploy to finish")
        assert deploy_state(started["id"]) == "succeeded"
        assert len(containers(docker_client, ONE)) == 2  # the definition it started with
        second = api("POST", f"/api/v1/apps/{ONE}/deploys", b'{"version": "2.0"}', deployer).json()
        wait_for(lambda: deploy_state(second["id"]) in FINAL, 90, "the next deploy to finish")
        assert deploy_state(second["id"]) == "succeeded"
        assert [c.labels["fleetdeck.version"] for c in containers(docker_client, ONE)] == ["2.0"]

        # An invalid file is refused whole: the valid change to ONE is not applied either.
        bad = {"apps": {ONE: app(docker_images, 3), TWO: app(docker_images, 1)}}
        bad["apps"][TWO]["target"]["replicas"] = -1
        config.write_text(yaml.safe_dump(bad))
        text = config.read_text().splitlines()
        line = next(i for i, t in enumerate(text, 1) if "replicas: -1" in t)
        env = dict(console.env, FLEETDECK_URL=console.url, FLEETDECK_TOKEN=admin)
        refused = subprocess.run([sys.executable, "-m", "console.cli", "apps", "reload"], env=env, cwd=REPO,
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert f"apps.{TWO}.target.replicas" in refused.stderr and f"{config} line {line}" in refused.stderr
        assert apps()[ONE]["target"]["replicas"] == 1 and TWO in apps()
        answer = api("POST", "/api/v1/apps/reload", b"{}")
        assert answer.status == 422 and answer.json()["error"]["code"] == "apps_refused"
        assert any(f"apps.{TWO}.target.replicas" in e and f"line {line}" in e
                   for e in answer.json()["error"]["details"]["errors"])
        # SIGHUP with the invalid file: refused whole too, the console keeps running
        console.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(e["action"] == "apps.reload" and e["actor"] == "system"
                             and e["details"]["outcome"] == "refused"
                             for e in api("GET", "/api/v1/audit?limit=200").json()["entries"]),
                 30, "the SIGHUP reload to be refused")
        assert apps()[ONE]["target"]["replicas"] == 1 and TWO in apps()
        assert console.proc.poll() is None
        assert api("POST", "/api/v1/apps/reload", b"{}", deployer).status == 403

        config.write_text(yaml.safe_dump({"apps": {ONE: app(docker_images, 1)}}))
        applied = subprocess.run([sys.executable, "-m", "console.cli", "apps", "reload"], env=env, cwd=REPO,
                                 capture_output=True, text=True, timeout=120)
        assert applied.returncode == 0, applied.stderr
        assert f"removed: {TWO}" in applied.stdout
        assert list(apps()) == [ONE]

        entries = [e for e in api("GET", "/api/v1/audit?limit=200").json()["entries"] if e["action"] == "apps.reload"]
        outcomes = [(e["actor"], e["details"]["outcome"]) for e in reversed(entries)]
        # the deployer's refused (403) reload is audited too
        assert outcomes == [("system", "applied"), ("api:t-admin", "refused"), ("api:t-admin", "refused"),
                            ("system", "refused"), ("api:t-deployer", "denied"), ("api:t-admin", "applied")]
        assert entries[1]["target"] == "apps" and entries[1]["details"]["code"] == "forbidden", entries[1]
        assert any(f"apps.{TWO}.target.replicas" in e for e in entries[2]["details"]["errors"]), entries[2]
        assert entries[-1]["details"]["added"] == [TWO] and entries[-1]["details"]["changed"] == [ONE]
        assert console.proc.poll() is None
    finally:
        console.stop()
        remove_run_containers(docker_client)
