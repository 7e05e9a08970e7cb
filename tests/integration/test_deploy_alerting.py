"""Deploy-aware alerting against a real dockerd and a real console: alerts on an app's
hosts are held (muted with ``deploy:<id>``) while a real deploy runs and for the settle
time after it, and the post-deploy watch compares signals ingested through the real
agent API before and after a real deploy and raises ``DeployRegression`` through the
rule pipeline. The console's clock is set by the test; deploys run in real time."""
from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from console.config import AlertingConfig
from console.storage.models import AlertHistory
from tests.api.test_alerting import T0, Clock, alerts, evaluate, history
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness, logged_in, wait_for

HOLD, SHOP = run_app("hold"), run_app("shop")
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")
RULES = """groups:
  - name: hold
    interval: 1h
    rules:
      - alert: Hot
        expr: hold_temp > 50
"""


def app(repository: str, hosts: list[str]) -> dict:
    return {"driver": "docker", "hosts": hosts, "timeout": 120,
            "target": {"image": repository, "stop_timeout": 1, "labels": run_labels()}}


def wait_state(console, token: str, deploy_id: int, states: tuple, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = console.request("GET", f"/api/v1/deploys/{deploy_id}", token=token).json()
        if d["state"] in states:
            return d
        assert time.monotonic() < deadline, f"deploy {deploy_id} stayed {d['state']}"
        time.sleep(0.2)


def run(console, coro):
    return asyncio.run_coroutine_threadsafe(coro, console.loop).result(60)


def push_at(console, clock: Clock, host: str, token: str, name: str, points: list, labels: dict | None = None):
    """Samples at T0 + t through the ingest API (the clock first moved to the last one)."""
    clock.now = max(clock.now, T0 + max(t for t, _ in points))
    status, body = console.push(host, token, [{"name": name, "type": "gauge", "labels": labels or {},
                                               "points": [[(T0 + t) * 1000, float(v)] for t, v in points]}])
    assert status == 200 and "rejected" not in body, body


@pytest.fixture()
def docker_run(docker_client, docker_images):
    remove_run_containers(docker_client)
    yield docker_images
    remove_run_containers(docker_client)


def test_alerts_on_an_apps_hosts_are_held_while_it_deploys_and_for_the_settle_time(tmp_path, docker_run):
    rules = tmp_path / "r.yml"
    rules.write_text(RULES)
    clock = Clock(T0)
    config = AlertingConfig(rule_files=[str(rules)], evaluation_interval=3600.0, default_rules=False,
                            deploy_settle=300.0)
    console = ConsoleHarness(tmp_path / "data", apps={HOLD: app(docker_run, ["hold-1"])}, alerting=config,
                             clock=clock).start()
    try:
        deployer, viewer = console.api_token("deployer"), console.api_token("viewer")
        agents = {h: console.agent_token(h) for h in ("hold-1", "other-1", "other-2")}
        # "slow" stays unhealthy-starting: the deploy runs until it is cancelled
        resp = console.request("POST", f"/api/v1/apps/{HOLD}/deploys", {"version": "slow"}, token=deployer)
        assert resp.status == 202, resp.body
        deploy_id = resp.json()["id"]
        wait_state(console, viewer, deploy_id, ("running",))
        reason = f"deploy:{deploy_id}"
        # the hold re-reads the deploys every second by itself
        wait_for(lambda: console.services.muting.muted_by({"host": "hold-1"}, T0 + 1) == [reason], timeout=10,
                 what="the hold of the running deploy")

        def flap(t: int, value: float) -> None:
            push_at(console, clock, "hold-1", agents["hold-1"], "hold_temp", [(t, value)])
            push_at(console, clock, "other-1", agents["other-1"], "hold_temp", [(t, value)])
            # another host's series that names the app
            push_at(console, clock, "other-2", agents["other-2"], "hold_temp", [(t, value)], {"app": HOLD})
            evaluate(console, clock, T0 + t)

        flap(10, 90)  # during the deploy
        clock.now = T0 + 20
        assert console.request("POST", f"/api/v1/deploys/{deploy_id}/cancel", token=deployer).status == 202
        done = wait_state(console, viewer, deploy_id, FINAL)
        assert (done["state"], done["finished_at"]) == ("cancelled", T0 + 20)
        run(console, console.services.deploy_hold.refresh())
        flap(100, 0)
        flap(200, 90)  # settling: 180 s after the deploy ended, still held
        flap(320, 0)
        flap(330, 90)  # 310 s after: no longer held
        rows = console.services.db.run(lambda s: s.execute(
            select(AlertHistory.ts, AlertHistory.labels, AlertHistory.state, AlertHistory.muted_by)
            .where(AlertHistory.state == "firing").order_by(AlertHistory.id)).all())
        fired = {(round(ts - T0), '"hold-1"' in labels, '"app"' in labels): muted for ts, labels, _, muted in rows}
        assert fired == {
            (10, True, False): reason, (10, False, False): None, (10, False, True): reason,
            (200, True, False): reason, (200, False, False): None, (200, False, True): reason,
            (330, True, False): None, (330, False, False): None, (330, False, True): None}
        muting = console.services.muting
        assert muting.muted_by({"host": "hold-1"}, T0 + 20 + 299.9) == [reason]
        assert muting.muted_by({"host": "hold-1"}, T0 + 20 + 300) == []
        assert muting.muted_by({"instance": "hold-1"}, T0 + 5) == [reason]
        assert muting.muted_by({"host": "hold-1"}, T0 - 1) == []  # before the deploy started
        # an alert about the deploy itself is not held by it
        assert muting.muted_by({"alertname": "DeployFailed", "app": HOLD, "deploy_id": str(deploy_id)}, T0 + 25) == []
        assert "Hot" in alerts(console, viewer)  # held, not dropped: the alert is firing
    finally:
        console.close()


def test_a_regression_after_a_real_deploy_raises_deploy_regression_with_a_rollback_link(tmp_path, docker_run):
    empty = tmp_path / "none.yml"
    empty.write_text("groups: []\n")
    clock = Clock(T0)
    watch = {SHOP: {"window": "10m", "signals": [
        {"name": "error_rate", "expr": f'max(shop_error_ratio{{app="{SHOP}"}})', "ratio": 0.5},
        {"name": "latency", "expr": "max(shop_latency_seconds)", "absolute": 0.5},
        {"name": "restarts", "expr": "sum(shop_restarts_total)", "absolute": 0}]}}
    config = AlertingConfig.model_validate({"rule_files": [str(empty)], "evaluation_interval": 3600.0,
                                            "default_rules": True, "deploy_watch": watch})
    console = ConsoleHarness(tmp_path / "data", apps={SHOP: app(docker_run, ["shop-1"])}, alerting=config,
                             clock=clock).start()
    try:
        deployer, viewer = console.api_token("deployer"), console.api_token("viewer")
        agent = console.agent_token("shop-1")
        first = console.request("POST", f"/api/v1/apps/{SHOP}/deploys", {"version": "1.0"}, token=deployer)
        assert wait_state(console, viewer, first.json()["id"], FINAL)["state"] == "succeeded"
        before, after = range(100, 700, 30), range(700, 1301, 30)
        push_at(console, clock, "shop-1", agent, "shop_error_ratio", [(t, 0.01) for t in before], {"app": SHOP})
        push_at(console, clock, "shop-1", agent, "shop_latency_seconds", [(t, 0.20) for t in before])
        clock.now = T0 + 700
        resp = console.request("POST", f"/api/v1/apps/{SHOP}/deploys", {"version": "2.0"}, token=deployer)
        assert resp.status == 202, resp.body
        deploy_id = resp.json()["id"]
        done = wait_state(console, viewer, deploy_id, FINAL)
        assert (done["state"], done["started_at"], done["finished_at"]) == ("succeeded", T0 + 700, T0 + 700)
        push_at(console, clock, "shop-1", agent, "shop_error_ratio", [(t, 0.20) for t in after], {"app": SHOP})
        push_at(console, clock, "shop-1", agent, "shop_latency_seconds", [(t, 0.25) for t in after])
        watcher = console.services.deploy_watch
        clock.now = T0 + 1299  # the second deploy's window after it has not passed yet
        judged = run(console, watcher.tick())
        # the first deploy (at T0) had no data before it: nothing to compare, no regression
        assert sorted((v["deploy_id"], v["signal"], v["regression"]) for v in judged) == [
            (first.json()["id"], "error_rate", False), (first.json()["id"], "latency", False),
            (first.json()["id"], "restarts", False)]
        clock.now = T0 + 1300
        judged = run(console, watcher.tick())
        assert {v["deploy_id"] for v in judged} == {deploy_id}
        verdicts = {v["signal"]: v for v in judged}
        assert {k: (round(v["before"], 4) if v["before"] is not None else None,
                    round(v["after"], 4) if v["after"] is not None else None, v["regression"])
                for k, v in verdicts.items()} == {
            "error_rate": (0.01, 0.2, True), "latency": (0.2, 0.25, False), "restarts": (None, None, False)}
        assert run(console, watcher.tick()) == []  # judged once
        evaluate(console, clock, T0 + 1310)
        a = alerts(console, viewer)["DeployRegression"]
        assert a["state"] == "firing"
        assert {k: a["labels"][k] for k in ("app", "deploy_id", "signal", "severity")} == {
            "app": SHOP, "deploy_id": str(deploy_id), "signal": "error_rate", "severity": "warning"}
        assert a["annotations"]["rollback_url"] == f"/deploys/{deploy_id}#rollback"
        assert a["annotations"]["summary"] == f"Deploy {deploy_id} of {SHOP} made error_rate worse."
        assert float(a["value"]) == pytest.approx(0.2)
        assert [s for _, s, _ in history(console, viewer, alertname="DeployRegression", since=T0,
                                         until=T0 + 9000)] == ["pending", "firing"]
        # the deploy page offers the rollback the link points at to a deployer (a viewer reads the page)
        page = logged_in(console, "deployer").request("GET", f"/deploys/{deploy_id}")
        assert page.status == 200 and b'id="rollback"' in page.body and b"to 1.0" in page.body
        read_only = logged_in(console, "viewer").request("GET", f"/deploys/{deploy_id}")
        assert read_only.status == 200 and b'id="rollback"' not in read_only.body
        text = " ".join(read_only.body.decode().split())  # the watch's verdicts, to decide on the rollback
        assert ('<tr data-signal="error_rate"><td>error_rate</td> <td>0.01</td> <td>0.2</td> '
                '<td class="state-firing">regression</td></tr>') in text
        assert ('<tr data-signal="restarts"><td>restarts</td> <td>no data</td> <td>no data</td> '
                '<td class="">ok</td></tr>') in text
        # an hour after the verdict the series ends and the alert resolves
        evaluate(console, clock, T0 + 1300 + 3600)
        assert "DeployRegression" not in alerts(console, viewer)
        assert [s for _, s, _ in history(console, viewer, alertname="DeployRegression", since=T0,
                                         until=T0 + 9000)] == ["pending", "firing", "resolved"]
    finally:
        console.close()
