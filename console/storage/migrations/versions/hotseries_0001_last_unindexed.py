"""Series: ``last_ts`` leaves the index ``ix_series_host_last``, so that moving a series'
bounds is a heap-only update on PostgreSQL.

The ingest writer moves each active series' ``last_ts`` once a minute. While ``last_ts``
was in an index, every such UPDATE wrote a new index entry as well as the row (on
PostgreSQL also a new entry in every other index of ``series``: an update is heap-only,
HOT, only when no indexed column changes and the page has room). Its readers do not need
it: the per-host count of active series runs only when a batch brings new series and reads
that host's rows through ``uq_series_identity`` (host_id first); retention's sweep of
quiet series reads the whole table once a run. On PostgreSQL ``series`` also gets a fill
factor of 50, leaving each page the room for the updated versions of its rows (at 70,
~80 % of the updates were heap-only in tests/api/test_series_lifecycle.py, at 50 95–100 %;
the table holds one small row per series). It applies to the pages written from now on;
a VACUUM FULL applies it to the old ones.

Downgrade: the index is made again, and the fill factor reset.

Revision ID: hotseries_0001_last_unindexed
Revises: logngram_0001_spaceless_ngrams
"""
from alembic import op

revision = "hotseries_0001_last_unindexed"
down_revision = "logngram_0001_spaceless_ngrams"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_series_host_last", "series")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE series SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE series RESET (fillfactor)")
    op.create_index("ix_series_host_last", "series", ["host_id", "last_ts"])
