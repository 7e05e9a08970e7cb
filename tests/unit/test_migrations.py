"""The Alembic migrations build exactly the schema the models describe."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from console.storage import Database
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


def test_sqlite_uses_wal(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.close()


def test_sqlite_log_index_merges_sixteen_segments_at_a_time(tmp_path):
    # 0012_fts_automerge: fewer FTS5 merges per ingest batch (BENCHMARKS.md "Logs").
    db = Database(f"sqlite:///{tmp_path / 'f.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        value = conn.exec_driver_sql("SELECT v FROM log_records_fts_config WHERE k = 'automerge'").scalar()
        # the index still answers after the setting changed
        assert conn.exec_driver_sql("SELECT count(*) FROM log_records_fts WHERE log_records_fts MATCH 'x'"
                                    ).scalar() == 0
    db.close()
    assert value == 16
