"""Metrics tiers: 1-minute and 1-hour rollups, rollup watermarks, ingest rejections.

On PostgreSQL the series identity constraint is replaced by a unique index over
``md5(labels)``: a btree entry holds at most about 2.7 KB, and label values may be 4 KiB.

Revision ID: 0003_tiers
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_tiers"
down_revision = "0001"
branch_labels = ("tiers",)
depends_on = None


def _rollup(name: str) -> None:
    op.create_table(
        name,
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True),
        sa.Column("min", sa.Float, nullable=False),
        sa.Column("max", sa.Float, nullable=False),
        sa.Column("sum", sa.Float, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("increase", sa.Float, nullable=True),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    _rollup("rollup_1m")
    _rollup("rollup_1h")
    op.create_table(
        "rollup_watermarks",
        sa.Column("tier", sa.String(8), primary_key=True),
        sa.Column("done_until", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "ingest_rejections",
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
        sa.Column("last_example", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("uq_series_identity", "series", type_="unique")
        op.execute("CREATE UNIQUE INDEX uq_series_identity ON series (host_id, name, md5(labels))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX uq_series_identity")
        op.create_unique_constraint("uq_series_identity", "series", ["host_id", "name", "labels"])
    op.drop_table("ingest_rejections")
    op.drop_table("rollup_watermarks")
    op.drop_table("rollup_1h")
    op.drop_table("rollup_1m")
