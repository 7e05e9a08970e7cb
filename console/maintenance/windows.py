"""One maintenance window: when it is open and which alerts it covers.

When: ``dtstart`` is a local wall-clock time (``2026-11-28T02:00:00``, no offset) in the
IANA zone ``timezone``; ``rrule`` an iCalendar recurrence rule (RFC 5545 section 3.3.10,
parsed by python-dateutil's ``rrulestr``) expanded in local time, so ``BYHOUR=2`` means
02:00 on the wall clock summer and winter; each occurrence lasts ``duration_s`` seconds
of elapsed time; ``until`` (Unix seconds, optional) closes the window for good.

Daylight saving time follows RFC 5545 section 3.3.5: a local time that does not exist
(02:30 on the day clocks jump from 02:00 to 03:00) is read with the offset before the
jump, so the occurrence starts at 03:30 new time and still lasts ``duration_s``; a local
time that happens twice (01:30 on the day clocks fall back) is its first instance. These
are Python's ``fold=0`` rules (PEP 495), which zoneinfo applies.

Which alerts: every label matcher (Alertmanager's syntax ``name="value"``, ``!=``,
``=~``, ``!~``; regular expressions are RE2, anchored at both ends as Alertmanager's)
must match, and for each shortcut given the alert must be on one of its hosts (label
``host``, else ``instance``), of one of its apps (label ``app``, or a host the app
deploys to) or in one of its environments (label ``environment``, or a host whose agent
labels say ``environment: NAME``).
"""
from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule as du_rrule

from console.errors import InvalidInput as _InvalidInput
from console.i18n import message_of, tx
from console.promql.ast import LabelMatcher
from console.promql.storage import BadRegex, compile_matcher

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Alertmanager's matcher (pkg/labels/parse.go): NAME OP VALUE, the value double-quoted
# (Go escapes) or bare up to the end.
_MATCHER_RE = re.compile(r'\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|!~|!=|=)\s*(".*"|[^"]*?)\s*')
# A window recurs at most hourly: finer rules are not maintenance and cost an occurrence
# per minute to expand.
FREQUENCIES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY")
FIRST_WITHIN_YEARS = 10  # a rule must have an occurrence this soon after dtstart
MAX_DURATION_S = 31 * 86400
MAX_LIST = 100  # matchers, hosts, apps, environments per window
HORIZON_TS = 32503680000.0  # 3000-01-01: occurrences are never expanded beyond it
LOOKAHEAD_S = 10 * 366 * 86400  # how far ahead the next occurrences are looked for


class InvalidInput(_InvalidInput):
    """A window setting refused (400 ``invalid_field``, ``details.field`` names it)."""

    default_code = "invalid_field"


def parse_matcher(text: str) -> tuple[LabelMatcher, Callable[[str], bool]]:
    """``name="value"`` (or ``!=``, ``=~``, ``!~``; the value may be bare) -> the matcher
    and its predicate on a label value (``""`` when the label is absent). Raises
    InvalidInput naming the problem."""
    m = _MATCHER_RE.fullmatch(text)
    if not m:
        raise InvalidInput(tx("bad matcher {matcher}: expected NAME=\"VALUE\" with = != =~ or !~", matcher=repr(text)),
                           {"field": "matchers"})
    name, op, raw = m.groups()
    value = raw
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidInput(tx("bad matcher {matcher}: the quoted value is not a valid string", matcher=repr(text)),
                               {"field": "matchers"}) from None
        if not isinstance(value, str):
            raise InvalidInput(tx("bad matcher {matcher}", matcher=repr(text)), {"field": "matchers"})
    matcher = LabelMatcher(name, op, value)
    try:
        return matcher, compile_matcher(matcher)
    except BadRegex as exc:
        raise InvalidInput(tx("bad matcher {matcher}: {reason}", matcher=repr(text), reason=message_of(exc)),
                           {"field": "matchers"}) from None


def matcher_text(m: LabelMatcher) -> str:
    return f"{m.name}{m.op}{json.dumps(m.value, ensure_ascii=False)}"


def parse_duration(text: str | float | int) -> float:
    """Seconds, or a Prometheus duration such as ``2h`` or ``1h30m``; raises InvalidInput."""
    from console.alerting.rules import parse_duration as prom_duration

    if isinstance(text, bool):
        raise InvalidInput(tx("duration: expected seconds or a duration such as 2h"), {"field": "duration"})
    try:
        if isinstance(text, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", text.strip()):
            text = float(text)
        seconds = float(text) if isinstance(text, (int, float)) else prom_duration(text)
    except ValueError:
        raise InvalidInput(tx("duration: expected seconds or a duration such as 2h, got {value}", value=repr(text)),
                           {"field": "duration"}) from None
    if not 0 < seconds <= MAX_DURATION_S:
        raise InvalidInput(tx("duration: must be more than 0 and at most {days} days", days=MAX_DURATION_S // 86400),
                           {"field": "duration"})
    return seconds


@dataclass
class Window:
    """A validated window (see the module docstring). ``occurrences`` and ``open_at``
    are thread-safe for readers (the cache is replaced whole)."""

    name: str
    dtstart: datetime  # naive local time
    duration_s: float
    rrule: str
    timezone: str
    matchers: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    apps: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    until: float | None = None
    comment: str = ""
    created_by: str = ""
    created_at: float = 0.0
    _rule: du_rrule.rrule | None = field(default=None, repr=False)
    _zone: ZoneInfo | None = field(default=None, repr=False)
    _tests: list = field(default_factory=list, repr=False)
    # (cache from, cache to, starts, ends) in Unix seconds
    _cache: tuple[float, float, list, list] = field(default=(0.0, -1.0, [], []), repr=False)

    @classmethod
    def build(cls, name: str, dtstart: str, duration: str | float, rrule: str, timezone_name: str,
              matchers: Sequence[str] = (), hosts: Sequence[str] = (), apps: Sequence[str] = (),
              environments: Sequence[str] = (),
              until: float | None = None, comment: str = "", created_by: str = "",
              created_at: float = 0.0) -> "Window":
        """Validate and compile; raises InvalidInput (``details.field`` names the field)."""
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidInput(tx("name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
                               {"field": "name"})
        try:
            zone = ZoneInfo(timezone_name)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidInput(tx("timezone: unknown IANA time zone {zone} (e.g. Europe/Berlin)", zone=repr(timezone_name)),
                               {"field": "timezone"}) from None
        try:
            start = datetime.fromisoformat(dtstart)
        except (TypeError, ValueError):
            raise InvalidInput(tx("dtstart: expected a local date and time such as 2026-11-28T02:00:00, got {value}",
                                  value=repr(dtstart)),
                               {"field": "dtstart"}) from None
        if start.tzinfo is not None:
            raise InvalidInput(tx("dtstart: a local wall-clock time without an offset (the zone is `timezone`)"),
                               {"field": "dtstart"})
        if not 1971 <= start.year <= 2999:
            raise InvalidInput(tx("dtstart: must be between the years 1971 and 2999"), {"field": "dtstart"})
        rule = compile_rrule(rrule, start)
        for label, values in (("matchers", matchers), ("hosts", hosts), ("apps", apps),
                              ("environments", environments)):
            if len(values) > MAX_LIST or not all(isinstance(v, str) and v and "\x00" not in v for v in values):
                raise InvalidInput(tx("{field}: at most {most} non-empty strings", field=label, most=MAX_LIST), {"field": label})
        if not (matchers or hosts or apps or environments):
            raise InvalidInput(tx("a window needs a scope: matchers, hosts, apps or environments (a window muting "
                                  "every alert would hide a real outage)"), {"field": "matchers"})
        tests = [parse_matcher(m) for m in matchers]
        window = cls(name, start, parse_duration(duration), rrule.strip(), timezone_name,
                     [matcher_text(m) for m, _ in tests], list(hosts), list(apps), list(environments), until,
                     comment, created_by, created_at, rule, zone, [(m.name, fn) for m, fn in tests])
        return window

    # -- time --------------------------------------------------------------------------------
    def _to_utc(self, local: datetime) -> float:
        # fold=0 (the default): RFC 5545's reading of nonexistent and repeated local times.
        return local.replace(tzinfo=self._zone).timestamp()

    def occurrences(self, start: float, end: float, limit: int = 10_000) -> list[tuple[float, float]]:
        """``[(open, close)]`` in Unix seconds of the occurrences overlapping ``[start, end]``,
        in order, each cut at ``until``."""
        # Local times: widen by a day each way for zone offsets and by the duration for
        # occurrences that began before ``start``.
        hi_ts = end if self.until is None else min(end, self.until)
        start, hi_ts = max(start, 0.0), min(hi_ts, HORIZON_TS)
        if hi_ts < start:
            return []
        lo = datetime.fromtimestamp(max(0.0, start - self.duration_s), timezone.utc).astimezone(
            self._zone).replace(tzinfo=None)
        hi = datetime.fromtimestamp(hi_ts, timezone.utc).astimezone(self._zone).replace(tzinfo=None)
        rule = self._rule
        if rule is None:  # only Window.build makes windows, and it always compiles the rule
            raise TypeError(f"window {self.name} has no compiled rule")
        _, count, rule_until = rule_parts(rule)
        if count is None:  # bounded expansion, even for a rule with few or no matches
            until = hi + timedelta(days=1)
            if rule_until is None or rule_until > until:
                rule = rule.replace(until=until)
        out = []
        for local in rule.xafter(lo - timedelta(days=1), inc=True):
            if local > hi + timedelta(days=1):
                break
            opens = self._to_utc(local)
            closes = opens + self.duration_s
            if self.until is not None:
                closes = min(closes, self.until)
            if closes > start and opens <= end and opens < closes:
                out.append((opens, closes))
                if len(out) >= limit:
                    break
        return out

    def open_at(self, now: float) -> tuple[float, float] | None:
        """The occurrence open at ``now`` (``opens <= now < closes``), or None. Occurrences
        are expanded a week at a time and kept, so this is a bisection."""
        lo, hi, starts, ends = self._cache
        if not lo <= now <= hi:
            lo, hi = now - 3600, now + 7 * 86400
            spans = self.occurrences(lo, hi)
            starts, ends = [s for s, _ in spans], [e for _, e in spans]
            self._cache = (lo, hi, starts, ends)
        i = bisect_right(starts, now) - 1
        if i >= 0 and now < ends[i]:
            return starts[i], ends[i]
        return None

    def next_occurrences(self, now: float, count: int) -> list[tuple[float, float]]:
        """The occurrence open at ``now`` (if any) and the next ones, at most ``count``."""
        out: list[tuple[float, float]] = []
        start, step = now, 7 * 86400.0
        # Expand forward in growing steps: a yearly rule needs years, an hourly one a day.
        for _ in range(40):
            if (self.until is not None and start > self.until) or start > now + LOOKAHEAD_S:
                break
            for span in self.occurrences(start, start + step, count):
                if span[1] > now and (not out or span[0] > out[-1][0]):
                    out.append(span)
            if len(out) >= count:
                return out[:count]
            start, step = start + step, step * 2
        return out

    def local(self, ts: float) -> str:
        """Unix seconds as local time in the window's zone, ISO 8601 with the offset."""
        return datetime.fromtimestamp(ts, self._zone).isoformat()

    # -- scope -------------------------------------------------------------------------------
    def covers(self, labels: Mapping[str, str], app_hosts: Mapping[str, frozenset],
               host_environment: Mapping[str, str]) -> bool:
        """Whether ``labels`` is in the window's scope; ``app_hosts``: app -> the hosts it
        deploys to; ``host_environment``: host -> its agent label ``environment``."""
        for name, test in self._tests:
            if not test(labels.get(name, "")):
                return False
        host = labels.get("host") or labels.get("instance", "")
        if self.hosts and host not in self.hosts:
            return False
        if self.apps and not any(labels.get("app") == app or host in app_hosts.get(app, ()) for app in self.apps):
            return False
        if self.environments and labels.get("environment", host_environment.get(host)) not in self.environments:
            return False
        return True

    def public(self, now: float) -> dict:
        """The API's view: settings plus ``active`` and ``next`` (the occurrence open now or
        the next one: ``{"start", "end"}`` Unix seconds and ``start_local``/``end_local``)."""
        nxt = self.next_occurrences(now, 1)
        span, active = None, False
        if nxt:
            opens, closes = nxt[0]
            span = {"start": opens, "end": closes, "start_local": self.local(opens), "end_local": self.local(closes)}
            active = opens <= now < closes
        return {"name": self.name, "dtstart": self.dtstart.isoformat(), "duration": self.duration_s,
                "rrule": self.rrule, "timezone": self.timezone, "matchers": self.matchers, "hosts": self.hosts,
                "apps": self.apps, "environments": self.environments, "until": self.until, "comment": self.comment,
                "created_by": self.created_by, "created_at": self.created_at,
                "active": active, "next": span}


def rule_parts(rule: du_rrule.rrule) -> tuple[int, int | None, datetime | None]:
    """The FREQ (an index into ``dateutil.rrule.FREQNAMES``), COUNT and UNTIL of ``rule``:
    dateutil keeps them in attributes it does not publish (nor do its type stubs)."""
    parts = vars(rule)
    return parts["_freq"], parts["_count"], parts["_until"]


def compile_rrule(text: str, dtstart: datetime) -> du_rrule.rrule:
    """An RFC 5545 RRULE (with or without the ``RRULE:`` prefix) anchored at the naive
    local ``dtstart``. Raises InvalidInput (400) for a rule dateutil refuses, a frequency
    finer than hourly, a rule with a DTSTART of its own or a set, and a rule without an
    occurrence in the FIRST_WITHIN_YEARS years after ``dtstart``."""
    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"rrule: {why}", {"field": "rrule"})

    if not isinstance(text, str) or not text.strip() or "\n" in text.strip() or "\x00" in text:
        raise bad("expected one RRULE line such as FREQ=WEEKLY;BYDAY=SA;BYHOUR=2")
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if "DTSTART" in body.upper() or "EXDATE" in body.upper() or "RDATE" in body.upper():
        raise bad("give the start as dtstart, not inside the rule")
    try:
        rule = du_rrule.rrulestr(body, dtstart=dtstart, forceset=False, compatible=False, ignoretz=True)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise bad(f"invalid RRULE {text!r}: {exc}") from None
    if not isinstance(rule, du_rrule.rrule):
        raise bad("expected one RRULE")
    freq, _, rule_until = rule_parts(rule)
    if du_rrule.FREQNAMES[freq] not in FREQUENCIES:
        raise bad(f"FREQ={du_rrule.FREQNAMES[freq]} is finer than a maintenance window recurs; "
                  f"use one of {', '.join(FREQUENCIES)}")
    try:
        probe = rule.replace(count=None, until=dtstart.replace(year=dtstart.year + FIRST_WITHIN_YEARS))
        if rule_until is not None and rule_until.tzinfo is not None:
            raise bad("UNTIL is in UTC while dtstart is local: give UNTIL without Z, or use the window's until")
        first = next(iter(probe), None)
    except (ValueError, OverflowError) as exc:
        raise bad(f"invalid RRULE {text!r}: {exc}") from None
    if first is None:
        raise bad(f"the rule has no occurrence in the {FIRST_WITHIN_YEARS} years after dtstart")
    return rule
