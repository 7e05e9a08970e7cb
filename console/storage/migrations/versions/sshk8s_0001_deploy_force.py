"""Deploys: ``force`` (ssh apps: build the release again on every host).

Revision ID: sshk8s_0001_deploy_force
Revises: silence_0001_silences
"""
import sqlalchemy as sa
from alembic import op

revision = "sshk8s_0001_deploy_force"
down_revision = "deploygov_0001_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: a batch (copy-and-move) of deploys on SQLite would drop the table
    # and, through ON DELETE CASCADE, every deploy's steps and events with it.
    op.add_column("deploys", sa.Column("force", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("force")
