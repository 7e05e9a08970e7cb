"""Deploys: ``runner`` and ``lease_until``, the lease of a running deploy, so several
consoles on one database run each deploy once and take over one whose console died;
``cancel_requested``, a cancel request made through any console, for the one running it.

Revision ID: deploylease_0001_deploy_lease
Revises: blocks_0001_sample_blocks
"""
import sqlalchemy as sa
from alembic import op

revision = "deploylease_0001_deploy_lease"
down_revision = "blocks_0001_sample_blocks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: a batch (copy-and-move) of deploys on SQLite would drop the table
    # and, through ON DELETE CASCADE, every deploy's steps and events with it.
    op.add_column("deploys", sa.Column("runner", sa.String(128), nullable=True))
    op.add_column("deploys", sa.Column("lease_until", sa.Float, nullable=True))
    op.add_column("deploys", sa.Column("cancel_requested", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("cancel_requested")
        batch.drop_column("lease_until")
        batch.drop_column("runner")
