"""PostgreSQL log search by groups of lines (console/logs/groups.py, migration loggroup_0001).

A real ``fleetdeck serve`` on a private PostgreSQL schema. The test can hold the group
indexer back by locking the watermark row (as another console's indexing pass would):
lines are then answered 200 and found at once above the watermark, merged in order with
the lines of indexed groups across pages; after a kill -9 with lines committed but not
grouped, the restarted console finds them and groups each line exactly once. Retention
deletes the groups of the lines it deletes, and the migration keeps every line findable
both ways."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from console.logs.service import LogQuery, LogService, SearchTerm
from console.logs.store import lexemes
from console.storage import Database
from console.storage.database import MIGRATIONS_DIR
from tests.conftest import database_url
from tests.harness import http, wait_for
from tests.integration.procs import ConsoleProcess

BEFORE = "coldsize_0001_sqlite_block_rows"  # the revision before loggroup_0001


@contextmanager
def watermark_locked(url: str):
    """Hold the group watermark's row lock: no indexing pass can group anything."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT indexed_id FROM log_search_state FOR UPDATE"))
            yield
            conn.rollback()
    finally:
        engine.dispose()


def state(url: str) -> tuple[int, int, int, int]:
    """(watermark, newest line id, lines in groups, groups)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(
                "SELECT (SELECT indexed_id FROM log_search_state), (SELECT coalesce(max(id), 0) FROM log_records), "
                "(SELECT coalesce(sum(lines), 0) FROM log_search_groups), (SELECT count(*) FROM log_search_groups)"
            )).one())
    finally:
        engine.dispose()


def caught_up(url: str) -> bool:
    watermark, newest, _, _ = state(url)
    return watermark == newest


def push(console: ConsoleProcess, token: str, host: str, lines: list[str], t0: int) -> None:
    doc = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(), "metrics": [],
           "logs": [{"ts": t0 + i, "source": "/var/log/app.log", "line": line,
                     "labels": {"level": "error"} if i % 7 == 0 else {}} for i, line in enumerate(lines)]}
    resp = http("POST", console.url + "/api/v1/ingest", json.dumps(doc).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, timeout=60)
    assert resp.status == 200, resp.body
    assert resp.json()["accepted_logs"] == len(lines)


def every_page(console: ConsoleProcess, token: str, limit: int, params: dict) -> list[dict]:
    """Every record of a search, page after page, as the API answers them."""
    records: list[dict] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = http("GET", console.url + "/api/v1/logs?" + urllib.parse.urlencode(query),
                    headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, resp.body
        body = resp.json()
        records += body["logs"]
        cursor = body["next"]
        if cursor is None:
            return records


def pages(console: ConsoleProcess, token: str, limit: int, **params) -> list[str]:
    """Every line of a search, page after page."""
    return [r["line"] for r in every_page(console, token, limit, params)]


def test_lines_behind_the_group_index_are_found_and_grouped_after_a_kill9(tmp_path: Path, postgres_url):
    console = ConsoleProcess(tmp_path, FLEETDECK_DATABASE_URL=postgres_url).start()
    try:
        agent = console.agent_token("grp-web")
        viewer = console.api_token("grp-viewer", "viewer")
        tag = "grp" + uuid.uuid4().hex[:8]
        t0 = int(time.time() * 1000) - 60_000
        old = [f"{tag} old line {i} req={uuid.uuid4().hex[:16]}" for i in range(300)]  # 2 groups (256 a group)
        push(console, agent, "grp-web", old, t0)
        wait_for(lambda: caught_up(postgres_url), 30, "the group index to catch up")
        assert state(postgres_url)[2:] == (300, 2)
        with watermark_locked(postgres_url):
            new = [f"{tag} new line {i} trace=9c1e-{i}" for i in range(40)]
            push(console, agent, "grp-web", new, t0 + 1000)
            watermark, newest, _, _ = state(postgres_url)
            assert watermark < newest
            # newest first, across the unindexed lines and the groups, page after page
            assert pages(console, viewer, 30, q=tag) == new[::-1] + old[::-1]
            assert pages(console, viewer, 7, q=f"{tag} line", level="error") == \
                [line for i, line in reversed(list(enumerate(new))) if i % 7 == 0] + \
                [line for i, line in reversed(list(enumerate(old))) if i % 7 == 0]
            assert pages(console, viewer, 50, q="9c1e") == new[::-1]
            assert pages(console, viewer, 50, q=old[123].split("req=")[1]) == [old[123]]
            assert pages(console, viewer, 50, q=f"{tag[:6]}* old 12*") == \
                [line for line in old[::-1] if any(w.startswith("12") for w in re.findall(r"[^\W_]+", line.lower()))]
            console.kill9()  # committed (answered 200), never grouped
            console.start()
            assert pages(console, viewer, 100, q=tag) == new[::-1] + old[::-1]
            assert not caught_up(postgres_url)
        # the restarted console's indexer goes on from the watermark: each line in one group
        wait_for(lambda: caught_up(postgres_url), 30, "the group index to catch up")
        assert state(postgres_url)[2:] == (340, 3)
        assert pages(console, viewer, 100, q=tag) == new[::-1] + old[::-1]
        assert pages(console, viewer, 100, q=f"{tag} new 9c1e") == new[::-1]
    finally:
        console.stop()


def test_retention_deletes_the_groups_of_the_lines_it_deletes(tmp_path: Path, postgres_url):
    console = ConsoleProcess(tmp_path, FLEETDECK_DATABASE_URL=postgres_url).start()
    try:
        agent = console.agent_token("ret-web")
        tag = "ret" + uuid.uuid4().hex[:8]
        now = int(time.time() * 1000)
        push(console, agent, "ret-web", [f"{tag} old {i}" for i in range(20)], now - 3 * 3_600_000)
        wait_for(lambda: caught_up(postgres_url), 30, "the group index to catch up")
        push(console, agent, "ret-web", [f"{tag} new {i}" for i in range(20)], now)
        wait_for(lambda: caught_up(postgres_url), 30, "the group index to catch up")
        assert state(postgres_url)[2:] == (40, 2)
    finally:
        console.stop()
    db = Database(postgres_url)
    try:
        # 14 days' retention seen from a clock that puts the cutoff 2 hours ago
        logs = LogService(db, retention_days=14, clock=lambda: now / 1000 - 7200 + 14 * 86400)
        assert logs.enforce_retention().deleted_by_age == 20
        assert state(postgres_url)[2:] == (20, 1)
        found = db.run(logs.search, LogQuery(terms=(SearchTerm(tag),), limit=100))
        assert [r["line"] for r in found["logs"]] == [f"{tag} new {i}" for i in reversed(range(20))]
        logs.clock = lambda: now / 1000 + 15 * 86400  # every line: their partitions are dropped
        logs.enforce_retention()
        assert state(postgres_url)[2:] == (0, 0)
    finally:
        db.close()


def migrator(engine):  # noqa: ANN001, ANN201
    """``migrate(revision, how=command.upgrade)``: run alembic's ``how`` to ``revision`` on
    ``engine`` in a transaction of its own."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))

    def migrate(to: str, how=command.upgrade) -> None:  # noqa: ANN001
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            how(cfg, to)
    return migrate


def test_migration_moves_the_index_to_groups_and_back(postgres_url):
    engine = create_engine(postgres_url)
    migrate = migrator(engine)

    lines = ["GET /api/v1/orders 200 upstream_timeout user=42", "Éclair ошибка İstanbul 10.0.0.7:5432",
             "kernel: oom-killer invoked"]
    try:
        migrate(BEFORE)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'mig-1', 1, '{}')"))
            for i, line in enumerate(lines):  # as the code before loggroup_0001 stored them
                conn.execute(text("INSERT INTO log_records (host_id, ts, source, line, labels, line_tsv) "
                                  "VALUES (1, :ts, 's', :line, '{}', CAST(:tsv AS tsvector))"),
                             {"ts": int(time.time() * 1000) + i, "line": line, "tsv": lexemes(line)})
        migrate("heads")
        assert "line_tsv" not in {c["name"] for c in inspect(engine).get_columns("log_records")}
        assert state(postgres_url) == (0, 3, 0, 0)
        db = Database(postgres_url)
        try:
            logs = LogService(db)
            # not grouped yet: found above the watermark
            assert db.run(logs.search, LogQuery(terms=(SearchTerm("ошибка"),)))["logs"][0]["line"] == lines[1]
            from console.logs.groups import GroupIndexer

            raw = db.engine.raw_connection()
            try:
                assert GroupIndexer(db).index_pass(raw.driver_connection) == 3
            finally:
                raw.close()
            assert state(postgres_url) == (3, 3, 3, 1)
            for word, want in (("upstream", [lines[0]]), ("éclair", [lines[1]]), ("oom*", [lines[2]]),
                               ("10 0", [lines[1]]), ("upstreamtimeout", []), ("timeout", [lines[0]])):
                terms = tuple(SearchTerm(w.rstrip("*"), w.endswith("*")) for w in word.split())
                assert [r["line"] for r in db.run(logs.search, LogQuery(terms=terms))["logs"]] == want, word
        finally:
            db.close()
        migrate(BEFORE, command.downgrade)
        tables = set(inspect(engine).get_table_names())
        assert not {"log_search_groups", "log_search_state"} & tables
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT line, line_tsv::text FROM log_records ORDER BY id")).all()
            assert [(line, sorted(tsv.split(" "))) for line, tsv in stored] == \
                [(line, sorted(lexemes(line).split(" "))) for line in lines]
            assert conn.execute(text("SELECT line FROM log_records WHERE line_tsv @@ CAST('oom' AS tsquery)")
                                ).scalars().all() == [lines[2]]
            assert conn.execute(text("SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
                                     "AND indexname = 'ix_log_records_line_tsv'")).scalar() == 1
        migrate("heads")
        assert state(postgres_url) == (0, 3, 0, 0)
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url(tmp_path_factory):
    """An empty private schema of its own for each test (tests/pg.py)."""
    with database_url("postgres", tmp_path_factory) as url:
        yield url


def test_the_group_indexer_goes_on_after_its_connection_is_cut(tmp_path: Path, postgres_url):
    console = ConsoleProcess(tmp_path, FLEETDECK_DATABASE_URL=postgres_url).start()
    engine = create_engine(postgres_url)
    try:
        agent = console.agent_token("cut-web")
        tag = "cut" + uuid.uuid4().hex[:8]
        t0 = int(time.time() * 1000) - 60_000
        push(console, agent, "cut-web", [f"{tag} before {i}" for i in range(10)], t0)
        wait_for(lambda: caught_up(postgres_url), 30, "the group index to catch up")
        with engine.connect() as conn:  # the indexer's session, named with the console's pid
            cut = conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"),
                               {"a": f"fleetdeck log indexer {console.proc.pid}"}).scalars().all()
        assert cut == [True]
        push(console, agent, "cut-web", [f"{tag} after {i}" for i in range(10)], t0 + 1000)
        wait_for(lambda: caught_up(postgres_url), 30, "the group index to catch up on a new connection")
        assert state(postgres_url)[2:] == (20, 2)
    finally:
        engine.dispose()
        console.stop()


def test_two_workers_group_every_line_once(tmp_path: Path, postgres_url):
    """``serve --workers 2``: each worker runs a group indexer, and their passes take turns
    on the watermark row. Lines posted at once through both workers end up each in exactly
    one group of its host, and a search finds each."""
    console = ConsoleProcess(tmp_path, args=("--workers", "2"), FLEETDECK_DATABASE_URL=postgres_url).start()
    engine = create_engine(postgres_url)
    try:
        hosts = [f"two-{i}" for i in range(4)]
        tokens = {h: console.agent_token(h) for h in hosts}
        viewer = console.api_token("two-viewer", "viewer")
        tag = "two" + uuid.uuid4().hex[:8]
        t0 = int(time.time() * 1000) - 60_000
        sent = {h: [[f"{tag} {h} batch {b} line {i} req={uuid.uuid4().hex[:16]}" for i in range(150)]
                    for b in range(6)] for h in hosts}

        def agent(host: str) -> None:
            for b, lines in enumerate(sent[host]):  # a new connection each: spread over the workers
                push(console, tokens[host], host, lines, t0 + b * 1000)

        threads = [threading.Thread(target=agent, args=(h,)) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for(lambda: caught_up(postgres_url), 60, "the group index to catch up")
        workers = [int(pid) for task in Path(f"/proc/{console.proc.pid}/task").glob("*/children")
                   for pid in task.read_text().split()]
        with engine.connect() as conn:  # each worker's indexer, named with its pid
            indexers = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(:names)"),
                                    {"names": [f"fleetdeck log indexer {pid}" for pid in workers]}).scalar()
            # each line in exactly one group of its host
            covering = conn.execute(text(
                "SELECT r.id, count(g.id) FROM log_records r LEFT JOIN log_search_groups g ON g.host_id = r.host_id "
                "AND r.id BETWEEN g.first_record_id AND g.last_record_id GROUP BY r.id")).all()
        assert indexers == 2
        assert len(covering) == 4 * 6 * 150 and {n for _, n in covering} == {1}
        assert state(postgres_url)[2] == 4 * 6 * 150
        for h in hosts:
            assert pages(console, viewer, 1000, q=tag, host=h) == [x for lines in sent[h] for x in lines][::-1]
    finally:
        engine.dispose()
        console.stop()
