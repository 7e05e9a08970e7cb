"""Silences and Alertmanager's API v2 (/alertmanager/api/v2/) against a real console, its
clock controlled: semantics of prometheus/alertmanager silence/silence.go (validation,
states, update in place or by expire-and-replace, expire), persistence across a restart,
retention, alert status from the muters, and rule alert history marked with the silence."""
from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from console.alerting.handlers import rfc3339
from tests.api.test_alerting import T0, Clock, evaluate, push, start
from tests.conftest import database_url
from tests.harness import logged_in

AM = "/alertmanager/api/v2"
RULES = """groups:
  - name: sil
    interval: 1h
    rules:
      - alert: SilHot
        expr: sil_temp > 50
"""


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def silence_body(matchers, start: float, end: float, **extra) -> dict:
    return {"matchers": matchers, "startsAt": rfc3339(start), "endsAt": rfc3339(end),
            "createdBy": "alice", "comment": "maintenance", **extra}


def eq(name: str, value: str, regex: bool = False, equal: bool = True) -> dict:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request, tmp_path_factory):
    with database_url(request.param, tmp_path_factory) as url:
        tmp = tmp_path_factory.mktemp("silences")
        rules = tmp / "sil.yml"
        rules.write_text(RULES)
        clock = Clock(T0)
        console = start(tmp / "data", rules, clock, database_url=url)
        tokens = {"viewer": console.api_token("viewer"), "deployer": console.api_token("deployer", "ops"),
                  "agent": console.agent_token("prom-1")}
        try:
            yield console, clock, tokens, rules, tmp
        finally:
            console.close()


def post_silence(console, tokens, body, role: str = "deployer"):
    return console.request("POST", f"{AM}/silences", body, token=tokens[role])


def get_silence(console, tokens, sid: str) -> dict:
    resp = console.request("GET", f"{AM}/silence/{sid}", token=tokens["viewer"])
    assert resp.status == 200, resp.body
    return resp.json()


def test_create_get_list_and_expire(env):
    console, clock, tokens, _, _ = env
    clock.now = T0 + 10
    resp = post_silence(console, tokens, silence_body([eq("alertname", "Create1"), eq("env", "prod|stage", True)],
                                                      T0, T0 + 3600, annotations={"ticket": "OPS-12"}))
    assert resp.status == 200, resp.body
    sid = resp.json()["silenceID"]
    assert len(sid) == 36 and sid.count("-") == 4
    sil = get_silence(console, tokens, sid)
    # A start in the past is moved to now (silence.Set); the rest is kept as posted.
    assert (ts(sil["startsAt"]), ts(sil["endsAt"]), sil["status"]) == (T0 + 10, T0 + 3600, {"state": "active"})
    assert sil["matchers"] == [eq("alertname", "Create1"), eq("env", "prod|stage", True)]
    assert (sil["createdBy"], sil["comment"], sil["annotations"]) == ("alice", "maintenance", {"ticket": "OPS-12"})
    listed = console.request("GET", f"{AM}/silences?filter=alertname%3D%22Create1%22", token=tokens["viewer"]).json()
    assert [s["id"] for s in listed] == [sid]
    assert console.request("GET", f"{AM}/silences?filter=alertname%3DOther", token=tokens["viewer"]).json() == []
    clock.now = T0 + 20
    assert console.request("DELETE", f"{AM}/silence/{sid}", token=tokens["deployer"]).status == 200
    clock.now = T0 + 21
    sil = get_silence(console, tokens, sid)
    assert (sil["status"]["state"], ts(sil["endsAt"])) == ("expired", T0 + 20)
    assert sid not in [s["id"] for s in console.request("GET", f"{AM}/silences?expired=false",
                                                        token=tokens["viewer"]).json()]
    # The audit log names who did it.
    entries = console.request("GET", "/api/v1/audit?limit=1000", token=console.api_token("admin", "auditor")).json()
    mine = [(e["action"], e["actor"]) for e in entries["entries"] if e["target"] == f"silence:{sid}"]
    assert sorted(mine) == [("silence.create", "api:ops"), ("silence.expire", "api:ops")]


@pytest.mark.parametrize("body, message", [
    (silence_body([], T0, T0 + 60), "at least one matcher"),
    (silence_body([eq("env", ""), eq("team", ".*", True)], T0, T0 + 60), "must not match the empty string"),
    (silence_body([eq("env", "(", True)], T0, T0 + 60), "invalid regular expression '(' for env: missing ): ("),
    (silence_body([eq("env", "[", True)], T0, T0 + 60), "invalid regular expression '[' for env: missing ]: ["),
    (silence_body([eq("bad-name", "x")], T0, T0 + 60), "invalid label name"),
    (silence_body([eq("env", "x")], T0 + 60, T0 + 30), "start time must be before end time"),
    (silence_body([eq("env", "x")], T0 - 600, T0 - 300), "end time can't be in the past"),
    ({"matchers": [eq("env", "x")], "endsAt": rfc3339(T0 + 60)}, "missing"),
    (silence_body([{"name": "env", "value": "x"}], T0, T0 + 60), "isRegex"),
    (silence_body([eq("env", "x")], T0, T0 + 60, annotations={"n": 1}), "annotations must be an object of strings"),
])
def test_invalid_silences_are_refused_with_nothing_stored(env, body, message):
    console, clock, tokens, _, _ = env
    clock.now = T0
    before = console.count("silences")
    resp = post_silence(console, tokens, body)
    assert resp.status == 400, resp.body
    assert message in resp.json()  # Alertmanager's error shape: a JSON string
    assert console.count("silences") == before


def test_roles_and_unknown_ids(env):
    console, clock, tokens, _, _ = env
    clock.now = T0
    body = silence_body([eq("alertname", "Roles")], T0, T0 + 60)
    assert post_silence(console, tokens, body, "viewer").status == 403
    assert post_silence(console, tokens, body, "agent").status == 403
    assert console.request("POST", f"{AM}/silences", body).status == 401
    assert console.request("GET", f"{AM}/silences").status == 401
    assert console.request("GET", f"{AM}/silence/4bf8a0c3-2a7e-4f5c-9c43-0a5cbd0b2d8e",
                           token=tokens["viewer"]).status == 404
    assert console.request("DELETE", f"{AM}/silence/4bf8a0c3-2a7e-4f5c-9c43-0a5cbd0b2d8e",
                           token=tokens["deployer"]).status == 404
    resp = post_silence(console, tokens, dict(body, id="4bf8a0c3-2a7e-4f5c-9c43-0a5cbd0b2d8e"))
    assert resp.status == 404


def test_update_in_place_or_expire_and_replace(env):
    console, clock, tokens, _, _ = env
    clock.now = T0 + 100
    sid = post_silence(console, tokens, silence_body([eq("alertname", "Upd")], T0 + 100, T0 + 3600)).json()["silenceID"]
    # Same matchers and start, a later end: the same silence, changed in place.
    resp = post_silence(console, tokens, silence_body([eq("alertname", "Upd")], T0 + 100, T0 + 7200, id=sid))
    assert resp.json() == {"silenceID": sid}
    assert ts(get_silence(console, tokens, sid)["endsAt"]) == T0 + 7200
    # Other matchers: the old silence is expired (its history kept) and a new one made.
    clock.now = T0 + 200
    resp = post_silence(console, tokens, silence_body([eq("alertname", "Upd"), eq("env", "prod")], T0 + 100,
                                                      T0 + 7200, id=sid))
    new = resp.json()["silenceID"]
    assert new != sid
    clock.now = T0 + 201
    old = get_silence(console, tokens, sid)
    assert (old["status"]["state"], ts(old["endsAt"])) == ("expired", T0 + 200)
    fresh = get_silence(console, tokens, new)
    assert (fresh["status"]["state"], ts(fresh["startsAt"])) == ("active", T0 + 200)
    # A pending silence is changed in place while it stays pending.
    pend = post_silence(console, tokens, silence_body([eq("alertname", "Pend")], T0 + 3600, T0 + 7200)).json()["silenceID"]
    assert get_silence(console, tokens, pend)["status"]["state"] == "pending"
    resp = post_silence(console, tokens, silence_body([eq("alertname", "Pend")], T0 + 1800, T0 + 7200, id=pend))
    assert resp.json() == {"silenceID": pend}
    # Expiring a pending silence starts and ends it now.
    assert console.request("DELETE", f"{AM}/silence/{pend}", token=tokens["deployer"]).status == 200
    clock.now = T0 + 202
    sil = get_silence(console, tokens, pend)
    assert (sil["status"]["state"], ts(sil["startsAt"]), ts(sil["endsAt"])) == ("expired", T0 + 201, T0 + 201)


def test_posted_alerts_get_status_from_silences_and_filters(env):
    console, clock, tokens, _, _ = env
    clock.now = T0 + 300
    alerts = [{"labels": {"alertname": "Posted", "instance": "web-1"}, "annotations": {"summary": "s"},
               "generatorURL": "http://prom/graph"},
              {"labels": {"alertname": "Posted", "instance": "web-2"}, "startsAt": rfc3339(T0 + 250),
               "endsAt": rfc3339(T0 + 900)}]
    resp = console.request("POST", f"{AM}/alerts", alerts, token=tokens["agent"])
    assert resp.status == 200, resp.body
    sid = post_silence(console, tokens, silence_body([eq("alertname", "Posted"), eq("instance", "web-1")],
                                                     T0 + 300, T0 + 3600)).json()["silenceID"]
    got = console.request("GET", f"{AM}/alerts?filter=alertname%3D%22Posted%22", token=tokens["viewer"]).json()
    by_instance = {a["labels"]["instance"]: a for a in got}
    web1, web2 = by_instance["web-1"], by_instance["web-2"]
    assert web1["status"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": [], "mutedBy": []}
    assert web2["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}
    # No endsAt: now + resolve_timeout (5 m); no startsAt: now.
    assert (ts(web1["startsAt"]), ts(web1["endsAt"])) == (T0 + 300, T0 + 600)
    assert (ts(web2["startsAt"]), ts(web2["endsAt"])) == (T0 + 250, T0 + 900)
    assert web1["generatorURL"] == "http://prom/graph" and web1["annotations"] == {"summary": "s"}
    assert len(web1["fingerprint"]) == 16
    unsilenced = console.request("GET", f"{AM}/alerts?silenced=false&filter=alertname%3DPosted",
                                 token=tokens["viewer"]).json()
    assert [a["labels"]["instance"] for a in unsilenced] == ["web-2"]
    regex = console.request("GET", f"{AM}/alerts?filter=instance%3D~%22web-%5B2%5D%22", token=tokens["viewer"]).json()
    assert [a["labels"]["instance"] for a in regex] == ["web-2"]
    # Resolved alerts are not listed.
    clock.now = T0 + 700
    got = console.request("GET", f"{AM}/alerts?filter=alertname%3DPosted", token=tokens["viewer"]).json()
    assert [a["labels"]["instance"] for a in got] == ["web-2"]


def test_invalid_alert_batches_are_refused_whole(env):
    console, clock, tokens, _, _ = env
    clock.now = T0 + 300
    for body in ([{"labels": {"alertname": "Ok1"}}, {"labels": {}}],
                 [{"labels": {"alertname": "Ok1"}}, {"labels": {"bad-name": "x"}}],
                 [{"labels": {"alertname": "Ok1"}}, {"labels": {"a": "b"}, "startsAt": "yesterday"}],
                 [{"labels": {"alertname": "Ok1"}, "startsAt": rfc3339(T0 + 500), "endsAt": rfc3339(T0 + 400)}],
                 {"labels": {"alertname": "Ok1"}}):
        resp = console.request("POST", f"{AM}/alerts", body, token=tokens["deployer"])
        assert resp.status == 400, (body, resp.body)
        assert isinstance(resp.json(), str)
    assert console.request("POST", f"{AM}/alerts", [{"labels": {"alertname": "Ok1"}}],
                           token=tokens["viewer"]).status == 403
    names = {a["labels"]["alertname"] for a in console.request("GET", f"{AM}/alerts", token=tokens["viewer"]).json()}
    assert "Ok1" not in names


def test_status_for_amtool(env):
    console, _, tokens, _, _ = env
    doc = console.request("GET", f"{AM}/status", token=tokens["viewer"]).json()
    assert doc["cluster"]["status"] == "disabled"
    assert set(doc["versionInfo"]) == {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
    assert isinstance(doc["config"]["original"], str) and doc["uptime"].endswith("Z")


def test_rule_alert_history_is_marked_with_the_silence(env):
    console, clock, tokens, _, _ = env
    clock.now = T0 + 400
    sid = post_silence(console, tokens, silence_body([eq("alertname", "SilHot"), eq("instance", "sil-1")],
                                                     T0 + 400, T0 + 1000)).json()["silenceID"]
    agent = console.agent_token("sil-1")
    push(console, agent, "sil-1", "sil_temp", [(400, 70), (1200, 70), (1300, 10)])
    other = console.agent_token("sil-2")
    push(console, other, "sil-2", "sil_temp", [(400, 70), (1200, 70), (1300, 10)])
    evaluate(console, clock, T0 + 400)  # firing while silenced (sil-1) and not (sil-2)
    # The alerts and the rules' alerts say which are muted and why (mutedBy: only when muted).
    firing = console.request("GET", "/prometheus/api/v1/alerts", token=tokens["viewer"]).json()["data"]["alerts"]
    rules = console.request("GET", "/prometheus/api/v1/rules", token=tokens["viewer"]).json()["data"]["groups"]
    for listed in (firing, [a for g in rules for r in g["rules"] for a in r.get("alerts", [])]):
        mine = {a["labels"]["instance"]: a.get("mutedBy") for a in listed if a["labels"]["alertname"] == "SilHot"}
        assert mine == {"sil-1": [f"silence:{sid}"], "sil-2": None}
    evaluate(console, clock, T0 + 1300)  # resolved after the silence ended
    resp = console.request("GET", f"/api/v1/alerts/history?alertname=SilHot&since={T0}&until={T0 + 2000}",
                           token=tokens["viewer"])
    rows = [(t["labels"]["instance"], t["state"], t["muted_by"]) for t in reversed(resp.json()["transitions"])]
    # Without `for:` an alert passes through pending to firing in one evaluation.
    muted = [f"silence:{sid}"]
    assert sorted(rows) == [("sil-1", "firing", muted), ("sil-1", "pending", muted), ("sil-1", "resolved", []),
                            ("sil-2", "firing", []), ("sil-2", "pending", []), ("sil-2", "resolved", [])]


def test_silences_survive_a_restart_and_expired_ones_are_deleted_after_retention(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("silences-restart")
    rules = tmp / "sil.yml"
    rules.write_text(RULES)
    clock2 = Clock(T0)
    first = start(tmp / "data", rules, clock2)
    deployer = first.api_token("deployer")
    keep = first.request("POST", f"{AM}/silences", silence_body([eq("alertname", "Keep")], T0, T0 + 86400),
                         token=deployer).json()["silenceID"]
    old = first.request("POST", f"{AM}/silences", silence_body([eq("alertname", "Old")], T0, T0 + 60),
                        token=deployer).json()["silenceID"]
    first.close()
    clock2.now = T0 + 60 + 120 * 3600 - 1  # "Old" ended 1 s short of the 120 h retention
    second = start(tmp / "data", rules, clock2)
    try:
        viewer = second.api_token("viewer", "v2")
        ids = {s["id"]: s["status"]["state"] for s in second.request("GET", f"{AM}/silences", token=viewer).json()}
        assert ids == {keep: "expired", old: "expired"}
        clock2.now = T0 + 3600
        assert second.services.silences.muted_by({"alertname": "Keep"}, T0 + 3600) == [f"silence:{keep}"]
        clock2.now = T0 + 60 + 120 * 3600 + 1
        gone = asyncio.run_coroutine_threadsafe(second.services.silences.gc(), second.loop).result(30)
        assert gone == 1
        ids = {s["id"] for s in second.request("GET", f"{AM}/silences", token=viewer).json()}
        assert ids == {keep}
        assert second.count("silences") == 1
    finally:
        second.close()


def test_unknown_alertmanager_routes_answer_json(env):
    console, _, tokens, _, _ = env
    resp = console.request("GET", f"{AM}/receivers", token=tokens["viewer"])
    assert resp.status == 404 and resp.json()["error"]["code"] == "not_found"


def test_write_roles_with_sessions(env):
    console, clock, tokens, _, _ = env
    clock.now = T0
    body = silence_body([eq("alertname", "Session")], T0, T0 + 60)
    viewer, deployer = logged_in(console, "viewer"), logged_in(console, "deployer")
    assert viewer.request("POST", f"{AM}/silences", body).status == 403
    assert deployer.request("POST", f"{AM}/silences", body, xsrf=False).status == 403  # no XSRF token
    resp = deployer.request("POST", f"{AM}/silences", body)
    assert resp.status == 200, resp.body
    sid = resp.json()["silenceID"]
    assert viewer.request("DELETE", f"{AM}/silence/{sid}").status == 403
    assert deployer.request("DELETE", f"{AM}/silence/{sid}").status == 200
    assert viewer.request("POST", f"{AM}/alerts", [{"labels": {"alertname": "S"}}]).status == 403
    assert deployer.request("POST", f"{AM}/alerts", [{"labels": {"alertname": "S"}}]).status == 200
