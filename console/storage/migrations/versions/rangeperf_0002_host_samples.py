"""``rollup_1m_host.samples``: the samples the bucket's series hold between them.

PromQL counter rates over long ranges read the cross-series rows (console/promql/rollups.py)
and, as with the per-series rows, need the samples of each window to tell whether a rate
exists there (two samples or more). Existing rows are filled from the per-series 1m rows
they were folded from.

Revision ID: rangeperf_0002_host_samples
Revises: rangeperf_0001_rollup_1m_host
"""
import sqlalchemy as sa
from alembic import op

revision = "rangeperf_0002_host_samples"
down_revision = "rangeperf_0001_rollup_1m_host"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollup_1m_host") as batch:
        batch.add_column(sa.Column("samples", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        "UPDATE rollup_1m_host SET samples = COALESCE((SELECT SUM(r.count) FROM rollup_1m r "
        "JOIN series s ON s.id = r.series_id WHERE s.name = rollup_1m_host.name "
        "AND s.host_id = rollup_1m_host.host_id AND r.ts = rollup_1m_host.ts), 0)")


def downgrade() -> None:
    with op.batch_alter_table("rollup_1m_host") as batch:
        batch.drop_column("samples")
