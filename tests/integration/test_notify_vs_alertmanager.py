"""The same alerts and the same routing given to the real Alertmanager (Debian's
``prometheus-alertmanager``, its webhooks caught by a local HTTP listener) and to the
dispatcher: the messages must be the same, field for field: which groups notify, their
groupKey, groupLabels, commonLabels, commonAnnotations, the alerts in order with their
fingerprints and times, truncation, and which alerts inhibition leaves out."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import yaml
from sqlalchemy import select

from console.alerting.handlers import rfc3339
from console.notify.config import parse_notifications
from console.notify.dispatch import Dispatcher
from console.notify.inhibit import Inhibitor
from console.notify.model import NotifyAlert
from console.notify.muting import Muting
from console.notify.store import AlertStore
from console.storage.database import Database
from console.storage.models import Notification
from tests.conftest import need
from tests.harness import http, wait_for
from tests.integration.procs import free_port

EXTERNAL = "https://fleetdeck.example"
ROUTING = """
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 2s
  group_interval: 1s
  repeat_interval: 4h
  routes:
    - matchers: ['severity=~"page|critical"']
      receiver: pager
      continue: true
    - matchers: ['team="db"']
      receiver: db
      group_by: ['...']
receivers:
  - name: ops
    webhook_configs: [{url: "HOOK/ops"}]
  - name: pager
    webhook_configs: [{url: "HOOK/pager", max_alerts: 2}]
  - name: db
    webhook_configs: [{url: "HOOK/db"}]
inhibit_rules:
  - source_matchers: ['alertname="HostDown"']
    target_matchers: ['alertname!="HostDown"']
    equal: [host]
"""


class Catcher:
    """Keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                catcher.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def alerts_at(now: float) -> list[dict]:
    """Alerts in Alertmanager's API v2 shape, started less than group_wait ago (an older
    alert makes Alertmanager flush its new group at once, racing the other alerts of the
    same request and the inhibitor), still active."""
    def alert(labels: dict, started: float, **annotations) -> dict:
        return {"labels": labels, "annotations": annotations, "startsAt": rfc3339(started),
                "endsAt": rfc3339(now + 3600), "generatorURL": f"{EXTERNAL}/alerts/rules/g/{labels['alertname']}"}
    return [
        alert({"alertname": "DiskFull", "instance": "b:9100", "job": "node", "host": "b"}, now - 0.5,
              summary="disk", runbook="r1"),
        alert({"alertname": "DiskFull", "instance": "a:9100", "job": "node", "host": "a"}, now - 0.25,
              summary="disk", runbook="r2"),
        alert({"alertname": "DiskFull", "instance": "c:9100", "host": "c"}, now - 1, summary="disk"),
        alert({"alertname": "DiskFull", "host": "d"}, now - 1, summary="disk"),
        alert({"alertname": "Down", "severity": "page", "instance": "x", "job": "api"}, now - 0.125),
        alert({"alertname": "Down", "severity": "critical", "instance": "y", "job": "api"}, now - 0.125),
        alert({"alertname": "Down", "severity": "page", "instance": "z", "job": "web", "team": "db"}, now - 0.125),
        alert({"alertname": "HostDown", "host": "h1", "instance": "h1"}, now - 0.75),
        alert({"alertname": "Load", "host": "h1", "instance": "h1"}, now - 0.75),
        alert({"alertname": "Load", "host": "h2", "instance": "h2", "team": "db"}, now - 0.75),
    ]


def by_group(bodies: list[dict]) -> dict[tuple[str, str], dict]:
    return {(b["receiver"], b["groupKey"]): b for b in bodies}


def to_store(alerts: list[dict]) -> list[NotifyAlert]:
    def ts(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return [NotifyAlert(a["labels"], a["annotations"], starts_at=ts(a["startsAt"]), ends_at=ts(a["endsAt"]),
                        generator_url=a["generatorURL"], source="api") for a in alerts]


def test_messages_equal_alertmanagers(tmp_path):
    """Phase 1: the first notifications (group_wait, grouping, continue, truncation,
    inhibition). Phase 2: one alert of a group resolves and the inhibiting alert resolves:
    the group's message lists the resolved alert, HostDown's says resolved, and the alert
    it inhibited notifies."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        need("alertmanager", "prometheus-alertmanager is not installed")
    catcher = Catcher()
    routing = ROUTING.replace("HOOK", catcher.url)
    config = tmp_path / "alertmanager.yml"
    config.write_text(routing)
    db = Database(f"sqlite:///{tmp_path / 'fleetdeck.db'}")
    db.migrate()
    store, muting = AlertStore(), Muting()
    inhibitor = Inhibitor(store)
    muting.register(inhibitor)
    clock = [0.0]
    dispatcher = Dispatcher(db, store, muting, parse_notifications(yaml.safe_load(routing), lambda loc: None, "n"),
                            inhibitor=inhibitor, default_inhibit_rules=False, external_url=EXTERNAL,
                            clock=lambda: clock[0])

    def ours_after(at: float, put: list[NotifyAlert], flush_at: float) -> dict:
        seen = db.run(lambda s: s.query(Notification).count())
        clock[0] = at
        store.put(put, at)
        asyncio.run(dispatcher.tick(at))
        clock[0] = flush_at
        asyncio.run(dispatcher.tick(flush_at))
        return by_group([orjson.loads(r.payload) for r in db.run(
            lambda s: list(s.scalars(select(Notification).order_by(Notification.id))))][seen:])

    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
                             f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={EXTERNAL}",
                             "--cluster.listen-address="], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    am = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return http("GET", am + "/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def post(alerts: list[dict]) -> None:
        resp = http("POST", am + "/api/v2/alerts", json.dumps(alerts).encode(), {"Content-Type": "application/json"})
        assert resp.status == 200, resp.body

    try:
        wait_for(ready, 30, "Alertmanager to be ready", proc=proc)
        now = round(datetime.now(timezone.utc).timestamp(), 3)
        posted = alerts_at(now)
        post(posted)
        # ops: DiskFull, HostDown (Load of h1 is inhibited: its group sends nothing);
        # pager: Down (x, y, z; truncated to 2); db: Down of z and Load of h2, one group each.
        wait_for(lambda: len(catcher.bodies) >= 5, 30, "Alertmanager's first notifications", proc=proc)
        threading.Event().wait(3)  # longer than group_wait: nothing else is coming
        theirs = by_group(catcher.bodies)
        ours = ours_after(now, to_store(posted), now + 2)
        assert sorted(ours) == sorted(theirs)
        assert len(ours) == 5
        for key in theirs:
            assert ours[key] == theirs[key], key
        assert not any(a["labels"] == {"alertname": "Load", "host": "h1", "instance": "h1"}
                       for b in catcher.bodies for a in b["alerts"])

        first = len(catcher.bodies)
        ended = round(datetime.now(timezone.utc).timestamp(), 3)
        resolved = [dict(a, endsAt=rfc3339(ended)) for a in posted
                    if a["labels"]["alertname"] == "HostDown" or a["labels"].get("instance") == "b:9100"]
        post(resolved)
        wait_for(lambda: len(catcher.bodies) >= first + 3, 30, "Alertmanager's second notifications", proc=proc)
        threading.Event().wait(2)  # two more group_intervals: nothing else is coming
        theirs = by_group(catcher.bodies[first:])
        ours = ours_after(ended + 0.001, to_store(resolved), ended + 1.5)
        assert sorted(ours) == sorted(theirs) == [
            ("ops", '{}:{alertname="DiskFull"}'), ("ops", '{}:{alertname="HostDown"}'),
            ("ops", '{}:{alertname="Load"}')]
        for key in theirs:
            assert ours[key] == theirs[key], key
        assert theirs[("ops", '{}:{alertname="HostDown"}')]["status"] == "resolved"
    finally:
        proc.terminate()
        proc.wait(10)
        dispatcher.close()
        db.close()
