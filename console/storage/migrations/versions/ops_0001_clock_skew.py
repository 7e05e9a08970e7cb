"""Hosts: the agent's clock skew as last measured from a batch's ``sent_at``.

``clock_skew_seconds`` is ``sent_at - receive time`` (negative: the agent's clock is
behind), held at its highest value for a few minutes (a batch that waited in a spool
looks older than its agent's clock is; see console/ingest/service.py);
``clock_skew_at`` is when that value was taken (Unix s).

Revision ID: ops_0001_clock_skew
Revises: 0013_log_level_index
"""
import sqlalchemy as sa
from alembic import op

revision = "ops_0001_clock_skew"
down_revision = "0013_log_level_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("clock_skew_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("clock_skew_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("clock_skew_at")
        batch.drop_column("clock_skew_seconds")
