"""Forwarding to a real Alertmanager (Debian's prometheus-alertmanager) on loopback,
checked with its own amtool; and a console restart with notifications queued: each is
delivered exactly once."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from tests.conftest import database_url, need
from tests.harness import ConsoleHarness, http, wait_for
from tests.integration.notify_peers import HttpReceiver, alerting_config, v4_payload
from tests.integration.procs import free_port
from tests.integration.test_notify_receivers import host_down, log_entry, queue, start_console

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def test_forward_to_a_real_alertmanager(tmp_path):
    amtool = shutil.which("amtool")
    if not os.path.exists(ALERTMANAGER) or amtool is None:
        need("alertmanager", f"{ALERTMANAGER} or amtool is not installed")
    port, cluster = free_port(), free_port()
    (tmp_path / "am.yml").write_text("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    proc = subprocess.Popen([ALERTMANAGER, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
                             f"--web.listen-address=127.0.0.1:{port}", f"--cluster.listen-address=127.0.0.1:{cluster}",
                             "--cluster.advertise-address=127.0.0.1:" + str(cluster)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    am = f"http://127.0.0.1:{port}"
    console = None
    try:
        wait_for(lambda: _ready(am), 30, "Alertmanager", proc=proc)
        console = start_console(tmp_path, [{"name": "am", "alertmanager_configs": [{"url": am + "/api/v2/alerts"}]}])
        alert = host_down("web-7")
        alert["generator_url"] = "http://fleetdeck.test:8700/alerts/rules/fleetdeck-host/HostDown"
        queue(console, "am", "alertmanager[0]", v4_payload("am", [alert], {"alertname": "HostDown"}))
        token = console.api_token("viewer")
        sent = wait_for(lambda: log_entry(console, token, "am", "sent"), 15, "the forward")
        assert sent["last_status"] == 200

        def query() -> list:
            out = subprocess.run([amtool, f"--alertmanager.url={am}", "alert", "query", "-o", "json",
                                  "alertname=HostDown"], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)
        alerts = wait_for(query, 10, "amtool to list the alert")
        assert len(alerts) == 1
        got = alerts[0]
        assert got["labels"] == {"alertname": "HostDown", "instance": "web-7", "job": "node", "severity": "critical"}
        assert got["annotations"]["summary"] == "Host web-7 stopped reporting."
        assert got["generatorURL"] == alert["generator_url"] and got["status"]["state"] == "active"
        # Resolved: forwarded with its endsAt; Alertmanager no longer lists it as active.
        queue(console, "am", "alertmanager[0]", v4_payload("am", [host_down("web-7", resolved=True)],
                                                          {"alertname": "HostDown"}))
        wait_for(lambda: not query(), 15, "the alert to resolve in Alertmanager")
    finally:
        if console is not None:
            console.close()
        proc.terminate()
        proc.wait(10)


def _ready(url: str) -> bool:
    try:
        return http("GET", url + "/-/ready", timeout=2).status == 200
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_restart_with_notifications_queued_delivers_each_once(tmp_path, tmp_path_factory, kind):
    """Rows queued while the receiver is down, and rows in flight to a slow receiver when
    the console stops: after a restart each arrives exactly once."""
    with database_url(kind, tmp_path_factory) as url:
        _restart(tmp_path, url)


def _restart(tmp_path, url: str) -> None:
    port = free_port()
    # Nothing listens there yet: the first attempts fail to connect and are retried.
    receivers = [{"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{port}"}]}]
    data = tmp_path / "console"
    console = ConsoleHarness(data, database_url=url,
                             alerting=alerting_config(receivers, backoff_initial=0.5, backoff_max=1.0)).start()
    payloads = [v4_payload("hook", [host_down(f"web-{i}")], {"alertname": "HostDown", "instance": f"web-{i}"})
                for i in range(20)]
    try:
        for p in payloads[:10]:
            queue(console, "hook", "webhook[0]", p)
        token = console.api_token("viewer")
        wait_for(lambda: all(e["attempts"] >= 1 for e in console.request(
            "GET", "/api/v1/notifications?limit=100", token=token).json()["notifications"]), 10, "first attempts")
    finally:
        console.close()
    peer = HttpReceiver(delay=0.3, port=port).start()
    try:
        console = ConsoleHarness(data, database_url=url, alerting=alerting_config(
            receivers, backoff_initial=0.5, backoff_max=1.0, concurrency=4)).start()
        try:
            for p in payloads[10:]:
                queue(console, "hook", "webhook[0]", p)
            time.sleep(0.5)  # some in flight to the slow receiver
        finally:
            console.close()
        in_first = len(peer.received)
        assert 0 < in_first < 20
        console = ConsoleHarness(data, database_url=url, alerting=alerting_config(receivers, poll_interval=0.1)).start()
        try:
            token = console.api_token("viewer")
            wait_for(lambda: sum(1 for e in console.request("GET", "/api/v1/notifications?status=sent&limit=100",
                                                            token=token).json()["notifications"]) == 20,
                     30, "all 20 sent")
            time.sleep(1.0)
        finally:
            console.close()
        keys = [json.dumps(r.json()["groupLabels"], sort_keys=True) for r in peer.received]
        assert sorted(keys) == sorted(json.dumps(p["groupLabels"], sort_keys=True) for p in payloads)
    finally:
        peer.close()

