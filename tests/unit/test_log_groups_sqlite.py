"""SQLite's log search groups (console/logs/groups.py, migration logsqlite_0001) on a real
database file: lines are found whether they are rows above the watermark, rows of a group
or packed; retention deletes packed lines and their groups; an id a group held is never
given to a new line; the indexer catches up from its watermark and ingest waits while it
is too far behind; packed groups do not waste overflow pages."""
from __future__ import annotations

import threading
import time

from sqlalchemy import text

from console.logs.groups import sqlite_pack_groups
from console.logs.service import LogQuery, LogService, SearchTerm
from console.logs.store import LogStore, delete_log_records
from console.storage.database import Database
from console.storage.models import Host, LogRecord

NOW = 1_800_000_000.0


def open_db(tmp_path) -> tuple[Database, int]:
    db = Database(f"sqlite:///{tmp_path / 'l.db'}")
    db.migrate()

    def add_host(session):
        host = Host(name="idx-host", first_seen=NOW, labels="{}")
        session.add(host)
        session.flush()
        return host.id

    return db, db.run(add_host)


def scalar(db: Database, sql: str):
    return db.run(lambda s: s.execute(text(sql)).scalar())


def watermark(db: Database) -> int:
    return scalar(db, "SELECT indexed_id FROM log_search_state")


def pack_all(db: Database) -> None:
    """Pack every group and delete its rows (the console does so after its hot window)."""
    raw = db.engine.raw_connection()
    try:
        while sqlite_pack_groups(raw.driver_connection, 2**53, 2**53) != (0, 0):
            pass
    finally:
        raw.close()


def gate(store: LogStore) -> threading.Event:
    """Hold the store's indexer before each pass until the returned event is set."""
    go = threading.Event()
    index_pass = store.indexer.index_pass

    def held(conn):
        go.wait()
        return index_pass(conn)

    store.indexer.index_pass = held
    return go


def wait_for_watermark(db: Database, target: int) -> None:
    deadline = time.monotonic() + 30
    while watermark(db) < target and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watermark(db) == target


def test_retention_deletes_packed_lines_and_ids_are_never_reused(tmp_path):
    db, host = open_db(tmp_path)
    store = LogStore(db)  # not started: groups the lines in the insert transaction
    old_ms, new_ms = int((NOW - 30 * 86400) * 1000), int((NOW - 60) * 1000)
    db.run(store.insert, [(host, old_ms + i, "/x", f"oldword line {i}", "{}", None) for i in range(5)])
    db.run(store.insert, [(host, new_ms + i, "/x", f"newword line {i}", "{}", "error") for i in range(3)])
    assert watermark(db) == 8 and scalar(db, "SELECT count(*) FROM log_search_groups") == 2
    pack_all(db)
    assert scalar(db, "SELECT count(*) FROM log_records") == 0
    service = LogService(db, retention_days=14, clock=lambda: NOW)
    assert [r["id"] for r in db.run(service.search, LogQuery(terms=(SearchTerm("line"),)))["logs"]] == list(
        range(8, 0, -1))
    result = service.enforce_retention()
    assert result.deleted_by_age == 5
    assert db.run(service.search, LogQuery(terms=(SearchTerm("oldword"),)))["logs"] == []
    assert [r["id"] for r in db.run(service.search, LogQuery(levels=("error",)))["logs"]] == [8, 7, 6]
    assert scalar(db, "SELECT count(*) FROM log_search_groups") == 1
    # every row gone (packed): the next line must not take id 1..8, which a group holds
    db.run(delete_log_records, LogRecord.__table__.c.id > 0)
    db.run(store.insert, [(host, new_ms, "/x", "fresh line", "{}", None), (host, new_ms, "/x", "fresh two", "{}", None)])
    ids = db.run(lambda s: s.execute(text("SELECT id FROM log_records ORDER BY id")).scalars().all())
    assert ids == [9, 10]
    # newest first by (ts, id): the fresh line shares its ts with line 6
    assert [r["id"] for r in db.run(service.search, LogQuery(terms=(SearchTerm("line"),)))["logs"]] == [8, 7, 9, 6]
    db.close()


def test_indexer_catches_up_and_search_sees_unindexed_lines(tmp_path):
    db, host = open_db(tmp_path)
    store = LogStore(db)
    db.run(store.insert, [(host, 1000 + i, "/x", f"first alpha{i}", "{}", None) for i in range(4)])
    go = gate(store)
    store.start()  # from now on rows are grouped in the background
    try:
        db.run(store.insert, [(host, 2000 + i, "/x", f"second alpha{i} Straße", "{}", None) for i in range(4)])
        store.committed(store.newest_id)
        assert watermark(db) == 4
        service = LogService(db)
        found = db.run(service.search, LogQuery(terms=(SearchTerm("alpha1"),)))
        assert [r["line"] for r in found["logs"]] == ["second alpha1 Straße", "first alpha1"]
        found = db.run(service.search, LogQuery(terms=(SearchTerm("alpha", prefix=True), SearchTerm("straße")),
                                                limit=3))
        assert [r["id"] for r in found["logs"]] == [8, 7, 6] and found["next"] == "2001_6"
        assert db.run(service.count_by_host, LogQuery(terms=(SearchTerm("alpha", prefix=True),))) == {"idx-host": 8}
        go.set()
        wait_for_watermark(db, 8)
        assert scalar(db, "SELECT sum(lines) FROM log_search_groups") == 8
        assert db.run(service.count_by_host, LogQuery(terms=(SearchTerm("alpha", prefix=True),))) == {"idx-host": 8}
    finally:
        go.set()
        store.close()
        db.close()


UNICODE_LINES = ["Straße gesperrt", "ÉCOLE fermée", "naïve Bayes", "temp 5\u212a kelvin", "İstanbul office",
                 "plain ascii words", "mixed ÄBCabc token"]
UNICODE_QUERIES = [("straße",), ("école",), ("ecole",), ("naïve",), ("5k",), ("kelvin",), ("istanbul",),
                   ("abcabc",), ("äbcabc",), ("words",), ("fer*",), ("st*",)]


def test_lines_match_alike_above_the_watermark_in_groups_and_packed(tmp_path):
    """The same words find the same lines whether a line is above the watermark (matched
    in the console), in a group of rows or packed, non-ASCII letters included."""
    db, host = open_db(tmp_path)
    store = LogStore(db)
    go = gate(store)
    store.start()
    try:
        service = LogService(db)

        def results() -> dict[str, list[int]]:
            return {" ".join(q): [r["id"] for r in db.run(service.search, LogQuery(
                terms=tuple(SearchTerm(w.rstrip("*"), w.endswith("*")) for w in q)))["logs"]] for q in UNICODE_QUERIES}

        db.run(store.insert, [(host, 1000 + i, "/x", line, "{}", None) for i, line in enumerate(UNICODE_LINES)])
        store.committed(store.newest_id)
        assert watermark(db) == 0
        unindexed = results()
        go.set()
        wait_for_watermark(db, len(UNICODE_LINES))
        assert results() == unindexed
        store.close()
        pack_all(db)
        assert scalar(db, "SELECT count(*) FROM log_records") == 0
        assert results() == unindexed
        assert unindexed["straße"] == [1] and unindexed["words"] == [6] and unindexed["fer*"] == [2]
        assert unindexed["ecole"] == [] and unindexed["st*"] == [1]
    finally:
        go.set()
        store.close()
        db.close()


def test_ingest_waits_while_the_index_is_too_far_behind(tmp_path):
    db, host = open_db(tmp_path)
    store = LogStore(db)
    store.indexer.MAX_BEHIND = 10  # an instance attribute: the class keeps 100,000
    go = gate(store)
    store.start()
    try:
        db.run(store.insert, [(host, 1000 + i, "/x", f"line {i}", "{}", None) for i in range(5)])
        store.committed(store.newest_id)
        started = time.monotonic()
        store.before_insert()  # 5 behind: no wait
        assert time.monotonic() - started < 0.5
        db.run(store.insert, [(host, 2000 + i, "/x", f"more {i}", "{}", None) for i in range(20)])
        store.committed(store.newest_id)
        waited = threading.Thread(target=store.before_insert)
        waited.start()
        waited.join(1.0)
        assert waited.is_alive(), "ingest did not wait for an index 25 lines behind (limit 10)"
        go.set()
        waited.join(20)
        assert not waited.is_alive() and watermark(db) == 25
    finally:
        go.set()
        store.close()
        db.close()


def test_packed_groups_waste_few_overflow_bytes(tmp_path):
    """A packed group (~16 KB of lines, ~7 KB of filter) is longer than a 4 KiB page: its
    row keeps its first bytes in the table's leaf and the rest on overflow pages, the last
    of them part empty. The pages of the groups' table hold at least 90 % group bytes."""
    from bench.logs_ingest import line_of
    import random

    db, host = open_db(tmp_path)
    store = LogStore(db)
    rnd = random.Random(3)
    for start in range(0, 20_000, 4000):
        db.run(store.insert, [(host, 1000 + i, "/var/log/app.log", line_of(i, rnd), "{}", "info")
                              for i in range(start, start + 4000)])
    pack_all(db)
    payload = scalar(db, "SELECT sum(length(bloom) + length(packed) + 60) FROM log_search_groups")
    pages = scalar(db, "SELECT sum(pgsize) FROM dbstat WHERE name = 'log_search_groups'")
    # each insert of 4,000 lines is grouped alone: 15 groups of 256 lines and one of 160
    assert scalar(db, "SELECT count(*) FROM log_search_groups") == 80
    assert payload / pages >= 0.9, (payload, pages)  # 0.96 measured
    assert pages / 20_000 < 100  # bytes a line, filter and packed lines (88 measured)
    db.close()


def test_migration_groups_stored_lines_and_puts_packed_lines_back_as_rows(tmp_path):
    """logsqlite_0001 on a database with lines: the FTS5 file goes, the console's indexer
    groups the stored lines from watermark 0 (search finds them meanwhile); the downgrade
    puts every packed line back as its row, with its id, and the upgrade again groups them."""
    from alembic import command
    from sqlalchemy import create_engine

    from console.logs.groups import GroupIndexer
    from tests.integration.test_log_groups import migrator

    db, host = open_db(tmp_path)
    store = LogStore(db)
    db.run(store.insert, [(host, 1000 + i, "/x", f"kept line {i}", "{}", ("info", None)[i % 2]) for i in range(300)])
    pack_all(db)
    db.run(store.insert, [(host, 5000, "/x", "hot line", "{}", None)])  # a row, in a group not packed
    db.close()
    engine = create_engine(f"sqlite:///{tmp_path / 'l.db'}")
    migrate = migrator(engine)
    migrate("pgbytes_0001_block_storage_main", command.downgrade)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, line, level FROM log_records ORDER BY id")).all()
        indexes = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' "
                                        "AND tbl_name = 'log_records'")).scalars())
        assert conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'log_search_groups'")).scalar() == 0
    assert [tuple(r) for r in rows] == [(i + 1, f"kept line {i}", ("info", None)[i % 2]) for i in range(300)] + [
        (301, "hot line", None)]
    assert {"ix_log_records_host_ts", "ix_log_records_level_ts"} <= indexes
    (tmp_path / "l.db.logsearch").write_bytes(b"")  # what the code before this revision made
    migrate("logsqlite_0001_sqlite_log_groups")
    engine.dispose()
    assert not (tmp_path / "l.db.logsearch").exists()
    db = Database(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        service = LogService(db)
        assert len(db.run(service.search, LogQuery(terms=(SearchTerm("line"),), limit=1000))["logs"]) == 301
        raw = db.engine.raw_connection()
        try:
            assert GroupIndexer(db).index_pass(raw.driver_connection) == 301
        finally:
            raw.close()
        assert watermark(db) == 301
        found = db.run(service.search, LogQuery(terms=(SearchTerm("kept"),), levels=("info",), limit=1000))["logs"]
        assert [r["id"] for r in found] == list(range(299, 0, -2))
    finally:
        db.close()
