"""PostgreSQL: the ``data`` of ``sample_blocks`` and ``rollup_1m_blocks`` is stored in the
row (``STORAGE MAIN``) instead of out of line in the TOAST table. Blocks are compressed
already, mostly 1-4 KB: out of line, a block over ~2 KB took TOAST chunks, their index
entries and, for the 1m day blocks rewritten every hour, the old chunks' free space in
every past day's TOAST table. ``MAIN`` keeps a value in the row as long as the row fits
a page, out of line only beyond (https://www.postgresql.org/docs/15/storage-toast.html).
Set on the partitioned tables, it applies to their partitions and to those made later;
rows already stored stay where they are until rewritten. SQLite: nothing changes.

Revision ID: pgbytes_0001_block_storage_main
Revises: logblocks_0001_packed_log_groups
"""
from alembic import op

revision = "pgbytes_0001_block_storage_main"
down_revision = "logblocks_0001_packed_log_groups"
branch_labels = None
depends_on = None

TABLES = ("sample_blocks", "rollup_1m_blocks")
STATEMENT = "ALTER TABLE {} ALTER COLUMN data SET STORAGE {}"


def _storage(mode: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(STATEMENT.format(table, mode))


def upgrade() -> None:
    _storage("MAIN")


def downgrade() -> None:
    _storage("EXTENDED")
