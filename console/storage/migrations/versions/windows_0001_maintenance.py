"""Maintenance windows, and the results of the post-deploy watch.

Revision ID: windows_0001_maintenance
Revises: 0015_merge
"""
import sqlalchemy as sa
from alembic import op

revision = "windows_0001_maintenance"
down_revision = "0015_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("dtstart", sa.String(32), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("rrule", sa.Text, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("matchers", sa.Text, nullable=False),
        sa.Column("hosts", sa.Text, nullable=False),
        sa.Column("apps", sa.Text, nullable=False),
        sa.Column("environments", sa.Text, nullable=False),
        sa.Column("until", sa.Float, nullable=True),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("name", name="uq_maintenance_windows_name"),
    )
    op.create_table(
        "deploy_watch_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deploy_id", sa.Integer, nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("signal", sa.String(64), nullable=False),
        sa.Column("before", sa.Float, nullable=True),
        sa.Column("after", sa.Float, nullable=True),
        sa.Column("regression", sa.Boolean, nullable=False),
        sa.Column("evaluated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("deploy_id", "signal", name="uq_deploy_watch_results_signal"),
    )
    op.create_index("ix_deploy_watch_results_evaluated", "deploy_watch_results", ["evaluated_at"])


def downgrade() -> None:
    op.drop_table("deploy_watch_results")
    op.drop_table("maintenance_windows")
