"""Maintenance windows on a real console over HTTP: the API (roles, validation, next
occurrences in local time, DST), and a weekly window muting a rule's alert of a real
agent host at the right local time, recorded in the alert history; a console restart
keeps the windows. The console's clock is set by the test (tests/api/test_alerting.py)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from console.config import AlertingConfig
from console.storage.models import AlertHistory
from tests.api.test_alerting import Clock, evaluate
from tests.conftest import database_url
from tests.harness import ConsoleHarness

PATH = "/api/v1/maintenance/windows"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def ts(text: str, zone: ZoneInfo) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def window(name: str = "db-patching", **over) -> dict:
    body = {"name": name, "dtstart": "2026-01-03T02:00:00", "duration": "2h", "rrule": "FREQ=WEEKLY;BYDAY=SA",
            "timezone": "Asia/Shanghai", "hosts": ["db-1"], "comment": "weekly patching"}
    body.update(over)
    return body


def start_console(tmp_path, database_url: str | None = None):
    clock = Clock(ts("2026-06-05T12:00:00", SHANGHAI))  # a Friday
    console = ConsoleHarness(tmp_path / "data", database_url=database_url, clock=clock).start()
    console.deployer = console.api_token("deployer")
    console.viewer = console.api_token("viewer")
    return console, clock


@pytest.fixture()
def setup(tmp_path):
    console, clock = start_console(tmp_path)
    yield console, clock
    console.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request, tmp_path, tmp_path_factory):
    with database_url(request.param, tmp_path_factory) as url:
        console, clock = start_console(tmp_path, url)
        try:
            yield console, clock
        finally:
            console.close()


def test_windows_are_created_listed_shown_and_deleted_with_roles(any_db):
    console, clock = any_db
    assert console.request("POST", PATH, window(), token=console.viewer).status == 403
    resp = console.request("POST", PATH, window(), token=console.deployer)
    assert resp.status == 201, resp.body
    w = resp.json()
    assert (w["name"], w["duration"], w["hosts"], w["active"]) == ("db-patching", 7200.0, ["db-1"], False)
    # the next Saturday 02:00 to 04:00 in Shanghai (UTC+8)
    assert w["next"] == {"start": ts("2026-06-06T02:00:00", SHANGHAI), "end": ts("2026-06-06T04:00:00", SHANGHAI),
                         "start_local": "2026-06-06T02:00:00+08:00", "end_local": "2026-06-06T04:00:00+08:00"}
    again = console.request("POST", PATH, window(), token=console.deployer)
    assert again.status == 409 and again.json()["error"]["details"] == {"name": "db-patching"}
    listed = console.request("GET", PATH, token=console.viewer).json()["windows"]
    assert [x["name"] for x in listed] == ["db-patching"]
    one = console.request("GET", f"{PATH}/db-patching?count=3", token=console.viewer).json()
    assert [o["start_local"] for o in one["occurrences"]] == [
        "2026-06-06T02:00:00+08:00", "2026-06-13T02:00:00+08:00", "2026-06-20T02:00:00+08:00"]
    # occurrences in a range, for host charts: db-1's windows, none for another host
    span = {"start": ts("2026-06-01T00:00:00", SHANGHAI), "end": ts("2026-06-15T00:00:00", SHANGHAI)}
    doc = console.request("GET", f"{PATH}?host=db-1&start={span['start']}&end={span['end']}",
                          token=console.viewer).json()
    assert [(o["start"], o["end"]) for o in doc["windows"][0]["occurrences"]] == [
        (ts("2026-06-06T02:00:00", SHANGHAI), ts("2026-06-06T04:00:00", SHANGHAI)),
        (ts("2026-06-13T02:00:00", SHANGHAI), ts("2026-06-13T04:00:00", SHANGHAI))]
    assert console.request("GET", f"{PATH}?host=web-1", token=console.viewer).json()["windows"] == []
    clock.now = ts("2026-06-06T03:00:00", SHANGHAI)
    assert console.request("GET", f"{PATH}/db-patching", token=console.viewer).json()["active"] is True
    assert console.request("DELETE", f"{PATH}/db-patching", token=console.viewer).status == 403
    assert console.request("DELETE", f"{PATH}/db-patching", token=console.deployer).json() == {
        "name": "db-patching", "deleted": True}
    assert console.request("GET", f"{PATH}/db-patching", token=console.viewer).status == 404
    assert console.request("DELETE", f"{PATH}/db-patching", token=console.deployer).status == 404
    assert console.services.muting.muted_by({"host": "db-1"}, clock.now) == []


@pytest.mark.parametrize(("override", "field", "words"), [
    ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "rrule", "BYDAY"),
    ({"rrule": "FREQ=WEEKLY;BYDAY=SA\nFREQ=DAILY"}, "rrule", "one RRULE"),
    ({"rrule": "FREQ=MINUTELY"}, "rrule", "finer"),
    ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31"}, "rrule", "no occurrence"),
    ({"rrule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"}, "rrule", "RRULE"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone", "IANA"),
    ({"dtstart": "2026-01-03T02:00:00+08:00"}, "dtstart", "without an offset"),
    ({"dtstart": "next saturday"}, "dtstart", "local date"),
    ({"duration": "forever"}, "duration", "duration"),
    ({"duration": 0}, "duration", ""),
    ({"matchers": ['job=~"(unclosed"']}, "matchers", "invalid regular expression"),
    ({"matchers": ["no operator"]}, "matchers", "NAME"),
    ({"hosts": []}, "matchers", "scope"),
    ({"name": "../x"}, "name", ""),
])
def test_invalid_windows_are_refused_with_400_naming_the_field_and_nothing_is_stored(setup, override, field, words):
    console, _ = setup
    resp = console.request("POST", PATH, window(**override), token=console.deployer)
    assert resp.status == 400, resp.body
    error = resp.json()["error"]
    assert error["details"]["field"] == field and words in error["message"], error
    assert console.request("GET", PATH, token=console.viewer).json() == {"windows": []}
    assert console.count("maintenance_windows") == 0


def test_dst_a_window_at_a_local_time_that_does_not_exist_starts_after_the_jump(setup):
    """RFC 5545 3.3.5: 02:30 on the day New York skips 02:00-03:00 (2026-03-08) is read
    with the offset before the jump: 03:30 EDT; the fall-back day's 01:30 is its first
    instance (EDT)."""
    console, clock = setup
    ny = ZoneInfo("America/New_York")
    clock.now = ts("2026-02-27T12:00:00", ny)
    body = window("nightly-ny", dtstart="2026-02-01T02:30:00", duration=3600, rrule="FREQ=WEEKLY;BYDAY=SU",
                  timezone="America/New_York")
    assert console.request("POST", PATH, body, token=console.deployer).status == 201
    occ = console.request("GET", f"{PATH}/nightly-ny?count=3", token=console.viewer).json()["occurrences"]
    assert [(o["start_local"], o["end_local"]) for o in occ] == [
        ("2026-03-01T02:30:00-05:00", "2026-03-01T03:30:00-05:00"),
        ("2026-03-08T03:30:00-04:00", "2026-03-08T04:30:00-04:00"),  # the gap: an hour later, a full hour long
        ("2026-03-15T02:30:00-04:00", "2026-03-15T03:30:00-04:00")]
    assert occ[1]["start"] - occ[0]["start"] == 7 * 86400  # 02:30 EST + one week = 03:30 EDT
    body = window("fallback-ny", dtstart="2026-10-04T01:30:00", duration="30m", rrule="FREQ=WEEKLY;BYDAY=SU",
                  timezone="America/New_York")
    assert console.request("POST", PATH, body, token=console.deployer).status == 201
    clock.now = ts("2026-10-30T12:00:00", ny)
    first = console.request("GET", f"{PATH}/fallback-ny?count=1", token=console.viewer).json()["occurrences"][0]
    assert first["start_local"] == "2026-11-01T01:30:00-04:00"  # the first of the two 01:30s


RULES = """groups:
  - name: maint
    interval: 1h
    rules:
      - alert: DiskBusy
        expr: disk_busy > 0.9
        labels: {severity: warning}
"""


def test_a_weekly_window_mutes_a_real_hosts_alert_at_the_right_local_time_and_survives_a_restart(tmp_path):
    rules = tmp_path / "r.yml"
    rules.write_text(RULES)
    t0 = ts("2026-06-06T01:00:00", SHANGHAI)  # Saturday 01:00 in Shanghai, 17:00 UTC on Friday
    clock = Clock(t0)
    config = AlertingConfig(rule_files=[str(rules)], evaluation_interval=3600.0, default_rules=False)
    console = ConsoleHarness(tmp_path / "data", alerting=config, clock=clock).start()
    try:
        deployer = console.api_token("deployer")
        body = window("sat-patching", dtstart="2026-01-03T02:00:00", duration="2h",
                      rrule="FREQ=WEEKLY;BYDAY=SA;BYHOUR=2", hosts=[], matchers=['severity="warning"', 'host=~"db-.*"'])
        assert console.request("POST", PATH, body, token=deployer).status == 201
        agents = {h: console.agent_token(h) for h in ("db-1", "web-1")}
        muted = {}
        # 01:30 (before the window), 02:30 and 03:59 (inside), 04:00 (after): a flapping
        # disk, so each hour's evaluation records a transition.
        for local, value in (("01:30", 1), ("02:00", 0), ("02:30", 1), ("03:00", 0), ("03:59", 1), ("04:00", 0),
                             ("04:01", 1)):
            at = ts(f"2026-06-06T{local}:00", SHANGHAI)
            for host, token in agents.items():
                clock.now = at
                status, answer = console.push(host, token, [{"name": "disk_busy", "type": "gauge", "labels": {},
                                                             "points": [[int(at * 1000), float(value)]]}])
                assert status == 200, answer
            evaluate(console, clock, at)
        rows = console.services.db.run(lambda s: s.execute(
            select(AlertHistory.ts, AlertHistory.labels, AlertHistory.state, AlertHistory.muted_by)
            .order_by(AlertHistory.id)).all())
        for at, labels, state, muted_by in rows:
            if state == "firing":
                host = "db-1" if '"db-1"' in labels else "web-1"
                muted[(datetime.fromtimestamp(at, SHANGHAI).strftime("%H:%M"), host)] = muted_by
        assert muted == {
            ("01:30", "db-1"): None, ("01:30", "web-1"): None,
            ("02:30", "db-1"): "window:sat-patching", ("02:30", "web-1"): None,
            ("03:59", "db-1"): "window:sat-patching", ("03:59", "web-1"): None,
            ("04:01", "db-1"): None, ("04:01", "web-1"): None}
    finally:
        console.close()
    # the same data directory again: the window is back and mutes the next Saturday
    console = ConsoleHarness(tmp_path / "data", alerting=config, clock=clock).start()
    try:
        next_sat = ts("2026-06-13T02:15:00", SHANGHAI)
        assert console.services.muting.muted_by({"host": "db-7", "severity": "warning"}, next_sat) == [
            "window:sat-patching"]
        assert console.services.muting.muted_by({"host": "db-7", "severity": "critical"}, next_sat) == []
    finally:
        console.close()


def test_app_and_environment_scopes_and_until(tmp_path):
    clock = Clock(ts("2026-06-05T12:00:00", SHANGHAI))
    apps = {"shop": {"driver": "docker", "hosts": ["shop-1", "shop-2"],
                     "target": {"image": "registry.example.com/shop", "engine": "unix:///nonexistent/docker.sock"}}}
    console = ConsoleHarness(tmp_path / "data", apps=apps, clock=clock).start()
    try:
        deployer, viewer = console.api_token("deployer"), console.api_token("viewer")
        # the agent of stg-1 labels its host environment=staging
        token = console.agent_token("stg-1")
        body = {"host": "stg-1", "batch_id": "b" * 16, "sent_at": clock.now, "labels": {"environment": "staging"},
                "agent": {"version": "t", "interval": 60},
                "metrics": [{"name": "node_load1", "type": "gauge", "labels": {},
                             "points": [[int(clock.now * 1000), 0.5]]}]}
        assert console.request("POST", "/api/v1/ingest", body, token=token).status == 200
        console.services.db.run(console.services.maintenance.load)  # re-read hosts' environments now
        for name, scope in (("shop-window", {"apps": ["shop"]}), ("staging-window", {"environments": ["staging"]})):
            resp = console.request("POST", PATH, window(name, hosts=[], **scope), token=deployer)
            assert resp.status == 201, resp.body
        resp = console.request("POST", PATH, window("last-two", until=ts("2026-06-14T00:00:00", SHANGHAI)),
                               token=deployer)
        assert resp.status == 201, resp.body
        open_at = ts("2026-06-06T03:00:00", SHANGHAI)
        muted = console.services.muting.muted_by
        assert muted({"host": "shop-2"}, open_at) == ["window:shop-window"]
        assert muted({"instance": "other", "app": "shop"}, open_at) == ["window:shop-window"]
        assert muted({"host": "stg-1"}, open_at) == ["window:staging-window"]
        assert muted({"host": "other", "environment": "staging"}, open_at) == ["window:staging-window"]
        assert muted({"host": "other", "environment": "production"}, open_at) == []
        assert muted({"host": "db-1"}, open_at) == ["window:last-two"]
        # until: the occurrence of 13 June is the last one
        nxt = console.request("GET", f"{PATH}/last-two?count=5", token=viewer).json()["occurrences"]
        assert [o["start_local"][:10] for o in nxt] == ["2026-06-06", "2026-06-13"]
        assert muted({"host": "db-1"}, ts("2026-06-20T03:00:00", SHANGHAI)) == []
        # a host's chart shows the windows that can cover it
        by_host = {h: [w["name"] for w in console.request("GET", f"{PATH}?host={h}", token=viewer).json()["windows"]]
                   for h in ("shop-1", "stg-1", "db-1", "web-9")}
        assert by_host == {"shop-1": ["shop-window"], "stg-1": ["staging-window"], "db-1": ["last-two"],
                           "web-9": []}
    finally:
        console.close()
