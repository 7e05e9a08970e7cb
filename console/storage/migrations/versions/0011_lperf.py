"""Log ingest performance: index log lines per batch instead of per row.

SQLite: drop the AFTER INSERT trigger that indexed each new ``log_records`` row in FTS5;
console.logs.store.LogStore now indexes a whole batch with one ``INSERT ... SELECT`` in
the ingest transaction. The delete and update triggers stay (retention deletes rows).

PostgreSQL: ``line_tsv`` stops being a generated column (its values are kept); LogStore
computes it in Python and sends it through COPY with the row.

Revision ID: 0011_lperf
Revises: 0004_logs
"""
from alembic import op

revision = "0011_lperf"
down_revision = "0004_logs"  # was "0001" with depends_on 0004_logs: the same order, one line
branch_labels = ("lperf",)
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS log_records_fts_ai")
    elif dialect == "postgresql":
        op.execute("ALTER TABLE log_records ALTER COLUMN line_tsv DROP EXPRESSION")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("CREATE TRIGGER log_records_fts_ai AFTER INSERT ON log_records BEGIN "
                   "INSERT INTO log_records_fts(rowid, line) VALUES (new.id, new.line); END")
    elif dialect == "postgresql":
        # A generated column cannot be added back in place: recreate it (values recomputed).
        op.execute("DROP INDEX IF EXISTS ix_log_records_line_tsv")
        op.execute("ALTER TABLE log_records DROP COLUMN line_tsv")
        op.execute("ALTER TABLE log_records ADD COLUMN line_tsv tsvector GENERATED ALWAYS AS "
                   "(to_tsvector('simple'::regconfig, regexp_replace(line, '[^[:alnum:]]+', ' ', 'g'))) STORED")
        op.execute("CREATE INDEX ix_log_records_line_tsv ON log_records USING gin (line_tsv)")
