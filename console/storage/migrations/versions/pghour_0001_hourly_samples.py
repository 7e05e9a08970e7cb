"""PostgreSQL: ``samples`` moves to hourly partitions (``samples_partition_hours``). Its
partitions that hold no row (the ones made ahead of time, a day wide) are detached and
dropped, so the partition maintenance each console runs as it starts makes hourly ones
from now on (a row stored before that pass waits in ``samples_default``, which the pass
empties); a partition holding rows stays as it is until the rollup job packs and drops
it. SQLite: nothing changes.

Revision ID: pghour_0001_hourly_samples
Revises: sqlhead_0001_samples_by_minute
"""
from alembic import op
from sqlalchemy import text

revision = "pghour_0001_hourly_samples"
down_revision = "sqlhead_0001_samples_by_minute"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    names = bind.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('samples') AND c.relname <> 'samples_default' ORDER BY 1")).scalars().all()
    for name in names:
        if bind.execute(text(f'SELECT 1 FROM "{name}" LIMIT 1')).first() is None:
            op.execute(f'ALTER TABLE samples DETACH PARTITION "{name}"')
            op.execute(f'DROP TABLE "{name}"')


def downgrade() -> None:
    # Hourly partitions serve the earlier revisions as they are; their maintenance makes
    # partitions of its own width where none is.
    pass
