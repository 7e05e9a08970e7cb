"""Tokens belong to a user; a revocation generation every console process watches.

- ``tokens.owner``: the user a token acts for (a token minted by a token inherits its
  owner). Disabling the user revokes them. Tokens created with ``created_by`` =
  ``user:NAME`` are given that owner; other existing tokens (CLI, agents) keep none.
- ``auth_state``: one row whose ``generation`` is bumped in the same transaction as
  every revocation, logout, disable, role or password change, so other processes (the
  CLI writes the database directly) drop cached token lookups and recheck open live
  sockets within a second.

Revision ID: secb_0001_token_owner
Revises: 0008_security
"""
import sqlalchemy as sa
from alembic import op

revision = "secb_0001_token_owner"
down_revision = "0008_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("owner", sa.String(64), nullable=True))
    op.create_index("ix_tokens_owner", "tokens", ["owner"])
    op.execute(sa.text("UPDATE tokens SET owner = substr(created_by, 6) "
                       "WHERE created_by LIKE 'user:%' AND owner IS NULL"))
    table = op.create_table(
        "auth_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "generation": 0}])


def downgrade() -> None:
    op.drop_table("auth_state")
    op.drop_index("ix_tokens_owner", "tokens")
    op.drop_column("tokens", "owner")
