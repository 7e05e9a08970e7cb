"""PostgreSQL: a group of log lines older than the hot window keeps its lines packed beside
its Bloom filter instead of as ``log_records`` rows (console/logs/blocks.py, docs/logs.md).

``log_search_groups`` gains ``packed`` (the group's lines, compressed; NULL while they are
rows), ``made_ms`` (when the group was made, Unix ms; 0 for the groups made before this
revision, so the console's group indexer packs them first), ``packed_ms`` (when it was
packed), ``rows_kept`` (the rows are still in ``log_records``: they stay a short while
after packing, so a search that saw the group unpacked still finds them) and
``packed_bytes`` (the UTF-8 bytes of the lines' text, source and labels, for the size cap
of retention). Existing lines are packed by the running console, group after group; every
line stays findable meanwhile. ``log_records`` loses its (host_id, ts) and (level, ts)
indexes: every search reads rows by id since the groups. SQLite: nothing changes.

Downgrade: every packed line goes back into ``log_records`` with its id, the two indexes
come back, then the columns go.

Revision ID: logblocks_0001_packed_log_groups
Revises: loggroup_0001_log_search_groups
"""
from alembic import op
from sqlalchemy import text

revision = "logblocks_0001_packed_log_groups"
down_revision = "loggroup_0001_log_search_groups"
branch_labels = None
depends_on = None

_UP = (
    "ALTER TABLE log_search_groups ADD COLUMN packed BYTEA, ADD COLUMN made_ms BIGINT NOT NULL DEFAULT 0, "
    "ADD COLUMN packed_ms BIGINT, ADD COLUMN rows_kept BOOLEAN NOT NULL DEFAULT true, "
    "ADD COLUMN packed_bytes BIGINT NOT NULL DEFAULT 0",
    # Zstandard output does not compress: storing it as it is spares pglz's attempt.
    "ALTER TABLE log_search_groups ALTER COLUMN packed SET STORAGE EXTERNAL",
    # The group indexer's passes look for the groups to pack and the rows to delete.
    "CREATE INDEX ix_log_search_groups_to_pack ON log_search_groups (made_ms) WHERE packed IS NULL",
    "CREATE INDEX ix_log_search_groups_rows_kept ON log_search_groups (packed_ms) "
    "WHERE packed IS NOT NULL AND rows_kept",
    # Search reads rows by id (above the watermark, or a group's range) and retention by
    # time: the (host_id, ts) and (level, ts) indexes only cost ingest and bytes now.
    "DROP INDEX IF EXISTS ix_log_records_host_ts",
    "DROP INDEX IF EXISTS ix_log_records_level_ts",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    from console.logs.blocks import unpack

    conn = op.get_bind()
    after = 0
    while True:
        packed = conn.execute(text("SELECT id, host_id, first_record_id, packed, rows_kept FROM log_search_groups "
                                   "WHERE id > :after AND packed IS NOT NULL ORDER BY id LIMIT 100"),
                              {"after": after}).all()
        if not packed:
            break
        rows = [{"id": p.id, "host_id": host_id, "ts": p.ts, "source": p.source, "line": p.line,
                 "labels": p.labels, "level": p.level}
                for _, host_id, first, blob, kept in packed if not kept for p in unpack(first, "", blob)]
        if rows:
            conn.execute(text("INSERT INTO log_records (id, host_id, ts, source, line, labels, level) "
                              "VALUES (:id, :host_id, :ts, :source, :line, :labels, :level)"), rows)
        after = packed[-1][0]
    op.execute("CREATE INDEX ix_log_records_host_ts ON log_records (host_id, ts)")
    op.execute("CREATE INDEX ix_log_records_level_ts ON log_records (level, ts)")
    op.execute("DROP INDEX ix_log_search_groups_rows_kept")
    op.execute("DROP INDEX ix_log_search_groups_to_pack")
    op.execute("ALTER TABLE log_search_groups DROP COLUMN packed, DROP COLUMN made_ms, DROP COLUMN packed_ms, "
               "DROP COLUMN rows_kept, DROP COLUMN packed_bytes")
