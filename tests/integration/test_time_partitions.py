"""Time partitions on the suite's PostgreSQL (console/storage/partitions.py, migration
pgpart_0001): samples and log lines pushed over HTTP across several days land in the
partition of their day; retention drops whole partitions past the cutoff and deletes rows
only in the one straddling it; a row no partition covers is caught by the default
partition and moved out by the maintenance pass, which is idempotent; a new partition width
starts where the existing partitions end; the migration keeps every row of the tables it
converts."""
from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy import table as table_clause

from console.logs.groups import GroupIndexer
from console.logs.service import LogQuery, LogService, SearchTerm
from console.logs.store import LogStore
from console.storage import Database, blocks
from console.storage.partitions import DAY_MS, HOUR_MS, PartitionMaintenance, partition_name, partitions
from console.tiers.service import RollupService
from tests.conftest import console_on, database_url
from tests.harness import wait_for

NOW = time.time()
NOW_MS = int(NOW * 1000)
TODAY = NOW_MS // DAY_MS * DAY_MS
# Sample and log times on five different UTC days: 5, 4, 3 and 1 day(s) and ten minutes ago,
# and ten minutes ago (whole days apart, so no two share a day partition).
AGES_DAYS = (5, 4, 3, 1, 0)
TIMES = [NOW_MS - k * DAY_MS - 600_000 for k in AGES_DAYS]


def day_of(ts: int) -> int:
    return ts // DAY_MS * DAY_MS


def part(table: str, ts: int) -> str:
    """The partition of ``table`` that holds time ``ts`` at the default widths: an hour for
    ``samples``, a day for the others."""
    width = HOUR_MS if table == "samples" else DAY_MS
    return partition_name(table, ts // width * width)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with console_on("postgres", tmp_path_factory) as harness:
        yield harness


def push_days(console, host: str) -> None:
    """One gauge sample and one log line per time of TIMES, pushed over HTTP by ``host``."""
    token = console.agent_token(host)
    for i, ts in enumerate(TIMES):
        status, body = console.push(host, token, [
            {"name": "part_gauge", "type": "gauge", "labels": {}, "points": [[ts, float(i)]]}],
            [{"ts": ts, "source": "/var/log/app.log", "line": f"partitionword{i} request served", "labels": {}}])
        assert status == 200 and body["accepted_samples"] == 1 and body["accepted_logs"] == 1, body


def rows_by_partition(console, table: str, host: str) -> dict[str, int]:
    """``{partition: rows}`` of ``host``'s rows in ``samples`` or ``log_records``."""
    query = {"samples": "SELECT x.tableoid::regclass::text, count(*) FROM samples x "
                        "JOIN series s ON s.id = x.series_id JOIN hosts h ON h.id = s.host_id "
                        "WHERE h.name = :h GROUP BY 1",
             "log_records": "SELECT x.tableoid::regclass::text, count(*) FROM log_records x "
                            "JOIN hosts h ON h.id = x.host_id WHERE h.name = :h GROUP BY 1"}[table]
    return dict(console.services.db.run(lambda s: s.execute(text(query), {"h": host}).all()))


def tree(console, table: str) -> set[str]:
    """The leaves of ``table``'s partition tree, as pg_partition_tree reports them."""
    return set(console.services.db.run(lambda s: s.execute(text(
        "SELECT relid::regclass::text FROM pg_partition_tree(CAST(:t AS regclass)) WHERE isleaf"),
        {"t": table}).scalars().all()))


def exists(console, name: str) -> bool:
    return console.services.db.run(lambda s: s.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()) \
        is not None


@pytest.fixture(scope="module")
def pushed(console):
    push_days(console, "part-1")
    return console


def test_the_migration_makes_the_tables_partitioned_with_a_default_partition(console):
    kinds = dict(console.services.db.run(lambda s: s.execute(text(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
        "AND relname IN ('samples', 'sample_blocks', 'rollup_1m', 'rollup_1m_blocks', 'log_records', 'rollup_1h')"
    )).all()))
    assert kinds == {"samples": "p", "sample_blocks": "p", "rollup_1m": "p", "rollup_1m_blocks": "p",
                     "log_records": "p", "rollup_1h": "r"}
    for table in ("samples", "sample_blocks", "rollup_1m", "rollup_1m_blocks", "log_records"):
        assert f"{table}_default" in tree(console, table)
        # partitions exist for now and ahead before anything was written, once the first
        # maintenance pass the console runs at start is done (samples: the migration makes none)
        width = HOUR_MS if table == "samples" else DAY_MS
        wait_for(lambda: part(table, int(time.time() * 1000)) in tree(console, table), 30,
                 f"{table}'s partition of now")
        assert part(table, int(time.time() * 1000) + width) in tree(console, table)


def test_samples_and_logs_land_in_the_partition_of_their_time(pushed):
    for table in ("samples", "log_records"):
        want = {part(table, ts): 1 for ts in TIMES}
        assert len(want) == len(TIMES)
        assert rows_by_partition(pushed, table, "part-1") == want
        assert set(want) <= tree(pushed, table)


def test_log_search_and_range_queries_read_across_partitions(pushed):
    viewer = pushed.api_token("viewer")
    resp = pushed.request("GET", f"/api/v1/logs?q=request+served&host=part-1&start={TIMES[0] / 1000}&limit=10", token=viewer)
    assert resp.status == 200, resp.body
    assert [r["ts"] for r in resp.json()["logs"]] == sorted(TIMES, reverse=True)
    resp = pushed.request("GET", "/api/v1/logs?q=partitionword2", token=viewer)
    assert [r["ts"] for r in resp.json()["logs"]] == [TIMES[2]]
    for i, ts in enumerate(TIMES):
        resp = pushed.request("GET", f"/api/v1/metrics/range?host=part-1&metric=part_gauge&start={ts / 1000 - 60}"
                              f"&end={ts / 1000 + 60}", token=viewer)
        assert resp.status == 200, resp.body
        assert [s["points"] for s in resp.json()["series"]] == [[[ts, float(i)]]]


def test_retention_drops_whole_partitions_and_keeps_newer_rows(tmp_path_factory):
    with console_on("postgres", tmp_path_factory) as c:
        push_days(c, "part-2")
        RollupService(c.services.db, c.services.config.console, clock=lambda: NOW).run_all()  # roll up, pack
        # retention of 2 days (raw), 2.5 (1m rollups), 3 (1h); logs 2 days
        cfg = c.services.config.console.model_copy(update=dict(retention_raw_days=2.0, retention_1m_days=2.5,
                                                               retention_1h_days=3.0))
        old_days = [day_of(ts) for ts in TIMES if ts < NOW_MS - 2 * DAY_MS]  # 5, 4 and 3 days ago
        assert len(old_days) == 3
        before = {t: tree(c, t) for t in ("samples", "sample_blocks", "rollup_1m")}
        RollupService(c.services.db, cfg, clock=lambda: NOW).run_all()
        for table in ("samples", "sample_blocks", "rollup_1m"):
            # the partitions of 5 and 4 days ago are gone; 3 days ago may straddle a cutoff
            gone = before[table] - tree(c, table)
            assert {part(table, ts) for ts in TIMES[:2]} <= gone, (table, gone)
            assert all(not exists(c, name) for name in gone)
            assert part(table, TIMES[-1]) in tree(c, table)  # the newest sample's
        # the newer samples are intact, to the sample: hot rows or cold blocks
        raw = c.services.db.run(lambda s: [r[0] for r in s.execute(text(
            "SELECT x.ts FROM samples x JOIN series s ON s.id = x.series_id WHERE s.name = 'part_gauge'"))])
        packed = c.services.db.run(lambda s: [ts for r in s.execute(text(
            "SELECT b.data FROM sample_blocks b JOIN series s ON s.id = b.series_id WHERE s.name = 'part_gauge'"))
            for ts, _ in blocks.decode(r[0])])
        assert sorted(raw + packed) == [ts for ts in sorted(TIMES) if ts >= NOW_MS - 2 * DAY_MS]

        logs = LogService(c.services.db, retention_days=2.0, retention_bytes=0, clock=lambda: NOW)
        result = logs.enforce_retention()
        assert set(result.partitions_dropped) >= {partition_name("log_records", d) for d in old_days[:2]}
        assert all(not exists(c, name) for name in result.partitions_dropped)
        assert rows_by_partition(c, "log_records", "part-2") == {
            partition_name("log_records", day_of(ts)): 1 for ts in TIMES if ts >= NOW_MS - 2 * DAY_MS}
        assert logs.enforce_retention().partitions_dropped == []  # nothing more is due


def test_a_row_in_the_default_partition_is_moved_out_and_reported(console, caplog):
    # Ingest stores lines stamped ahead at their receive time, so a row this far ahead of
    # every partition stands for one written while maintenance could not run (40 days of a
    # failing job): it goes in through the one write path of log lines, LogStore.
    far = NOW_MS + 40 * DAY_MS
    token = console.agent_token("part-future")
    assert console.push("part-future", token, [], [])[0] == 200  # the host row
    host_id = console.services.db.run(lambda s: s.execute(text("SELECT id FROM hosts WHERE name = 'part-future'"))
                                      .scalar_one())
    stored = console.services.db.run(LogStore(console.services.db).insert, [(host_id, far, "/x", "fromthefuture", "{}", None)])
    assert stored == 1
    assert rows_by_partition(console, "log_records", "part-future") == {"log_records_default": 1}
    maintenance = console.services.partitions
    with caplog.at_level(logging.WARNING, logger="fleetdeck.partitions"):
        created = maintenance.run()
    assert partition_name("log_records", day_of(far)) in created["log_records"]
    assert "1 row(s) of log_records were in its default partition" in caplog.text
    assert maintenance.default_seen["log_records"] == 1
    assert rows_by_partition(console, "log_records", "part-future") == {partition_name("log_records", day_of(far)): 1}
    metrics = console.request("GET", "/metrics").body.decode()
    assert 'fleetdeck_partition_default_rows{table="log_records"} 1.0' in metrics
    viewer = console.api_token("viewer")
    found = console.request("GET", f"/api/v1/logs?q=fromthefuture&end={far / 1000 + 1}", token=viewer).json()["logs"]
    assert [r["ts"] for r in found] == [far]


def test_maintenance_is_idempotent(console):
    maintenance = console.services.partitions
    maintenance.run()
    layout = console.services.db.run(lambda s: {t: partitions(s, t) for t in
                                                ("samples", "sample_blocks", "rollup_1m", "rollup_1m_blocks",
                                                 "log_records")})
    assert maintenance.run() == {}
    again = console.services.db.run(lambda s: {t: partitions(s, t) for t in layout})
    assert again == layout
    assert maintenance.default_seen == {t: 0 for t in layout}


def test_a_new_width_starts_where_the_partitions_end(tmp_path_factory):
    # Its own console: 6-hour partitions made here would otherwise receive the module
    # console's day-stamped rows (pushed after this test in a shuffled order).
    with console_on("postgres", tmp_path_factory) as c:
        check_new_width(c)


def check_new_width(c):
    cfg = c.services.config.console.model_copy(update=dict(metrics_partition_hours=6, samples_partition_hours=3))
    later = NOW + 3 * 86400  # three days on: the partitions made so far end before then
    maintenance = PartitionMaintenance(c.services.db, cfg, clock=lambda: later)
    made = maintenance.run()
    for table, hours in (("samples", 3), ("sample_blocks", 6), ("rollup_1m", 6)):
        layout = c.services.db.run(lambda s: partitions(s, table))
        # no two ranges overlap, and the ones made now are at most the new width
        assert all(a.hi <= b.lo for a, b in zip(layout, layout[1:])), table
        new = [p for p in layout if p.name in made[table]]
        assert new and all(p.hi - p.lo <= hours * HOUR_MS for p in new), table
        assert max(p.hi for p in layout) >= int(later * 1000) + 2 * hours * HOUR_MS, table


def test_the_migration_moves_every_row_into_the_partition_of_its_day(tmp_path_factory):
    # A database at the revision before pgpart_0001 holding rows on five days in each
    # table the migration converts; after it, every row is there, in its day's partition.
    from alembic import command
    from alembic.config import Config

    from console.storage.database import MIGRATIONS_DIR, make_engine, upgrade_schema

    with database_url("postgres", tmp_path_factory) as url:
        engine = make_engine(url)
        try:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "lifecycle_0001_series_first_last")
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'm-1', 1, '{}')"))
                conn.execute(text("INSERT INTO series (id, host_id, name, labels, type) "
                                  "VALUES (1, 1, 'g', '{}', 'gauge')"))
                for i, ts in enumerate(TIMES):
                    for k in range(3):  # three rows a day
                        row = {"ts": ts + k * 1000, "v": float(i * 10 + k)}
                        conn.execute(text("INSERT INTO samples VALUES (1, :ts, :v)"), row)
                        conn.execute(text("INSERT INTO rollup_1m VALUES (1, :ts, :v, :v, :v, 1, NULL)"), row)
                        conn.execute(text("INSERT INTO sample_blocks VALUES (1, :ts, :ts, 0, '\\x00')"), row)
                        conn.execute(text("INSERT INTO log_records (host_id, ts, source, line, labels, line_tsv) "
                                          "VALUES (1, :ts, 's', 'migratedword', '{}', to_tsvector('migratedword'))"),
                                     row)
                before = {t: conn.execute(text(q)).all() for t, q in DUMPS.items()}
            upgrade_schema(engine)
            with engine.connect() as conn:
                after = {t: conn.execute(text(q)).all() for t, q in DUMPS.items()}
                assert after == before and all(len(rows) == 3 * len(TIMES) for rows in after.values())
                for table in PLACED:
                    placed = conn.execute(text(PLACED[table])).all()
                    assert placed and all(where == partition_name(table, day_of(ts)) for where, ts in placed), placed
                # pghour_0001: the day partitions of samples made ahead, empty, are gone (hourly
                # ones are made by maintenance); those holding rows stay
                left = conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                         "WHERE i.inhparent = 'samples'::regclass")).scalars().all()
                assert set(left) == {partition_name("samples", day_of(ts)) for ts in TIMES} | {"samples_default"}
            # loggroup_0001: the lines are found through the group index once its indexer ran
            db = Database(url)
            try:
                raw = db.engine.raw_connection()
                try:
                    GroupIndexer(db).index_pass(raw.driver_connection)
                finally:
                    raw.close()
                found = db.run(LogService(db).count_by_host, LogQuery(terms=(SearchTerm("migratedword"),)))
            finally:
                db.close()
            assert found == {"m-1": 3 * len(TIMES)}
            with engine.begin() as conn:
                # new ids continue the sequence
                conn.execute(text("INSERT INTO log_records (host_id, ts, source, line, labels) "
                                  "VALUES (1, :ts, 's', 'l', '{}')"), {"ts": NOW_MS})
                assert conn.execute(text("SELECT max(id) FROM log_records")).scalar() == 3 * len(TIMES) + 1
        finally:
            engine.dispose()


DUMPS = {"samples": "SELECT series_id, ts, value FROM samples ORDER BY ts",
         "rollup_1m": "SELECT series_id, ts, min, max, sum, count, increase FROM rollup_1m ORDER BY ts",
         "sample_blocks": "SELECT series_id, start_ts, end_ts, count, data FROM sample_blocks ORDER BY start_ts",
         "log_records": "SELECT id, host_id, ts, source, line, labels, level FROM log_records ORDER BY id"}
PLACED = {"samples": "SELECT tableoid::regclass::text, ts FROM samples",
          "rollup_1m": "SELECT tableoid::regclass::text, ts FROM rollup_1m",
          "sample_blocks": "SELECT tableoid::regclass::text, start_ts FROM sample_blocks",
          "log_records": "SELECT tableoid::regclass::text, ts FROM log_records"}


def test_partitions_are_made_for_the_days_that_have_data_only(tmp_path_factory):
    # A fresh database: maintenance makes today's partitions and the next ones, none for
    # the days before (no 90 days of empty 1m block partitions, no 14 of log partitions).
    # A sample and a log line three days old then get their day's partitions from ingest,
    # the rollup job makes the 1m rows' and blocks' ones, nothing lands in a default
    # partition, the day with no data between has none, and the sample is read back.
    tables = ("samples", "sample_blocks", "rollup_1m", "rollup_1m_blocks", "log_records")
    with console_on("postgres", tmp_path_factory) as c:
        c.services.partitions.run()
        layout = c.services.db.run(lambda s: {t: partitions(s, t) for t in tables})
        for table in tables:
            assert all(p.lo >= TODAY for p in layout[table]), (table, [p.name for p in layout[table]])
        late, between = NOW_MS - 3 * DAY_MS - 600_000, NOW_MS - 2 * DAY_MS
        token = c.agent_token("part-late")
        status, body = c.push("part-late", token, [
            {"name": "late_gauge", "type": "gauge", "labels": {}, "points": [[late, 7.5]]}],
            [{"ts": late, "source": "/var/log/app.log", "line": "latelineword arrived", "labels": {}}])
        assert status == 200 and body["accepted_samples"] == 1 and body["accepted_logs"] == 1, body
        assert rows_by_partition(c, "samples", "part-late") == {part("samples", late): 1}
        assert rows_by_partition(c, "log_records", "part-late") == {partition_name("log_records", day_of(late)): 1}
        RollupService(c.services.db, c.services.config.console, clock=lambda: NOW).run_all()  # roll up, pack
        for table in tables:
            assert part(table, late) in tree(c, table), table
            assert part(table, between) not in tree(c, table), table
            default = table_clause(f"{table}_default")
            assert c.services.db.run(lambda s: s.execute(select(func.count()).select_from(default)).scalar()) == 0, table
        packed = c.services.db.run(lambda s: s.execute(text(
            "SELECT b.tableoid::regclass::text FROM sample_blocks b JOIN series s ON s.id = b.series_id "
            "WHERE s.name = 'late_gauge'")).scalars().all())
        assert packed == [partition_name("sample_blocks", day_of(late))]
        viewer = c.api_token("viewer")
        resp = c.request("GET", f"/api/v1/metrics/range?host=part-late&metric=late_gauge&start={late / 1000 - 60}"
                         f"&end={late / 1000 + 60}", token=viewer)
        assert resp.status == 200, resp.body
        assert [s["points"] for s in resp.json()["series"]] == [[[late, 7.5]]]
        found = c.request("GET", f"/api/v1/logs?q=latelineword&start={late / 1000 - 60}", token=viewer).json()["logs"]
        assert [r["ts"] for r in found] == [late]
        assert c.services.partitions.run() == {}  # nothing left for maintenance to make or move
        assert c.services.partitions.default_seen == {t: 0 for t in tables}


@pytest.mark.parametrize("holds_s", [0.5, 4.0])  # the first writer commits before / after LOCK_TIMEOUT (3 s)
def test_two_writers_needing_the_same_partition(tmp_path_factory, holds_s):
    # Two writers (two console workers) store a sample of the same old day at once: the
    # first makes the partition in its transaction; the second waits for the advisory
    # lock, then finds it made (or, past the lock timeout, gives up making it), and its
    # row lands in that partition all the same once the first commits; none fails.
    import threading

    from console.storage.partitions import TABLES, cover

    with database_url("postgres", tmp_path_factory) as url:
        db = Database(url)
        try:
            db.migrate()
            db.run(lambda s: s.execute(text(
                "INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'two-w', 1, '{}'); "
                "INSERT INTO series (id, host_id, name, labels, type) VALUES (1, 1, 'g', '{}', 'gauge'), "
                "(2, 1, 'h', '{}', 'gauge')")))
            day = TODAY - 3 * DAY_MS
            spec = TABLES["samples"]
            first_made = threading.Event()
            second: dict[str, object] = {}

            def write(session, sid: int, ts: int) -> list[str]:
                made = cover(session, spec, DAY_MS, [ts])
                session.execute(text("INSERT INTO samples (series_id, ts, value) VALUES (:s, :t, 1.0)"),
                                {"s": sid, "t": ts})
                return made

            def first(session) -> list[str]:
                made = write(session, 1, day + 1000)
                first_made.set()
                time.sleep(holds_s)  # still in its transaction, holding the lock
                return made

            def run_second() -> None:
                first_made.wait(10)
                start = time.monotonic()
                second["made"] = db.run(write, 2, day + 2000)
                second["took"] = time.monotonic() - start

            thread = threading.Thread(target=run_second)
            thread.start()
            assert db.run(first) == [partition_name("samples", day)]
            thread.join(30)
            assert second["made"] == [] and second["took"] >= min(holds_s, 3.0) - 0.2
            where = db.run(lambda s: s.execute(text(
                "SELECT series_id, tableoid::regclass::text FROM samples ORDER BY series_id")).all())
            assert where == [(1, partition_name("samples", day)), (2, partition_name("samples", day))]
            assert [p.lo for p in db.run(lambda s: partitions(s, "samples"))].count(day) == 1
        finally:
            db.close()
