"""Notifications: the outbox and notification log, and the reasons an alert transition
was muted.

Revision ID: notify_0001_outbox
Revises: alert_0001_state
"""
import sqlalchemy as sa
from alembic import op

revision = "notify_0001_outbox"
down_revision = "alert_0001_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_history") as batch:
        batch.add_column(sa.Column("muted_by", sa.Text, nullable=True))
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("receiver", sa.String(255), nullable=False),
        sa.Column("integration", sa.String(64), nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_attempt_at", sa.Float, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("sent_at", sa.Float, nullable=True),
        sa.UniqueConstraint("dedup_key", name="uq_notifications_dedup_key"),
    )
    op.create_index("ix_notifications_status_next", "notifications", ["status", "next_attempt_at"])
    op.create_index("ix_notifications_group", "notifications", ["receiver", "group_key", "created_at"])
    op.create_index("ix_notifications_created", "notifications", ["created_at"])


def downgrade() -> None:
    op.drop_table("notifications")
    with op.batch_alter_table("alert_history") as batch:
        batch.drop_column("muted_by")
