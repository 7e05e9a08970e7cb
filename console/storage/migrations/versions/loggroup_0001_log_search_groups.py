"""PostgreSQL log search: one Bloom filter per group of lines instead of a GIN entry per word
and line (console/logs/groups.py, docs/logs.md).

PostgreSQL: create ``log_search_groups`` (a group's host, id and time range, line count and
filter) and ``log_search_state`` (the watermark, 0), then drop ``log_records.line_tsv`` and
its GIN index. The stored lines are grouped by the console's group indexer once it starts
(it goes on from the watermark); search scans the lines above the watermark meanwhile, so
every line stays searchable. SQLite: nothing changes (its FTS5 index file stays).

Downgrade: ``line_tsv`` comes back, filled from each stored line as the code before this
revision wrote it (console.logs.store.lexemes), with its GIN index; the group tables go.

Revision ID: loggroup_0001_log_search_groups
Revises: webui_0001_user_language
"""
from alembic import op
from sqlalchemy import text

revision = "loggroup_0001_log_search_groups"
down_revision = "coldsize_0001_sqlite_block_rows"
branch_labels = None
depends_on = None

_UP = (
    "CREATE TABLE log_search_groups (id BIGSERIAL PRIMARY KEY, "
    "host_id INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE, "
    "first_record_id BIGINT NOT NULL, last_record_id BIGINT NOT NULL, min_ts BIGINT NOT NULL, "
    "max_ts BIGINT NOT NULL, lines INTEGER NOT NULL, bloom BYTEA NOT NULL)",
    # A Bloom filter is random bits: compressing it only costs CPU.
    "ALTER TABLE log_search_groups ALTER COLUMN bloom SET STORAGE EXTERNAL",
    "CREATE INDEX ix_log_search_groups_max_ts ON log_search_groups (max_ts)",
    "CREATE INDEX ix_log_search_groups_host_id_max_ts ON log_search_groups (host_id, max_ts)",
    "CREATE TABLE log_search_state (id INTEGER PRIMARY KEY CHECK (id = 1), indexed_id BIGINT NOT NULL)",
    "INSERT INTO log_search_state (id, indexed_id) VALUES (1, 0)",
    "DROP INDEX IF EXISTS ix_log_records_line_tsv",
    "ALTER TABLE log_records DROP COLUMN IF EXISTS line_tsv",
)
_FILL_CHUNK = 5000


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    from console.logs.store import lexemes

    conn = op.get_bind()
    op.execute("ALTER TABLE log_records ADD COLUMN line_tsv tsvector")
    after = 0
    while True:
        rows = conn.execute(text("SELECT id, ts, line FROM log_records WHERE id > :after ORDER BY id LIMIT :n"),
                            {"after": after, "n": _FILL_CHUNK}).all()
        if not rows:
            break
        conn.execute(text("UPDATE log_records SET line_tsv = CAST(:v AS tsvector) WHERE id = :id AND ts = :ts"),
                     [{"v": lexemes(line), "id": rid, "ts": ts} for rid, ts, line in rows])
        after = rows[-1][0]
    op.execute("CREATE INDEX ix_log_records_line_tsv ON log_records USING gin (line_tsv)")
    op.execute("DROP TABLE log_search_state")
    op.execute("DROP TABLE log_search_groups")
