"""Deploy service start-up: a deploy a previous console left running is never left running,
and one a live console on the same database runs is left to it."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

from console.audit.service import AuditService
from console.deploy.apps import parse_apps
from console.deploy.service import DeployService
from console.live import LiveBus
from console.storage import Database
from console.storage.models import Deploy, DeployStep

APPS = parse_apps({"web": {"target": {"image": "fleetdeck-test/web", "engine": "unix:///nonexistent/docker.sock"}}})


def test_a_deploy_left_running_is_marked_failed_with_a_reason_on_start(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    db.migrate()

    def left_running(session):
        d = Deploy(app="web", version="2.0", kind="deploy", state="running", requested_by="api:ci", source="cli",
                   reason="", created_at=1.0, started_at=2.0, timeout_s=600, cleanup_pending=False)
        session.add(d)
        session.flush()
        session.add(DeployStep(deploy_id=d.id, position=0, name="rolling update", state="running", message="",
                               started_at=2.0))
        return d.id

    deploy_id = db.run(left_running)
    service = DeployService(db, LiveBus(), AuditService(), APPS, clock=lambda: 100.0, cleanup_interval=3600)

    async def start_and_read():
        service.start()
        return await service.get(deploy_id), await service.events(deploy_id)

    deploy, events = asyncio.run(start_and_read())
    service.close()
    db.close()
    assert deploy["state"] == "failed" and deploy["finished_at"] == 100.0
    assert "console restarted while the deploy was running" in deploy["error"]
    assert deploy["cleanup_pending"] is True  # its containers are removed once the engine answers
    assert deploy["steps"][0]["state"] == "failed"
    assert events["finished"] and events["events"][-1]["data"] == {"state": "failed", "i18n": {
        "template": "the console restarted while the deploy was running; its containers are cleaned up", "values": {}}}


def test_on_start_a_dead_local_runners_deploy_ends_at_once_a_live_replicas_stays(tmp_path):
    """A console restarted on its own host ends its old process's deploy at start, without
    waiting for the lease to lapse; a deploy whose runner lives (another console) keeps running."""
    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    db.migrate()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    host = socket.gethostname()
    runners = {"dead": f"{host}:{gone.stdout.strip()}:0000", "alive": f"{host}:{os.getppid()}:1111"}

    def left_running(session):
        ids = {}
        for name, runner in runners.items():
            d = Deploy(app="web", version="2.0", kind="deploy", state="running", requested_by="api:ci", source="cli",
                       reason="", created_at=1.0, started_at=2.0, timeout_s=600, cleanup_pending=False,
                       runner=runner, lease_until=110.0)  # leases still valid at the clock's 100 s
            session.add(d)
            session.flush()
            ids[name] = d.id
        return ids

    ids = db.run(left_running)
    service = DeployService(db, LiveBus(), AuditService(), APPS, clock=lambda: 100.0, cleanup_interval=3600)

    async def start_and_read():
        service.start()
        return {name: await service.get(i) for name, i in ids.items()}

    deploys = asyncio.run(start_and_read())
    service.close()
    db.close()
    assert deploys["dead"]["state"] == "failed" and deploys["dead"]["cleanup_pending"] is True
    assert "console restarted while the deploy was running" in deploys["dead"]["error"]
    assert deploys["alive"]["state"] == "running" and deploys["alive"]["error"] is None
