"""Security: deployer app allow-lists, token provenance, server-side sessions, secrets.

Revision ID: 0008_security
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_security"
down_revision = "0001"
branch_labels = ("security",)
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN of nullable columns works on SQLite without a table rebuild.
    op.add_column("users", sa.Column("apps", sa.Text, nullable=True))
    op.add_column("tokens", sa.Column("apps", sa.Text, nullable=True))
    op.add_column("tokens", sa.Column("created_by", sa.String(255), nullable=True))
    op.create_table(
        "user_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("last_seen_at", sa.Float, nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])
    op.create_index("ix_user_sessions_expires_at", "user_sessions", ["expires_at"])
    op.create_table(
        "secrets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_table("user_sessions")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("created_by")
        batch.drop_column("apps")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("apps")
