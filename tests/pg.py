"""A private PostgreSQL schema per test module, so parallel runs share one database safely.

``FLEETDECK_TEST_POSTGRES_URL`` names the database (``.ci/run`` creates it); every user
gets a fresh schema ``t_<random>`` put first on the connection's ``search_path``, which
is dropped afterwards.
"""
from __future__ import annotations

import os
import urllib.parse
import uuid
from contextlib import contextmanager
from typing import Iterator

ENV = "FLEETDECK_TEST_POSTGRES_URL"


def schema_url(base_url: str, schema: str) -> str:
    """``base_url`` (SQLAlchemy) with ``schema`` first on its connections' ``search_path``."""
    sep = "&" if "?" in base_url else "?"
    return base_url + sep + urllib.parse.urlencode({"options": f"-csearch_path={schema}"})


def _schema_statement(base_url: str, template: str, schema: str) -> None:
    """Run ``template`` with ``{}`` = the quoted identifier ``schema`` on ``base_url``'s database."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(base_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(sql.SQL(template).format(sql.Identifier(schema)))


def create_schema(base_url: str, schema: str, exist_ok: bool = False) -> str:
    """Create ``schema`` in ``base_url``'s database (kept if it exists and ``exist_ok``);
    -> :func:`schema_url` of it."""
    _schema_statement(base_url, "CREATE SCHEMA IF NOT EXISTS {}" if exist_ok else "CREATE SCHEMA {}", schema)
    return schema_url(base_url, schema)


def drop_schema(base_url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it from ``base_url``'s database."""
    _schema_statement(base_url, "DROP SCHEMA IF EXISTS {} CASCADE", schema)


@contextmanager
def private_schema(base_url: str) -> Iterator[str]:
    """Yield a SQLAlchemy URL whose connections use a new, empty schema; drop it after."""
    schema = "t_" + uuid.uuid4().hex[:16]
    url = create_schema(base_url, schema)
    try:
        yield url
    finally:
        drop_schema(base_url, schema)


@contextmanager
def schema_if_url(base_url: str | None) -> Iterator[str | None]:
    """:func:`private_schema` of ``base_url``, or None (the caller's own SQLite) without
    one; for the benchmarks' ``--database-url``."""
    if base_url is None:
        yield None
    else:
        with private_schema(base_url) as url:
            yield url


def postgres_problem(base_url: str | None) -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    if not base_url:
        return f"{ENV} is not set"
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    from sqlalchemy import create_engine, text

    engine = create_engine(base_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        return f"cannot connect to {base_url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def base_url() -> str | None:
    return os.environ.get(ENV) or None


LOG_ENV = "FLEETDECK_TEST_POSTGRES_LOG"


def server_log_path(url: str) -> tuple[str | None, str]:
    """The file the test server writes its log to, asked of the server itself, and how it
    was found (or why not): ``$FLEETDECK_TEST_POSTGRES_LOG`` when set; the file
    ``pg_current_logfile()`` names when the logging collector runs and the role may read
    it; else Debian's ``pg_ctlcluster`` file ``/var/log/postgresql/postgresql-VERSION-NAME.log``
    from the ``cluster_name`` Debian sets to ``VERSION/NAME``. The file must exist here
    (the server runs on this machine)."""
    if os.environ.get(LOG_ENV):
        return os.environ[LOG_ENV], f"${LOG_ENV}"
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            settings = dict(conn.execute(text(
                "SELECT name, setting FROM pg_settings WHERE name IN ('logging_collector', 'cluster_name', "
                "'data_directory')")).all())
            current = None
            if settings.get("logging_collector") == "on":
                try:
                    current = conn.execute(text("SELECT pg_current_logfile()")).scalar()
                except Exception:  # noqa: BLE001 - not granted to this role: try the Debian name
                    conn.rollback()
    finally:
        engine.dispose()
    if current:
        path = current if current.startswith("/") else os.path.join(settings.get("data_directory", ""), current)
        return path, "pg_current_logfile()"
    cluster = settings.get("cluster_name", "")
    if "/" in cluster:
        return f"/var/log/postgresql/postgresql-{cluster.replace('/', '-')}.log", f"cluster_name {cluster!r}"
    return None, f"the server has no logging collector and cluster_name {cluster!r} is not Debian's; set ${LOG_ENV}"
