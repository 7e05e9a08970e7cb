"""Approvals and environments of deploys.

- ``deploys.state``: 32 characters (``awaiting_approval``, ``rejected``, ``expired``).
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
    # deploys.state grows to 32 characters ("awaiting_approval" has 17). On SQLite a batch
    # rebuild would drop the table, and with foreign keys on that deletes every deploy's
    # steps and events; SQLite's own ALTER TABLE (3.35+) swaps the column in place instead.
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_deploys_state", "deploys")
        op.execute("ALTER TABLE deploys ADD COLUMN state_wide VARCHAR(32) NOT NULL DEFAULT ''")
        op.execute("UPDATE deploys SET state_wide = state")
        op.execute("ALTER TABLE deploys DROP COLUMN state")
        op.execute("ALTER TABLE deploys RENAME COLUMN state_wide TO state")
        op.create_index("ix_deploys_state", "deploys", ["state"])
    else:
        op.alter_column("deploys", "state", type_=sa.String(32), existing_type=sa.String(16),
                        existing_nullable=False)
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
    op.drop_table("deploy_approvals")  # deploys.state stays 32 characters wide
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("environment")
