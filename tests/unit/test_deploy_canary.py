"""The ``canary:`` section of an app (validation, stage sizes) and the verdict rules of
the analysis (console/deploy/canary.py); the analysis itself runs end to end in
tests/integration/test_deploy_canary_*.py."""
from __future__ import annotations

import math

import pytest

from console.config import ConfigError
from console.deploy.apps import parse_apps
from console.deploy.canary import CanaryCheck, alert_matches, analysis_of, judge

CHECK = {"name": "errors", "query": 'sum(rate(http_errors_total{app="shop"}[1m]))', "op": "<", "threshold": 0.5}


def docker(canary: dict, **extra) -> dict:
    return {"target": {"image": "fleetdeck-test/web", "replicas": 4}, "canary": canary, **extra}


def ssh(canary: dict) -> dict:
    return {"driver": "ssh", "target": {"hosts": ["web"], "deploy_to": "/srv/shop"}, "canary": canary}


def test_a_valid_section_and_its_defaults():
    c = parse_apps({"shop": docker({"duration": 60, "interval": 15, "checks": [CHECK]})})["shop"].canary
    assert c.replicas is None and c.no_firing_alerts is False and c.evaluations == 4
    assert c.checks[0].on_no_data == "fail" and c.checks[0].threshold == 0.5
    assert c.size(4) == 1  # one replica unless told


@pytest.mark.parametrize("wanted, total, size", [(2, 4, 2), (9, 4, 4), ("25%", 4, 1), ("30%", 4, 2),
                                                 ("100%", 3, 3), ("1%", 50, 1), (1, 0, 0)])
def test_stage_sizes(wanted, total, size):
    c = parse_apps({"shop": docker({"replicas": wanted, "duration": 2, "interval": 1,
                                    "no_firing_alerts": True})})["shop"].canary
    assert c.size(total) == size


def test_ssh_apps_count_hosts():
    c = parse_apps({"shop": ssh({"hosts": "50%", "duration": 2, "interval": 1, "no_firing_alerts": True})})["shop"]
    assert c.canary.size(5) == 3


@pytest.mark.parametrize("raw, message", [
    (docker({"duration": 10, "interval": 5}), "apps.shop.canary.checks: nothing to analyse"),
    (docker({"duration": 1, "interval": 5, "no_firing_alerts": True}), "interval (5 s) is longer than duration"),
    (docker({"interval": 5, "no_firing_alerts": True}), "apps.shop.canary.duration"),
    (docker({"duration": 10, "interval": 5, "replicas": 0, "no_firing_alerts": True}), "count >= 1"),
    (docker({"duration": 10, "interval": 5, "replicas": "120%", "no_firing_alerts": True}), "percentage"),
    (docker({"duration": 10, "interval": 5, "hosts": 1, "no_firing_alerts": True}), "use canary.replicas"),
    (ssh({"duration": 10, "interval": 5, "replicas": 1, "no_firing_alerts": True}), "use canary.hosts"),
    (docker({"duration": 10, "interval": 5, "checks": [{**CHECK, "query": "sum(rate(x[1m])"}]}),
     "apps.shop.canary.checks[0].query: not a PromQL expression"),
    (docker({"duration": 10, "interval": 5, "checks": [{**CHECK, "op": "=="}]}), "apps.shop.canary.checks[0].op"),
    (docker({"duration": 10, "interval": 5, "checks": [{**CHECK, "query": 'x{v="{{host}}"}'}]}),
     "unknown placeholder {{host}}"),
    (docker({"duration": 10, "interval": 5, "checks": [{**CHECK, "threshold": "0.5"}]}), "expected a number"),
    (docker({"duration": 10, "interval": 5, "checks": [{**CHECK, "on_no_data": "ignore"}]}), "on_no_data"),
    (docker({"duration": 10, "interval": 5, "checks": [CHECK, CHECK]}), "repeated: errors"),
    (docker({"duration": 10, "interval": 5, "checks": [{**CHECK, "name": "no_firing_alerts"}]}), "checks[0].name"),
    (docker({"duration": 10, "interval": 5, "checks": [{**CHECK, "bogus": 1}]}), "checks[0].bogus: unknown key"),
    (docker({"duration": 10, "interval": 5, "no_firing_alerts": "yes"}), "no_firing_alerts"),
    (docker({"duration": 10, "interval": 5, "no_firing_alerts": True}, strategy={"type": "recreate"}),
     "a canary needs the rolling strategy"),
    (docker({"duration": 600, "interval": 5, "no_firing_alerts": True}, timeout=300),
     "the canary's duration (600 s) must be shorter than the deploy's timeout (300 s)"),
])
def test_invalid_sections_are_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_apps({"shop": raw})
    assert message in str(err.value)


def check(op: str, threshold: float = 1.0, on_no_data: str = "fail") -> CanaryCheck:
    return CanaryCheck(name="c", query="up", op=op, threshold=threshold, on_no_data=on_no_data)


@pytest.mark.parametrize("op, values, passed, value", [
    ("<", [0.2, 0.9], True, 0.9), ("<", [0.2, 1.0], False, 1.0), ("<=", [1.0], True, 1.0),
    (">", [3.0, 1.5], True, 1.5), (">", [3.0, 1.0], False, 1.0), (">=", [1.0], True, 1.0),
    ("<", [0.5, math.nan], True, 0.5),  # a NaN series (0/0: no traffic) is left out
])
def test_every_series_must_pass_and_the_worst_is_kept(op, values, passed, value):
    ev = judge(check(op), values, 100.0)
    assert (ev.passed, ev.value, ev.no_data) == (passed, value, False)


def test_no_data_fails_unless_the_check_says_pass():
    assert judge(check("<"), [], 1.0).passed is False
    assert judge(check("<"), [math.nan], 1.0).no_data is True
    ev = judge(check("<", on_no_data="pass"), [], 1.0)
    assert (ev.passed, ev.value, ev.no_data) == (True, None, True)
    assert ev.describe() == "check c = no data (wanted < 1; on_no_data: pass)"


def test_alerts_about_the_app_or_its_hosts():
    hosts = frozenset({"web-1"})
    assert alert_matches({"alertname": "X", "app": "shop"}, "shop", hosts)
    assert alert_matches({"alertname": "X", "instance": "web-1"}, "shop", hosts)
    assert alert_matches({"alertname": "X", "host": "web-1"}, "shop", hosts)
    assert not alert_matches({"alertname": "X", "app": "other", "instance": "db-1"}, "shop", hosts)
    assert not alert_matches({"alertname": "DeployFailed", "app": "shop", "deploy_id": "7"}, "shop", hosts)


def test_analysis_of_events():
    def ev(t: float, value: float | None, passed: bool, name: str = "errors") -> tuple:
        return ("analysis", None, "", {"check": name, "query": "q", "op": "<", "threshold": 1.0, "t": t,
                                       "value": value, "passed": passed})

    running = [("step", "canary", "analysing", {"state": "running"}), ev(1.0, 0.0, True), ev(1.0, 0.0, True, "b")]
    analysis, canary = analysis_of(running)
    assert canary == {"state": "running", "verdict": "running", "message": "analysing"}
    assert [(a["check"], a["values"], a["passed"]) for a in analysis] == [("errors", [[1.0, 0.0]], None),
                                                                          ("b", [[1.0, 0.0]], None)]
    passed = running + [("step", "canary", "canary passed", {"state": "succeeded", "verdict": "passed"})]
    assert [a["passed"] for a in analysis_of(passed)[0]] == [True, True]
    failed = running + [ev(2.0, None, False), ("step", "canary", "failed", {"state": "failed", "verdict": "failed"})]
    analysis, canary = analysis_of(failed)
    assert canary["verdict"] == "failed"
    assert [(a["values"], a["passed"]) for a in analysis] == [([[1.0, 0.0], [2.0, None]], False),
                                                              ([[1.0, 0.0]], None)]
    assert analysis_of([("log", None, "x", {})]) == ([], None)


def test_the_shipped_config_yaml_documents_every_canary_option():
    import yaml

    from tests.unit.test_deploy_apps import REPO

    block = (REPO / "config.yaml").read_text().split("\napps: {}\n", 1)[1].split("\n\n", 1)[0]
    example = "\n".join(line[1:] for line in block.splitlines())
    canary = parse_apps(yaml.safe_load(example))["web"].canary
    assert canary is not None and canary.checks[0].name == "error_rate" and canary.no_firing_alerts
    for option in ("replicas", "duration", "interval", "checks", "name", "query", "op", "threshold", "on_no_data",
                   "no_firing_alerts"):
        assert f"    {option}:" in example or f"      - {option}:" in example or f"        {option}:" in example


def test_placeholders_name_the_deploy():
    from console.deploy.canary import substitute

    query = 'sum(rate(errors{app="{{app}}", version=~"{{ version }}|{{previous_version}}"}[1m])) # {{deploy_id}}'
    params = {"app": "shop", "version": "2.0", "previous_version": "1.9", "deploy_id": "12"}
    assert substitute(query, params) == 'sum(rate(errors{app="shop", version=~"2.0|1.9"}[1m])) # 12'
