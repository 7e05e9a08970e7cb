"""The alerting service: loads rule files, evaluates each group on its interval on the
service's own thread with a deadline, keeps alert state (stored, so a restart resumes
it), writes every transition to the history, stores what recording rules record as series
(through the ingest path, once per evaluation), and serves the computed series ``up``,
``fleetdeck_host_clock_skew_seconds``, ``fleetdeck_deploy_failed``, ``ALERTS`` and
``ALERTS_FOR_STATE`` to PromQL (docs/alerting.md).

Threading: rule evaluation and every change to alert state run on one thread owned by
this service (``alerting`` executor); storing state and history goes through the
database writer; readers (the API, PromQL's computed series) copy state under a lock.
"""
from __future__ import annotations

import asyncio
import logging
import hashlib
import math
import zlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from threading import Lock
from typing import Callable
from urllib.parse import quote

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from console.alerting.rules import Group, LogCondition, load_all
from console.alerting.state import FIRING, INACTIVE, PENDING, Alert, RuleEvalError, RuleState, Transition
from console.config import AlertingConfig
from console.promql import ast
from console.promql.aggregations import AggregationError
from console.promql.binary import MatchingError
from console.promql.engine import EvalError, QueryTimeout, evaluate_instant
from console.promql.functions import FunctionError
from console.ingest.batch import Batch, MetricIn, canonical_labels
from console.ingest.remote_write import COUNTER_SUFFIXES
from console.ingest.service import IngestService
from console.promql.storage import DEFAULT_JOB, BadRegex, Storage, TooManySamples, VirtualSeries, VirtualSource
from console.promql.values import NAME, Labels, Sample, get, make_labels
from console.logs.service import LogService
from console.notify.model import NotifyAlert
from console.notify.delivery import failed_series
from console.notify.muting import Muting
from console.notify.store import AlertStore
from console.storage.database import Database
from console.storage.models import RULES_HOST, AlertHistory, AlertState, Deploy, Host
from console.telemetry import ComputedGauge

log = logging.getLogger("fleetdeck.alerting")

DEFAULT_RULES = Path(__file__).resolve().parent / "default_rules.yml"
# How long ``fleetdeck_deploy_failed`` stays 1 after a deploy ended failed or rolled back,
# and its sample step: a deploy is an event, the series turns it into a window an alert
# rule can fire in (docs/alerting.md "Synthesised series").
DEPLOY_FAILED_WINDOW_S = 3600
DEPLOY_FAILED_STEP_S = 60
DEPLOY_FAILED_STATES = ("failed", "rolled_back")
RESEND_DELAY_S = 60  # Prometheus' --rules.alert.resend-delay: firing alerts stay valid 4 times this or the interval
LOG_SAMPLE_LINES = 3  # newest matching lines a log alert carries (annotation log_samples)
_EVAL_ERRORS = (QueryTimeout, TooManySamples, EvalError, MatchingError, FunctionError, AggregationError,
                BadRegex, ast.ParseError, ast.Unsupported, RuleEvalError)


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class GroupRuntime:
    group: Group
    rules: list[RuleState]
    last_evaluation: float | None = None
    evaluation_seconds: float = 0.0
    persisted: list = field(default_factory=list)  # the state rows last stored


def _grid(start_ms: int, end_ms: int, step_ms: int, mint: int, maxt: int) -> list[int]:
    """Points ``start + k*step`` inside ``[max(start, mint), min(end, maxt)]``."""
    lo, hi = max(start_ms, mint), min(end_ms, maxt)
    if hi < lo or step_ms <= 0:
        return []
    first = start_ms + -(-(lo - start_ms) // step_ms) * step_ms
    return list(range(first, hi + 1, step_ms))


class AlertingService(VirtualSource):
    """``start()`` on the IOLoop; ``reload()`` re-reads the rule files; ``evaluate_group``
    runs one group now (at ``at`` Unix seconds, default the clock)."""

    BUILTIN_NAMES = frozenset({"up", "fleetdeck_host_clock_skew_seconds", "fleetdeck_deploy_failed",
                               "fleetdeck_notifications_failed", "ALERTS", "ALERTS_FOR_STATE"})

    def __init__(self, db: Database, config: AlertingConfig, *, max_samples: int, query_timeout_s: float,
                 host_interval_s: float, down_after_intervals: float, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, logs: LogService | None = None,
                 leads: Callable[[], bool] = lambda: True) -> None:
        self.db = db
        # Of several consoles on one database only the leader evaluates; the others follow
        # the stored state (``follow``), so every replica answers the same alerts.
        self.leads = leads
        self.logs = logs  # counts the lines of log rules (a log rule without it is in error)
        self.config = config
        self.max_samples = max_samples
        self.query_timeout_s = query_timeout_s
        self.host_interval_s = host_interval_s
        self.down_after_intervals = down_after_intervals
        self.clock = clock
        self.groups: dict[str, GroupRuntime] = {}
        self.file_errors: dict[str, str] = {}
        self._lock = Lock()
        # Consulted when a transition is stored, so the history says which alerts were
        # muted and why (console/notify/muting.py); set by Services.
        self.muting: Muting | None = None
        # More computed series served with these (fleetdeck_deploy_regression of the
        # post-deploy watch, console/maintenance/deploys.py); set by Services.
        self.sources: list[VirtualSource] = []
        # Recording rules' samples are stored through it (``_store_recorded``); set by Services.
        self.ingest: IngestService | None = None
        # Firing and resolved alerts go there after each evaluation, for notifications
        # (console/notify/); set by Services with the console's public URL for links.
        self.alert_store: AlertStore | None = None
        self.external_url = ""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="alerting")
        self._tasks: list[asyncio.Task] = []
        self._eval_lock: asyncio.Lock | None = None
        self._started = False
        self._names = self.BUILTIN_NAMES
        registry = registry or CollectorRegistry()
        # With several workers (console/telemetry.py): 0 if the last (re)load failed on any
        # live worker, the most files any refused, and each group's newest evaluation time.
        self.m_reload_ok = Gauge("fleetdeck_rules_last_reload_successful",
                                 "1 if every rule file loaded at the last (re)load, else 0.", registry=registry,
                                 multiprocess_mode="livemin")
        self.m_file_errors = Gauge("fleetdeck_rule_file_errors",
                                   "Rule files refused at the last (re)load.", registry=registry,
                                   multiprocess_mode="livemax")
        self.m_evals = Counter("fleetdeck_rule_evaluations_total", "Rule evaluations.", ["rule_group"],
                               registry=registry)
        self.m_failures = Counter("fleetdeck_rule_evaluation_failures_total", "Rule evaluations that failed.",
                                  ["rule_group"], registry=registry)
        self.m_duration = Gauge("fleetdeck_rule_group_last_duration_seconds",
                                "Wall time of the group's last evaluation.", ["rule_group"], registry=registry,
                                multiprocess_mode="mostrecent")
        # Computed by the console that answers /metrics: followers hold the leader's alerts.
        ComputedGauge("fleetdeck_alerts", "Active alerts by state.",
                      lambda: {(PENDING,): self._count(PENDING), (FIRING,): self._count(FIRING)}, ["state"],
                      registry=registry)
        self.load()

    @property
    def names(self) -> frozenset:  # VirtualSource: the computed series' names
        return self._names.union(*(source.names for source in self.sources))

    # -- loading ---------------------------------------------------------------------------
    def patterns(self) -> list[str]:
        return ([str(DEFAULT_RULES)] if self.config.default_rules else []) + list(self.config.rule_files)

    def load(self) -> dict[str, str]:
        """(Re)read every rule file. A file with an error is refused whole: its previously
        loaded groups keep running. Alert state carries over to rules with the same group,
        name and expression. Returns {file: error} (also kept in ``file_errors``)."""
        groups, errors = load_all(self.patterns(), self.config.evaluation_interval)
        with self._lock:
            old = self.groups
            kept = {k: g for k, g in old.items() if g.group.file in errors}
            fresh: dict[str, GroupRuntime] = {}
            for group in groups:  # keys are unique: load_all reads each file once, names are unique per file
                previous = old.get(group.key)
                states = []
                for rule in group.rules:
                    state = RuleState(rule)
                    if previous is not None:
                        for prev in previous.rules:
                            if (prev.rule.name == rule.name and prev.rule.expr == rule.expr
                                    and prev.rule.record == rule.record and prev.active):
                                state.active, prev.active = prev.active, {}
                                break
                    states.append(state)
                runtime = GroupRuntime(group, states)
                if previous is not None:
                    runtime.persisted = previous.persisted
                    runtime.last_evaluation = previous.last_evaluation
                fresh[group.key] = runtime
            for key, runtime in kept.items():
                fresh.setdefault(key, runtime)
            self.groups = fresh
            self.file_errors = dict(errors)
        self.m_reload_ok.set(0 if errors else 1)
        self.m_file_errors.set(len(errors))
        for path, error in errors.items():
            log.error("rule file refused (previous rules of it keep running): %s", error)
        return dict(errors)

    def follow(self, session: Session, key: str) -> int:
        """On a console that does not lead: replace group ``key``'s active alerts with the
        stored ones (the leader's), so this replica's API, pages and ``ALERTS`` series
        answer what the leader decided; returns how many. Becoming the leader later, it
        evaluates on from this state, as after a restart."""
        return self.restore(session, {key}, replace=True)

    def restore(self, session: Session, only: set[str] | None = None, replace: bool = False) -> int:
        """Put the stored active alerts back into their rules (same group, name and
        expression), for the groups ``only`` names (default all); returns how many were
        restored. Timers continue as stored: a pending alert whose ``for`` elapsed meanwhile
        fires at the next evaluation that still finds its series. ``replace``: alerts not
        stored are dropped first (in the same critical section, so readers never see the
        group empty)."""
        restored = 0
        rows = list(session.scalars(select(AlertState)))
        with self._lock:
            if replace:
                for key, group in self.groups.items():
                    if only is None or key in only:
                        for state in group.rules:
                            state.active.clear()
            for row in rows:
                runtime = self.groups.get(row.group_key)
                if runtime is None or (only is not None and row.group_key not in only):
                    continue
                for state in runtime.rules:
                    if not state.rule.record and state.rule.name == row.alertname and state.rule.expr == row.expr:
                        labels = make_labels(orjson.loads(row.labels))
                        state.active[labels] = Alert(
                            labels, orjson.loads(row.annotations), row.state,
                            row.value if row.value is not None else math.nan, row.active_at, row.fired_at,
                            row.resolved_at, row.keep_firing_since, row.clear_since, row.last_eval)
                        restored += 1
                        break
            for key, runtime in self.groups.items():
                if only is None or key in only:
                    runtime.persisted = self._rows(runtime)
        return restored

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Restore stored state and start one evaluation loop per group (on the running loop)."""
        self._eval_lock = asyncio.Lock()
        self._started = True
        self.db.run(self.restore)
        self._start_loops()

    def _start_loops(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = [asyncio.ensure_future(self._loop(key)) for key in list(self.groups)]

    async def _loop(self, key: str) -> None:
        runtime = self.groups.get(key)
        if runtime is None:
            return
        # The first evaluation at least one interval after (re)load, then every interval,
        # at times on the group's grid (Prometheus' ``Group.EvalTimestamp``: multiples of
        # the interval plus an offset hashed from the group), so every console evaluates a
        # group at the same timestamps and a leader change cannot record one twice. Ticks
        # missed by a slow evaluation are skipped, as Prometheus counts missed iterations.
        at = self.slot(key, runtime.group.interval_s, self.clock() + runtime.group.interval_s)
        while True:
            runtime = self.groups.get(key)
            if runtime is None:
                return
            interval = runtime.group.interval_s
            now = self.clock()
            if at < now:
                at = self.slot(key, interval, now)
            await asyncio.sleep(at - now)
            try:
                if self.leads():
                    await self.evaluate_group(key, at)
                else:
                    await self._follow_group(key, at)
            except Exception:  # a database outage: logged, the next tick retries
                log.exception("rule group %s: evaluation failed", key)
            at += interval

    async def _follow_group(self, key: str, at: float) -> None:
        """A follower's tick: take the leader's stored alerts of group ``key`` and put
        its firing and resolved ones into this console's alert store, as the leader does
        after evaluating, so the Alertmanager API, inhibitions and canary checks of every
        replica list the same rule alerts (same labels, ``startsAt`` when it fired). Nothing
        is evaluated here, and a follower's dispatcher does not route what it is given."""
        await self.db.read(self.follow, key)
        runtime, store = self.groups.get(key), self.alert_store
        if runtime is not None and store is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._send, store, runtime, at)

    @staticmethod
    def slot(key: str, interval_s: float, after: float) -> float:
        """The first evaluation time of group ``key`` at or after ``after`` (Unix s): a
        multiple of the interval plus the group's offset (crc32 of its key, so the same on
        every console)."""
        interval_ms = max(1, round(interval_s * 1000))
        offset_ms = zlib.crc32(key.encode()) % interval_ms
        after_ms = math.ceil(after * 1000)
        return (-(-(after_ms - offset_ms) // interval_ms) * interval_ms + offset_ms) / 1000

    async def reload(self) -> dict[str, str]:
        """Re-read the rule files off the IOLoop and restart the group loops; returns
        {file: error} of the files refused."""
        loop = asyncio.get_running_loop()
        async with self._guard():
            before = set(self.groups)
            errors = await loop.run_in_executor(self._executor, self.load)
            # A group loaded for the first time (its file was refused at start) resumes its
            # stored alerts, as it would have at start.
            await self.db.read(self.restore, set(self.groups) - before)
            # Store the state as loaded: alerts of rules or groups no longer loaded would
            # otherwise come back at the next start if the rule did.
            with self._lock:
                rows = {key: self._rows(runtime) for key, runtime in self.groups.items()}
            await self.db.write(self._replace_state, rows)
            for key, group_rows in rows.items():
                self.groups[key].persisted = group_rows
            if self._started:
                self._start_loops()
        return errors

    @classmethod
    def _replace_state(cls, session: Session, rows: dict[str, list]) -> None:
        session.execute(delete(AlertState))
        for key, group_rows in rows.items():
            cls._store(session, key, [], group_rows)

    def _guard(self) -> asyncio.Lock:
        if self._eval_lock is None:
            self._eval_lock = asyncio.Lock()
        return self._eval_lock

    async def evaluate_group(self, key: str, at: float | None = None) -> list[Transition]:
        """Evaluate one group now (at ``at``, Unix seconds, default the clock) and store
        what changed. Returns the transitions."""
        loop = asyncio.get_running_loop()
        async with self._guard():
            runtime = self.groups.get(key)
            if runtime is None:
                return []
            ts = self.clock() if at is None else at
            transitions, rows, recorded = await loop.run_in_executor(self._executor, self._evaluate, runtime, ts)
            if recorded:
                await self._store_recorded(runtime.group.key, ts, recorded)
            store = self.alert_store
            if store is not None:
                # Before the history's muting is asked, so an alert of this round inhibits too.
                await loop.run_in_executor(self._executor, self._send, store, runtime, ts)
            if transitions or rows is not None:
                if self.muting is not None:
                    for t in transitions:
                        t.muted_by = ",".join(self.muting.muted_by(dict(t.labels), t.ts)) or None
                await self.db.write(self._store, runtime.group.key, transitions, rows)
                if rows is not None:
                    runtime.persisted = rows
            return transitions

    async def _store_recorded(self, key: str, ts: float, recorded: dict[Labels, float]) -> None:
        """Store one evaluation's recorded samples through the ingest path, as one batch
        of the host row RULES_HOST whose id names the group and the evaluation time: a
        second console evaluating the same group at the same time (a leader change) stores
        nothing twice, and the batch is stored whole or not at all."""
        ingest = self.ingest
        if ingest is None:  # refused per rule by _evaluate
            return
        t_ms = round(ts * 1000)
        metrics = []
        for labels, value in recorded.items():
            name = get(labels, NAME)
            metrics.append(MetricIn(name, "counter" if name.endswith(COUNTER_SUFFIXES) else "gauge",
                                    canonical_labels({k: v for k, v in labels if k != NAME}), [(t_ms, value)]))
        batch_id = f"rules:{hashlib.sha256(key.encode()).hexdigest()[:32]}:{t_ms}"
        result = await ingest.ingest(Batch(host=RULES_HOST, batch_id=batch_id, sent_at=None, agent_version=None,
                                                interval=None, labels_json="{}", metrics=metrics))
        if result.rejected:
            log.warning("rule group %s: recorded samples not stored: %s (%s)", key, result.rejected,
                        "; ".join(result.examples.values()))

    async def evaluate_all(self, at: float | None = None) -> list[Transition]:
        out: list[Transition] = []
        for key in list(self.groups):
            out.extend(await self.evaluate_group(key, at))
        return out

    def _evaluate(self, runtime: GroupRuntime, ts: float) -> tuple[list[Transition], list | None,
                                                                   dict[Labels, float]]:
        group = runtime.group
        started = time.monotonic()
        deadline = started + min(group.interval_s, self.query_timeout_s)
        t_ms = round(ts * 1000)
        transitions: list[Transition] = []
        recorded: dict[Labels, float] = {}
        pending: dict[Labels, tuple[int, float]] = {}  # recorded this round, for the later rules
        with self.db.sessions.begin() as session:
            # One storage for the round: rules read at the same time in one transaction, so
            # a selector's series lookup is shared by every rule using it.
            storage = Storage(session, self.max_samples, self)
            for state in runtime.rules:
                rule_started = time.monotonic()
                try:
                    node = state.rule.node
                    if state.rule.logs is not None:
                        self._log_step(session, state, state.rule.logs, ts, group.limit, transitions)
                    elif node is None:  # the loader gives every other rule an expression
                        raise RuleEvalError("the rule has no expression")
                    elif state.rule.record:
                        if self.ingest is None:
                            raise RuleEvalError("recording rules need the ingest service")
                        fresh = state.record(self._query(storage, node, t_ms, deadline))
                        # The store keeps finite samples only (as it refuses NaN from agents).
                        fresh = {labels: value for labels, value in fresh.items() if math.isfinite(value)}
                        recorded.update(fresh)
                        pending.update((labels, (t_ms, value)) for labels, value in fresh.items())
                        # A later rule must see what this one recorded, as Prometheus
                        # commits each rule's output before the next rule runs.
                        storage = Storage(session, self.max_samples, self, dict(pending))
                    else:
                        result = self._query(storage, node, t_ms, deadline)
                        self._alerting_step(storage, state, result, ts, t_ms, deadline, group.limit, transitions)
                    state.health, state.last_error = "ok", ""
                except _EVAL_ERRORS as exc:
                    message = "query timed out in expression evaluation" if isinstance(exc, QueryTimeout) else str(exc)
                    state.health, state.last_error = "err", message
                    self.m_failures.labels(group.key).inc()
                    log.warning("rule %s in %s: %s", state.rule.name, group.key, message)
                if storage.computed_read:
                    # A later rule must see what this one changed (ALERTS), as Prometheus
                    # commits each rule's output before the next rule runs.
                    storage = Storage(session, self.max_samples, self, dict(pending))
                state.last_evaluation = ts
                state.evaluation_seconds = time.monotonic() - rule_started
                self.m_evals.labels(group.key).inc()
        runtime.last_evaluation = ts
        runtime.evaluation_seconds = time.monotonic() - started
        self.m_duration.labels(group.key).set(runtime.evaluation_seconds)
        with self._lock:
            rows = self._rows(runtime)
        changed = [r[:-2] for r in rows] != [r[:-2] for r in runtime.persisted]
        return transitions, rows if changed else None, recorded

    def _send(self, store: AlertStore, runtime: GroupRuntime, ts: float) -> None:
        """Put the group's firing alerts, and those that resolved after firing (kept
        RESOLVED_RETENTION_S), into ``store``, as Prometheus sends them to
        Alertmanager (``rules/alerting.go`` ``sendAlerts``): ``startsAt`` when it fired,
        ``endsAt`` when it resolved or, while firing, ``ts + 4 * max(interval, 1m)`` (it
        resolves by itself if the rule stops being evaluated)."""
        valid_s = 4 * max(runtime.group.interval_s, RESEND_DELAY_S)
        alerts = []
        with self._lock:
            for state in runtime.rules:
                if state.rule.record:
                    continue
                url = f"{self.external_url}/alerts/rules/{quote(runtime.group.name, safe='')}/" \
                      f"{quote(state.rule.name, safe='')}"
                for a in state.active.values():
                    if a.fired_at is None or a.state == PENDING:
                        continue
                    ends_at = a.resolved_at if a.state == INACTIVE else ts + valid_s
                    if ends_at is None:
                        continue
                    alerts.append(NotifyAlert(dict(a.labels), dict(a.annotations), starts_at=a.fired_at,
                                              ends_at=ends_at, generator_url=url, source="rules"))
        if alerts:
            store.put(alerts, ts)

    def _alerting_step(self, storage: Storage, state: RuleState, result: list[Sample], ts: float, t_ms: int,
                       deadline: float, limit: int, transitions: list[Transition]) -> None:
        recovered = None
        recover = state.rule.recover_node
        if recover is not None and state.needs_recovery_check(result, ts):
            recovered = self._query(storage, recover, t_ms, deadline)
        with self._lock:
            transitions.extend(state.eval(result, ts, limit, recovered))

    def _log_step(self, session: Session, state: RuleState, cond: LogCondition, ts: float, limit: int,
                  transitions: list[Transition]) -> None:
        """One evaluation of a log rule: a sample ``{host, instance, job="node"}`` = the
        count of matching lines in ``(ts - window, ts]`` for each host above the threshold,
        through the same state machine as PromQL rules; each active alert gets the newest
        LOG_SAMPLE_LINES matching lines of its host in the annotation ``log_samples``."""
        if self.logs is None:
            raise RuleEvalError("log rules need the log service")
        t_ms = round(ts * 1000)
        query = replace(cond.query, start_ms=t_ms - round(cond.window_s * 1000) + 1, end_ms=t_ms + 1)
        counts = self.logs.count_by_host(session, query)
        result = [Sample(make_labels({"host": host, "instance": host, "job": DEFAULT_JOB}), float(n), t_ms)
                  for host, n in sorted(counts.items()) if n > cond.threshold]
        samples = {}
        for sample in result:
            host = dict(sample.labels)["host"]
            found = self.logs.search(session, replace(query, hosts=(host,), limit=LOG_SAMPLE_LINES, cursor=None))
            samples[host] = "\n".join(r["line"] for r in found["logs"])
        with self._lock:
            transitions.extend(state.eval(result, ts, limit))
            for alert in state.active.values():
                host = dict(alert.labels).get("host")
                if alert.state != INACTIVE and host in samples:
                    alert.annotations["log_samples"] = samples[host]

    def _query(self, storage: Storage, node: ast.Node, t_ms: int, deadline: float) -> list[Sample]:
        storage.loaded = 0  # max_samples bounds each query, as in Prometheus
        result = evaluate_instant(storage, node, t_ms, deadline, self.max_samples)
        if result.type == ast.SCALAR:  # as Prometheus' EngineQueryFunc: one sample, no labels
            return [Sample((), result.scalar(), t_ms)]
        return result.series()

    @staticmethod
    def _rows(runtime: GroupRuntime) -> list[tuple]:
        """The group's active alerts as sortable tuples; value and last_eval last (they
        change every evaluation and alone do not warrant a write)."""
        rows = []
        for state in runtime.rules:
            for a in state.active.values():
                rows.append((state.rule.name, state.rule.expr, _json(dict(a.labels)), _json(a.annotations), a.state,
                             a.active_at, a.fired_at, a.resolved_at, a.keep_firing_since, a.clear_since,
                             None if math.isnan(a.value) else a.value, a.last_eval))
        return sorted(rows, key=lambda r: (r[0], r[1], r[2]))

    @staticmethod
    def _store(session: Session, group_key: str, transitions: list[Transition], rows: list | None) -> None:
        for t in transitions:
            session.add(AlertHistory(ts=t.ts, group_key=group_key, alertname=dict(t.labels).get("alertname", ""),
                                     labels=_json(dict(t.labels)), state=t.state,
                                     value=None if math.isnan(t.value) else t.value,
                                     annotations=_json(t.annotations), muted_by=t.muted_by))
        if rows is not None:
            session.execute(delete(AlertState).where(AlertState.group_key == group_key))
            for r in rows:
                session.add(AlertState(group_key=group_key, alertname=r[0], expr=r[1], labels=r[2], annotations=r[3],
                                       state=r[4], active_at=r[5], fired_at=r[6], resolved_at=r[7],
                                       keep_firing_since=r[8], clear_since=r[9], value=r[10], last_eval=r[11]))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._executor.shutdown(wait=True)

    # -- reading -----------------------------------------------------------------------------
    def _count(self, wanted: str) -> int:
        with self._lock:
            return sum(1 for g in self.groups.values() for s in g.rules for a in s.active.values()
                       if a.state == wanted)

    def snapshot(self) -> list[tuple[Group, list[tuple[RuleState, list[Alert]]], float | None, float]]:
        """A consistent copy: per group, its rules with copies of their active alerts."""
        with self._lock:
            return [(g.group, [(s, [Alert(**vars(a)) for a in s.active.values()]) for s in g.rules],
                     g.last_evaluation, g.evaluation_seconds) for g in self.groups.values()]

    def series(self, session: Session, name: str | None = None) -> list[VirtualSeries]:
        """``up`` and ``fleetdeck_host_clock_skew_seconds`` per host from its agent's
        heartbeats, ``fleetdeck_deploy_failed`` per deploy that ended failed or rolled back,
        and ``ALERTS``/``ALERTS_FOR_STATE`` of active alerts
        (VirtualSource; docs/alerting.md "Synthesised series"): those named ``name``, or
        all when it is None."""
        out = []
        now_ms = round(self.clock() * 1000)
        tolerance = self.down_after_intervals
        if name in (None, "up", "fleetdeck_host_clock_skew_seconds"):
            out.extend(self._heartbeat_series(session, now_ms, tolerance))
        if name in (None, "fleetdeck_deploy_failed"):
            out.extend(self._deploy_failed(session, now_ms))
        if name in (None, "fleetdeck_notifications_failed"):
            out.extend(failed_series(session, now_ms))  # console/notify/delivery.py
        if name in (None, "ALERTS", "ALERTS_FOR_STATE"):
            out.extend(self._alert_series(now_ms, name))
        for source in self.sources:
            if name is None or name in source.names:
                out.extend(source.series(session, name))
        if name is not None:
            out = [v for v in out if get(v.labels, NAME) == name]
        return out

    def _heartbeat_series(self, session: Session, now_ms: int, tolerance: float) -> list[VirtualSeries]:
        out = []
        for name, first_seen, last_seen, interval, skew, skew_at in session.execute(
                select(Host.name, Host.first_seen, Host.last_seen, Host.interval_s, Host.clock_skew_seconds,
                       Host.clock_skew_at).where(Host.name != RULES_HOST)):
            step = (interval or self.host_interval_s)
            stale_ms = round(((last_seen or first_seen) + step * tolerance) * 1000)
            labels = make_labels({NAME: "up", "host": name, "instance": name, "job": DEFAULT_JOB})

            def up(mint: int, maxt: int, start=round(first_seen * 1000), step_ms=round(step * 1000),
                   stale_ms=stale_ms) -> tuple[list, list]:
                ts = _grid(start, now_ms, step_ms, mint, maxt)
                return ts, [1.0 if t <= stale_ms else 0.0 for t in ts]
            out.append(VirtualSeries(labels, up))
            if skew is None or skew_at is None:
                continue
            # Only the held offset is stored (ingest keeps the largest of the last few
            # minutes), so the series carries it from when it was measured to the host's
            # last report, a sample per agent interval; it ends with the reports.
            skew_labels = make_labels({NAME: "fleetdeck_host_clock_skew_seconds", "host": name, "instance": name,
                                       "job": DEFAULT_JOB})

            def clock_skew(mint: int, maxt: int, start=round(skew_at * 1000),
                           end=round(max(last_seen or skew_at, skew_at) * 1000), step_ms=round(step * 1000),
                           value=float(skew)) -> tuple[list, list]:
                ts = _grid(start, min(end, now_ms), step_ms, mint, maxt)
                if mint <= end <= min(maxt, now_ms) and (not ts or ts[-1] != end):
                    ts.append(end)
                return ts, [value] * len(ts)
            out.append(VirtualSeries(skew_labels, clock_skew))
        return out

    def _alert_series(self, now_ms: int, name: str | None) -> list[VirtualSeries]:
        """``ALERTS`` and ``ALERTS_FOR_STATE`` of active alerts (only those named ``name``
        when it is not None)."""
        out = []
        for group, rules, _, _ in self.snapshot():
            step_ms = round(group.interval_s * 1000)
            for _, alerts in rules:
                for a in alerts:
                    if a.last_eval is None:
                        continue
                    base = dict(a.labels)
                    active_ms, last_ms = round(a.active_at * 1000), round(a.last_eval * 1000)
                    fired_ms = round(a.fired_at * 1000) if a.fired_at is not None else None
                    resolved_ms = round(a.resolved_at * 1000) if a.state == INACTIVE and a.resolved_at else None
                    # Each series ends (is stale) where Prometheus would write its staleness marker.
                    spans = [(PENDING, active_ms, (fired_ms - 1) if fired_ms is not None else last_ms,
                              fired_ms if fired_ms is not None else resolved_ms)]
                    if fired_ms is not None:
                        spans.append((FIRING, fired_ms, last_ms, resolved_ms))
                    for state, lo, hi, stale in spans if name != "ALERTS_FOR_STATE" else ():
                        def points(mint: int, maxt: int, lo=lo, hi=hi) -> tuple[list, list]:
                            ts = _grid(lo, hi, step_ms, mint, maxt)
                            if mint <= hi <= maxt and (not ts or ts[-1] != hi):
                                ts.append(hi)
                            return ts, [1.0] * len(ts)
                        out.append(VirtualSeries(make_labels({**base, NAME: "ALERTS", "alertstate": state}), points,
                                                 stale))

                    def for_state(mint: int, maxt: int, lo=active_ms, hi=last_ms, v=a.active_at) -> tuple[list, list]:
                        ts = _grid(lo, hi, step_ms, mint, maxt)
                        if mint <= hi <= maxt and (not ts or ts[-1] != hi):
                            ts.append(hi)
                        return ts, [float(int(v))] * len(ts)
                    if name != "ALERTS":
                        out.append(VirtualSeries(make_labels({**base, NAME: "ALERTS_FOR_STATE"}), for_state,
                                                 resolved_ms))
        return out

    @staticmethod
    def _deploy_failed(session: Session, now_ms: int) -> list[VirtualSeries]:
        """``fleetdeck_deploy_failed{app, deploy_id, version, state}`` = 1 for
        DEPLOY_FAILED_WINDOW_S after each deploy that ended ``failed`` or ``rolled_back``,
        a sample every DEPLOY_FAILED_STEP_S from its end, then stale (it fires a rule for
        that window and resolves by itself)."""
        out = []
        window_ms, step_ms = DEPLOY_FAILED_WINDOW_S * 1000, DEPLOY_FAILED_STEP_S * 1000
        rows = session.execute(select(Deploy.id, Deploy.app, Deploy.version, Deploy.state, Deploy.finished_at).where(
            Deploy.state.in_(DEPLOY_FAILED_STATES), Deploy.finished_at.is_not(None)).order_by(Deploy.id))
        for deploy_id, app, version, state, finished_at in rows:
            if finished_at is None:  # not selected; the column allows it
                continue
            lo = round(finished_at * 1000)
            if lo > now_ms:
                continue
            end = lo + window_ms

            def points(mint: int, maxt: int, lo=lo, hi=min(end - 1, now_ms)) -> tuple[list, list]:
                ts = _grid(lo, hi, step_ms, mint, maxt)
                return ts, [1.0] * len(ts)
            labels = make_labels({NAME: "fleetdeck_deploy_failed", "app": app, "deploy_id": str(deploy_id),
                                  "version": version, "state": state})
            out.append(VirtualSeries(labels, points, end))
        return out

    async def ahistory(self, since: float, until: float, alertname: str | None, instance: str | None,
                       limit: int) -> list[dict]:
        """:meth:`history` on a database reader."""
        return await self.db.read(self.history, since, until, alertname, instance, limit)

    def history(self, session: Session, since: float, until: float, alertname: str | None,
                instance: str | None, limit: int) -> list[dict]:
        """Transitions in ``[since, until]`` (Unix seconds), newest first."""
        stmt = select(AlertHistory).where(AlertHistory.ts >= since, AlertHistory.ts <= until)
        if alertname:
            stmt = stmt.where(AlertHistory.alertname == alertname)
        stmt = stmt.order_by(AlertHistory.ts.desc(), AlertHistory.id.desc())
        out = []
        for row in session.scalars(stmt).yield_per(500):
            labels = orjson.loads(row.labels)
            if instance and labels.get("instance") != instance:
                continue
            out.append({"ts": row.ts, "alertname": row.alertname, "state": row.state, "labels": labels,
                        "annotations": orjson.loads(row.annotations), "value": row.value,
                        "group": row.group_key, "muted_by": row.muted_by.split(",") if row.muted_by else []})
            if len(out) >= limit:
                break
        return out
