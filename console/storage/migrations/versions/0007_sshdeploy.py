"""Pinned SSH host keys (known_hosts) for the ssh deploy driver.

Revision ID: 0007_sshdeploy
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_sshdeploy"
down_revision = "0001"
branch_labels = ("sshdeploy",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssh_known_hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hostname", sa.String(300), nullable=False, unique=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("key_type", sa.String(64), nullable=False),
        sa.Column("key_base64", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("added_by", sa.String(255), nullable=False),
        sa.Column("added_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ssh_known_hosts")
