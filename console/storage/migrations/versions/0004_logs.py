"""Logs: a level column, a time index, and full-text search over log lines.

SQLite: an FTS5 table ``log_records_fts`` with external content (the line text lives
once, in ``log_records``), kept in step by triggers. PostgreSQL: a stored generated
``line_tsv`` tsvector column with a GIN index. Both tokenise the line into runs of
letters and digits (punctuation separates words), so a search finds the same lines on
both back-ends (see console/logs/service.py).

Revision ID: 0004_logs
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_logs"
down_revision = "0001"
branch_labels = ("logs",)
depends_on = None

SQLITE_FTS = [
    # unicode61 without diacritics folding: letters and digits form tokens, case-folded.
    "CREATE VIRTUAL TABLE log_records_fts USING fts5("
    "line, content='log_records', content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER log_records_fts_ai AFTER INSERT ON log_records BEGIN "
    "INSERT INTO log_records_fts(rowid, line) VALUES (new.id, new.line); END",
    "CREATE TRIGGER log_records_fts_ad AFTER DELETE ON log_records BEGIN "
    "INSERT INTO log_records_fts(log_records_fts, rowid, line) VALUES ('delete', old.id, old.line); END",
    "CREATE TRIGGER log_records_fts_au AFTER UPDATE OF line ON log_records BEGIN "
    "INSERT INTO log_records_fts(log_records_fts, rowid, line) VALUES ('delete', old.id, old.line); "
    "INSERT INTO log_records_fts(rowid, line) VALUES (new.id, new.line); END",
    "INSERT INTO log_records_fts(log_records_fts) VALUES ('rebuild')",
]
POSTGRES_FTS = [
    "ALTER TABLE log_records ADD COLUMN line_tsv tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple'::regconfig, regexp_replace(line, '[^[:alnum:]]+', ' ', 'g'))) STORED",
    "CREATE INDEX ix_log_records_line_tsv ON log_records USING gin (line_tsv)",
]


def upgrade() -> None:
    op.add_column("log_records", sa.Column("level", sa.String(16), nullable=True))
    op.create_index("ix_log_records_ts", "log_records", ["ts"])
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_FTS if dialect == "sqlite" else POSTGRES_FTS if dialect == "postgresql" else []:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("log_records_fts_ai", "log_records_fts_ad", "log_records_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS log_records_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_log_records_line_tsv")
        op.execute("ALTER TABLE log_records DROP COLUMN IF EXISTS line_tsv")
    op.drop_index("ix_log_records_ts", "log_records")
    with op.batch_alter_table("log_records") as batch:
        batch.drop_column("level")
