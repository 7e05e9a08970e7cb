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


@contextmanager
def private_schema(base_url: str) -> Iterator[str]:
    """Yield a SQLAlchemy URL whose connections use a new, empty schema; drop it after."""
    from sqlalchemy import create_engine, text

    schema = "t_" + uuid.uuid4().hex[:16]
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"
    url = base_url + sep + urllib.parse.urlencode({"options": f"-csearch_path={schema}"})
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


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
