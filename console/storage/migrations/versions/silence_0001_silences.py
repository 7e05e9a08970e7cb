"""Silences: Alertmanager-compatible silences that mute matching alerts for a time.

Revision ID: silence_0001_silences
Revises: windows_0001_maintenance
"""
import sqlalchemy as sa
from alembic import op

revision = "silence_0001_silences"
down_revision = "windows_0001_maintenance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("matchers", sa.Text, nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])


def downgrade() -> None:
    op.drop_table("silences")
