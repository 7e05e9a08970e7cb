"""Cold 1m rollup blocks: the 1m rollup rows the 1h tier has read, packed per series and day.

SQLite: a WITHOUT ROWID table clustered on (series_id, start_ts). PostgreSQL: RANGE-
partitioned by ``start_ts`` like ``sample_blocks`` (console/storage/partitions.py), with a
default partition and day partitions from today to two days ahead; the console makes the
rest at start.

Revision ID: pack1m_0001_rollup_1m_blocks
Revises: logperf_0001_log_search_file
"""
import time

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "pack1m_0001_rollup_1m_blocks"
down_revision = "logperf_0001_log_search_file"
branch_labels = None
depends_on = None

DAY_MS = 86_400_000
AHEAD_DAYS = 2


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('CREATE TABLE "rollup_1m_blocks" (series_id INTEGER NOT NULL, start_ts BIGINT NOT NULL, '
                   "end_ts BIGINT NOT NULL, count INTEGER NOT NULL, data BYTEA NOT NULL, "
                   'CONSTRAINT "rollup_1m_blocks_pkey" PRIMARY KEY (series_id, start_ts)) '
                   "PARTITION BY RANGE (start_ts)")
        from console.storage.partitions import TABLES, create_default, ensure_partitions

        today = int(time.time() * 1000) // DAY_MS
        with Session(bind=op.get_bind()) as session:
            create_default(session, "rollup_1m_blocks")
            # today and the next days, as pgpart_0001 made them for the other tables; the
            # console makes the rest at start, at its configured width
            ensure_partitions(session, TABLES["rollup_1m_blocks"], DAY_MS, today * DAY_MS,
                              (today + AHEAD_DAYS + 1) * DAY_MS)
            session.flush()
        return
    op.create_table(
        "rollup_1m_blocks",
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("start_ts", sa.BigInteger, primary_key=True),
        sa.Column("end_ts", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("rollup_1m_blocks")
