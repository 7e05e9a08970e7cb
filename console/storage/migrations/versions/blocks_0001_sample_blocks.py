"""Cold sample blocks: raw samples older than the hot window, packed per series and block.

Revision ID: blocks_0001_sample_blocks
Revises: silence_0001_silences
"""
import sqlalchemy as sa
from alembic import op

revision = "blocks_0001_sample_blocks"
down_revision = "sshk8s_0001_deploy_force"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sample_blocks",
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("start_ts", sa.BigInteger, primary_key=True),
        sa.Column("end_ts", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("sample_blocks")
