"""Users: ``deleted_at``, so ``DELETE /api/v1/users/{username}`` removes a user from the API
(404 afterwards) while the row, and so the name the audit log cites, is kept and cannot be
taken by a new user.

Revision ID: apischema_0014_user_deleted
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "apischema_0014_user_deleted"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("deleted_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("deleted_at")
