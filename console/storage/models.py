"""SQLAlchemy 2.0 models: the tables behind users, tokens, hosts, series, samples and logs.

Time columns named ``*_at``/``first_seen``/``last_seen`` are Unix seconds (float);
``ts`` columns of samples and log records are Unix milliseconds (int), as in the
ingest contract. The schema itself is created by the Alembic migrations in
``migrations/``; a test checks that these models and the migrations agree.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Float, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


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


class Series(Base):
    """One metric name plus one label set on one host."""

    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("host_id", "name", "labels", name="uq_series_identity"),
        Index("ix_series_name", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    labels: Mapped[str] = mapped_column(Text)  # canonical JSON: sorted keys, no spaces
    type: Mapped[str] = mapped_column(String(16))  # gauge | counter


class Sample(Base):
    """A raw sample. Clustered on (series_id, ts): WITHOUT ROWID on SQLite."""

    __tablename__ = "samples"
    __table_args__ = {"sqlite_with_rowid": False}

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Unix ms
    value: Mapped[float] = mapped_column(Float)


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
    __table_args__ = (Index("ix_log_records_host_ts", "host_id", "ts"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    ts: Mapped[int] = mapped_column(BigInteger)  # Unix ms
    source: Mapped[str] = mapped_column(String(1024))
    line: Mapped[str] = mapped_column(Text)
    labels: Mapped[str] = mapped_column(Text, default="{}")


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


class Rollup1h(_RollupColumns, Base):
    """1-hour rollups, computed from 1-minute rollups."""

    __tablename__ = "rollup_1h"
    __table_args__ = {"sqlite_with_rowid": False}


class RollupWatermark(Base):
    """How far a tier is complete: every bucket starting before ``done_until`` (Unix ms,
    exclusive) is rolled up. Moved in the same transaction as the rows it covers."""

    __tablename__ = "rollup_watermarks"

    tier: Mapped[str] = mapped_column(String(8), primary_key=True)  # 1m | 1h
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
