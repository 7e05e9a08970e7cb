"""Cross-series 1-minute rollups per metric and host (``rollup_1m_host``).

With the ``rollup_1m_host`` setting on, the rollup job writes them from each 1m window it
rolls up; the ``1m_host`` watermark it creates on its first such window says from which
bucket on they are complete, so history rolled up before is read per series as before
(docs/metrics.md).

Revision ID: rangeperf_0001_rollup_1m_host
Revises: sharedstate_0001_shared_state
"""
import sqlalchemy as sa
from alembic import op

revision = "rangeperf_0001_rollup_1m_host"
down_revision = "sharedstate_0001_shared_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_1m_host",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("series", sa.Integer, nullable=False),
        *[sa.Column(f"{fn}_{agg}", sa.Float, nullable=False)
          for fn in ("avg", "min", "max") for agg in ("sum", "min", "max")],
        sa.Column("counters", sa.Integer, nullable=False),
        sa.Column("inc_sum", sa.Float, nullable=True),
        sa.Column("inc_min", sa.Float, nullable=True),
        sa.Column("inc_max", sa.Float, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_rollup_1m_host_ts", "rollup_1m_host", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_rollup_1m_host_ts", "rollup_1m_host")
    op.drop_table("rollup_1m_host")
