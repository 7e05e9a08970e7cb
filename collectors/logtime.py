"""The time a log line says it was written, for the formats most daemons use.

:func:`line_time` looks for one timestamp near the start of a line (the first
:data:`SCAN_CHARS` characters) and returns it as Unix seconds, or None:

- RFC 3339 / ISO 8601 at the start, after an RFC 5424 header (``<165>1 ``), or as a
  logfmt/JSON field (``time="2026-11-29T12:00:00.123456789Z"`` of dockerd and Go
  programs, ``ts=``, ``timestamp=``, ``"@timestamp":``); also rsyslog's high-precision
  file format (Debian's default, ``2026-11-29T12:00:00.123456+00:00 host sshd[1]: ...``);
- syslog RFC 3164 (``Nov 29 12:00:00 host prog[pid]: ...``, also with a ``<PRI>``
  prefix as glibc's ``syslog(3)`` sends it): no year, so the year of the reading time,
  or the one before when that would put the line more than a day in the future;
- the Common/Combined Log Format of nginx and Apache access logs
  (``[29/Nov/2026:12:00:00 +0000]``);
- Python logging's default ``%(asctime)s`` (``2026-11-29 12:00:00,123``) and the same
  with a ``.`` before the milliseconds.

A time without a zone (RFC 3164, Python logging) is the agent host's local time, as
the program that wrote it used. Fractions beyond microseconds (dockerd's nanoseconds)
are truncated. The fields are taken by fixed patterns and built with :mod:`datetime`
(standard library only: the agent's import closure stays psutil and PyYAML,
docs/architecture.md; ``datetime.fromisoformat`` of Python 3.10 takes neither ``Z``
nor nanoseconds).
A parsed time more than :data:`MAX_AHEAD` seconds after the reading time is not
believed (a wrong clock or a date in a message): the caller keeps the reading time.
"""
from __future__ import annotations

import re
from datetime import datetime

from datetime import timedelta, timezone

SCAN_CHARS = 200
MAX_AHEAD = 86400.0  # seconds

_ISO = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|z|[+-]\d{2}:?\d{2})?"
_ISO_PARTS = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
                        r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?")
# At the start: an optional <PRI> (and RFC 5424's version), then an ISO time.
_LEADING_ISO = re.compile(rf"(?:<\d{{1,3}}>(?:\d{{1,2}} )?)?({_ISO})(?=[\s\]|,;]|$)")
# A logfmt or JSON field holding an ISO time.
_FIELD_ISO = re.compile(rf"""(?:^|[\s{{,])"?(?:time|ts|timestamp|@timestamp|datetime)"?\s*[=:]\s*"?({_ISO})"?""")
_RFC3164 = re.compile(r"(?:<\d{1,3}>)?([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2})(?=\s)")
_CLF = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                        "Nov", "Dec"), start=1)}


def _iso(text: str) -> float | None:
    """Unix seconds of an ISO 8601 date-time matched by :data:`_ISO`."""
    match = _ISO_PARTS.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, utc, sign, zh, zm = match.groups()
    tz = None  # no zone: local time
    if utc:
        tz = timezone.utc
    elif sign:
        offset = timedelta(hours=int(zh), minutes=int(zm))
        tz = timezone(-offset if sign == "-" else offset)
    try:
        stamp = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((frac or "0")[:6].ljust(6, "0")), tzinfo=tz)
        return stamp.timestamp()
    except (ValueError, OverflowError):
        return None


def _rfc3164(match: re.Match, now: float) -> float | None:
    month = _MONTHS.get(match.group(1))
    if month is None:
        return None
    year = datetime.fromtimestamp(now).year
    for candidate in (year, year - 1):
        try:
            ts = datetime(candidate, month, int(match.group(2)), int(match.group(3)), int(match.group(4)),
                          int(match.group(5))).timestamp()
        except ValueError:  # Feb 29 of a year without it
            continue
        if ts <= now + MAX_AHEAD:
            return ts
    return None


def _clf(match: re.Match) -> float | None:
    month = _MONTHS.get(match.group(2))
    if month is None:
        return None
    try:
        return datetime.strptime(f"{match.group(3)}-{month:02d}-{match.group(1)} {match.group(4)}:{match.group(5)}:"
                                 f"{match.group(6)} {match.group(7)}", "%Y-%m-%d %H:%M:%S %z").timestamp()
    except ValueError:
        return None


def line_time(line: str, now: float) -> float | None:
    """Unix seconds of the timestamp ``line`` starts with (or carries as a ``time=``
    field, or an access log's ``[...]``), or None when there is none or it is more than
    :data:`MAX_AHEAD` seconds after ``now`` (the reading time, Unix seconds)."""
    head = line[:SCAN_CHARS]
    ts: float | None = None
    if (match := _LEADING_ISO.match(head)) is not None:
        ts = _iso(match.group(1))
    elif (match := _RFC3164.match(head)) is not None:
        ts = _rfc3164(match, now)
    elif (match := _FIELD_ISO.search(head)) is not None:
        ts = _iso(match.group(1))
    elif (match := _CLF.search(head)) is not None:
        ts = _clf(match)
    if ts is None or ts > now + MAX_AHEAD or ts < 0:
        return None
    return ts
