"""The console's background jobs running on their own: a console started with short
intervals (``rollup_interval``, ``log_retention_check_seconds``) rolls samples up into the
1-minute and 1-hour tiers and applies metric and log retention while the test only waits
and watches; no job function is called. The services' clock is moved two days on so the
data the test pushed now is due for rollup and past retention."""
from __future__ import annotations

import time
import uuid

from tests.harness import ConsoleHarness, OffsetClock, wait_for


def test_rollups_and_retention_run_on_their_own(tmp_path):
    clock = OffsetClock()
    harness = ConsoleHarness(tmp_path, clock=clock, rollup_interval=0.2, log_retention_check_seconds=0.2,
                             retention_raw_days=1.0, retention_1m_days=30.0, retention_1h_days=30.0,
                             log_retention_days=1.0).start()
    try:
        host = "sched-" + uuid.uuid4().hex[:8]
        token = harness.agent_token(host)
        now_ms = int(time.time() * 1000)
        # The last minute, every 5 s: its oldest minute is due for rollup (rollup_delay 120 s)
        # a minute from now at the earliest, well after the check below that nothing is yet.
        # (Two minutes back, the oldest minute fell due within seconds when the test ran in
        # a minute's last seconds.)
        points = [[now_ms - 60_000 + i * 5_000, float(i)] for i in range(12)]
        logs = [{"ts": now_ms - 1000 + i, "source": "/var/log/app.log", "line": f"line {i}", "labels": {}}
                for i in range(5)]
        status, body = harness.push(host, token, [{"name": "sched_gauge", "type": "gauge", "labels": {},
                                                   "points": points}], logs)
        assert status == 200, body
        viewer = harness.api_token("viewer")
        assert len(harness.request("GET", f"/api/v1/logs?host={host}", token=viewer).json()["logs"]) == 5
        # several runs of both jobs later, nothing is due yet: the samples are within
        # rollup_delay and retention, so the jobs leave them
        runs_before = harness.services.rollups.failures
        time.sleep(1.0)
        assert harness.count("samples") == 12 and harness.count("log_records") == 5
        assert harness.count("rollup_1m") == 0

        clock.offset = 2 * 86400  # two days on: rollups due, raw samples and log lines past retention

        from sqlalchemy import text

        from console.storage import rollup_blocks

        def minutes() -> list[tuple]:  # the gauge's 1m rows, packed into 1m blocks or not
            def read(s):
                sid = s.execute(text("SELECT id FROM series WHERE name = 'sched_gauge'")).scalar_one()
                return rollup_blocks.stored_rows(s, [sid], 0, 2**62).get(sid, [])
            return harness.services.db.run(read)

        def settled() -> bool:
            return (harness.count("samples") == 0 and harness.count("log_records") == 0
                    and len(minutes()) > 0 and harness.count("rollup_1h") > 0)

        wait_for(settled, 30, "the background jobs to roll up and apply retention")
        assert harness.services.rollups.failures == runs_before
        assert (sum(r[4] for r in minutes()), sum(r[3] for r in minutes())) == (12, float(sum(range(12))))
        hourly = harness.services.db.run(lambda s: s.execute(text(
            "SELECT SUM(r.count) FROM rollup_1h r JOIN series x ON x.id = r.series_id "
            "WHERE x.name = 'sched_gauge'")).scalar())
        assert hourly == 12
        assert harness.request("GET", f"/api/v1/logs?host={host}", token=viewer).json()["logs"] == []
    finally:
        harness.close()
