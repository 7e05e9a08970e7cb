"""Log search: the SQLite FTS5 index moves to its own file, filled off the commit path.

SQLite: drop ``log_records_fts`` (external content, in the main file) and its delete and
update triggers. The index now lives in ``<database>.logsearch`` (console/storage/logsearch.py),
created when a connection finds it missing; the console's log indexer then indexes every
stored row, and search scans the rows not yet indexed, so no line is unsearchable
meanwhile. PostgreSQL: nothing to do (``line_tsv`` stays).

Revision ID: logperf_0001_log_search_file
Revises: rangeperf_0002_host_samples
"""
from alembic import op

revision = "logperf_0001_log_search_file"
down_revision = "rangeperf_0002_host_samples"
branch_labels = None
depends_on = None

_OLD_INDEX = [
    "CREATE VIRTUAL TABLE log_records_fts USING fts5("
    "line, content='log_records', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER log_records_fts_ad AFTER DELETE ON log_records BEGIN "
    "INSERT INTO log_records_fts(log_records_fts, rowid, line) VALUES ('delete', old.id, old.line); END",
    "CREATE TRIGGER log_records_fts_au AFTER UPDATE OF line ON log_records BEGIN "
    "INSERT INTO log_records_fts(log_records_fts, rowid, line) VALUES ('delete', old.id, old.line); "
    "INSERT INTO log_records_fts(rowid, line) VALUES (new.id, new.line); END",
    "INSERT INTO log_records_fts(log_records_fts) VALUES ('rebuild')",
    "INSERT INTO log_records_fts(log_records_fts, rank) VALUES ('automerge', 16)",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS log_records_fts_ad")
        op.execute("DROP TRIGGER IF EXISTS log_records_fts_au")
        op.execute("DROP TABLE IF EXISTS log_records_fts")


def downgrade() -> None:
    # The old code indexes in the ingest transaction: rebuild its index from the rows. The
    # separate file is left alone (the old code never reads it; delete it by hand).
    if op.get_bind().dialect.name == "sqlite":
        for statement in _OLD_INDEX:
            op.execute(statement)
