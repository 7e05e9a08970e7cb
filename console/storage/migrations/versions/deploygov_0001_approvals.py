"""Approvals and environments of deploys.

- ``deploys.environment``: the environment of the app a deploy targets (NULL: the app's
  only target, as every existing deploy).
- ``deploy_approvals``: one row per deploy of a protected app or environment, pending
  until another user approves or rejects it or it expires.

Revision ID: deploygov_0001_approvals
Revises: silence_0001_silences
"""
import sqlalchemy as sa
from alembic import op

revision = "deploygov_0001_approvals"
down_revision = "silence_0001_silences"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deploys", sa.Column("environment", sa.String(64), nullable=True))
    op.create_table(
        "deploy_approvals",
        sa.Column("deploy_id", sa.Integer, sa.ForeignKey("deploys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("approver_role", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decided_at", sa.Float, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_deploy_approvals_state_expires", "deploy_approvals", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_table("deploy_approvals")
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("environment")
