"""A disk filling up on a real agent host, end to end: a small tmpfs (reported by the host
collector: tmpfs is not among node_exporter's excluded filesystem types) is filled past
90 % while a real ``python -m agents`` process reports it, the console's own evaluation
loop fires the shipped ``HostFilesystemAlmostFull`` rule, the alert is listed by
``/prometheus/api/v1/alerts``, ``fleetdeck alerts --json``, the Alerts page and the host
page's chart, and it resolves once the file is deleted (its ``fleetdeck_recover_expr``
needs over 15 % free).

The rule file is the shipped console/alerting/default_rules.yml with only the ``for:`` of
HostFilesystemAlmostFull shortened to seconds and its group's interval to 2 s: the ``for``
and recovery semantics are covered with a controlled clock by tests/api/test_alerting.py;
this test checks the shipped expression end to end on real data.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import yaml

from collectors.host import DEFAULT_MOUNT_POINTS_EXCLUDE
from console.config import AlertingConfig
from tests.browser.playwright_api import MISSING, expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.conftest import need
from tests.harness import ConsoleHarness, wait_for

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "console" / "alerting" / "default_rules.yml"
HOST = "diskfull-agent"
RULE = "HostFilesystemAlmostFull"


def shipped_rules_with_short_for(path: Path) -> None:
    """Write the shipped default rules to ``path`` with RULE's ``for`` at 3 s and its
    group evaluated every 2 s; every other rule and field unchanged."""
    doc = yaml.safe_load(SHIPPED.read_text())
    groups = [g for g in doc["groups"] if any(r.get("alert") == RULE for r in g["rules"])]
    assert len(groups) == 1, f"{RULE} is not in exactly one group of {SHIPPED}"
    groups[0]["interval"] = "2s"
    rule = next(r for r in groups[0]["rules"] if r.get("alert") == RULE)
    assert rule["for"] == "5m"  # the shipped value this test shortens
    rule["for"] = "3s"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def mount_small_fs(path: Path) -> None:
    if os.geteuid() != 0:
        need("tmpfs", "mounting a small filesystem to fill needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        need("tmpfs", f"cannot mount a small tmpfs to fill: {done.stderr.strip()}")


def others_mounts_excluded(disk: Path) -> str:
    """node_exporter's default mount-point exclusion, plus every mount under the temp
    root but ``disk``: other tests running beside this one mount small filesystems there
    too (a full spool's), and their alerts are not this test's to count."""
    root = re.escape(str(disk.parents[2]))
    return f"{DEFAULT_MOUNT_POINTS_EXCLUDE}|^(?!{re.escape(str(disk))}$){root}/"


def test_filling_a_real_disk_fires_the_default_rule_everywhere_and_resolves_when_freed(tmp_path, browser):
    if MISSING:
        need("browser", MISSING)
    rules = tmp_path / "default_rules.yml"
    shipped_rules_with_short_for(rules)
    disk = tmp_path / "disk"
    mount_small_fs(disk)
    console = agent = context = None
    try:
        console = ConsoleHarness(tmp_path / "data", alerting=AlertingConfig(rule_files=[str(rules)],
                                                                            default_rules=False)).start()
        env = dict(os.environ, FLEETDECK_AGENT_TOKEN=console.agent_token(HOST),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        viewer = console.api_token("viewer")
        agent_config = tmp_path / "agent.yaml"
        agent_config.write_text(yaml.safe_dump({"agent": {"collector_options": {"host": {
            "mount_points_exclude": others_mounts_excluded(disk)}}}}))
        agent = subprocess.Popen([sys.executable, "-m", "agents", "--config", str(agent_config),
                                  "--console", console.url, "--host", HOST, "--interval", "1"],
                                 env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ours() -> list[dict]:
            alerts = console.request("GET", "/prometheus/api/v1/alerts", token=viewer).json()["data"]["alerts"]
            return [a for a in alerts
                    if a["labels"]["alertname"] == RULE and a["labels"].get("mountpoint") == str(disk)]

        def reported_free() -> list[float]:
            series = f'{{instance="{HOST}",mountpoint="{disk}"}}'
            expr = f"node_filesystem_avail_bytes{series} / node_filesystem_size_bytes{series} * 100"
            resp = console.request("GET", "/prometheus/api/v1/query?" + urlencode({"query": expr}), token=viewer)
            return [float(r["value"][1]) for r in resp.json()["data"]["result"]]

        wait_for(lambda: reported_free() and reported_free()[0] > 99, 60, "the agent to report the empty disk")
        assert ours() == []
        filler = disk / "filler"
        with open(filler, "wb") as fh:
            fh.write(b"\0" * (7_700 * 1024))  # 8 MiB filesystem: about 6 % left
        firing = wait_for(lambda: [a for a in ours() if a["state"] == "firing"], 30,
                          f"{RULE} to fire for {disk}")
        assert len(firing) == 1
        alert = firing[0]
        assert alert["labels"]["instance"] == HOST and alert["labels"]["fstype"] == "tmpfs"
        assert alert["labels"]["severity"] == "warning"
        assert float(alert["value"]) < 10
        assert alert["annotations"]["summary"] == f"Filesystem {disk} on {HOST} is over 90 % full."
        assert alert["annotations"]["runbook_url"] == "docs/alerting.md#hostfilesystemalmostfull"

        cli = subprocess.run([sys.executable, "-m", "console.cli", "alerts", "--json"], capture_output=True,
                             text=True, timeout=60, env=dict(env, FLEETDECK_URL=console.url, FLEETDECK_TOKEN=viewer))
        assert cli.returncode == 0, cli.stderr
        listed = [a for a in json.loads(cli.stdout) if a["labels"]["alertname"] == RULE]
        assert [(a["state"], a["labels"]["instance"], a["labels"]["mountpoint"]) for a in listed] == [
            ("firing", HOST, str(disk))]

        # the Alerts page lists it; the host page's charts shade its span (history where instance = HOST)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors = PageErrors(page)
        log_in(page, console)
        page.goto(console.url + "/alerts")
        row = page.locator("#active-table tbody tr.alert-row", has_text=RULE).filter(has_text=f"mountpoint={disk}")
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(1)).to_have_text("firing")
        page.goto(console.url + f"/hosts/{HOST}")
        expect(page.locator("#host-page")).to_have_attribute("data-alert-spans", "1")
        errors.assert_clean()

        filler.unlink()
        wait_for(lambda: ours() == [], 30, f"{RULE} to resolve once {disk} has space again")

        def transitions() -> list:
            return console.request("GET", f"/api/v1/alerts/history?alertname={RULE}&instance={HOST}",
                                   token=viewer).json()["transitions"]
        # The resolved transition's row is written just after the active list changes.
        wait_for(lambda: any(t["state"] == "resolved" for t in transitions()), 10, "the resolved transition")
        history = transitions()
        assert [(t["state"], t["labels"]["mountpoint"]) for t in reversed(history)] == [
            ("pending", str(disk)), ("firing", str(disk)), ("resolved", str(disk))]
    finally:
        if context is not None:
            context.close()
        if agent is not None and agent.poll() is None:
            agent.terminate()
            agent.wait(30)
        if console is not None:
            console.close()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)

