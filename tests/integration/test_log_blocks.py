"""PostgreSQL: groups of log lines packed beside their Bloom filter (console/logs/blocks.py,
migration logblocks_0001).

A real ``fleetdeck serve`` on a private PostgreSQL schema answers a set of searches (words,
prefixes, hosts, sources, levels, time ranges, every page of each) over realistic lines
while they are rows; the test then packs the groups the way the console's group indexer
does after its hot window (one group, then one whose rows are still kept, then all, the
rows deleted) and every answer must stay the same, as must the alert counts and the
retention size estimate. Retention by age then drops packed lines older than its cutoff,
inside a group too. And the bytes stored per realistic line, filters included, stay
within 250 once packed."""
from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from bench.logs_ingest import line_of
from bench.logs_storage import fill, postgres_bytes
from console.logs.groups import GroupIndexer, pack_groups
from console.logs.service import LogQuery, LogService, SearchTerm, parse_terms
from console.storage import Database
from tests.conftest import database_url
from tests.harness import http, wait_for
from tests.integration.procs import ConsoleProcess
from tests.integration.test_log_groups import caught_up, every_page, migrator

FAR = 2**53  # a "before" time every group and packing is before
SOURCES = ("/var/log/app.log", "/var/log/db.log", "/var/log/dmesg")
LEVELS = ("info", "warn", "error", None)


@pytest.fixture
def postgres_url(tmp_path_factory):
    """An empty private schema of its own for each test (tests/pg.py)."""
    with database_url("postgres", tmp_path_factory) as url:
        yield url


def push(console: ConsoleProcess, token: str, host: str, lines: list[str], t0: int) -> None:
    logs = []
    for i, line in enumerate(lines):
        level = LEVELS[(i // 3) % 4]
        logs.append({"ts": t0 + 10 * i - (5 if i % 11 == 0 else 0), "source": SOURCES[i % 3], "line": line,
                     "labels": {"level": level, "unit": f"u{i % 2}"} if level else {}})
    doc = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(), "metrics": [], "logs": logs}
    resp = http("POST", console.url + "/api/v1/ingest", json.dumps(doc).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, timeout=60)
    assert resp.status == 200, resp.body
    assert resp.json()["accepted_logs"] == len(lines)


def group_states(url: str) -> tuple[int, int, int, int]:
    """(unpacked groups, packed with rows kept, packed, rows in log_records)."""
    db = Database(url)
    try:
        return tuple(db.run(lambda s: s.execute(text(
            "SELECT count(*) FILTER (WHERE packed IS NULL), count(*) FILTER (WHERE packed IS NOT NULL AND rows_kept), "
            "count(*) FILTER (WHERE packed IS NOT NULL), (SELECT count(*) FROM log_records) FROM log_search_groups"
        )).one()))
    finally:
        db.close()


def pack(url: str, kept_before: int, most: int) -> tuple[int, int]:
    """One pass of the group indexer's packing, as after its hot window."""
    db = Database(url)
    try:
        raw = db.engine.raw_connection()
        try:
            conn = raw.driver_connection
            with conn.cursor() as cursor:
                done = pack_groups(cursor, FAR, kept_before, most)
            conn.commit()
            return done
        finally:
            raw.close()
    finally:
        db.close()


def test_packed_groups_answer_every_search_as_their_rows_did(tmp_path: Path, postgres_url):
    console = ConsoleProcess(tmp_path, FLEETDECK_DATABASE_URL=postgres_url).start()
    try:
        viewer = console.api_token("blk-viewer", "viewer")
        tag = "blk" + uuid.uuid4().hex[:8]
        rnd = random.Random(7)
        t0 = int(time.time() * 1000) - 3_600_000
        sent: dict[str, list[str]] = {}
        for n, host in enumerate(("blk-a", "blk-b")):
            lines = [f"{tag} {line_of(i, rnd)}" + (" ünïcode Straße" if i % 50 == 0 else "") for i in range(600)]
            sent[host] = lines
            push(console, console.agent_token(host), host, lines, t0 + n * 3)
        wait_for(lambda: caught_up(postgres_url), 30, "the group index to catch up")
        assert group_states(postgres_url) == (6, 0, 0, 1200)  # 256 + 256 + 88 lines a host
        rare = sent["blk-b"][321].split("req=")[1].split()[0]
        searches = [
            {"q": tag}, {"q": f"{tag} get"}, {"q": "retrying"}, {"q": rare}, {"q": f"{tag[:5]}*"},
            {"q": "straße"}, {"q": "STRASSE"}, {"q": "api v1 orders"}, {"q": "no such words here"},
            {"q": tag, "level": "error"}, {"q": tag, "level": "warn,info"}, {"q": tag, "host": "blk-b"},
            {"q": tag, "source": "/var/log/db.log"}, {"q": tag, "source": "/var/log/d*"},
            {"q": tag, "start": (t0 + 1500) / 1000, "end": (t0 + 4210) / 1000},
            {}, {"host": "blk-a"}, {"level": "error", "host": "blk-b"}, {"source": "/var/log/dmesg", "level": "fatal"},
            {"start": (t0 + 2000) / 1000, "end": (t0 + 2100.5) / 1000},
        ]
        before = [every_page(console, viewer, 37, params) for params in searches]
        assert len(before[0]) == 1200 and len(before[3]) == 1 and before[8] == []
        assert {r["host"] for r in before[11]} == {"blk-b"} and len(before[11]) == 600
        assert all(r["level"] == "error" for r in before[9]) and len(before[9]) == 300
        assert before[13] == [r for r in before[0] if r["source"].startswith("/var/log/d")]
        db = Database(postgres_url)
        logs = LogService(db)
        counted = [LogQuery(terms=(SearchTerm(tag),)), LogQuery(terms=parse_terms("post*"), levels=("warn",)),
                   LogQuery(hosts=("blk-a",), start_ms=t0 + 1000, end_ms=t0 + 3000)]
        try:
            counts = [db.run(logs.count_by_host, q) for q in counted]
            size = db.run(logs.stored_bytes)
            assert counts[0] == {"blk-a": 600, "blk-b": 600}
            # one group packed and its rows deleted; one packed with its rows still there; all
            assert pack(postgres_url, FAR, 1) == (1, 256)
            assert group_states(postgres_url) == (5, 0, 1, 944)
            assert pack(postgres_url, 0, 1) == (1, 0)
            assert group_states(postgres_url) == (4, 1, 2, 944)
            assert [every_page(console, viewer, 37, params) for params in searches] == before
            assert [db.run(logs.count_by_host, q) for q in counted] == counts
            assert db.run(logs.stored_bytes) == size
            assert pack(postgres_url, FAR, 64) == (4, 944)
            assert group_states(postgres_url) == (0, 0, 6, 0)
            for limit in (37, 1000):
                assert [every_page(console, viewer, limit, params) for params in searches] == before
            assert [db.run(logs.count_by_host, q) for q in counted] == counts
            assert db.run(logs.stored_bytes) == size
            # retention by age: whole packed groups, and the older lines inside one
            cutoff = t0 + 3007  # inside each host's second group; no line has this time
            logs.retention_days, logs.clock = 1.0, lambda: cutoff / 1000 + 86400
            assert logs.enforce_retention().deleted_by_age == sum(r["ts"] < cutoff for r in before[0])
            assert every_page(console, viewer, 100, {"q": tag}) == [r for r in before[0] if r["ts"] >= cutoff]
            # retiring a host deletes its packed lines and counts them
            admin = console.api_token("blk-admin", "admin")
            resp = http("DELETE", console.url + "/api/v1/hosts/blk-b", headers={"Authorization": f"Bearer {admin}"})
            assert resp.status == 200, resp.body
            assert resp.json()["logs"] == sum(r["ts"] >= cutoff and r["host"] == "blk-b" for r in before[0])
            assert every_page(console, viewer, 100, {"q": tag}) == \
                [r for r in before[0] if r["ts"] >= cutoff and r["host"] == "blk-a"]
        finally:
            db.close()
    finally:
        console.stop()


def test_packed_lines_take_at_most_250_bytes_each(postgres_url):
    """Realistic ~160-byte lines (bench/logs_ingest.py's) through LogStore with the
    console's group indexer, packed; everything of ``log_records`` (its partitions, heap,
    TOAST and indexes) and of the group tables after a VACUUM, per line."""
    db = Database(postgres_url)
    try:
        db.migrate()
        lines = 40_000
        fill(db, lines)
        sizes = postgres_bytes(db)
    finally:
        db.close()
    per_line = sum(sizes.values()) / lines
    assert per_line <= 250, f"{per_line:.1f} B per line stored ({sizes})"


def test_migration_packs_stored_lines_and_puts_them_back_as_rows(postgres_url):
    """logblocks_0001 on a database with lines: the group indexer groups and packs them
    (their rows go), search answers as before; the downgrade puts every packed line back as
    its row, fields and id unchanged."""
    engine = create_engine(postgres_url)
    migrate = migrator(engine)

    now = int(time.time() * 1000)
    stored = [(i + 1, 1 + i % 2, now + 7 * i, SOURCES[i % 3], f"mig line {i} " + ("Éclair ошибка" if i % 5 == 0 else
               "GET /api/v1/orders 200"), json.dumps({"unit": f"u{i}"}) if i % 4 else "{}", LEVELS[i % 4])
              for i in range(300)]
    try:
        migrate("loggroup_0001_log_search_groups")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'mig-1', 1, '{}'), "
                              "(2, 'mig-2', 1, '{}')"))
            conn.execute(text("INSERT INTO log_records (id, host_id, ts, source, line, labels, level) "
                              "VALUES (:id, :host_id, :ts, :source, :line, :labels, :level)"),
                         [dict(zip(("id", "host_id", "ts", "source", "line", "labels", "level"), row)) for row in stored])
        migrate("heads")
        db = Database(postgres_url)
        try:
            logs = LogService(db)
            searches = [LogQuery(terms=parse_terms("ошибка"), limit=1000), LogQuery(limit=1000),
                        LogQuery(terms=parse_terms("mig get"), hosts=("mig-2",), levels=("warn",), limit=7)]
            before = [db.run(logs.search, q) for q in searches]
            assert len(before[0]["logs"]) == 60 and len(before[1]["logs"]) == 300
            indexer = GroupIndexer(db)
            indexer.HOT_S = indexer.KEEP_S = -1.0  # everything is older than the hot window
            raw = db.engine.raw_connection()
            try:
                assert indexer.index_pass(raw.driver_connection) == 300
            finally:
                raw.close()
            assert group_states(postgres_url) == (0, 0, 2, 0)
            assert [db.run(logs.search, q) for q in searches] == before
        finally:
            db.close()
        indexes = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'log_records'"
        with engine.connect() as conn:
            assert set(conn.execute(text(indexes)).scalars()) == {"log_records_pkey", "ix_log_records_ts"}
        migrate("loggroup_0001_log_search_groups", command.downgrade)
        with engine.connect() as conn:
            assert set(conn.execute(text(indexes)).scalars()) == {
                "log_records_pkey", "ix_log_records_ts", "ix_log_records_host_ts", "ix_log_records_level_ts"}
            assert [tuple(r) for r in conn.execute(text(
                "SELECT id, host_id, ts, source, line, labels, level FROM log_records ORDER BY id"))] == stored
        migrate("heads")
        assert group_states(postgres_url) == (2, 0, 0, 300)
    finally:
        engine.dispose()
