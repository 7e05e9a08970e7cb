"""SQLAlchemy 2.0 models: the tables behind users, tokens, hosts, series, samples and logs.

Time columns named ``*_at``/``first_seen``/``last_seen`` are Unix seconds (float);
``ts`` columns of samples and log records are Unix milliseconds (int), as in the
ingest contract. The schema itself is created by the Alembic migrations in
``migrations/``; a test checks that these models and the migrations agree.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Table, false,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

if TYPE_CHECKING:
    from alembic.runtime.environment import NameFilterParentNames, NameFilterType


class Base(DeclarativeBase):
    # Every model maps one Table (SQLAlchemy types __table__ as any FromClause).
    __table__: ClassVar[Table]


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # viewer | deployer | admin
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # JSON list of the apps a deployer may deploy; NULL: every app (added by 0008_security).
    apps: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Unix s of DELETE /api/v1/users/{username}: gone from the API, the name kept (audit).
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The dashboard's language chosen by the user (en, zh-CN); NULL: the browser's (webui_0001).
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Token(Base):
    """An agent token (bound to one host) or a personal API token (capped at a role)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # agent | api
    name: Mapped[str] = mapped_column(String(128))
    host_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Added by 0008_security: the app allow-list of a deployer API token (JSON list; NULL:
    # every app) and who created the token (``user:alice``, ``cli``).
    apps: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Added by secb_0001_token_owner: the user this token acts for (NULL: an operator's or
    # an agent's token); disabling that user revokes it.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class AuthState(Base):
    """One row (id 1): ``generation`` grows with every revocation, logout, disable, role or
    password change, so every process drops cached credentials (secb_0001_token_owner)."""

    __tablename__ = "auth_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)


# The host row recording rules' series are stored under (console/alerting/service.py). Not
# a valid host name (HOST_NAME_RE has no ':'), so no agent can report as it; the host list,
# ``up`` and the host label of query views leave it out (docs/promql.md, "Label model").
RULES_HOST = "fleetdeck:rules"


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    interval_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    labels: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON object
    # Added by migration 0009_fleet: the agent's effective-config hash, for drift.
    config_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Added by migration ops_0001_clock_skew: the agent clock's offset from the console's, s.
    clock_skew_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    clock_skew_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Series(Base):
    """One metric name plus one label set on one host."""

    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("host_id", "name", "labels", name="uq_series_identity"),
        Index("ix_series_name", "name"),
        # last_ts is in no index: the writer moves it once in five minutes, a heap-only update on
        # PostgreSQL (migration hotseries_0001, which also sets the table's fill factor).
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    labels: Mapped[str] = mapped_column(Text)  # canonical JSON: sorted keys, no spaces
    type: Mapped[str] = mapped_column(String(16))  # gauge | counter
    # First and last sample time, Unix ms, over every tier (NULL: none stored yet).
    # ``last_ts`` may run ahead of the last sample by under five minutes: the ingest writer
    # moves it to the end of the series' five-minute window holding the sample, once per
    # series per five minutes (windows offset per series, console/ingest/service.py bound_end).
    first_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Sample(Base):
    """A raw sample, a hot row (older ones are packed into ``sample_blocks``). On SQLite a
    WITHOUT ROWID table clustered on (bucket, series_id, ts), ``bucket`` = ts / 60,000
    (the minute; console/storage/hot_samples.py, migration sqlhead_0001); on PostgreSQL
    partitioned by time and keyed (series_id, ts), without ``bucket`` (pgpart_0001)."""

    __tablename__ = "samples"
    __table_args__ = {"sqlite_with_rowid": False}

    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # SQLite only: ts / BUCKET_MS
    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Unix ms
    value: Mapped[float] = mapped_column(Float)


class SampleBlock(Base):
    """The raw samples of one series in one block window, packed (console/storage/blocks.py
    gives the layout of ``data``). ``start_ts`` is the window start (a multiple of the block
    width), ``end_ts`` the last sample's time, both Unix ms; ``count`` the samples held.
    Migration blocks_0001_sample_blocks; on SQLite a rowid table since coldsize_0001 (a WITHOUT
    ROWID leaf keeps ~1 KB of a row, the rest of a longer block went to a mostly empty overflow page)."""

    __tablename__ = "sample_blocks"

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    end_ts: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class IngestBatch(Base):
    """A committed ingest batch, remembered so that a replayed batch_id stores nothing twice."""

    __tablename__ = "ingest_batches"

    host_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[float] = mapped_column(Float, index=True)
    samples: Mapped[int] = mapped_column(Integer)
    logs: Mapped[int] = mapped_column(Integer)


class LogRecord(Base):
    __tablename__ = "log_records"
    # (host_id, ts) and (level, ts) were dropped by logblocks_0001 (PostgreSQL) and
    # logsqlite_0001 (SQLite): searches read rows by id (console/logs/groups.py).
    __table_args__ = (Index("ix_log_records_ts", "ts"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    ts: Mapped[int] = mapped_column(BigInteger)  # Unix ms
    source: Mapped[str] = mapped_column(String(1024))
    line: Mapped[str] = mapped_column(Text)
    labels: Mapped[str] = mapped_column(Text, default="{}")
    # Added by migration 0004_logs: normalised level (trace|debug|info|warn|error|fatal).
    level: Mapped[str | None] = mapped_column(String(16), nullable=True)


class AuditEntry(Base):
    """One audit log entry; ``hash`` chains it to the entry before (see console/audit)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON object
    source: Mapped[str] = mapped_column(String(255))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


# -- metrics tiers (migration 0003_tiers) ---------------------------------------------------
class _RollupColumns:
    """One rollup bucket of one series. ``ts`` is the bucket start (Unix ms); ``increase`` is
    the counter increase over the bucket with resets handled (None for gauges)."""

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # bucket start, Unix ms
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    sum: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
    increase: Mapped[float | None] = mapped_column(Float, nullable=True)


class Rollup1m(_RollupColumns, Base):
    """1-minute rollups, computed from raw samples. Clustered like ``samples``."""

    __tablename__ = "rollup_1m"
    __table_args__ = {"sqlite_with_rowid": False}


class Rollup1mBlock(Base):
    """The 1m rollup rows of one series in one block window (a UTC day), packed
    (console/storage/rollup_blocks.py gives the layout of ``data``). ``start_ts`` is the
    window start (a multiple of the block width), ``end_ts`` the last row's bucket start,
    both Unix ms; ``count`` the rows held. A ``rollup_1m`` row of the same bucket wins over
    the block's (a bucket recomputed after a late sample, not packed yet).
    Migration pack1m_0001_rollup_1m_blocks; on SQLite a rowid table since coldsize_0001, as
    ``sample_blocks``."""

    __tablename__ = "rollup_1m_blocks"

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    end_ts: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Rollup1h(_RollupColumns, Base):
    """1-hour rollups, computed from 1-minute rollups."""

    __tablename__ = "rollup_1h"
    __table_args__ = {"sqlite_with_rowid": False}


class RollupHost1m(Base):
    """Cross-series 1-minute rollups of one metric on one host: over the series with a
    ``rollup_1m`` row in the bucket, the sum, least and greatest of each series' bucket
    value for ``fn`` avg (``sum / count``), min, max and, over counters, increase. They
    answer ``group_by=`` and ``group_by=host`` (any ``agg``) at a 60 s step with one row
    per host and minute instead of one per series. Written by the rollup job in the
    transaction that moves the 1m watermark, from the rows it just computed;
    ``rollup_watermarks`` tier ``1m_host`` says from which bucket on they are complete."""

    __tablename__ = "rollup_1m_host"
    __table_args__ = (Index("ix_rollup_1m_host_ts", "ts"), {"sqlite_with_rowid": False})

    # Keyed (name, ts, host_id): a query reads one metric's window as one range of the key.
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # bucket start, Unix ms
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    series: Mapped[int] = mapped_column(Integer)  # series with a row in the bucket
    avg_sum: Mapped[float] = mapped_column(Float)
    avg_min: Mapped[float] = mapped_column(Float)
    avg_max: Mapped[float] = mapped_column(Float)
    min_sum: Mapped[float] = mapped_column(Float)
    min_min: Mapped[float] = mapped_column(Float)
    min_max: Mapped[float] = mapped_column(Float)
    max_sum: Mapped[float] = mapped_column(Float)
    max_min: Mapped[float] = mapped_column(Float)
    max_max: Mapped[float] = mapped_column(Float)
    counters: Mapped[int] = mapped_column(Integer)  # series with an increase (counters)
    inc_sum: Mapped[float | None] = mapped_column(Float, nullable=True)
    inc_min: Mapped[float | None] = mapped_column(Float, nullable=True)
    inc_max: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the series' samples in the bucket between them (a rate needs two in its window)
    samples: Mapped[int] = mapped_column(BigInteger, server_default="0")


class RollupWatermark(Base):
    """How far a tier is complete: every bucket starting before ``done_until`` (Unix ms,
    exclusive) is rolled up. Moved in the same transaction as the rows it covers."""

    __tablename__ = "rollup_watermarks"

    # 1m | 1h | blocks (packed until) | 1m_host (rollup_1m_host complete from done_until on)
    tier: Mapped[str] = mapped_column(String(8), primary_key=True)
    done_until: Mapped[int] = mapped_column(BigInteger)
    # Bumped by ingest when a late sample lands in or before the window being rolled up,
    # so a rollup pass that spans several transactions starts that window again.
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[float] = mapped_column(Float)


class IngestRejection(Base):
    """Samples a host sent that were not stored, counted per reason (``series_limit``,
    ``too_old``, ``too_new``, ``non_finite``), with the last example seen."""

    __tablename__ = "ingest_rejections"

    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[float] = mapped_column(Float)
    last_example: Mapped[str] = mapped_column(Text)


class Deploy(Base):
    """One deploy or rollback of an app to a version (see console/deploy/service.py for the
    state machine). Times are Unix seconds."""

    __tablename__ = "deploys"
    __table_args__ = (Index("ix_deploys_app_id", "app", "id"), Index("ix_deploys_state", "state"),
                      Index("ix_deploys_created_at", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(140))
    previous_version: Mapped[str | None] = mapped_column(String(140), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # deploy | rollback
    # awaiting_approval | queued | running | succeeded | failed | rolled_back | cancelled | rejected | expired
    state: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    timeout_s: Mapped[float] = mapped_column(Float)
    cleanup_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: the app's only target
    force: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # ssh: rebuild releases
    # The lease of a running deploy (console/deploy/service.py): the console process running it
    # (``runner``, kept once it ended) renews ``lease_until`` (Unix seconds, None once ended); once it
    # lapses another console takes the deploy over.
    runner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Set by a cancel request on any console ("cancelled by ..."): the runner reads it as it renews.
    cancel_requested: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeployApproval(Base):
    """The approval a deploy of a protected app or environment waits for
    (console/deploy/approvals.py). ``state``: pending | approved | rejected | expired;
    ``requested_by`` and ``decided_by`` name users (``user:NAME``) or tokens without one."""

    __tablename__ = "deploy_approvals"
    __table_args__ = (Index("ix_deploy_approvals_state_expires", "state", "expires_at"),)

    deploy_id: Mapped[int] = mapped_column(ForeignKey("deploys.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    approver_role: Mapped[str] = mapped_column(String(16))  # deployer | admin
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decided_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class DeployStep(Base):
    """A named phase of a deploy (connect, image, rolling update, cleanup, rollback)."""

    __tablename__ = "deploy_steps"
    __table_args__ = (UniqueConstraint("deploy_id", "name", name="uq_deploy_steps_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deploy_id: Mapped[int] = mapped_column(ForeignKey("deploys.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed | skipped
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeployEvent(Base):
    """A timestamped line of a deploy's log; ``seq`` counts from 1 within the deploy."""

    __tablename__ = "deploy_events"
    __table_args__ = (UniqueConstraint("deploy_id", "seq", name="uq_deploy_events_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deploy_id: Mapped[int] = mapped_column(ForeignKey("deploys.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    ts: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))  # state | step | log | analysis (a canary check's evaluation)
    level: Mapped[str] = mapped_column(String(16))  # info | warning | error
    step: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text, default="{}")  # JSON object


# Full-text search objects the migrations create with raw SQL (0004_logs): the SQLite FTS5
# table with its shadow tables, and PostgreSQL's generated tsvector column and its index;
# since loggroup_0001 (PostgreSQL) and logsqlite_0001 (SQLite) the group filters and their
# watermark (console/logs/groups.py).
FULL_TEXT_OBJECTS = ("log_records_fts", "line_tsv", "ix_log_records_line_tsv", "log_search_groups",
                     "log_search_state")


def include_in_comparison(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """Alembic ``include_name`` hook: leave the full-text objects out of model comparison."""
    return not (name and any(name == o or name.startswith(o + "_") for o in FULL_TEXT_OBJECTS))

class UserSession(Base):
    """A browser session. The cookie carries a random id; only its SHA-256 is stored, and
    logging out deletes the row, so a copied cookie stops working at logout."""

    __tablename__ = "user_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the id
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    last_seen_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(255))  # client IP address at login


class StoredSecret(Base):
    """An encrypted secret (SSH key, kubeconfig, registry password, webhook URL). Only the
    Fernet token is stored; the key lives outside the database (console/secrets.py)."""

    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[str] = mapped_column(Text)  # Fernet token (URL-safe base64)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(255))


class SshKnownHost(Base):
    """A pinned SSH host key (known_hosts): ``hostname`` as OpenSSH writes it (``addr`` or
    ``[addr]:port``); one key per hostname. Pinned only by ``fleetdeck hosts trust`` (audited)."""

    __tablename__ = "ssh_known_hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(300), unique=True)
    host: Mapped[str] = mapped_column(String(255))  # inventory name
    key_type: Mapped[str] = mapped_column(String(64))  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa...
    key_base64: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(100))  # SHA256:... as ssh-keygen -l prints it
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[float] = mapped_column(Float)


class AlertHistory(Base):
    """One alert state transition (console/alerting): ``state`` is pending, firing,
    resolved (was firing) or inactive (was pending); ``labels`` and ``annotations`` are
    canonical JSON objects; ``value`` the expression's sample value."""

    __tablename__ = "alert_history"
    __table_args__ = (Index("ix_alert_history_ts", "ts"), Index("ix_alert_history_alertname_ts", "alertname", "ts"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    group_key: Mapped[str] = mapped_column(Text)  # FILE;GROUP
    alertname: Mapped[str] = mapped_column(String(255))
    labels: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    annotations: Mapped[str] = mapped_column(Text)
    # Comma-separated KIND:ID reasons the alert was muted at the transition (console/notify/muting.py).
    muted_by: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertState(Base):
    """An active alert (pending, firing, or resolved within the retention) as of the last
    evaluation of its group, so a restart resumes ``for`` timers and firing alerts.
    Times are Unix seconds; a group's rows are replaced together."""

    __tablename__ = "alert_state"
    __table_args__ = (Index("ix_alert_state_group_key", "group_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_key: Mapped[str] = mapped_column(Text)
    alertname: Mapped[str] = mapped_column(String(255))
    expr: Mapped[str] = mapped_column(Text)
    labels: Mapped[str] = mapped_column(Text)
    annotations: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    active_at: Mapped[float] = mapped_column(Float)
    fired_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    keep_firing_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    clear_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_eval: Mapped[float | None] = mapped_column(Float, nullable=True)


class Notification(Base):
    """One message to one receiver integration, queued then sent (console/notify/outbox.py):
    the outbox and the notification log. Times are Unix seconds; ``payload`` is the JSON
    webhook version-4 message; ``last_status`` the receiver's HTTP status (or SMTP code);
    ``answer`` the start of its answer body."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("dedup_key", name="uq_notifications_dedup_key"),
                      Index("ix_notifications_status_next", "status", "next_attempt_at"),
                      Index("ix_notifications_group", "receiver", "group_key", "created_at"),
                      Index("ix_notifications_created", "created_at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    receiver: Mapped[str] = mapped_column(String(255))
    integration: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(Text)
    dedup_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class MaintenanceWindow(Base):
    """A recurring maintenance window (console/maintenance/windows.py): ``dtstart`` a
    local time in ``timezone``, ``rrule`` RFC 5545, ``duration_s`` seconds; the scope
    lists are JSON arrays; ``until`` Unix seconds or None."""

    __tablename__ = "maintenance_windows"
    __table_args__ = (UniqueConstraint("name", name="uq_maintenance_windows_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    dtstart: Mapped[str] = mapped_column(String(32))
    duration_s: Mapped[float] = mapped_column(Float)
    rrule: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64))
    matchers: Mapped[str] = mapped_column(Text)
    hosts: Mapped[str] = mapped_column(Text)
    apps: Mapped[str] = mapped_column(Text)
    environments: Mapped[str] = mapped_column(Text)
    until: Mapped[float | None] = mapped_column(Float, nullable=True)
    comment: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float)


class DeployWatchResult(Base):
    """One signal of the post-deploy watch (console/maintenance/deploys.py): its value
    averaged over the window before the deploy and the window after it, and whether that
    is a regression. Times are Unix seconds; values None when the signal had no data."""

    __tablename__ = "deploy_watch_results"
    __table_args__ = (UniqueConstraint("deploy_id", "signal", name="uq_deploy_watch_results_signal"),
                      Index("ix_deploy_watch_results_evaluated", "evaluated_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deploy_id: Mapped[int] = mapped_column(Integer)
    app: Mapped[str] = mapped_column(String(64))
    signal: Mapped[str] = mapped_column(String(64))
    before: Mapped[float | None] = mapped_column(Float, nullable=True)
    after: Mapped[float | None] = mapped_column(Float, nullable=True)
    regression: Mapped[bool] = mapped_column(Boolean)
    evaluated_at: Mapped[float] = mapped_column(Float)
class SilenceRow(Base):
    """One silence (console/silences): Alertmanager's silence with its UUID ``id``,
    ``matchers`` as the JSON list of API matcher objects, ``annotations`` a JSON
    object of strings, times in Unix seconds. Expired
    silences are kept for the retention, then deleted."""

    __tablename__ = "silences"
    __table_args__ = (Index("ix_silences_ends_at", "ends_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    matchers: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255))
    comment: Mapped[str] = mapped_column(Text)
    annotations: Mapped[str] = mapped_column(Text)  # JSON object of strings


class LoginFailure(Base):
    """One failed login (or enrolment) of ``key`` (``user:NAME@ADDRESS``, ``ip:ADDRESS``,
    ``enrol:ADDRESS``) at ``at`` (Unix seconds), counted by every console sharing the
    database (console/auth/limits.py); rows older than the window are deleted.
    Migration sharedstate_0001_shared_state."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"), Index("ix_login_failures_at", "at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(320))
    at: Mapped[float] = mapped_column(Float)


class PostedAlert(Base):
    """An alert posted to ``/alertmanager/api/v2/alerts`` (console/notify/posted.py), merged
    by fingerprint as Alertmanager merges a re-sent alert: ``labels`` and ``annotations``
    canonical JSON objects, times Unix seconds (``ends_at`` None: firing until told
    otherwise). Kept until it has been resolved for the alert store's retention.
    Migration sharedstate_0001_shared_state."""

    __tablename__ = "posted_alerts"
    __table_args__ = (Index("ix_posted_alerts_ends_at", "ends_at"),)

    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    labels: Mapped[str] = mapped_column(Text)
    annotations: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    generator_url: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)
