"""The dispatcher: from the alert store to rows of the outbox, as Alertmanager's
``dispatch`` package and the filtering stages of its ``notify`` pipeline.

Routing (``dispatch/route.go``): an alert walks the route tree depth first; a route
matches when all its matchers do; the first matching child wins unless it has
``continue: true``, in which case later siblings are tried too; a route none of whose
children matches is itself the match. Children inherit ``receiver``, ``group_by`` and the
three timers from their parent (``mute_time_intervals`` and ``active_time_intervals``
are not inherited).

Grouping and timing (``dispatch/dispatch.go``): each matching route puts the alert into
the aggregation group of its ``group_by`` labels (``...``: all labels). A new group
flushes after ``group_wait`` (at once when the alert started more than ``group_wait``
ago), then every ``group_interval``. A flush leaves out alerts that are muted (every
muter of Services.muting: silences, maintenance windows, deploy holds, inhibition) and
sends nothing while a route's ``mute_time_intervals`` contain the time or its
``active_time_intervals`` do not. Then, per integration of the receiver, the
notification log decides (``notify/dedup_stage.go``): notify when it never notified the
group and something fires, when an alert fires that the last notification did not
have, when everything resolved that it had notified firing, when (with
``send_resolved``) an alert resolved that it had not notified resolved, or when
``repeat_interval`` passed since the last notification. Resolved alerts leave the group
after a flush; an empty group is dropped.

The notification log is the outbox table itself (console/notify/outbox.py): the last row
per receiver, integration and group gives the firing and resolved alerts notified and
when, so a restart does not notify again what was already queued. Each row's
``dedup_key`` hashes the decision (receiver, integration, group, the alerts' states and
the row it follows), so the same decision taken twice is queued once.

Several consoles on one database: only the leader routes, flushes and queues (``leads``);
the alerts posted to any console reach the leader's store through the database
(console/notify/posted.py). A follower that becomes leader routes its store afresh and
reads the notification log, as a console does at start.

Threading: routing and flush decisions run on the dispatcher's own thread
(``dispatch`` executor); rows are written through the database writer; the loop that
drives both runs on the IOLoop.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.alerting.handlers import rfc3339
from console.config import Config, ConfigError
from console.i18n import message_of
from console.notify import outbox
from console.notify.config import DEFAULT_GROUP_INTERVAL_S, DEFAULT_GROUP_WAIT_S, DEFAULT_REPEAT_INTERVAL_S, \
    DEFAULT_RESOLVE_TIMEOUT_S, NotificationsConfig, RouteConfig, read_current
from console.notify.inhibit import DEFAULT_INHIBIT_RULES, Inhibitor
from console.matchers import Matcher, matches_all, sort_key, to_string
from console.notify.model import NotifyAlert
from console.notify.muting import Muting
from console.notify.store import AlertStore
from console.notify.timeinterval import TimeInterval
from console.storage.database import Database
from console.storage.models import Notification

log = logging.getLogger("fleetdeck.notify")

NFLOG_RETENTION_S = 120 * 3600  # Alertmanager's default --data.retention: older log entries are forgotten
IDLE_WAKE_S = 1.0  # the loop looks at the clock at least this often
GC_EVERY_S = 60.0  # resolved alerts are collected at most this often


def go_quote(value: str) -> str:
    """Go's ``%q`` of a string for the characters label values hold (``LabelSet.String``)."""
    return orjson.dumps(value).decode().replace("\\u007f", "\\x7f")


def labelset_string(labels: Mapping[str, str]) -> str:
    """prometheus/common ``LabelSet.String``: ``{a="1", b="2"}`` sorted by the rendered pair."""
    return "{" + ", ".join(sorted(f"{k}={go_quote(v)}" for k, v in labels.items())) + "}"


@dataclass
class Route:
    """A node of the route tree with its inherited options; ``idx`` numbers routes
    children first, as Alertmanager does; ``key`` is its ``Route.Key()``."""

    receiver: str
    group_by: frozenset[str]
    group_by_all: bool
    group_wait: float
    group_interval: float
    repeat_interval: float
    matchers: list[Matcher]
    continue_: bool = False
    mute_time_intervals: list[str] = field(default_factory=list)
    active_time_intervals: list[str] = field(default_factory=list)
    routes: list["Route"] = field(default_factory=list)
    parent: "Route | None" = field(default=None, repr=False)
    idx: int = 0
    key: str = ""

    def match(self, labels: Mapping[str, str]) -> list["Route"]:
        """The routes an alert with ``labels`` goes to (``Route.Match``), depth first."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by_all:
            return dict(labels)
        return {k: v for k, v in labels.items() if k in self.group_by}

    def walk(self):
        yield self
        for child in self.routes:
            yield from child.walk()


def build_route(config: RouteConfig, parent: Route | None = None, counter: list[int] | None = None) -> Route:
    """The runtime tree of ``config`` (Alertmanager's ``NewRoute``)."""
    counter = counter if counter is not None else [0]
    group_by: frozenset[str]
    if parent is None:
        receiver, group_by, group_by_all = "", frozenset(), False
        timers = (DEFAULT_GROUP_WAIT_S, DEFAULT_GROUP_INTERVAL_S, DEFAULT_REPEAT_INTERVAL_S)
    else:
        receiver, group_by, group_by_all = parent.receiver, parent.group_by, parent.group_by_all
        timers = (parent.group_wait, parent.group_interval, parent.repeat_interval)
    if config.receiver:
        receiver = config.receiver
    if config.group_by is not None:
        group_by_all = config.group_by == ["..."]
        group_by = frozenset() if group_by_all else frozenset(config.group_by)
    wait, interval, repeat = (given if given is not None else inherited for given, inherited in
                              zip((config.group_wait, config.group_interval, config.repeat_interval), timers))
    route = Route(receiver=receiver, group_by=group_by, group_by_all=group_by_all, group_wait=wait,
                  group_interval=interval, repeat_interval=repeat,
                  matchers=sorted(config.all_matchers(), key=sort_key), continue_=config.continue_,
                  mute_time_intervals=list(config.mute_time_intervals),
                  active_time_intervals=list(config.active_time_intervals), parent=parent)
    route.key = (parent.key + "/" if parent is not None else "") + to_string(route.matchers)
    route.routes = [build_route(child, route, counter) for child in config.routes]
    route.idx = counter[0]
    counter[0] += 1
    return route


@dataclass
class AggrGroup:
    """The alerts of one route with the same group labels (``aggrGroup``)."""

    route: Route
    labels: dict[str, str]
    key: str  # Alertmanager's group key: ROUTE_KEY:{group labels}
    next_flush: float
    alerts: dict[str, NotifyAlert] = field(default_factory=dict)


@dataclass(frozen=True)
class LogEntry:
    """What a receiver's integration was last notified about a group (``nflogpb.Entry``)."""

    firing: frozenset[str]
    resolved: frozenset[str]
    ts: float
    dedup_key: str


def needs_update(entry: LogEntry | None, firing: set[str], resolved: set[str], send_resolved: bool,
                 repeat_s: float, now: float) -> bool:
    """Alertmanager's ``DedupStage.needsUpdate``."""
    if entry is None:
        return bool(firing)
    if not entry.firing >= firing:
        return True
    if not firing:
        return bool(entry.firing)
    if send_resolved and not entry.resolved >= resolved:
        return True
    return entry.ts < now - repeat_s


def time_muted(route: Route, intervals: Mapping[str, list[TimeInterval]], now: float) -> list[str]:
    """The time intervals that keep ``route`` from notifying at ``now``: those of its
    ``mute_time_intervals`` containing it, else all its ``active_time_intervals`` when none
    contains it (Alertmanager's TimeMuteStage and TimeActiveStage); empty: it may notify."""
    muting = [name for name in route.mute_time_intervals if any(t.contains(now) for t in intervals.get(name, ()))]
    if muting:
        return muting
    if route.active_time_intervals and not any(t.contains(now) for name in route.active_time_intervals
                                               for t in intervals.get(name, ())):
        return list(route.active_time_intervals)
    return []


def _sort_key(alert: NotifyAlert) -> tuple:
    """Alertmanager's ``AlertSlice.Less``: by ``job``, then ``instance`` (alerts having the
    label first), then the label sets."""
    key: list = []
    for name in ("job", "instance"):
        value = alert.labels.get(name)
        key.append((0, value) if value is not None else (1, ""))
    key.append(sorted(alert.labels.items()))
    return tuple(key)


def _sorted(mapping: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(mapping.items()))


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common


class Dispatcher:
    """Routes the alerts of ``store`` and queues notifications (see the module's text).
    ``config`` None: notifications are off (no route; alerts are still stored and muted).
    ``tick(now)`` does one round (tests call it with their own clock); ``start()`` runs
    rounds on the IOLoop whenever an alert arrives or a group is due."""

    def __init__(self, db: Database, store: AlertStore, muting: Muting, config: NotificationsConfig | None, *,
                 inhibitor: Inhibitor | None = None, default_inhibit_rules: bool = True, external_url: str = "",
                 clock: Callable[[], float] = time.time, leads: Callable[[], bool] = lambda: True) -> None:
        self.db = db
        self.store = store
        # Of several consoles on one database only the leader groups and notifies: each
        # console's store holds the posted alerts (console/notify/posted.py), the leader's
        # also those of the rules it evaluates.
        self.leads = leads
        self.muting = muting
        self.inhibitor = inhibitor
        self.external_url = external_url
        self.clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dispatch")
        self._incoming: list[NotifyAlert] = []
        self._incoming_lock = Lock()
        # Touched only on the dispatch thread:
        self._groups: dict[tuple[int, tuple], AggrGroup] = {}  # (route idx, group labels) -> group
        self._nflog: dict[tuple[str, str, str], LogEntry] = {}
        self._nflog_loaded = False
        self._last_gc = 0.0
        self._round: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        # Called after rows are queued (DeliveryWorker.wake), so they go out without waiting for its poll.
        self.on_enqueued: Callable[[], None] | None = None
        self.apply(config, default_inhibit_rules)
        store.subscribe(self._on_put)

    # -- configuration ---------------------------------------------------------------------
    async def reload(self, config: Config) -> dict[str, str]:
        """Read ``alerting.notifications`` again (the configuration file, or the file it
        names) and use it from the next round on. Returns ``{"alerting.notifications":
        message}`` when it is refused (the previous configuration keeps running), else {}."""
        loop = asyncio.get_running_loop()
        try:
            notifications, defaults = await loop.run_in_executor(self._executor, read_current, config)
        except ConfigError as exc:
            log.error("notification configuration refused (the previous one keeps running): %s", exc)
            return {"alerting.notifications": message_of(exc)}
        if self._round is None:
            self._round = asyncio.Lock()
        async with self._round:
            await loop.run_in_executor(self._executor, self.apply, notifications, defaults)
        return {}

    def apply(self, config: NotificationsConfig | None, default_inhibit_rules: bool = True) -> None:
        """Use ``config`` from the next round on (call between rounds): the groups are
        dropped and the stored alerts routed again (the notification log keeps what was
        notified, so nothing already notified is notified again)."""
        self.config = config
        self.root = build_route(config.route) if config is not None else None
        self.intervals: dict[str, list[TimeInterval]] = config.intervals() if config is not None else {}
        self.integrations: dict[str, list[tuple[str, object]]] = {}
        if config is not None:
            for receiver in config.receivers:
                found: list[tuple[str, object]] = []
                for name in type(receiver).model_fields:
                    if name.endswith("_configs"):
                        kind = name.removesuffix("_configs")
                        found.extend((f"{kind}[{i}]", c) for i, c in enumerate(getattr(receiver, name)))
                self.integrations[receiver.name] = found
        self.resolve_timeout_s = config.global_.resolve_timeout if config is not None else DEFAULT_RESOLVE_TIMEOUT_S
        if self.inhibitor is not None:
            self.inhibitor.set_rules([*(DEFAULT_INHIBIT_RULES if default_inhibit_rules else ()),
                                      *(config.inhibit_rules if config is not None else ())])
        self._reset = True

    def receivers_of(self, labels: Mapping[str, str]) -> list[str]:
        """The receivers an alert with ``labels`` is routed to, one per matching route
        (``Route.Match``, depth first), as Alertmanager's API lists an alert's receivers;
        [] when no notification routing is configured. Any thread: the tree in use is
        replaced whole on reload, never changed."""
        root = self.root
        return [] if root is None else [route.receiver for route in root.match(labels)]

    # -- muting ------------------------------------------------------------------------------
    def muted_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        """Muter (registered on Services.muting, so the history and the API say it):
        ``time_interval:<name>`` when every route ``labels`` goes to is muted at ``now`` by
        its time intervals; empty otherwise (a route that notifies is handled per group)."""
        root, intervals = self.root, self.intervals
        if root is None or not intervals:
            return []
        reasons: list[str] = []
        for route in root.match(labels):
            names = time_muted(route, intervals, now)
            if not names:
                return []
            reasons.extend(f"time_interval:{name}" for name in names if f"time_interval:{name}" not in reasons)
        return reasons

    # -- input -------------------------------------------------------------------------------
    def _on_put(self, alerts: list[NotifyAlert]) -> None:
        """AlertStore subscriber: runs on the putting thread, so it only queues."""
        with self._incoming_lock:
            self._incoming.extend(alerts)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    # -- running -----------------------------------------------------------------------------
    def start(self) -> None:
        """Run rounds on the running loop until ``close``."""
        self._loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run(wake))

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            wake.clear()  # before the round: a put during it makes the next one start at once
            try:
                next_due = await self.tick(self.clock())
            except Exception:  # a database outage: logged, retried at the next round
                log.exception("notification dispatch round failed")
                next_due = None
            delay = IDLE_WAKE_S if next_due is None else min(IDLE_WAKE_S, max(0.0, next_due - self.clock()))
            # Woken by a put, or the timer ran out (a group is due): either way, a round.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)

    async def tick(self, now: float) -> float | None:
        """One round at ``now`` (Unix seconds): route the alerts put since the last round,
        flush the groups that are due, queue the notifications. Returns when the next
        group is due (None: no group)."""
        if self._round is None:
            self._round = asyncio.Lock()
        async with self._round:
            loop = asyncio.get_running_loop()
            leading = self.leads()
            if not self._nflog_loaded and leading:
                self._nflog = await self.db.read(self._load_nflog, now)
                self._nflog_loaded = True
            if now - self._last_gc >= GC_EVERY_S:
                self._last_gc = now
                await loop.run_in_executor(self._executor, self._gc, now)
            if not leading:
                # A follower: nothing is routed here. Should it lead later, it routes
                # every stored alert afresh and reads the notification log the leader
                # kept, as after a restart.
                await loop.run_in_executor(self._executor, self._follow)
                return None
            flushes, rows = await loop.run_in_executor(self._executor, self._prepare, now)
            if rows:
                await self.db.write(self._enqueue, rows, now)
                if self.on_enqueued is not None:
                    self.on_enqueued()
            return await loop.run_in_executor(self._executor, self._after_flush, flushes, rows, now)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)

    # -- the dispatch thread -----------------------------------------------------------------
    def _gc(self, now: float) -> None:
        """Forget alerts resolved long enough ago (the store's retention) and the inhibitor's
        resolved sources, as Alertmanager's alert provider and inhibitor collect theirs."""
        self.store.gc(now)
        if self.inhibitor is not None:
            self.inhibitor.gc(now)

    def _follow(self) -> None:
        self._groups = {}
        with self._incoming_lock:
            self._incoming = []
        self._reset = True
        self._nflog_loaded = False

    def _prepare(self, now: float) -> tuple[list, list[dict]]:
        if self._reset:
            # A new configuration: route every stored alert again into fresh groups.
            self._reset = False
            self._groups = {}
            with self._incoming_lock:
                self._incoming = []
            incoming = self.store.snapshot()
        else:
            with self._incoming_lock:
                incoming, self._incoming = self._incoming, []
        root = self.root
        if root is not None:
            for alert in incoming:
                self._route(root, alert, now)
        flushes, rows = [], []
        for group in list(self._groups.values()):
            if group.next_flush > now:
                continue
            group.next_flush = now + group.route.group_interval
            sent = dict(group.alerts)  # the versions this flush looked at
            flushes.append((group, sent))
            rows.extend(self._flush(group, sent, now))
        return flushes, rows

    def _route(self, root: Route, alert: NotifyAlert, now: float) -> None:
        fp = alert.fingerprint  # computed once: the groups key their alerts by it
        for route in root.match(alert.labels):
            labels = route.group_labels(alert.labels)
            gid = (route.idx, tuple(sorted(labels.items())))
            group = self._groups.get(gid)
            if group is None:
                # Timed from when the alert reached the store (a round may run a little later).
                arrived = alert.updated_at or now
                group = AggrGroup(route, labels, f"{route.key}:{labelset_string(labels)}",
                                  arrived + route.group_wait)
                self._groups[gid] = group
                if alert.starts_at + route.group_wait < arrived:  # old enough: flush at once
                    group.next_flush = now
            group.alerts[fp] = alert

    def _flush(self, group: AggrGroup, alerts: dict[str, NotifyAlert], now: float) -> list[dict]:
        """The rows this flush of ``group`` queues (none when nothing needs notifying)."""
        route = group.route
        if time_muted(route, self.intervals, now):
            return []
        kept = [(fp, a) for fp, a in alerts.items() if not self.muting.muted_by(a.labels, now)]
        if not kept:
            return []
        kept.sort(key=lambda item: _sort_key(item[1]))
        firing = {fp for fp, a in kept if not a.resolved(now)}
        resolved = {fp for fp, a in kept if a.resolved(now)}
        rows = []
        for integration, settings in self.integrations.get(route.receiver, []):
            send_resolved = getattr(settings, "send_resolved", True)
            entry = self._nflog.get((route.receiver, integration, group.key))
            if not needs_update(entry, firing, resolved, send_resolved, route.repeat_interval, now):
                continue
            shown = kept if send_resolved else [(fp, a) for fp, a in kept if not a.resolved(now)]
            basis = "\x00".join([route.receiver, integration, group.key, ",".join(sorted(firing)),
                                 ",".join(sorted(resolved)), entry.dedup_key if entry else ""])
            dedup_key = hashlib.sha256(basis.encode()).hexdigest()
            rows.append({"receiver": route.receiver, "integration": integration, "group_key": group.key,
                         "dedup_key": dedup_key, "firing": frozenset(firing), "resolved": frozenset(resolved),
                         "payload": self._payload(group, shown, now, getattr(settings, "max_alerts", 0) or 0)
                         if shown else None})
        return rows

    def _payload(self, group: AggrGroup, shown: list[tuple[str, NotifyAlert]], now: float, max_alerts: int) -> str:
        """Alertmanager's webhook version-4 message (``notify/webhook``, ``template.Data``)
        of ``shown`` (fingerprint, alert) pairs. With ``max_alerts``, the alerts past it are
        dropped first and only counted (``truncatedAlerts``): status and common labels are
        those of the alerts sent, as Alertmanager's webhook computes them."""
        truncated = max(0, len(shown) - max_alerts) if max_alerts else 0
        shown = shown[:len(shown) - truncated]
        alerts = [a for _, a in shown]
        status = "firing" if any(not a.resolved(now) for a in alerts) else "resolved"
        body = {
            "receiver": group.route.receiver,
            "status": status,
            # Maps with sorted keys, as Go marshals them, so the JSON is Alertmanager's byte for byte.
            "alerts": [{"status": a.status(now), "labels": _sorted(a.labels), "annotations": _sorted(a.annotations),
                        "startsAt": rfc3339(a.starts_at),
                        # A firing alert's end is not known yet: Go's zero time, as Alertmanager.
                        "endsAt": rfc3339(a.ends_at if a.resolved(now) else None),
                        "generatorURL": a.generator_url, "fingerprint": fp}
                       for fp, a in shown],
            "groupLabels": _sorted(group.labels),
            "commonLabels": _sorted(_common([a.labels for a in alerts])),
            "commonAnnotations": _sorted(_common([a.annotations for a in alerts])),
            "externalURL": self.external_url,
            "version": "4",
            "groupKey": group.key,
            "truncatedAlerts": truncated,
        }
        return orjson.dumps(body).decode()

    def _after_flush(self, flushes: list, rows: list[dict], now: float) -> float | None:
        """The rows are queued: the log remembers each decision (also one that sent
        nothing, all resolved with send_resolved off, so the log forgets the alerts it had
        notified firing, as Alertmanager's nflog does); resolved alerts unchanged since
        the flush leave their group; empty groups are dropped. Returns when the next group
        is due."""
        for row in rows:
            self._nflog[(row["receiver"], row["integration"], row["group_key"])] = LogEntry(
                row["firing"], row["resolved"], now, row["dedup_key"])
        for group, sent in flushes:
            for fp, alert in sent.items():
                if alert.resolved(now) and group.alerts.get(fp) is alert:
                    del group.alerts[fp]
        for gid in [gid for gid, g in self._groups.items() if not g.alerts]:
            del self._groups[gid]
        return min((g.next_flush for g in self._groups.values()), default=None)

    # -- the notification log -----------------------------------------------------------------
    @staticmethod
    def _enqueue(session: Session, rows: list[dict], now: float) -> None:
        outbox.enqueue_many(session, [{k: row[k] for k in ("receiver", "integration", "group_key", "dedup_key",
                                                             "payload")} for row in rows if row["payload"] is not None],
                            now)

    @staticmethod
    def _load_nflog(session: Session, now: float) -> dict[tuple[str, str, str], LogEntry]:
        """The last row of each receiver, integration and group of the last
        NFLOG_RETENTION_S: what it notified firing and resolved, and when."""
        last = (select(func.max(Notification.id)).where(Notification.created_at >= now - NFLOG_RETENTION_S)
                .group_by(Notification.receiver, Notification.integration, Notification.group_key))
        out = {}
        for row in session.execute(select(Notification.receiver, Notification.integration, Notification.group_key,
                                          Notification.payload, Notification.created_at, Notification.dedup_key)
                                   .where(Notification.id.in_(last))):
            try:
                alerts = orjson.loads(row.payload).get("alerts", [])
            except (orjson.JSONDecodeError, AttributeError):
                continue
            firing = frozenset(a.get("fingerprint", "") for a in alerts if a.get("status") == "firing")
            resolved = frozenset(a.get("fingerprint", "") for a in alerts if a.get("status") == "resolved")
            out[(row.receiver, row.integration, row.group_key)] = LogEntry(firing, resolved, row.created_at,
                                                                           row.dedup_key)
        return out
