"""The SQLite log search index file (console/storage/logsearch.py) on a real database
file: deleted log rows leave the index with them (retention, retiring a host), an id the
index held is never given to a new line, and the indexer catches up from its watermark."""
from __future__ import annotations

import sqlite3
import threading
import time

from sqlalchemy import text

from console.logs.indexer import LogIndexer
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


def index_entries(tmp_path, word: str) -> list[int]:
    with sqlite3.connect(tmp_path / "l.db.logsearch") as conn:
        return sorted(r[0] for r in conn.execute("SELECT rowid FROM log_fts WHERE log_fts MATCH ?", (f'"{word}"',)))


def watermark(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "l.db.logsearch") as conn:
        return conn.execute("SELECT indexed_id FROM log_fts_state").fetchone()[0]


def catch_up(db: Database) -> None:
    raw = db.engine.raw_connection()
    try:
        LogIndexer(db).index_pass(raw.driver_connection)
    finally:
        raw.close()


def test_retention_removes_index_entries_and_ids_are_never_reused(tmp_path):
    db, host = open_db(tmp_path)
    store = LogStore(db)  # not started: indexes in the insert transaction
    old_ms, new_ms = int((NOW - 30 * 86400) * 1000), int((NOW - 60) * 1000)
    db.run(store.insert, [(host, old_ms + i, "/x", f"oldword line {i}", "{}", None) for i in range(5)])
    db.run(store.insert, [(host, new_ms + i, "/x", f"newword line {i}", "{}", None) for i in range(3)])
    assert index_entries(tmp_path, "oldword") == [1, 2, 3, 4, 5] and watermark(tmp_path) == 8
    result = LogService(db, retention_days=14, clock=lambda: NOW).enforce_retention()
    assert result.deleted_by_age == 5
    assert index_entries(tmp_path, "oldword") == []  # gone from the index with the rows
    assert index_entries(tmp_path, "line") == [6, 7, 8]
    # The newest rows deleted too (a host retired): the next line must not take id 6..8,
    # which a stale index entry could still name after a crash.
    db.run(delete_log_records, LogRecord.__table__.c.id > 0)
    assert index_entries(tmp_path, "line") == []
    db.run(store.insert, [(host, new_ms, "/x", "fresh line", "{}", None), (host, new_ms, "/x", "fresh two", "{}", None)])
    ids = db.run(lambda s: s.execute(text("SELECT id FROM log_records ORDER BY id")).scalars().all())
    assert ids == [9, 10]
    assert index_entries(tmp_path, "fresh") == [9, 10]
    db.close()


def test_indexer_catches_up_and_search_sees_unindexed_lines(tmp_path):
    db, host = open_db(tmp_path)
    store = LogStore(db)
    db.run(store.insert, [(host, 1000 + i, "/x", f"first alpha{i}", "{}", None) for i in range(4)])
    store.start()  # from now on rows are indexed in the background
    try:
        lock = sqlite3.connect(tmp_path / "l.db.logsearch", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the indexer cannot write meanwhile
        try:
            db.run(store.insert, [(host, 2000 + i, "/x", f"second alpha{i} Straße", "{}", None) for i in range(4)])
            store.committed(store.newest_id)
            assert watermark(tmp_path) == 4
            service = LogService(db)
            found = db.run(service.search, LogQuery(terms=(SearchTerm("alpha1"),)))
            assert [r["line"] for r in found["logs"]] == ["second alpha1 Straße", "first alpha1"]
            found = db.run(service.search, LogQuery(terms=(SearchTerm("alpha", prefix=True), SearchTerm("straße")),
                                                    limit=3))
            assert [r["id"] for r in found["logs"]] == [8, 7, 6] and found["next"] == "2001_6"
            assert db.run(service.count_by_host, LogQuery(terms=(SearchTerm("alpha", prefix=True),))) == {
                "idx-host": 8}
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        deadline = time.monotonic() + 30
        while watermark(tmp_path) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index_entries(tmp_path, "second") == [5, 6, 7, 8]
    finally:
        store.close()
        db.close()


UNICODE_LINES = ["Straße gesperrt", "ÉCOLE fermée", "naïve Bayes", "temp 5\u212a kelvin", "İstanbul office",
                 "plain ascii words", "mixed ÄBCabc token"]
UNICODE_QUERIES = [("straße",), ("école",), ("ecole",), ("naïve",), ("5k",), ("kelvin",), ("istanbul",),
                   ("abcabc",), ("äbcabc",), ("words",), ("fer*",), ("st*",)]


def test_unindexed_lines_match_as_the_index_matches_them(tmp_path):
    """The same words find the same lines whether a line is above the watermark (matched
    in the console) or in the index (FTS5), non-ASCII letters included."""
    db, host = open_db(tmp_path)
    store = LogStore(db)
    store.start()
    try:
        service = LogService(db)

        def results() -> dict[str, list[int]]:
            return {" ".join(q): [r["id"] for r in db.run(service.search, LogQuery(
                terms=tuple(SearchTerm(w.rstrip("*"), w.endswith("*")) for w in q)))["logs"]] for q in UNICODE_QUERIES}

        lock = sqlite3.connect(tmp_path / "l.db.logsearch", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            db.run(store.insert, [(host, 1000 + i, "/x", line, "{}", None) for i, line in enumerate(UNICODE_LINES)])
            store.committed(store.newest_id)
            assert watermark(tmp_path) == 0
            unindexed = results()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        deadline = time.monotonic() + 30
        while watermark(tmp_path) < len(UNICODE_LINES) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watermark(tmp_path) == len(UNICODE_LINES)
        assert results() == unindexed
        assert unindexed["straße"] == [1] and unindexed["words"] == [6] and unindexed["fer*"] == [2]
    finally:
        store.close()
        db.close()


def test_ingest_waits_while_the_index_is_too_far_behind(tmp_path):
    db, host = open_db(tmp_path)
    store = LogStore(db)
    store.indexer.MAX_BEHIND = 10  # an instance attribute: the class keeps 100,000
    store.start()
    try:
        lock = sqlite3.connect(tmp_path / "l.db.logsearch", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
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
        lock.execute("ROLLBACK")
        lock.close()
        waited.join(20)
        assert not waited.is_alive() and watermark(tmp_path) == 25
    finally:
        store.close()
        db.close()
