"""Series: the time of the first and last sample (``first_ts``, ``last_ts``, Unix ms).

Range queries, selectors and the metric-name lists read only the series with data in
their window, the per-host series cap counts the series seen lately, and retention
deletes a series with no samples left (docs/metrics.md, "Series lifecycle"). The
backfill takes both bounds from every tier: raw samples, cold blocks (a block's window
start is a lower bound of its first sample) and rollup buckets (a bucket's end is an
upper bound of its last sample).

Revision ID: lifecycle_0001_series_first_last
Revises: blocks_0001_sample_blocks
"""
import sqlalchemy as sa
from alembic import op

revision = "lifecycle_0001_series_first_last"
down_revision = "deploylease_0001_deploy_lease"
branch_labels = None
depends_on = None

BOUND = (
    "SELECT {agg}(t.b) FROM ("
    "SELECT {agg}(ts) AS b FROM samples WHERE series_id = series.id "
    "UNION ALL SELECT {agg}({block}) FROM sample_blocks WHERE series_id = series.id "
    "UNION ALL SELECT {agg}(ts{m}) FROM rollup_1m WHERE series_id = series.id "
    "UNION ALL SELECT {agg}(ts{h}) FROM rollup_1h WHERE series_id = series.id) AS t")
FIRST = BOUND.format(agg="min", block="start_ts", m="", h="")
LAST = BOUND.format(agg="max", block="end_ts", m=" + 59999", h=" + 3599999")


def upgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("first_ts", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("last_ts", sa.BigInteger(), nullable=True))
    op.execute("UPDATE series SET first_ts = (" + FIRST + "), last_ts = (" + LAST + ")")
    op.create_index("ix_series_host_last", "series", ["host_id", "last_ts"])


def downgrade() -> None:
    op.drop_index("ix_series_host_last", "series")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("last_ts")
        batch.drop_column("first_ts")
