"""PostgreSQL: ``samples``, ``sample_blocks``, ``rollup_1m`` and ``log_records`` become
RANGE-partitioned by their time column (Unix ms), with their rows (console/storage/partitions.py,
docs/scaling.md "Time partitions"). SQLite: nothing changes.

Each table is converted in this transaction: the table is renamed aside, a partitioned
table of the same columns and defaults takes its name, partitions of one day are made for
every day that holds rows plus today and the next two days (the console makes the rest at
start, at its configured width), and a default partition; the rows are copied, the old
table dropped, then the primary key (the partition key appended where it was not part of
it: ``log_records`` becomes ``(id, ts)``), the indexes (the full-text GIN index included)
and the foreign keys are built again under their names. ``log_records.id`` keeps its
sequence. Copying needs free disk space for a second copy of these tables while it runs.

Revision ID: pgpart_0001_time_partitions
Revises: lifecycle_0001_series_first_last
"""
import time

from alembic import op
from sqlalchemy import BigInteger, Numeric, func, literal, select, text
from sqlalchemy.orm import Session

revision = "pgpart_0001_time_partitions"
down_revision = "lifecycle_0001_series_first_last"
branch_labels = None
depends_on = None

DAY_MS = 86_400_000
AHEAD_DAYS = 2
# (table, partition key, primary key after the conversion)
TABLES = (("samples", "ts", ("series_id", "ts")), ("sample_blocks", "start_ts", ("series_id", "start_ts")),
          ("rollup_1m", "ts", ("series_id", "ts")), ("log_records", "ts", ("id", "ts")))


def _definitions(table: str) -> tuple[list[str], list[str], str | None]:
    """The table's index definitions (its primary key left out), ``ALTER TABLE ... ADD
    CONSTRAINT`` of its foreign keys, and the sequence of a serial column, read before it
    is renamed, so each runs again as it is on the new table of the same name."""
    conn = op.get_bind()
    indexes = list(conn.execute(text(
        "SELECT i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() AND i.tablename = :t "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = to_regclass(i.indexname) "
        "AND c.contype = 'p')"), {"t": table}).scalars())
    fks = [f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}' for name, definition in conn.execute(text(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(:t) "
        "AND contype = 'f' ORDER BY conname"), {"t": table})]
    sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar() \
        if table == "log_records" else None
    return indexes, fks, sequence


def _partition(table: str, column: str, key: tuple[str, ...]) -> None:
    from console.storage.partitions import TABLES as SPECS
    from console.storage.partitions import columns_of, copy_rows, create_default, ensure_partitions

    indexes, fks, sequence = _definitions(table)
    aside = f"{table}_unpartitioned"
    op.execute(f'ALTER TABLE "{table}" RENAME TO "{aside}"')
    op.execute(f'CREATE TABLE "{table}" (LIKE "{aside}" INCLUDING DEFAULTS) PARTITION BY RANGE ({column})')
    if sequence:
        op.execute(f'ALTER SEQUENCE {sequence} OWNED BY "{table}".id')
    today = int(time.time() * 1000) // DAY_MS
    with Session(bind=op.get_bind()) as session:
        old = columns_of(session, aside)
        day = func.floor(old.c[column] / literal(DAY_MS, Numeric())).cast(BigInteger)
        days = set(session.execute(select(day).select_from(old).distinct()).scalars())
        days.update(range(today, today + AHEAD_DAYS + 1))
        create_default(session, table)
        for d in sorted(days):
            ensure_partitions(session, SPECS[table], DAY_MS, d * DAY_MS, (d + 1) * DAY_MS)
        copy_rows(session, aside, table)
        session.flush()
    op.execute(f'DROP TABLE "{aside}"')
    columns = ", ".join(key)
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY ({columns})')
    for statement in indexes + fks:
        op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, key in TABLES:
        _partition(table, column, key)


def _unpartition(table: str, key: tuple[str, ...]) -> None:
    from console.storage.partitions import copy_rows

    indexes, fks, sequence = _definitions(table)
    aside = f"{table}_partitioned"
    op.execute(f'ALTER TABLE "{table}" RENAME TO "{aside}"')
    op.execute(f'CREATE TABLE "{table}" (LIKE "{aside}" INCLUDING DEFAULTS)')
    if sequence:
        op.execute(f'ALTER SEQUENCE {sequence} OWNED BY "{table}".id')
    with Session(bind=op.get_bind()) as session:
        copy_rows(session, aside, table)
        session.flush()
    op.execute(f'DROP TABLE "{aside}" CASCADE')
    columns = ", ".join(key)
    op.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY ({columns})')
    for statement in indexes + fks:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, _column, key in TABLES:
        _unpartition(table, ("id",) if table == "log_records" else key)
