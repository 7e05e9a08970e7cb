"""Fleet drift: the agent's effective-config hash on the host row.

Revision ID: 0009_fleet
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_fleet"
down_revision = "0001"
branch_labels = ("fleet",)
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add a column inside every ALTER form; batch mode copes.
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("config_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("config_hash")
