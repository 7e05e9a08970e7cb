"""Deploys, their steps and their events.

Revision ID: 0006_deploys
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_deploys"
down_revision = "0001"
branch_labels = ("deploys",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deploys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("version", sa.String(140), nullable=False),
        sa.Column("previous_version", sa.String(140), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("cleanup_pending", sa.Boolean, nullable=False),
    )
    op.create_index("ix_deploys_app_id", "deploys", ["app", "id"])
    op.create_index("ix_deploys_state", "deploys", ["state"])
    op.create_index("ix_deploys_created_at", "deploys", ["created_at"])
    op.create_table(
        "deploy_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deploy_id", sa.Integer, sa.ForeignKey("deploys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.UniqueConstraint("deploy_id", "name", name="uq_deploy_steps_name"),
    )
    op.create_table(
        "deploy_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deploy_id", sa.Integer, sa.ForeignKey("deploys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("step", sa.String(64), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("deploy_id", "seq", name="uq_deploy_events_seq"),
    )


def downgrade() -> None:
    op.drop_table("deploy_events")
    op.drop_table("deploy_steps")
    op.drop_index("ix_deploys_created_at", "deploys")
    op.drop_index("ix_deploys_state", "deploys")
    op.drop_index("ix_deploys_app_id", "deploys")
    op.drop_table("deploys")
