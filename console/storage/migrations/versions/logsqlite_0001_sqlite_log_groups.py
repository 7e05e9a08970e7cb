"""SQLite log search by groups of lines, as PostgreSQL's; a level bitmask per group on both.

SQLite: create ``log_search_groups`` (a group's host, id and time range, line count,
level bitmask, Bloom filter and, once older than the hot window, its lines packed;
console/logs/groups.py, console/logs/blocks.py) and ``log_search_state`` (the watermark,
0) in the main file, drop ``log_records``' (host_id, ts) and (level, ts) indexes (search
reads rows by id, retention by time), and delete the FTS5 index file
``<database>.logsearch`` with its ``-wal`` and ``-shm``: the console's group indexer groups
the stored lines from watermark 0 once it starts (search scans the lines above the
watermark meanwhile, so every line stays findable) and packs them five minutes later. The
filters and packed lines go last in each row: a row longer than a page keeps its first
bytes in the table's leaf and the rest on overflow pages.

PostgreSQL: ``log_search_groups`` gains ``levels`` (NULL for the groups made before: their
filter answers for their levels).

Downgrade: SQLite puts every packed line back into ``log_records`` with its id, the two
indexes come back and the group tables go (the code before this revision rebuilds its
FTS5 file from the rows when it finds none); PostgreSQL drops ``levels``.

Revision ID: logsqlite_0001_sqlite_log_groups
Revises: pgbytes_0001_block_storage_main
"""
import contextlib
import os

from alembic import op
from sqlalchemy import text

revision = "logsqlite_0001_sqlite_log_groups"
down_revision = "pgbytes_0001_block_storage_main"
branch_labels = None
depends_on = None

_SQLITE_UP = (
    "CREATE TABLE log_search_groups (id INTEGER PRIMARY KEY, "
    "host_id INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE, "
    "first_record_id INTEGER NOT NULL, last_record_id INTEGER NOT NULL, min_ts INTEGER NOT NULL, "
    "max_ts INTEGER NOT NULL, lines INTEGER NOT NULL, made_ms INTEGER NOT NULL DEFAULT 0, packed_ms INTEGER, "
    "rows_kept BOOLEAN NOT NULL DEFAULT 1, packed_bytes INTEGER NOT NULL DEFAULT 0, levels INTEGER, "
    "bloom BLOB NOT NULL, packed BLOB)",
    # Every column a search's walk over the groups reads but the filter (the id is the
    # rowid): the walk, and a level search's bitmask test, read this index alone, not the
    # table's rows of which each fills most of a page.
    "CREATE INDEX ix_log_search_groups_max_ts ON log_search_groups "
    "(max_ts, last_record_id, levels, host_id, first_record_id, min_ts)",
    "CREATE INDEX ix_log_search_groups_host_id_max_ts ON log_search_groups (host_id, max_ts)",
    "CREATE INDEX ix_log_search_groups_to_pack ON log_search_groups (made_ms) WHERE packed IS NULL",
    "CREATE INDEX ix_log_search_groups_rows_kept ON log_search_groups (packed_ms) "
    "WHERE packed IS NOT NULL AND rows_kept",
    "CREATE TABLE log_search_state (id INTEGER PRIMARY KEY CHECK (id = 1), indexed_id INTEGER NOT NULL)",
    "INSERT INTO log_search_state (id, indexed_id) VALUES (1, 0)",
    "DROP INDEX IF EXISTS ix_log_records_host_ts",
    "DROP INDEX IF EXISTS ix_log_records_level_ts",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE log_search_groups ADD COLUMN levels SMALLINT")
        return
    for statement in _SQLITE_UP:
        op.execute(statement)
    database = bind.engine.url.database
    if database and database != ":memory:":
        for suffix in (".logsearch", ".logsearch-wal", ".logsearch-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{database}{suffix}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE log_search_groups DROP COLUMN levels")
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
    op.execute("DROP TABLE log_search_state")
    op.execute("DROP TABLE log_search_groups")
