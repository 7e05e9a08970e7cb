"""Log levels as stored in ``log_records.level``: one of :data:`LEVELS`, or NULL."""
from __future__ import annotations

LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
# Spellings seen in syslog (RFC 5424 severities), Python logging, log4j/logback,
# Go's logrus/zap, PostgreSQL and dockerd; all compared lower-cased.
_ALIASES = {
    "trace": "trace", "debug": "debug", "dbg": "debug", "info": "info", "information": "info",
    "notice": "info", "log": "info", "statement": "info", "detail": "info", "hint": "info",
    "warn": "warn", "warning": "warn", "err": "error", "error": "error", "fatal": "fatal",
    "crit": "fatal", "critical": "fatal", "alert": "fatal", "emerg": "fatal", "emergency": "fatal",
    "panic": "fatal",
}

SPELLINGS = tuple(_ALIASES)  # every spelling normalise_level knows, lower-case


def normalise_level(value: object) -> str | None:
    """``"WARNING"`` -> ``"warn"``; unknown or empty spellings and non-strings -> None."""
    if not isinstance(value, str) or not value:
        return None
    return _ALIASES.get(value.strip().lower())
