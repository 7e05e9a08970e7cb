"""Log ingest: let SQLite's FTS5 index merge its segments less eagerly.

Every ingest transaction writes one new FTS5 segment; with the default ``automerge=4``
FTS5 merges as soon as four segments of a level exist, so each batch rewrites older index
data again and again. ``automerge=16`` (the same as FTS5's default ``crisismerge``,
https://sqlite.org/fts5.html#the_automerge_configuration_option) waits for sixteen:
writing 1,000,000 200-byte lines in batches of 5,000 took 9.1 µs per line instead of
11.9, while a word lookup reads more segments (~12 µs more per word,
BENCHMARKS.md "Logs"). The setting lives in the index's own ``%_config`` table, so it
survives restarts and needs no rebuild. PostgreSQL: nothing to do.

Revision ID: 0012_fts_automerge
Revises: 0011_lperf
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_fts_automerge"
down_revision = "0011_lperf"
branch_labels = None
depends_on = None

FTS5_DEFAULT_AUTOMERGE = 4


def _automerge(value: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(sa.text("INSERT INTO log_records_fts(log_records_fts, rank) VALUES ('automerge', :value)")
                   .bindparams(value=value))


def upgrade() -> None:
    _automerge(16)


def downgrade() -> None:
    _automerge(FTS5_DEFAULT_AUTOMERGE)
