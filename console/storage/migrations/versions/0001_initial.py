"""Initial schema: users, tokens, hosts, series, samples, ingest batches, log records.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("host_name", sa.String(255), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=True),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("interval_s", sa.Float, nullable=True),
        sa.Column("labels", sa.Text, nullable=False),
    )
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.UniqueConstraint("host_id", "name", "labels", name="uq_series_identity"),
    )
    op.create_index("ix_series_name", "series", ["name"])
    op.create_table(
        "samples",
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "ingest_batches",
        sa.Column("host_id", sa.Integer, primary_key=True),
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("logs", sa.Integer, nullable=False),
    )
    op.create_index("ix_ingest_batches_received_at", "ingest_batches", ["received_at"])
    op.create_table(
        "log_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
    )
    op.create_index("ix_log_records_host_ts", "log_records", ["host_id", "ts"])


def downgrade() -> None:
    for table in ("log_records", "ingest_batches", "samples", "series", "hosts", "tokens", "users"):
        op.drop_table(table)
