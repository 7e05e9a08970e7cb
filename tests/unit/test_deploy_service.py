"""Deploy service start-up: a deploy a previous console left running is never left running."""
from __future__ import annotations

import asyncio

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
    assert events["finished"] and events["events"][-1]["data"] == {"state": "failed"}
