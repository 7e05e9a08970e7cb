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


def test_sqlite_log_search_is_groups_in_the_main_file(tmp_path):
    # logsqlite_0001: the FTS5 index file of logperf_0001 is gone, the groups (with their
    # filters and packed lines last in the row) and the watermark are in the main file.
    (tmp_path / "f.db.logsearch").write_bytes(b"an index file of an earlier version")
    db = Database(f"sqlite:///{tmp_path / 'f.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(log_search_groups)")]
        assert columns[-2:] == ["bloom", "packed"]
        assert conn.exec_driver_sql("SELECT indexed_id FROM log_search_state").scalar() == 0
        indexes = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE tbl_name = 'log_records' "
                                           "AND type = 'index'").scalars())
        assert "ix_log_records_ts" in indexes and not {"ix_log_records_host_ts", "ix_log_records_level_ts"} & indexes
        assert [r[1] for r in conn.exec_driver_sql("PRAGMA database_list")] in (["main"], ["main", "temp"])
    db.close()
    assert not (tmp_path / "f.db.logsearch").exists()
