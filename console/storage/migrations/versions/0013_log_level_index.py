"""Logs: an index on (level, ts), so a level filter reads only lines of that level.

Without it ``GET /api/v1/logs?level=fatal`` walks the ts index through every line to
find the few fatal ones: ~310 ms (SQLite) and ~245 ms (PostgreSQL) over 1,000,000 lines
when there are none, growing with the table. The index costs ~0.5-2.5 µs per stored
line (BENCHMARKS.md "Logs").

Revision ID: 0013_log_level_index
Revises: 0012_fts_automerge
"""
from alembic import op

revision = "0013_log_level_index"
down_revision = "0012_fts_automerge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_log_records_level_ts", "log_records", ["level", "ts"])


def downgrade() -> None:
    op.drop_index("ix_log_records_level_ts", "log_records")
