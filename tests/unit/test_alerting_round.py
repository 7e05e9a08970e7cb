"""One alerting round on a real SQLite database: rules of a group that share a selector
read its samples from the database once, and computed series are listed per metric name."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from sqlalchemy import event

from console.alerting.service import AlertingService
from console.config import AlertingConfig
from console.promql.ast import LabelMatcher
from console.promql.storage import Storage, VirtualSource
from console.storage.database import Database
from console.storage.hot_samples import INSERT_SQLITE

LOADS = {"h1": 0.5, "h2": 1.5, "h3": 2.5}  # node_load15 of each host, constant
STEP_S = 60


@pytest.fixture()
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'round.db'}")
    database.migrate()
    now = int(time.time())
    start = now - 30 * STEP_S
    with database.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        for i, (host, load) in enumerate(sorted(LOADS.items()), start=1):
            cur.execute("INSERT INTO hosts (id, name, first_seen, last_seen, interval_s, labels) "
                        "VALUES (?, ?, ?, ?, ?, '{}')", (i, host, start, now, STEP_S))
            cur.execute("INSERT INTO series (id, host_id, name, labels, type, first_ts, last_ts) "
                        "VALUES (?, ?, 'node_load15', ?, 'gauge', ?, ?)",
                        (i, i, orjson.dumps({}).decode(), start * 1000, now * 1000))
            cur.executemany(INSERT_SQLITE,
                            [(i, (start + k * STEP_S) * 1000, load) for k in range(31)])
    database.now = now
    yield database
    database.close()


def sample_reads(database: Database) -> list[str]:
    """Every statement reading the samples table from now on (sqlite3's trace callback on
    each new connection), but the one that lists the minutes stored in a query's range
    (console/storage/hot_samples.py PRESENT: once per query, before the series' reads)."""
    seen: list[str] = []

    def keep(sql: str) -> None:
        if "FROM samples" in sql and not sql.startswith("WITH RECURSIVE present"):
            seen.append(sql)

    def trace(dbapi_conn, _record) -> None:  # noqa: ANN001 - sqlite3 connection
        dbapi_conn.set_trace_callback(keep)
    event.listen(database.engine, "connect", trace)
    database.engine.dispose()  # pooled connections were opened before the listener
    return seen


def rules_service(database: Database, rules) -> AlertingService:  # noqa: ANN001 - a Path
    """An alerting service running only the groups of ``rules``, its clock at the data's end."""
    config = AlertingConfig(rule_files=[str(rules)], evaluation_interval=15.0, default_rules=False)
    return AlertingService(database, config, max_samples=1_000_000, query_timeout_s=30.0, host_interval_s=STEP_S,
                           down_after_intervals=3.0, clock=lambda: database.now)


def test_rules_sharing_a_selector_read_its_samples_once_per_round(db, tmp_path):
    rules = tmp_path / "rules.yml"
    # The first rule reads a 10 minute window; the others read node_load15 over the
    # 5 minute lookback inside it, so they can be served from what the first one read.
    rules.write_text("groups:\n  - name: load\n    rules:\n"
                     "      - alert: Wide\n        expr: max_over_time(node_load15[10m]) > 100\n"
                     + "".join(f"      - alert: Above{k}\n        expr: node_load15 > {k}\n" for k in (0, 1, 2, 3)))
    service = rules_service(db, rules)
    try:
        reads = sample_reads(db)
        transitions = asyncio.run(service.evaluate_all(db.now))
        # SQLite reads one statement per series: each of the 3 series once for 5 rules.
        assert len(reads) == len(LOADS), "\n".join(reads)
        got = sorted({(dict(t.labels)["alertname"], dict(t.labels)["host"]) for t in transitions if t.state == "firing"})
        want = sorted((f"Above{k}", host) for k in (0, 1, 2, 3) for host, load in LOADS.items() if load > k)
        assert got == want
        values = {(dict(t.labels)["alertname"], dict(t.labels)["host"]): t.value for t in transitions
                  if t.state == "firing"}
        assert values[("Above2", "h3")] == 2.5 and values[("Above0", "h1")] == 0.5
    finally:
        service.close()


def test_a_narrower_load_from_the_same_storage_equals_a_fresh_read(db):
    matchers = (LabelMatcher("__name__", "=", "node_load15"), LabelMatcher("host", "=~", "h[12]"))
    t = db.now * 1000
    narrow = (t - 7 * STEP_S * 1000 - 1, t - 2 * STEP_S * 1000 + 1)  # bounds between samples
    with db.sessions.begin() as session:
        shared = Storage(session, 1_000_000)
        wide = shared.load(matchers, t - 20 * STEP_S * 1000, t)
        assert [len(s.ts) for s in wide] == [21, 21]
        reads = shared.loaded
        served = shared.load(matchers, *narrow)
        assert shared.loaded == reads + 2 * 6  # counted against max_samples again
        fresh = Storage(session, 1_000_000).load(matchers, *narrow)
    assert [(s.id, s.labels, s.ts, s.values) for s in served] == [(s.id, s.labels, s.ts, s.values) for s in fresh]
    assert [len(s.ts) for s in served] == [6, 6]  # t - 7 min .. t - 2 min


class Recorder(VirtualSource):
    names = frozenset({"up", "ALERTS"})

    def __init__(self) -> None:
        self.asked: list = []

    def series(self, session, name=None):  # noqa: ANN001, ANN201 - VirtualSource
        self.asked.append(name)
        return []


def test_computed_series_are_listed_for_the_selected_name_only(db):
    source = Recorder()
    with db.sessions.begin() as session:
        storage = Storage(session, 1_000, source)
        storage.load((LabelMatcher("__name__", "=", "up"),), 0, 1)
        storage.load((LabelMatcher("__name__", "=", "up"), LabelMatcher("job", "=", "node")), 0, 1)
        assert storage.computed_read
        storage.load((LabelMatcher("job", "=", "node"),), 0, 1)
    assert source.asked == ["up", None]


def test_the_service_lists_each_computed_name_as_part_of_all(db, tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n  - name: load\n    rules:\n"
                     "      - alert: Above1\n        expr: node_load15 > 1\n        for: 5m\n"
                     "      - record: host:load15:max\n        expr: max by (host) (node_load15)\n")
    service = rules_service(db, rules)
    try:
        asyncio.run(service.evaluate_all(db.now))
        with db.sessions.begin() as session:
            every = service.series(session)
            names = {dict(v.labels)["__name__"] for v in every}
            # a recording rule's series is stored, not computed (docs/alerting.md "Recording rules")
            assert names == {"up", "ALERTS", "ALERTS_FOR_STATE"}
            for name in names:
                some = service.series(session, name)
                want = [v.labels for v in every if dict(v.labels)["__name__"] == name]
                assert [v.labels for v in some] == want
                assert [v.samples(0, db.now * 1000) for v in some] == \
                       [v.samples(0, db.now * 1000) for v in every if dict(v.labels)["__name__"] == name]
    finally:
        service.close()
