"""A database from every earlier point of the history, holding rows, upgraded to the head
ends with the same schema as a fresh database at the head, keeps its rows, and gets the
data migrations (token owners, the full-text index of existing log lines, the auth
generation row), on SQLite and on PostgreSQL (a private schema per database).

The earlier points are the schemas ``main`` has shipped: the set of migration heads after
each change of console/storage/migrations/versions/ on its first-parent history (no
release has been tagged yet, CHANGELOG.md). Each database is created by that commit's own
code, taken from the repository's git history (so editing a shipped migration cannot
hide a difference); one more database walks through every point with today's migration
files. When a release is cut, or a migration lands on main, add its commit and heads to
``SHIPPED`` (CONTRIBUTING.md "Adding a migration").
"""
from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, func, inspect, literal_column, select, text

from console.logs.groups import GroupIndexer
from console.logs.service import LogQuery, LogService, SearchTerm
from console.storage.database import MIGRATIONS_DIR, Database, make_engine, upgrade_schema
from console.storage.models import include_in_comparison
from tests.conftest import need
from tests.integration.procs import REPO, child_env

# Run by the earlier commit's own code: create (or upgrade) the database at argv[1] as
# that version of the console did at start.
MIGRATE_WITH_EARLIER_CODE = "import sys; from console.storage import Database; d = Database(sys.argv[1]); d.migrate(); d.close()"

# (the commit of main that shipped it, what it brought, its migration heads: what
# alembic_version holds in a database that commit created)
SHIPPED: list[tuple[str, str, tuple[str, ...]]] = [
    ("f5abd8f4486a803a10a4ae83667d63c4939a3622", "console core", ("0001",)),
    ("872cfedc14ff7b012465e8c337813921b7e449a5", "audit log", ("0002_audit",)),
    ("8ac71e8b948f19e26a264553c677f8bcc3b1f961", "tiers", ("0002_audit", "0003_tiers")),
    ("c83641f6f4775f8614ab5bf4236a36a209b559fa", "deploys", ("0002_audit", "0003_tiers", "0006_deploys")),
    ("e55d2a3672afdfc80a92865d182b634e5cd0d322", "logs",
     ("0002_audit", "0003_tiers", "0004_logs", "0006_deploys")),
    ("5f9f187dc3e95198079e466a762ccef0b0c6a49f", "security",
     ("0002_audit", "0003_tiers", "0004_logs", "0006_deploys", "0008_security")),
    ("12ea8c92a659a1012ae58eb7f4e8ff5645076940", "sshdeploy",
     ("0002_audit", "0003_tiers", "0004_logs", "0006_deploys", "0007_sshdeploy", "0008_security")),
    ("c4bf38d8e54ed87566436bb8b08f25d398db7c2f", "fleet",
     ("0002_audit", "0003_tiers", "0004_logs", "0006_deploys", "0007_sshdeploy", "0008_security", "0009_fleet")),
    ("5ef66fe3c58cc62f8db80b1ad456756388d82bd8", "lperf",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0008_security", "0009_fleet", "0011_lperf")),
    ("f526017bad61a66e886149976920bac0fcdff9d4", "fts automerge",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0008_security", "0009_fleet",
      "0012_fts_automerge")),
    ("55b720b48a57782e6505a3dddd660ddc190c7672", "log level index",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0008_security", "0009_fleet",
      "0013_log_level_index")),
    ("dbf047ab23f39b1587c39d2f520d3e7467c43db5", "token owners",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0009_fleet", "0013_log_level_index",
      "secb_0001_token_owner")),
    ("c39697581c2d8f3af7b9ef48633420c68bcb47df", "clock skew",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0009_fleet", "ops_0001_clock_skew",
      "secb_0001_token_owner")),
    ("673d4aae66242345e5dd9bbd28a9916811cc51c8", "users deleted_at",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0009_fleet", "apischema_0014_user_deleted",
      "ops_0001_clock_skew", "secb_0001_token_owner")),
    ("aaf3f62ec9d35e31677c443a859f6d729e95c372", "alerting",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0009_fleet", "alert_0001_state",
      "apischema_0014_user_deleted", "ops_0001_clock_skew", "secb_0001_token_owner")),
    ("a4f3b55e691a50689a948c8d4eee6abd579b5d06", "notifications outbox",
     ("0002_audit", "0003_tiers", "0006_deploys", "0007_sshdeploy", "0009_fleet", "apischema_0014_user_deleted",
      "notify_0001_outbox", "ops_0001_clock_skew", "secb_0001_token_owner")),
]

SEARCH_WORD = "kernelpanicseed"  # one word of the seeded log line, found by full-text search afterwards

# One row per table, with every column the table has had; a table gets the columns it has
# when it is seeded. Keys follow the foreign keys (host 1, series 1, user 1, deploy 1).
SEED: dict[str, dict[str, Any]] = {
    "users": {"id": 1, "username": "alice", "password_hash": "h" * 60, "role": "deployer", "created_at": 1.5,
              "disabled": False, "apps": '["web"]', "deleted_at": None},
    "tokens": {"id": 1, "kind": "api", "name": "ci", "host_name": None, "role": "viewer", "token_hash": "a" * 64,
               "created_at": 2.5, "expires_at": None, "last_used_at": 3.5, "revoked_at": None, "apps": None,
               "created_by": "user:alice", "owner": "alice"},
    "hosts": {"id": 1, "name": "web-1", "first_seen": 10.0, "last_seen": 20.0, "agent_version": "1.0",
              "interval_s": 15.0, "labels": '{"dc":"a"}', "config_hash": "c" * 64, "clock_skew_seconds": -0.5,
              "clock_skew_at": 20.0},
    "series": {"id": 1, "host_id": 1, "name": "node_load1", "labels": '{"cpu":"0"}', "type": "gauge"},
    "samples": {"series_id": 1, "ts": 1_700_000_000_000, "value": 0.25},
    "ingest_batches": {"host_id": 1, "batch_id": "b-1", "received_at": 20.0, "samples": 1, "logs": 1},
    "log_records": {"id": 1, "host_id": 1, "ts": 1_700_000_000_000, "source": "/var/log/syslog",
                    "line": f"oops: {SEARCH_WORD} at boot", "labels": "{}", "level": "error"},
    "audit_log": {"id": 1, "ts": 30.0, "actor": "user:alice", "action": "login", "target": "alice", "details": "{}",
                  "source": "127.0.0.1", "prev_hash": "0" * 64, "hash": "1" * 64},
    "rollup_1m": {"series_id": 1, "ts": 1_700_000_000_000, "min": 0.25, "max": 0.5, "sum": 0.75, "count": 2,
                  "increase": None},
    "rollup_1h": {"series_id": 1, "ts": 1_699_999_200_000, "min": 0.25, "max": 0.5, "sum": 0.75, "count": 2,
                  "increase": 1.0},
    "rollup_watermarks": {"tier": "1m", "done_until": 1_700_000_000_000, "generation": 3, "updated_at": 40.0},
    "ingest_rejections": {"host_id": 1, "reason": "too_old", "count": 7, "last_at": 41.0, "last_example": "x"},
    "deploys": {"id": 1, "app": "web", "version": "v2", "previous_version": "v1", "kind": "deploy",
                "state": "succeeded", "requested_by": "user:alice", "source": "cli", "reason": "release",
                "error": None, "created_at": 50.0, "started_at": 51.0, "finished_at": 52.0, "timeout_s": 600.0,
                "cleanup_pending": False},
    "deploy_steps": {"id": 1, "deploy_id": 1, "position": 0, "name": "pull", "state": "succeeded", "message": "ok",
                     "started_at": 51.0, "finished_at": 51.5},
    "deploy_events": {"id": 1, "deploy_id": 1, "seq": 1, "ts": 51.0, "kind": "step", "level": "info", "step": "pull",
                      "message": "pulled", "data": "{}"},
    "ssh_known_hosts": {"id": 1, "hostname": "[10.0.0.5]:22", "host": "10.0.0.5", "key_type": "ssh-ed25519",
                        "key_base64": "AAAAC3NzaC1lZDI1NTE5AAAAIGZha2U=", "fingerprint": "SHA256:abc",
                        "added_by": "user:alice", "added_at": 60.0},
    "user_sessions": {"id_hash": "d" * 64, "user_id": 1, "created_at": 70.0, "expires_at": 4_000_000_000.0,
                      "last_seen_at": 71.0, "source": "127.0.0.1"},
    "secrets": {"id": 1, "name": "registry", "kind": "password", "ciphertext": "enc:v1:xyz", "created_at": 80.0,
                "updated_at": 81.0, "updated_by": "user:alice"},
    "alert_history": {"id": 1, "ts": 90.0, "group_key": "host.yml;host", "alertname": "HostDown",
                      "labels": '{"instance":"web-1"}', "state": "firing", "value": 0.0, "annotations": "{}",
                      "muted_by": None},
    "notifications": {"id": 1, "created_at": 95.0, "receiver": "ops", "integration": "webhook[0]",
                      "group_key": "{}:{alertname=\"HostDown\"}", "dedup_key": "seed-1", "payload": "{}",
                      "status": "sent", "attempts": 1, "next_attempt_at": 95.0, "last_attempt_at": 96.0,
                      "last_status": 200, "last_error": None, "answer": "ok", "sent_at": 96.0},
    "alert_state": {"id": 1, "group_key": "host.yml;host", "alertname": "HostDown", "expr": "up == 0",
                    "labels": '{"instance":"web-1"}', "annotations": "{}", "state": "firing", "value": 0.0,
                    "active_at": 89.0, "fired_at": 90.0, "resolved_at": None, "keep_firing_since": None,
                    "clear_since": None, "last_eval": 91.0},
}
# Tables a migration fills itself (secb_0001: the one auth generation row). The full-text
# objects of 0004_logs are filled from log_records.
NOT_SEEDED = {"alembic_version", "auth_state"}


def is_full_text(table: str) -> bool:
    return not include_in_comparison(table, "table", {})


def partition_tables(engine: Engine) -> set[str]:
    """The partitions of PostgreSQL's time-partitioned tables (pgpart_0001): named by the
    days they hold, so they differ between databases; compared through their parents."""
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT c.relname FROM pg_class c WHERE c.relispartition "
            "AND c.relnamespace = current_schema()::regnamespace")).scalars())


@contextlib.contextmanager
def database(kind: str, tmp_path, name: str) -> Iterator[Engine]:
    """An empty database: a SQLite file, or a private PostgreSQL schema (tests/pg.py)."""
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / (name + '.db')}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    from tests.pg import base_url, postgres_problem, private_schema

    problem = postgres_problem(base_url())
    if problem:
        need("postgres", problem)
    with private_schema(base_url()) as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def upgrade_to(engine: Engine, heads: tuple[str, ...]) -> None:
    """Bring the database to exactly these revisions (and their ancestors)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    for head in heads:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, head)


def seed(engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    """Insert the SEED row of every table that exists and has none yet, with the columns
    it has now; record what was inserted in ``seeded``. Log lines are indexed as the
    console would at that schema (the insert trigger of 0004_logs, LogStore once 0011_lperf
    dropped it, or PostgreSQL's generated column)."""
    insp = inspect(engine)
    tables = set(insp.get_table_names())
    missing = sorted(t for t in tables - set(SEED) - NOT_SEEDED - partition_tables(engine) if not is_full_text(t))
    assert not missing, f"tables with no SEED row: {missing}; add one to SEED in {__file__}"
    with engine.begin() as conn:
        reflected = MetaData()
        reflected.reflect(conn, only=[t for t in SEED if t in tables])
        for table in SEED:  # dict order follows the foreign keys
            if table not in tables or table in seeded:
                continue
            columns = {c["name"]: c for c in insp.get_columns(table)}
            row = {k: v for k, v in SEED[table].items() if k in columns}
            values: dict[str, Any] = dict(row)
            if table == "log_records" and "line_tsv" in columns and not columns["line_tsv"].get("computed"):
                # 0011_lperf: LogStore computes the tsvector; this is the expression it replaced
                values["line_tsv"] = func.to_tsvector(literal_column("'simple'::regconfig"),
                                                      func.regexp_replace(row["line"], "[^[:alnum:]]+", " ", "g"))
            conn.execute(reflected.tables[table].insert().values(values))
            if (table == "log_records" and "log_records_fts" in tables
                    and not conn.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'trigger' "
                                              "AND name = 'log_records_fts_ai'")).first()):
                conn.execute(text("INSERT INTO log_records_fts(rowid, line) VALUES (:id, :line)"), row)
            seeded[table] = row


def snapshot(engine: Engine) -> dict[str, Any]:
    """The schema as reflected: per table its columns (type, nullability, default,
    generated expression, identity), primary key, indexes, unique constraints and foreign
    keys; SQLite's triggers and FTS5 settings; PostgreSQL's index definitions (expression
    indexes such as ``md5(labels)``). Columns are compared by name, not position: ADD
    COLUMN appends, and the branches reached a database in different orders."""
    insp = inspect(engine)
    # get_multi_*: one catalogue query per kind of object instead of one per table
    columns, pks, indexes, uniques, fks = (
        {table: value for (_schema, table), value in found.items()}
        for found in (insp.get_multi_columns(), insp.get_multi_pk_constraint(), insp.get_multi_indexes(),
                      insp.get_multi_unique_constraints(), insp.get_multi_foreign_keys()))
    shape: dict[str, Any] = {}
    parts = partition_tables(engine)
    for table in sorted(set(insp.get_table_names()) - parts):
        shape[table] = {
            "columns": {c["name"]: {**{k: v for k, v in c.items() if k not in ("name", "comment")},
                                    "type": str(c["type"])} for c in columns[table]},
            "pk": pks[table]["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]), tuple(i.get("expressions") or ()))
                              for i in indexes[table]),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in uniques[table]),
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]),
                           str(sorted((f.get("options") or {}).items()))) for f in fks[table]),
        }
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            shape["sqlite triggers"] = sorted(tuple(r) for r in conn.execute(
                text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")))
            if "log_records_fts_config" in shape:
                shape["fts5 config"] = sorted(tuple(r) for r in conn.execute(
                    text("SELECT k, v FROM log_records_fts_config")))
        else:
            shape["postgresql indexes"] = sorted(tuple(r) for r in conn.execute(
                text("SELECT tablename, indexname, replace(indexdef, ' ' || current_schema() || '.', ' ') "
                     "FROM pg_indexes WHERE schemaname = current_schema()")) if r[0] not in parts)
            # pgpart_0001: the partitioned tables, their keys, and that each has its default partition
            shape["postgresql partitioned"] = sorted(tuple(r) for r in conn.execute(text(
                "SELECT c.relname, pg_get_partkeydef(c.oid), (SELECT count(*) FROM pg_inherits i JOIN pg_class d "
                "ON d.oid = i.inhrelid WHERE i.inhparent = c.oid AND pg_get_expr(d.relpartbound, d.oid) = 'DEFAULT') "
                "FROM pg_class c WHERE c.relkind = 'p' AND c.relnamespace = current_schema()::regnamespace")))
            shape["postgresql sequences"] = sorted(r[0] for r in conn.execute(
                text("SELECT sequence_name FROM information_schema.sequences "
                     "WHERE sequence_schema = current_schema()")))
    shape.pop("alembic_version", None)  # compared apart: the revision, not its table's shape
    return shape


def revisions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version")))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fresh(request, tmp_path_factory):
    """(kind, schema snapshot, revisions) of an empty database brought to the head."""
    with database(request.param, tmp_path_factory.mktemp("fresh"), "fresh") as engine:
        upgrade_schema(engine)
        yield request.param, snapshot(engine), revisions(engine)


def check_rows_and_data_migrations(engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    with engine.connect() as conn:
        reflected = MetaData()
        reflected.reflect(conn, only=list(seeded))
        for table, row in seeded.items():
            columns = reflected.tables[table].c
            got = [dict(r._mapping) for r in conn.execute(select(*(columns[name] for name in row)))]
            assert got == [row], f"{table}: rows after the upgrade {got}, seeded {row}"
        # secb_0001: a token created by a user belongs to that user; one minted before
        # tokens recorded who made them (0008_security) has no owner.
        owner = conn.execute(text("SELECT owner FROM tokens WHERE id = 1")).scalar()
        assert owner == ("alice" if "created_by" in seeded["tokens"] else None)
        assert [tuple(r) for r in conn.execute(text("SELECT id, generation FROM auth_state"))] == [(1, 0)]
        # 0004_logs/0011_lperf: the line stored before the upgrade is found by a word search.
        # loggroup_0001 (PostgreSQL), logsqlite_0001 (SQLite): a Bloom filter per group of
        # lines, filled by the console's group indexer from the stored rows: one pass of it,
        # then a search through the groups.
        db = Database(engine.url.render_as_string(hide_password=False))
        try:
            raw = db.engine.raw_connection()
            try:
                assert GroupIndexer(db).index_pass(raw.driver_connection) == 1
            finally:
                raw.close()
            assert conn.execute(text("SELECT first_record_id, last_record_id FROM log_search_groups")).all() \
                == [(1, 1)]
            found = [r["id"] for r in db.run(LogService(db).search,
                                              LogQuery(terms=(SearchTerm(SEARCH_WORD),)))["logs"]]
        finally:
            db.close()
        assert found == [1], f"full-text search for {SEARCH_WORD!r} after the upgrade found {found}"
        if engine.dialect.name == "postgresql":
            # pgpart_0001: each row moved into the partition of its day, none left in a default one
            # (1_700_000_000_000 ms is 2023-11-14 UTC)
            for table, where in (("samples", "SELECT tableoid::regclass::text FROM samples"),
                                 ("log_records", "SELECT tableoid::regclass::text FROM log_records"),
                                 ("rollup_1m", "SELECT tableoid::regclass::text FROM rollup_1m")):
                if table in seeded:
                    held = conn.execute(text(where)).scalars().all()
                    assert held == [table + "_p20231114_0000"], f"{table}: the seeded row is in {held}"
        # lifecycle_0001: series 1's first and last sample time, backfilled from every tier
        # (a rollup bucket's end bounds its last sample).
        widths = {"samples": 1, "rollup_1m": 60_000, "rollup_1h": 3_600_000}
        firsts = [seeded[t]["ts"] for t in widths if t in seeded]
        lasts = [seeded[t]["ts"] + widths[t] - 1 for t in widths if t in seeded]
        bounds = conn.execute(text("SELECT first_ts, last_ts FROM series WHERE id = 1")).one()
        assert tuple(bounds) == (min(firsts), max(lasts))


def compare(kind: str, upgraded: dict[str, Any], fresh_shape: dict[str, Any]) -> None:
    assert sorted(upgraded) == sorted(fresh_shape), "tables differ"
    for name in fresh_shape:
        assert upgraded[name] == fresh_shape[name], f"{kind}: {name} differs from a fresh database at the head"


@pytest.fixture(scope="module")
def earlier_code(tmp_path_factory) -> Callable[[str], Path]:
    """The ``console`` package of a commit, from the repository's git history: a folder to
    put first on PYTHONPATH. Needs git and a clone holding that commit ("git-history")."""
    trees: dict[str, Path] = {}

    def tree(commit: str) -> Path:
        if commit not in trees:
            if shutil.which("git") is None:
                need("git-history", "no git command")
            archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "console"],
                                     capture_output=True, timeout=120)
            if archive.returncode != 0:
                need("git-history", f"commit {commit} is not in {REPO}'s history: "
                     f"{archive.stderr.decode(errors='replace').strip()[:200]}")
            root = tmp_path_factory.mktemp(f"console-{commit[:7]}")
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(root, filter="data")
            trees[commit] = root
        return trees[commit]

    return tree


@pytest.mark.parametrize("commit, what, heads", SHIPPED, ids=[s[0][:7] for s in SHIPPED])
def test_a_database_made_by_earlier_code_upgrades_to_the_fresh_schema(fresh, earlier_code, tmp_path,
                                                                       commit, what, heads):
    kind, fresh_shape, fresh_revisions = fresh
    code = earlier_code(commit)
    with database(kind, tmp_path, "old") as engine:
        env = child_env(PYTHONPATH=str(code))  # that commit's console, nothing of today's
        made = subprocess.run([sys.executable, "-c", MIGRATE_WITH_EARLIER_CODE, engine.url.render_as_string(False)],
                              cwd=code, env=env, capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, f"{commit[:7]} ({what}) could not create its database: {made.stderr[-2000:]}"
        assert revisions(engine) == sorted(heads), f"SHIPPED lists other heads than {commit[:7]} made"
        seeded: dict[str, dict[str, Any]] = {}
        seed(engine, seeded)
        upgrade_schema(engine)
        assert revisions(engine) == fresh_revisions
        compare(kind, snapshot(engine), fresh_shape)
        check_rows_and_data_migrations(engine, seeded)


def test_one_database_upgraded_at_every_shipped_point_in_turn(fresh, tmp_path):
    # A long-lived install: upgraded each time main changed its schema, with rows added
    # to the tables each point brought.
    kind, fresh_shape, fresh_revisions = fresh
    with database(kind, tmp_path, "walk") as engine:
        seeded: dict[str, dict[str, Any]] = {}
        for _commit, _what, heads in SHIPPED:
            upgrade_to(engine, heads)
            assert revisions(engine) == sorted(heads)
            seed(engine, seeded)
        upgrade_schema(engine)
        assert revisions(engine) == fresh_revisions
        compare(kind, snapshot(engine), fresh_shape)
        check_rows_and_data_migrations(engine, seeded)
        assert sorted(seeded) == sorted(SEED)  # every table had a row through the upgrades


def test_shipped_points_cover_every_former_head():
    # Every revision before the merge that joined the branches is part of some shipped
    # point (a revision missing from SHIPPED is a schema no install is tested from).
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    merge = script.get_revision("0015_merge")
    covered = set()
    for _commit, _what, heads in SHIPPED:
        for head in heads:
            covered.update(r.revision for r in script.iterate_revisions(head, "base"))
    before_merge = {r.revision for r in script.iterate_revisions(merge.revision, "base")} - {merge.revision}
    assert before_merge - covered == set()
