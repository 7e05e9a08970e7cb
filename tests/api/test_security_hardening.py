"""Hardening against a black-box attack, against a real in-process console over HTTP:
name checks that a trailing newline cannot pass, user regexes in linear time off the
IOLoop, request metrics whose labels a client cannot grow, login CSRF, static files,
the data directory's modes, early errors of the streamed ingest route, and password
checks that never wait in the database writer's queue."""
from __future__ import annotations

import asyncio
import http.client as http_client
import json
import os
import random
import stat
import string
import threading
import time
import urllib.parse
import uuid

import pytest
import tornado.httpclient
import tornado.websocket

from console.auth.passwords import Passwords
from console.config import load_config
from console.errors import Unavailable
from console.query.service import Matcher, QueryService, RangeQuery
from console.services import build_services
from tests.harness import ConsoleHarness, CookieSession, batch, http, wait_for

NEWLINE_NAMES = ("host-a\n", "admin\n")


def test_a_trailing_newline_passes_no_name_check(console):
    admin = console.api_token("admin")
    agent = console.agent_token("host-a")
    refused = []

    def expect_refused(what: str, resp) -> None:  # noqa: ANN001
        if resp.status not in (400, 422) or "error" not in resp.json():
            refused.append((what, resp.status, resp.body[:200]))

    now_ms = int(time.time() * 1000)
    gauge = {"name": "node_load1", "type": "gauge", "labels": {}, "points": [[now_ms, 1.0]]}
    bodies = {
        "ingest host": batch("host-a\n", [gauge]),
        "ingest batch_id": batch("host-a", [gauge], batch_id="b1\n"),
        "ingest metric name": batch("host-a", [{**gauge, "name": "node_load1\n"}]),
        "ingest label name": batch("host-a", [{**gauge, "labels": {"job\n": "x"}}]),
        "ingest batch label name": {**batch("host-a", [gauge]), "labels": {"job\n": "x"}},
        "ingest log label name": batch("host-a", [], [{"ts": now_ms, "line": "x", "labels": {"job\n": "x"}}]),
    }
    for what, body in bodies.items():
        expect_refused(what, console.request("POST", "/api/v1/ingest", body, token=agent))
    for name in NEWLINE_NAMES:
        expect_refused(f"user {name!r}", console.request(
            "POST", "/api/v1/users", {"username": name, "password": "a-long-password", "role": "viewer"}, token=admin))
        expect_refused(f"user apps {name!r}", console.request(
            "POST", "/api/v1/users", {"username": "u" + uuid.uuid4().hex[:8], "password": "a-long-password",
                                      "role": "deployer", "apps": [name]}, token=admin))
        expect_refused(f"agent token {name!r}", console.request(
            "POST", "/api/v1/tokens", {"kind": "agent", "host": name}, token=admin))
        expect_refused(f"enrol token {name!r}", console.request(
            "POST", "/api/v1/tokens", {"kind": "enrol", "host": name}, token=admin))
        expect_refused(f"enrol {name!r}", console.request(
            "POST", "/api/v1/enrol", {"enrol_token": "fde_x", "host": name}))
        expect_refused(f"secret {name!r}", console.request(
            "POST", "/api/v1/secrets", {"name": name, "kind": "registry_password", "value": "v"}, token=admin))
    # (metric= and host= are query arguments Tornado strips of surrounding whitespace first.)
    expect_refused("query group_by", console.request(
        "GET", "/api/v1/metrics/range?metric=node_load1&group_by=job%0A,x%0Ay", token=admin))
    expect_refused("query label matcher", console.request(
        "GET", "/api/v1/metrics/range?metric=node_load1&label.job%0A=x", token=admin))
    assert refused == []
    # Nothing of it was stored: no user, token, secret or host with a newline.
    users = console.request("GET", "/api/v1/users", token=admin).json()["users"]
    tokens = console.request("GET", "/api/v1/tokens?include_revoked=true", token=admin).json()["tokens"]
    secrets = console.request("GET", "/api/v1/secrets", token=admin).json()["secrets"]
    hosts = console.request("GET", "/api/v1/hosts", token=admin).json()
    assert not [v for v in [u["username"] for u in users] + [t["host"] for t in tokens]
                + [s["name"] for s in secrets] + [h["host"] for h in hosts] if v and "\n" in v]

    async def subscribe(topic: str) -> dict:
        ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
            console.url.replace("http", "ws") + "/api/v1/live", headers={"Authorization": f"Bearer {admin}"}))
        ws.write_message(json.dumps({"subscribe": [topic]}))
        try:
            return json.loads(await asyncio.wait_for(ws.read_message(), 10))
        finally:
            ws.close()

    assert asyncio.run(subscribe("host:host-a")) == {"subscribed": ["host:host-a"]}
    assert asyncio.run(subscribe("host:host-a\n"))["error"]["code"] == "invalid_topic"



def metric_lines(console) -> list[str]:  # noqa: ANN001
    return [line for line in http("GET", console.url + "/metrics").body.decode().splitlines()
            if line.startswith("fleetdeck_http_request")]


def test_request_metrics_do_not_grow_with_client_chosen_methods_or_paths(console):
    paths = ["/healthz", "/api/v1/hosts", "/nowhere-", "/static/missing-", "/api/v1/nowhere-"]

    def send(method: str, path: str) -> None:
        conn = http_client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        try:
            conn.request(method, path)
            conn.getresponse().read()
        finally:
            conn.close()

    # Each route and status once, with a method outside the fixed set and each fixed one.
    for path in paths:
        for method in ("GET", "POST", "BREW"):
            send(method, path + ("x" if path.endswith("-") else ""))
    metric_lines(console)  # /metrics itself: counted from the second read on
    before = metric_lines(console)
    rng = random.Random(13)
    for _ in range(200):
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 12)))
        path = rng.choice(paths)
        send(method, path + (uuid.uuid4().hex if path.endswith("-") else ""))
    after = metric_lines(console)
    assert len(after) == len(before), sorted(set(after) - set(before))[:5]
    assert 'method="other"' in "\n".join(after)
    assert not [line for line in after if 'route="/nowhere' in line or 'route="/static/missing' in line]


def test_login_form_needs_its_xsrf_token(console):
    form = urllib.parse.urlencode({"username": console.admin_user, "password": console.admin_password,
                                   "next": "/"}).encode()
    forged = http("POST", console.url + "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert forged.status == 403 and "fleetdeck_session" not in forged.headers.get("set-cookie", "")
    # A cookie the attacker set plus a matching field is what the check demands; a field
    # without the cookie (a cross-site form cannot read or set ours) is refused too.
    fielded = http("POST", console.url + "/login", form + b"&_xsrf=2%7Cabc%7Cdef%7C1",
                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert fielded.status == 403
    session = CookieSession(console.url)
    assert session.login(console.admin_user, console.admin_password).status == 302
    assert session.request("GET", "/api/v1/me").json()["name"] == console.admin_user


def test_static_files_refuse_nul_without_a_500_and_carry_the_security_headers(console):
    page = http("GET", console.url + "/login")
    wanted = {name: page.headers[name] for name in ("content-security-policy", "x-frame-options",
                                                    "x-content-type-options", "referrer-policy")}
    for path in ("/static/js%00.js", "/static/js/common.js%00", "/static/%00"):
        resp = http("GET", console.url + path)
        assert resp.status in (400, 404), (path, resp.status)
        assert b"Traceback" not in resp.body and b"ValueError" not in resp.body
        assert {k: resp.headers.get(k) for k in wanted} == wanted, path
    for path in ("/static/js/common.js", "/static/css/app.css", "/static/missing.js", "/static/../setup.py"):
        resp = http("GET", console.url + path)
        assert resp.status in (200, 403, 404)
        assert {k: resp.headers.get(k) for k in wanted} == wanted, path


def test_data_directory_and_database_files_are_owner_only(tmp_path):
    data = tmp_path / "fresh" / "data"
    harness = ConsoleHarness(data).start()
    try:
        token = harness.agent_token("mode-host")
        assert harness.push("mode-host", token, [])[0] == 200  # the WAL and its index exist now
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
    finally:
        harness.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {"fleetdeck.db", "fleetdeck.db-wal", "fleetdeck.db-shm"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}
    # An install made before: loose modes are narrowed at the next start.
    os.chmod(data, 0o755)
    loose = [p for p in data.iterdir() if p.name.startswith("fleetdeck.db")]
    for path in loose:
        os.chmod(path, 0o644)
    services = build_services(load_config(path=None, env={"FLEETDECK_DATA_DIR": str(data)}))
    services.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in loose} == {p.name: 0o600 for p in loose}


def test_early_errors_of_the_streamed_ingest_route_close_the_connection(console):
    viewer = console.api_token("viewer")
    agent = console.agent_token("close-host")
    body = json.dumps(batch("close-host", [])).encode()
    cases = [("GET", None, {"Authorization": f"Bearer {viewer}"}),  # 403: not an agent
             ("POST", body, {"Authorization": f"Bearer {viewer}"}),  # 403 before the body is read
             ("POST", body, {}),  # 401
             ("GET", None, {"Authorization": f"Bearer {agent}"})]  # 405
    for method, data, headers in cases:
        conn = http_client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        try:
            conn.request(method, "/api/v1/ingest", data, {"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (401, 403, 405), (method, headers, resp.status)
            assert resp.getheader("Connection") == "close", (method, resp.status, resp.getheaders())
        finally:
            conn.close()
    # An accepted batch keeps the connection for the next one.
    conn = http_client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("POST", "/api/v1/ingest", json.dumps(batch("close-host", [])).encode(),
                         {"Content-Type": "application/json", "Authorization": f"Bearer {agent}"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200 and resp.getheader("Connection") != "close"
    finally:
        conn.close()



def range_query(console, token: str, metric: str, matchers: dict[str, str]):  # noqa: ANN001
    """GET /api/v1/metrics/range over the last 10 minutes; ``matchers`` as {"v~": "RE"}."""
    query = urllib.parse.urlencode({"metric": metric, "start": time.time() - 600, "end": time.time() + 60,
                                    **{f"label.{k}": v for k, v in matchers.items()}})
    return console.request("GET", f"/api/v1/metrics/range?{query}", token=token)


def test_label_regexes_run_in_linear_time_and_never_stall_other_requests(console):
    viewer = console.api_token("viewer")
    agent = console.agent_token("redos-host")
    now_ms = int(time.time() * 1000)

    def push(metric: str, value: str) -> None:
        status, body = console.push("redos-host", agent, [{"name": metric, "type": "gauge", "labels": {"v": value},
                                                           "points": [[now_ms, 1.0]]}])
        assert status == 200, body

    # 27 characters: a backtracking engine needs seconds for this, 4x more per 2 more.
    push("redos_short", "a" * 27)
    answer: dict = {}

    def slow_query() -> None:
        started = time.monotonic()
        answer["resp"] = range_query(console, viewer, "redos_short", {"v~": "(.+)+#"})
        answer["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=slow_query)
    worker.start()
    health = []
    polling_until = time.monotonic() + 1.0
    while worker.is_alive() or time.monotonic() < polling_until:
        started = time.monotonic()
        assert http("GET", console.url + "/healthz", timeout=60).status == 200
        health.append(time.monotonic() - started)
        time.sleep(0.02)
    worker.join()
    assert answer["resp"].status == 200 and answer["resp"].json()["series"] == []
    assert answer["seconds"] < 2.0, answer["seconds"]
    assert max(health) < 0.5, max(health)

    # The longest label value ingest takes, against patterns that backtrack without end.
    push("redos_long", "a" * 4096)
    for pattern, hits in (("(.+)+#", 0), ("(a|aa)+$#", 0), ("(.*a){20}#", 0), ("(a+)+", 1), ("a.*", 1), ("a", 0)):
        started = time.monotonic()
        resp = range_query(console, viewer, "redos_long", {"v~": pattern})
        assert resp.status == 200 and len(resp.json()["series"]) == hits, (pattern, resp.body[:200])
        assert time.monotonic() - started < 2.0, pattern
        negated = range_query(console, viewer, "redos_long", {"v!~": pattern})
        assert len(negated.json()["series"]) == 1 - hits, pattern
    # PromQL semantics: fully anchored, '.' matches a newline; RE2 syntax only.
    push("redos_nl", "a\nb")
    assert len(range_query(console, viewer, "redos_nl", {"v~": "a.b"}).json()["series"]) == 1
    assert len(range_query(console, viewer, "redos_nl", {"v~": "b"}).json()["series"]) == 0
    for pattern in ("(a)\\1", "(?=a)a", "(?<!b)a", "a{1001}", "("):
        resp = range_query(console, viewer, "redos_long", {"v~": pattern})
        assert resp.status == 400 and resp.json()["error"]["code"] == "invalid_parameter", (pattern, resp.body)


def test_label_matching_gives_up_at_its_deadline(console):
    """The deadline itself, on the console's database: a query service allowed no time."""
    agent = console.agent_token("deadline-host")
    assert console.push("deadline-host", agent, [{"name": "deadline_m", "type": "gauge", "labels": {"v": "x"},
                                                  "points": [[int(time.time() * 1000), 1.0]]}])[0] == 200
    query = RangeQuery("deadline_m", time.time() - 600, time.time() + 60, matchers=(Matcher("v", "=~", "x|y"),))
    assert len(console.services.db.run(console.services.query.range, query)["series"]) == 1
    hurried = QueryService(console.config.console, match_deadline_s=0.0)
    with pytest.raises(Unavailable) as caught:
        console.services.db.run(hurried.range, query)
    assert (caught.value.status, caught.value.code) == (503, "query_timeout")


def test_a_login_flood_does_not_delay_ingest(tmp_path):
    """Wrong passwords from several clients beside an agent pushing batches: argon2 runs on
    the password pool, so ingest latency stays near the baseline measured just before.
    Behind the database writer each batch would wait for every check queued before it."""
    harness = ConsoleHarness(tmp_path, login_failures_per_user=10**6, login_failures_per_ip=10**6).start()
    try:
        agent = harness.agent_token("flood-host")

        def ingest_latencies(count: int, within: float = 60.0) -> list[float]:
            out = []
            until = time.monotonic() + within
            for i in range(count):
                if time.monotonic() > until:  # behind a queue of checks: enough seen
                    break
                points = [{"name": "node_load1", "type": "gauge", "labels": {"cpu": str(c)},
                           "points": [[int(time.time() * 1000), float(i)]]} for c in range(20)]
                started = time.monotonic()
                status, body = harness.push("flood-host", agent, points)
                out.append(time.monotonic() - started)
                assert status == 200, body
                time.sleep(0.05)
            return out

        def p99(values: list[float]) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

        ingest_latencies(5)  # warm up
        baseline = p99(ingest_latencies(40))
        # One argon2 check on this machine now: what each queued login would cost a batch.
        check = Passwords()
        stored = check.hash("a-long-password-0")
        started = time.monotonic()
        check.verify(stored, "not-the-password")
        verify_s = time.monotonic() - started
        stop = threading.Event()
        attempts = []

        def flood() -> None:
            session = CookieSession(harness.url)
            while not stop.is_set():
                attempts.append(session.login("admin", "wrong-password-" + uuid.uuid4().hex[:6]).status)

        admin = harness.api_token("admin")
        changed = []

        def change_passwords() -> None:  # an admin setting passwords hashes them off the writer too
            name = "flood-" + uuid.uuid4().hex[:6]
            created = harness.request("POST", "/api/v1/users", {"username": name, "password": "a-long-password-0",
                                                                "role": "viewer"}, token=admin)
            assert created.status == 201, created.body
            while not stop.is_set():
                changed.append(harness.request("PATCH", f"/api/v1/users/{name}",
                                               {"password": "a-long-password-" + uuid.uuid4().hex[:6]},
                                               token=admin).status)

        flooders = [threading.Thread(target=flood) for _ in range(5)] + [threading.Thread(target=change_passwords)]
        for thread in flooders:
            thread.start()
        try:
            # the flood is in full swing once logins and a password change have been answered
            # (a fixed second was too short on a loaded machine: nothing answered yet)
            wait_for(lambda: attempts and changed, 60, "the login flood and password changes to be answered")
            during = p99(ingest_latencies(40, within=20.0))
        finally:
            stop.set()
            for thread in flooders:
                thread.join(60)
        assert attempts and set(attempts) == {401}, set(attempts)
        assert changed and set(changed) == {200}, set(changed)
        # Generous for a loaded 2-core machine: argon2 competes for the CPU, but no batch
        # waits for a queue of checks (6 clients: about 6 argon2 calls per batch on the writer).
        assert during < max(3 * baseline, baseline + 2 * verify_s), (baseline, during, verify_s, len(attempts))
    finally:
        harness.close()
