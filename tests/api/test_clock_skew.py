"""Agents whose clock is off the console's: the skew is measured from each batch's
``sent_at`` and flagged in ``/api/v1/hosts`` and ``/metrics``; what falls outside the
accepted window (older than the raw sample window or the log retention) is refused and
counted per reason in the answer, never answered as accepted and deleted later."""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.harness import ConsoleHarness, http

DAY = 86400.0


@pytest.fixture(scope="module")
def skew_console(tmp_path_factory):
    harness = ConsoleHarness(tmp_path_factory.mktemp("skew")).start()
    yield harness
    harness.close()


def push_skewed(harness: ConsoleHarness, host: str, token: str, skew: float, lines: int = 3,
                sent_skew: float | None = None) -> tuple[int, dict]:
    """One batch stamped by a clock ``skew`` seconds off: a sample, ``lines`` log lines and
    ``sent_at``, all from that clock (``sent_skew`` overrides the sent_at offset)."""
    now = time.time()
    ts = int((now + skew) * 1000)
    body = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": now + (skew if sent_skew is None else sent_skew),
            "agent": {"version": "test", "interval": 10},
            "metrics": [{"name": "node_load1", "type": "gauge", "labels": {}, "points": [[ts, 0.5]]}],
            "logs": [{"ts": ts + i, "source": "/var/log/skew.log", "line": f"{host} line {i}"} for i in range(lines)]}
    resp = http("POST", harness.url + "/api/v1/ingest", json.dumps(body).encode(),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return resp.status, resp.json()


def host_row(harness: ConsoleHarness, host: str) -> dict:
    resp = harness.request("GET", "/api/v1/hosts", token=harness.api_token("viewer"))
    assert resp.status == 200, resp.body
    return next(h for h in resp.json() if h["host"] == host)


def skew_gauge(harness: ConsoleHarness, host: str) -> float | None:
    text = http("GET", harness.url + "/metrics").body.decode()
    match = re.search(r'^fleetdeck_host_clock_skew_seconds\{host="%s"\} (\S+)$' % re.escape(host), text, re.M)
    return float(match.group(1)) if match else None


def stored_logs(harness: ConsoleHarness, host: str) -> int:
    from sqlalchemy import text

    return harness.services.db.run(lambda s: s.execute(text(
        "SELECT COUNT(*) FROM log_records l JOIN hosts h ON h.id = l.host_id WHERE h.name = :n"), {"n": host}
    ).scalar_one())


def test_an_agent_one_day_behind_is_flagged_everywhere(skew_console):
    token = skew_console.agent_token("skew-1d")
    status, body = push_skewed(skew_console, "skew-1d", token, -DAY)
    assert status == 200, body
    # Within the raw window: stored (where its clock put them), but the host is flagged.
    assert (body["accepted_samples"], body["accepted_logs"]) == (1, 3)
    row = host_row(skew_console, "skew-1d")
    assert row["clock_skewed"] is True
    assert -DAY - 30 < row["clock_skew_seconds"] < -DAY + 30
    gauge = skew_gauge(skew_console, "skew-1d")
    assert gauge is not None and -DAY - 30 < gauge < -DAY + 30
    assert stored_logs(skew_console, "skew-1d") == 3


def test_an_agent_twenty_days_behind_has_everything_refused_and_counted(skew_console):
    token = skew_console.agent_token("skew-20d")
    status, body = push_skewed(skew_console, "skew-20d", token, -20 * DAY, lines=4)
    assert status == 200, body
    assert (body["accepted_samples"], body["accepted_logs"]) == (0, 0)
    assert body["rejected"] == {"too_old": 1, "log_too_old": 4}
    assert (body["rejected_samples"], body["rejected_logs"]) == (1, 4)
    row = host_row(skew_console, "skew-20d")
    assert row["clock_skewed"] is True
    assert -20 * DAY - 30 < row["clock_skew_seconds"] < -20 * DAY + 30
    assert {r["reason"]: r["count"] for r in row["rejected"]} == {"too_old": 1, "log_too_old": 4}
    gauge = skew_gauge(skew_console, "skew-20d")
    assert gauge is not None and gauge < -20 * DAY + 30
    assert stored_logs(skew_console, "skew-20d") == 0


def test_a_good_clock_is_not_flagged_even_while_its_spool_drains(skew_console):
    token = skew_console.agent_token("skew-none")
    status, body = push_skewed(skew_console, "skew-none", token, 0.0)
    assert status == 200 and (body["accepted_samples"], body["accepted_logs"]) == (1, 3), body
    # A batch spooled an hour ago and sent now carries its old sent_at: that is delay, not skew.
    status, body = push_skewed(skew_console, "skew-none", token, -3600.0)
    assert status == 200 and body["accepted_logs"] == 3, body
    row = host_row(skew_console, "skew-none")
    assert row["clock_skewed"] is False
    assert abs(row["clock_skew_seconds"]) < 30
    gauge = skew_gauge(skew_console, "skew-none")
    assert gauge is not None and abs(gauge) < 30


def test_a_clock_put_right_clears_the_flag(skew_console):
    token = skew_console.agent_token("skew-fixed")
    assert push_skewed(skew_console, "skew-fixed", token, -2 * DAY)[0] == 200
    assert host_row(skew_console, "skew-fixed")["clock_skewed"] is True
    assert push_skewed(skew_console, "skew-fixed", token, 0.0)[0] == 200
    row = host_row(skew_console, "skew-fixed")
    assert row["clock_skewed"] is False and abs(row["clock_skew_seconds"]) < 30



def test_samples_older_than_the_raw_retention_are_refused(tmp_path):
    """With a raw retention shorter than sample_max_age, the retention is the limit: a
    sample it would delete at its next run is refused, not accepted."""
    harness = ConsoleHarness(tmp_path / "short", retention_raw_days=1.0).start()
    try:
        token = harness.agent_token("short-raw")
        status, body = push_skewed(harness, "short-raw", token, -2 * DAY, lines=1, sent_skew=0.0)
        assert status == 200, body
        assert body["accepted_samples"] == 0 and body["rejected"]["too_old"] == 1
        # the log line, 2 days old, is within the 14 days of log retention
        assert body["accepted_logs"] == 1
    finally:
        harness.close()
