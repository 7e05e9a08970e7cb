"""Each user's language of the dashboard: ``users.language``, a BCP 47 tag the console
offers (``en``, ``zh-CN``; console/i18n.py LANGUAGES), or NULL to follow the browser.
Set by the top bar's language switch (PATCH /api/v1/me) and applied at each login.

Revision ID: webui_0001_user_language
Revises: logperf_0001_log_search_file
"""
import sqlalchemy as sa
from alembic import op

revision = "webui_0001_user_language"
down_revision = "pack1m_0001_rollup_1m_blocks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("language", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
