"""Parsing of numeric query and path parameters, shared by the API handlers.

``str.isdigit`` is true for characters ``int`` refuses (``"²"``, ``"①"``) and for
non-ASCII decimal digits; a parameter that passed it could still raise a 500. These
helpers accept ASCII digits only.
"""
from __future__ import annotations

INT64_MAX = 2**63 - 1  # the largest id a BIGINT (PostgreSQL) or INTEGER (SQLite) column holds


def ascii_uint(raw: str, max_value: int = INT64_MAX) -> int | None:
    """``"42"`` -> 42; None unless ``raw`` is ASCII digits only with a value from 0 to
    ``max_value`` (a database id by default)."""
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > len(str(max_value)):
        return None
    value = int(raw)
    return value if value <= max_value else None
