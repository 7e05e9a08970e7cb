"""Bytes stored per log line, search index included: realistic ~140-byte lines (client IPs,
hex request ids, UUIDs; bench/logs_ingest.py's) written through console.logs.store.LogStore
in batches, every group packed at once (as the console does after its hot window), then
measured whole: SQLite's database file (and a ``.logsearch`` index file, on a tree that
has one) after a WAL checkpoint (the WAL files truncated), as it is and after a VACUUM
(the pages the packed lines' rows left are free pages, which new rows reuse), with the
bytes of each table and index by ``dbstat``; PostgreSQL's ``pg_total_relation_size`` of
every partition of ``log_records`` and of the search index tables (heap, TOAST and
indexes) after a VACUUM.

    python bench/logs_storage.py [--lines 200000] [--database-url URL]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import inspect, text  # noqa: E402

from bench.logs_ingest import line_of  # noqa: E402
from console.logs.groups import GroupIndexer  # noqa: E402
from console.logs.store import LogStore  # noqa: E402
from console.storage import Database  # noqa: E402
from console.storage.models import Host  # noqa: E402
from tests.pg import schema_if_url  # noqa: E402

BATCH = 4000


def fill(db: Database, lines: int) -> int:
    """Write ``lines`` lines of 4 hosts; returns their bytes (UTF-8, without newlines)."""
    def add_hosts(session):
        hosts = [Host(name=f"storage-{i}", first_seen=time.time(), labels="{}") for i in range(4)]
        session.add_all(hosts)
        session.flush()
        return [h.id for h in hosts]

    host_ids = db.run(add_hosts)
    store = LogStore(db)
    packs = isinstance(store.indexer, GroupIndexer) and groups_table(db)
    if packs:  # pack every group at once (the console keeps 5 minutes of lines as rows, then packs)
        store.indexer.HOT_S = store.indexer.KEEP_S = 0.0
    store.start()  # the console's indexer, as in production
    rnd = random.Random(1)
    now = int(time.time() * 1000)
    total = 0
    try:
        for start in range(0, lines, BATCH):
            rows = []
            for i in range(start, min(lines, start + BATCH)):
                line = line_of(i, rnd)
                total += len(line.encode())
                rows.append((host_ids[(i // 1000) % 4], now + i, "/var/log/app.log", line, "{}",
                             ("info", "warn", "error", None)[i % 4]))
            store.before_insert()
            db.run(store.insert, rows)
            store.committed(store.newest_id)
        newest = store.newest_id
        if groups_table(db):
            state = text("SELECT indexed_id FROM log_search_state")
        elif db.dialect == "sqlite":  # a tree with an FTS5 file
            state = text("SELECT indexed_id FROM logsearch.log_fts_state")
        else:  # a tree that indexes PostgreSQL lines in the ingest transaction
            state = text("SELECT max(id) FROM log_records")
        while db.run(lambda s: s.execute(state).scalar()) < newest:
            time.sleep(0.05)
        unpacked = text("SELECT count(*) FROM log_search_groups WHERE packed IS NULL OR rows_kept")
        while packs and db.run(lambda s: s.execute(unpacked).scalar()):
            time.sleep(0.1)
    finally:
        store.close()
    return total


def groups_table(db: Database) -> bool:
    """The tree keeps ``log_search_groups`` (PostgreSQL since loggroup_0001, SQLite since
    logsqlite_0001)."""
    with db.engine.connect() as conn:
        return "log_search_groups" in inspect(conn).get_table_names()


def sqlite_bytes(path: Path, db: Database) -> dict[str, int]:
    """The files' bytes after a checkpoint, as they are (``files``, with ``free`` of them
    in free pages) and after a VACUUM (``vacuumed``)."""
    def files() -> int:
        db.run(lambda s: s.execute(text("PRAGMA main.wal_checkpoint(TRUNCATE)")))
        if Path(f"{path}.logsearch").exists():
            db.run(lambda s: s.execute(text("PRAGMA logsearch.wal_checkpoint(TRUNCATE)")))
        return sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name)
                   and not p.name.endswith((".writer", ".probe", "-shm")))

    before = files()
    free = db.run(lambda s: s.execute(text("PRAGMA freelist_count")).scalar() * s.execute(text(
        "PRAGMA page_size")).scalar())
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM"))
    by_name = db.run(lambda s: s.execute(text(
        "SELECT name, sum(pgsize), sum(CASE WHEN pagetype = 'overflow' THEN pgsize ELSE 0 END), "
        "sum(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8")).all())
    for name, size, overflow, unused in by_name:
        print(f"  {name}: {size:,} B (overflow pages {overflow:,} B, unused bytes {unused:,})")
    return {"files": before, "free": free, "vacuumed": files()}


def postgres_bytes(db: Database) -> dict[str, int]:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        sizes = {"log_records": conn.execute(text(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
            "WHERE inhparent = 'log_records'::regclass")).scalar()}
        for table in ("log_search_groups", "log_search_state"):
            if conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table}).scalar():
                sizes[table] = conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": table}).scalar()
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--database-url", default=None,
                    help="a PostgreSQL database; the run uses a new schema in it, dropped afterwards")
    args = ap.parse_args()
    with schema_if_url(args.database_url) as url, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleetdeck.db"
        db = Database(url or f"sqlite:///{path}")
        try:
            db.migrate()
            line_bytes = fill(db, args.lines)
            if db.dialect == "sqlite":
                sqlite = sqlite_bytes(path, db)
                print(f"SQLite files {sqlite['files']:,} B ({sqlite['files'] / args.lines:.1f} B/line), of which "
                      f"free pages {sqlite['free']:,} B; after VACUUM:")
                sizes = {"files": sqlite["vacuumed"]}
            else:
                sizes = postgres_bytes(db)
        finally:
            db.close()
    total = sum(sizes.values())
    print(f"backend: {db.dialect}; load average: {os.getloadavg()}")
    print(f"{args.lines} lines, {line_bytes / args.lines:.1f} B of text each")
    print(", ".join(f"{name} {size:,} B ({size / args.lines:.1f} B/line)" for name, size in sizes.items()))
    print(f"total: {total:,} B -> {total / args.lines:.1f} B per line")


if __name__ == "__main__":
    main()
