"""The Alembic migrations build exactly the schema the models describe."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from console.storage import Database
from console.storage.database import MIGRATIONS_DIR
from console.storage.models import Base, include_in_comparison


def test_migrations_match_models(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # a second run at head changes nothing
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"include_name": include_in_comparison}), Base.metadata)
    db.close()
    assert diff == []


def test_migrations_form_one_line_of_history():
    # One head: every migration builds on the one before it (CONTRIBUTING.md "Adding a
    # migration"). Two migrations written at the same time off the same revision fork it.
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    heads = sorted(script.get_heads())
    assert len(heads) == 1, (
        f"the migrations have {len(heads)} heads, there must be one line of history: "
        + "; ".join(f"{h} (down_revision {script.get_revision(h).down_revision!r})" for h in heads)
        + ". A migration not yet on main: point its down_revision (the first of its chain) at the other head. "
        "Heads that have both shipped (databases made by each exist; re-pointing would break them): join them "
        "with a merge revision, `alembic merge heads -m MSG --rev-id ID` in the checkout. "
        "Then `fleetdeck db heads` prints one.")


def test_sqlite_uses_wal(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.close()


def test_sqlite_reads_pages_through_a_memory_map(tmp_path):
    # Ingest reads the newest leaf page of every series it writes: with SQLite's 2 MB page
    # cache alone, each sample cost a read() once series outnumbered it, more and more as
    # data was stored (BENCHMARKS.md, "Ingest in the agent's shape").
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    with db.engine.connect() as first, db.engine.connect() as second:  # every connection
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() >= 1 << 30
    db.close()


def test_sqlite_log_index_merges_sixteen_segments_at_a_time(tmp_path):
    # 0012_fts_automerge, kept by the index file of logperf_0001 (console/storage/logsearch.py):
    # fewer FTS5 merges per indexing pass (BENCHMARKS.md "Logs").
    db = Database(f"sqlite:///{tmp_path / 'f.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        value = conn.exec_driver_sql("SELECT v FROM logsearch.log_fts_config WHERE k = 'automerge'").scalar()
        # the index still answers after the setting changed
        assert conn.exec_driver_sql("SELECT count(*) FROM logsearch.log_fts WHERE log_fts MATCH 'x'"
                                    ).scalar() == 0
        # the old index in the main file is gone
        assert conn.exec_driver_sql("SELECT count(*) FROM main.sqlite_master WHERE name LIKE 'log_records_fts%'"
                                    ).scalar() == 0
    db.close()
    assert value == 16
