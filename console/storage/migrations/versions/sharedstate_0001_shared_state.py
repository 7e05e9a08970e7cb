"""State several consoles on one database share: failed logins (the brute-force
lockout counts them across consoles) and the alerts posted to the Alertmanager API
(grouped and notified once, by the leader, whichever console received them).

Revision ID: sharedstate_0001_shared_state
Revises: pgpart_0001_time_partitions
"""
import sqlalchemy as sa
from alembic import op

revision = "sharedstate_0001_shared_state"
down_revision = "pgpart_0001_time_partitions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("key", sa.String(320), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"])
    op.create_index("ix_login_failures_at", "login_failures", ["at"])
    op.create_table(
        "posted_alerts",
        sa.Column("fingerprint", sa.String(16), primary_key=True),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=True),
        sa.Column("generator_url", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_posted_alerts_ends_at", "posted_alerts", ["ends_at"])


def downgrade() -> None:
    op.drop_table("posted_alerts")
    op.drop_table("login_failures")
