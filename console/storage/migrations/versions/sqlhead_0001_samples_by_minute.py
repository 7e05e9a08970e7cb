"""SQLite: ``samples`` is clustered by ``(bucket, series_id, ts)``, ``bucket`` = ts / 60,000
(integer division: the minute), instead of ``(series_id, ts)``. PostgreSQL: nothing changes.

An agent's batch holds one point of each of its series; clustered by series, once each
series held about a leaf page of samples every sample of a batch dirtied a page of its own
(a 4 KiB WAL frame per sample, which the checkpoint copies again), so the cost of a sample
grew with the samples stored. Clustered by minute first, a batch's rows land side by side
(console/storage/hot_samples.py; BENCHMARKS.md, "The hot rows clustered by minute on
SQLite"). ``bucket`` is a stored column: SQLite allows no generated column in a primary key.

The table is copied into its new shape in key order (with each row's bucket), dropped and
the copy renamed. The hot rows are the last 2-4 hours (older ones are in ``sample_blocks``),
so the copy is short; it needs free disk space for a second copy of them while it runs.

Revision ID: sqlhead_0001_samples_by_minute
Revises: logsqlite_0001_sqlite_log_groups
"""
import sqlalchemy as sa
from alembic import op

revision = "sqlhead_0001_samples_by_minute"
down_revision = "logsqlite_0001_sqlite_log_groups"
branch_labels = None
depends_on = None

BUCKET_MS = 60_000  # console/storage/hot_samples.py BUCKET_MS when this revision was written
NEW = "samples_rebuilt"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        NEW,
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.execute(sa.text(f"INSERT INTO {NEW} (bucket, series_id, ts, value) "
                       "SELECT ts / :width, series_id, ts, value FROM samples ORDER BY ts / :width, series_id, ts"
                       ).bindparams(width=BUCKET_MS))
    op.drop_table("samples")
    op.rename_table(NEW, "samples")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        NEW,
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.execute(sa.text(f"INSERT INTO {NEW} (series_id, ts, value) SELECT series_id, ts, value FROM samples "
                       "ORDER BY series_id, ts"))
    op.drop_table("samples")
    op.rename_table(NEW, "samples")
