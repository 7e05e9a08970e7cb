"""Parsing of numeric query, path and header values, shared by the API handlers.

``str.isdigit`` is true for characters ``int`` refuses (``"²"``, ``"①"``) and for
non-ASCII decimal digits; a value that passed it could still raise a 500. And an id the
database column cannot hold fails in the database (PostgreSQL: "integer out of range"),
so each caller bounds the value by its column.
"""
from __future__ import annotations

INT32_MAX = 2**31 - 1  # an Integer column (32-bit on PostgreSQL): users, tokens, deploys, audit...
INT64_MAX = 2**63 - 1  # a BigInteger column (log_records.id) or a byte count


def ascii_uint(raw: str, max_value: int) -> int | None:
    """``"42"`` -> 42; None unless ``raw`` is ASCII digits only with a value from 0 to
    ``max_value``."""
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > len(str(max_value)):
        return None
    value = int(raw)
    return value if value <= max_value else None
