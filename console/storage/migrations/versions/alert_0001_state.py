"""Alerting: alert state transitions (history) and the active alerts of each rule group.

Revision ID: alert_0001_state
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "alert_0001_state"
down_revision = "0001"
branch_labels = ("alerting",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("alertname", sa.String(255), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("annotations", sa.Text, nullable=False),
    )
    op.create_index("ix_alert_history_ts", "alert_history", ["ts"])
    op.create_index("ix_alert_history_alertname_ts", "alert_history", ["alertname", "ts"])
    op.create_table(
        "alert_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("alertname", sa.String(255), nullable=False),
        sa.Column("expr", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("active_at", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float, nullable=True),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.Column("keep_firing_since", sa.Float, nullable=True),
        sa.Column("clear_since", sa.Float, nullable=True),
        sa.Column("last_eval", sa.Float, nullable=True),
    )
    op.create_index("ix_alert_state_group_key", "alert_state", ["group_key"])


def downgrade() -> None:
    op.drop_table("alert_state")
    op.drop_table("alert_history")
