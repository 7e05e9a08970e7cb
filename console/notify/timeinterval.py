"""Named time intervals (``time_intervals``) as Alertmanager's ``timeinterval`` package:
a route's ``mute_time_intervals`` keep it from notifying while one of them contains the
current time, its ``active_time_intervals`` let it notify only while one does.

One interval holds optional lists of ``times`` (``{start_time: "HH:MM", end_time:
"HH:MM"}``, start inclusive, end exclusive, ``24:00`` allowed as an end), ``weekdays``
(``monday``, ``monday:friday``), ``days_of_month`` (``1``, ``1:5``, ``-3:-1`` counted from
the end of the month, clamped to it), ``months`` (``january:march`` or ``1:3``),
``years`` (``2024:2026``) and a ``location`` (an IANA zone such as ``Asia/Shanghai``, via
``zoneinfo``; default UTC). A time is in the interval when, in that zone, every list
given has a range containing it. Source: prometheus/alertmanager
``timeinterval/timeinterval.go`` (``ContainsTime`` and the parsers' checks).
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from console.i18n import tx

WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_TIME = re.compile(r"(([01][0-9])|(2[0-3])):[0-5][0-9]|24:00")

Range = tuple[int, int]


@dataclass(frozen=True)
class TimeInterval:
    """One parsed interval; a None list means "any". ``times`` are minutes of the day
    ``[start, end)``; the other ranges are inclusive; weekdays 0 = Sunday."""

    times: tuple[Range, ...] | None = None
    weekdays: tuple[Range, ...] | None = None
    days_of_month: tuple[Range, ...] | None = None
    months: tuple[Range, ...] | None = None
    years: tuple[Range, ...] | None = None
    location: str | None = None

    def contains(self, ts: float) -> bool:
        """Whether the Unix time ``ts`` falls in this interval."""
        if self.location == "Local":
            t = datetime.fromtimestamp(ts).astimezone()
        else:
            t = datetime.fromtimestamp(ts, ZoneInfo(self.location) if self.location else timezone.utc)
        if self.times is not None:
            minute = t.hour * 60 + t.minute
            if not any(start <= minute < end for start, end in self.times):
                return False
        if self.days_of_month is not None:
            days = calendar.monthrange(t.year, t.month)[1]
            found = False
            for begin, end in self.days_of_month:
                begin = days + begin + 1 if begin < 0 else begin
                end = days + end + 1 if end < 0 else end
                if begin > days:  # a day this month does not have
                    continue
                begin, end = _clamp(begin, -days, days), _clamp(end, -days, days)
                if begin <= t.day <= end:
                    found = True
                    break
            if not found:
                return False
        if self.months is not None and not any(b <= t.month <= e for b, e in self.months):
            return False
        weekday = (t.weekday() + 1) % 7  # Python: Monday = 0; Go: Sunday = 0
        if self.weekdays is not None and not any(b <= weekday <= e for b, e in self.weekdays):
            return False
        if self.years is not None and not any(b <= t.year <= e for b, e in self.years):
            return False
        return True


def _clamp(n: int, lo: int, hi: int) -> int:
    return lo if n <= lo else hi if n >= hi else n


def _range(text: str, member) -> Range:
    text = str(text).lower()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 2:
            raise ValueError(tx("couldn't parse range {text}, invalid format", text=text))
        return member(parts[0]), member(parts[1])
    value = member(text)
    return value, value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(tx("{text} is not a number", text=repr(text))) from None


def _weekday(text: str) -> int:
    if text not in WEEKDAYS:
        raise ValueError(tx("{text} is not a valid weekday", text=text))
    return WEEKDAYS[text]


def _month(text: str) -> int:
    if text in MONTHS:
        return MONTHS[text]
    try:
        return int(text)
    except ValueError:
        raise ValueError(tx("{text} is not a valid month", text=text)) from None


def parse_time(text: str) -> int:
    """``"HH:MM"`` (or ``"24:00"``) -> minutes since midnight."""
    if not isinstance(text, str) or _TIME.fullmatch(text) is None:
        raise ValueError(tx("couldn't parse timestamp {text}, invalid format", text=text))
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_times(entry: object) -> Range:
    if not isinstance(entry, dict) or set(entry) - {"start_time", "end_time"}:
        raise ValueError(tx("must be a mapping with start_time and end_time only"))
    if not entry.get("start_time") or not entry.get("end_time"):
        raise ValueError(tx("both start and end times must be provided"))
    start, end = parse_time(entry["start_time"]), parse_time(entry["end_time"])
    if start >= end:
        raise ValueError(tx("start time cannot be equal or greater than end time"))
    return start, end


def parse_weekdays(text: str) -> Range:
    begin, end = _range(text, _weekday)
    if begin > end:
        raise ValueError(tx("start day cannot be before end day"))
    return begin, end


def parse_days_of_month(text: str) -> Range:
    begin, end = _range(text, _int)
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(tx("{day} is not a valid day of the month: out of range", day=day))
    if begin < 0 < end:
        raise ValueError(tx("end day must be negative if start day is negative"))
    # Months of 28 days are the shortest: refuse ranges that are empty in every month.
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(tx("end day {end} is always before start day {begin}", end=end, begin=begin))
    return begin, end


def parse_months(text: str) -> Range:
    begin, end = _range(text, _month)
    for month in (begin, end):
        if not 1 <= month <= 12:
            raise ValueError(tx("{month} is not a valid month: out of range", month=month))
    if begin > end:
        raise ValueError(tx("end month {end} is before start month {begin}", end=end, begin=begin))
    return begin, end


def parse_years(text: str) -> Range:
    begin, end = _range(text, _int)
    if begin > end:
        raise ValueError(tx("end year {end} is before start year {begin}", end=end, begin=begin))
    return begin, end


def parse_location(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(tx("must be an IANA time zone name such as Europe/Berlin"))
    if name == "Local":  # Go's name for the machine's zone
        return name
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(tx("unknown time zone {name}", name=repr(name))) from None
    return name
