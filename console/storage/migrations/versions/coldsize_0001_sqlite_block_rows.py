"""SQLite: ``sample_blocks`` and ``rollup_1m_blocks`` become rowid tables, their primary key
``(series_id, start_ts)`` an index of its own, instead of WITHOUT ROWID tables. PostgreSQL:
nothing changes.

A WITHOUT ROWID table is an index b-tree, whose leaf keeps at most about a quarter of a page
of a row (1,002 bytes on 4 KiB pages); a longer row keeps 489 bytes there and the rest goes
to overflow pages, the last of which is used only in part
(https://www.sqlite.org/fileformat2.html, "Cell Payload Overflow Pages";
https://www.sqlite.org/withoutrowid.html, "When To Use WITHOUT ROWID": rows should stay under
about a twentieth of a page). Blocks of host data run from a few bytes to several KiB (2 h
raw blocks ~470 bytes on average, 1m day blocks ~1.8 KiB): over a week of host data 1,460
overflow pages held 1.5 MB of blocks in 6 MB (bench/storage.py, BENCHMARKS.md "Cold
blocks"). A rowid table's leaf keeps up to the page size less 35 bytes of a row.

Each table is copied into its new shape in series order, dropped and the copy renamed.

Revision ID: coldsize_0001_sqlite_block_rows
Revises: webui_0001_user_language
"""
import sqlalchemy as sa
from alembic import op

revision = "coldsize_0001_sqlite_block_rows"
down_revision = "webui_0001_user_language"
branch_labels = None
depends_on = None

TABLES = ("sample_blocks", "rollup_1m_blocks")
COLUMNS = ("series_id", "start_ts", "end_ts", "count", "data")


def _rebuild(table: str, with_rowid: bool) -> None:
    new = f"{table}_rebuilt"
    op.create_table(
        new,
        sa.Column("series_id", sa.Integer, primary_key=True),
        sa.Column("start_ts", sa.BigInteger, primary_key=True),
        sa.Column("end_ts", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=with_rowid,
    )
    source = sa.table(table, *(sa.column(c) for c in COLUMNS))
    target = sa.table(new, *(sa.column(c) for c in COLUMNS))
    op.execute(sa.insert(target).from_select(COLUMNS, sa.select(*source.c).order_by(source.c.series_id,
                                                                                     source.c.start_ts)))
    op.drop_table(table)
    op.rename_table(new, table)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(table, True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        _rebuild(table, False)
