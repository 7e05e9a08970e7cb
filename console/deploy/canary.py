"""Canary analysis: the optional first stage of a deploy (an app's ``canary:`` section).

A deploy of an app with ``canary:`` moves only the first ``replicas`` (Docker,
Kubernetes) or ``hosts`` (SSH) to the new version, then evaluates the checks every
``interval`` seconds for ``duration`` seconds (``duration // interval`` evaluations, at
least one, the first one ``interval`` after the canary is up). Every check must pass at
every evaluation for the deploy to continue to the rest; the first failure stops the
analysis and the driver rolls the deploy back (state ``rolled_back``) with the failing
check and its value as the reason. A cancel or the deploy's timeout during the analysis
ends it at once and the driver rolls back as for any cancel.

Checks (docs/deploys.md, "Canary analysis"):

- a PromQL ``query`` compared with ``op`` (``<``, ``<=``, ``>``, ``>=``) to
  ``threshold``, evaluated as an instant query at the evaluation's time by the
  console's own PromQL engine (console/promql/, docs/promql.md) over the stored
  metrics. Every series of the answer must pass; the value stored is the worst one (the
  largest for ``<``/``<=``, the smallest for ``>``/``>=``). An answer with no series, or
  only NaN values (``0/0`` when there was no traffic), is **no data**: the check fails
  unless it says ``on_no_data: pass``. A query the engine refuses (timeout, 422) fails.
  The query may name the deploy with ``{{app}}``, ``{{version}}``,
  ``{{previous_version}}`` and ``{{deploy_id}}`` (spaces inside the braces allowed), to
  select the canary's own series, e.g. ``{version="{{version}}"}``; the values are
  app names and versions as validated (letters, digits, ``.``, ``_``, ``-``, ``:``), so
  they cannot end a PromQL string.
- ``no_firing_alerts: true``: no firing alert about this app, i.e. whose label ``app``
  is the app's name, or whose ``instance`` (or ``host``) label is one of the deploy's
  hosts (the app's ``hosts``, plus the target hosts of an SSH deploy). Alerts of this
  console's rules (console/alerting/) and alerts posted to its Alertmanager API count;
  alerts about deploys themselves (those with a ``deploy_id`` label, as DeployFailed)
  do not. Its value is the number of such alerts; it passes at 0.

Each evaluation of each check is emitted as a deploy event of kind ``analysis`` whose
``data`` is ``{"check", "query", "op", "threshold", "t", "value", "passed", "no_data",
"error"}``; the deploy service builds the deploy's ``analysis`` from them
(:func:`analysis_of`). The stage itself is the step ``canary``.

The gate runs on the driver's worker thread and blocks; PromQL queries are handed to
the console's IOLoop (``run_coroutine_threadsafe``) so they use the PromQL service's
reader threads and deadline like any other query.
"""
from __future__ import annotations

import asyncio
import math
import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from console.alerting.state import FIRING
from console.config import ConfigError
from console.i18n import Text as Translatable, tx
from console.deploy.drivers.base import CancelToken, Cancelled, DriverEvent, Emit, GateFailed
from console.deploy.schema import Flag, Seconds, Section, Text
from console.promql.service import PromError, PromQLService

if TYPE_CHECKING:
    from console.alerting.service import AlertingService
    from console.notify.store import AlertStore

Op = Literal["<", "<=", ">", ">="]
OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                  ">=": operator.ge}
NoData = Literal["fail", "pass"]
ALERT_CHECK = "no_firing_alerts"
CHECK_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,63}")
QUERY_GRACE_S = 5.0  # beyond the PromQL service's own deadline, for the hand-over to the loop
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
# What the placeholders of a query are replaced with when the configuration is checked.
SAMPLE_PARAMS = {"app": "app", "version": "1.0", "previous_version": "0.9", "deploy_id": "1"}


def substitute(query: str, params: Mapping[str, str]) -> str:
    """``query`` with ``{{name}}`` replaced by ``params[name]``; KeyError names an unknown one."""
    return PLACEHOLDER_RE.sub(lambda m: params[m.group(1)], query)


def _count_or_percent(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}%", value) and 1 <= int(value[:-1]) <= 100:
        return value
    raise ValueError(tx("expected a count >= 1 or a percentage like \"25%\", got {value}", value=repr(value)))


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(tx("expected a number, got {value}", value=repr(value)))
    return value


CountOrPercent = Annotated[int | str, BeforeValidator(_count_or_percent)]
Number = Annotated[float, BeforeValidator(_number)]


class CanaryCheck(Section):
    """One PromQL check: passes when every series of ``query`` is ``op`` ``threshold``."""

    name: Text
    query: Text
    op: Op
    threshold: Number
    on_no_data: NoData = "fail"

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not CHECK_NAME_RE.fullmatch(name) or name == ALERT_CHECK:
            raise ValueError(tx("expected letters, digits, '_', '.', '-' (at most 63, not {reserved}), got {name}",
                                reserved=repr(ALERT_CHECK), name=repr(name)))
        return name

    @field_validator("query")
    @classmethod
    def _query(cls, query: str) -> str:
        from console.promql import ast  # the parser loads only where PromQL is used

        try:
            ast.parse(substitute(query, SAMPLE_PARAMS))
        except KeyError as exc:
            raise ValueError(tx("unknown placeholder {placeholder} (known: {names})",
                                placeholder="{{" + str(exc.args[0]) + "}}", names=', '.join('{{' + k + '}}' for k in SAMPLE_PARAMS))) from None
        except (ast.ParseError, ast.Unsupported) as exc:
            raise ValueError(tx("not a PromQL expression this console evaluates: {reason}", reason=str(exc))) from None
        return query


class CanaryConfig(Section):
    """An app's ``canary:`` section. ``replicas`` (Docker, Kubernetes) or ``hosts`` (SSH):
    how many move first, a count or a percentage of the total (rounded up), default 1;
    ``duration`` and ``interval`` in seconds."""

    replicas: CountOrPercent | None = None
    hosts: CountOrPercent | None = None
    duration: Seconds = Field(ge=0.1, le=86400.0)
    interval: Seconds = Field(ge=0.1, le=3600.0)
    checks: tuple[CanaryCheck, ...] = ()
    no_firing_alerts: Flag = False

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "CanaryConfig":
        driver = (info.context or {}).get("driver", "docker")
        if driver == "ssh" and self.replicas is not None:
            raise ConfigError(tx("an ssh app's canary moves hosts: use canary.hosts"), ("replicas",))
        if driver != "ssh" and self.hosts is not None:
            raise ConfigError(tx("a {driver} app's canary moves replicas: use canary.replicas", driver=driver), ("hosts",))
        if not self.checks and not self.no_firing_alerts:
            raise ConfigError(tx("nothing to analyse: give checks or no_firing_alerts: true"), ("checks",))
        if self.interval > self.duration:
            raise ConfigError(tx("interval ({interval} s) is longer than duration ({duration} s)",
                                 interval=f"{self.interval:g}", duration=f"{self.duration:g}"),
                              ("interval",))
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(tx("check names must be unique, repeated: {names}", names=", ".join(dupes)), ("checks",))
        return self

    @property
    def evaluations(self) -> int:
        """How many times the checks run: ``duration // interval``, at least once."""
        return max(1, int(self.duration / self.interval + 1e-9))

    def size(self, total: int) -> int:
        """Replicas (or hosts) of the canary stage out of ``total``: the count, or the
        percentage rounded up, at least 1 and at most ``total``."""
        wanted = self.hosts if self.hosts is not None else self.replicas
        if wanted is None:
            n = 1
        elif isinstance(wanted, int):
            n = wanted
        else:
            n = -(-total * int(wanted[:-1]) // 100)
        return max(0, min(total, max(1, n)))


@dataclass
class Evaluation:
    """One evaluation of one check at ``t`` (Unix seconds)."""

    check: str
    query: str
    op: str
    threshold: float
    t: float
    value: float | None
    passed: bool
    no_data: bool = False
    error: str | None = None
    detail: str = ""

    def data(self) -> dict:
        return {"check": self.check, "query": self.query, "op": self.op, "threshold": self.threshold,
                "t": self.t, "value": self.value, "passed": self.passed, "no_data": self.no_data,
                "error": self.error}

    def describe(self) -> Translatable:
        """``check errors = 0.5 (wanted < 0.1)``, with ``no data`` or the error in place of
        the value (translatable)."""
        shown: str
        if self.error:
            shown = tx("error ({error})", error=self.error)
        elif self.value is None:
            shown = tx("no data")
        else:
            shown = f"{self.value:.6g}"
        wanted = f"{self.op} {self.threshold:g}"
        if self.detail:
            return tx("check {check} = {shown} (wanted {wanted}; {detail})", check=self.check, shown=shown,
                      wanted=wanted, detail=self.detail)
        return tx("check {check} = {shown} (wanted {wanted})", check=self.check, shown=shown, wanted=wanted)


def _values(data: dict) -> list[float]:
    """The float values of a PromQL answer's ``data`` (Prometheus JSON); ValueError for
    a range vector or a string."""
    kind, result = data.get("resultType"), data.get("result") or []
    if kind == "scalar":
        return [float(result[1])]
    if kind == "vector":
        return [float(s["value"][1]) for s in result]
    raise ValueError(tx("the query returns a {kind}; a check needs an instant vector or a scalar", kind=kind))


def judge(check: CanaryCheck, values: Iterable[float], t: float) -> Evaluation:
    """The verdict of one check over the values of its answer (NaN values ignored)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return Evaluation(check.name, check.query, check.op, check.threshold, t, None,
                          check.on_no_data == "pass", no_data=True, detail=f"on_no_data: {check.on_no_data}")
    worst = max(finite) if check.op in ("<", "<=") else min(finite)
    passed = all(OPS[check.op](v, check.threshold) for v in finite)
    detail = f"{len(finite)} series" if len(finite) > 1 else ""
    return Evaluation(check.name, check.query, check.op, check.threshold, t, worst, passed, detail=detail)


def alert_matches(labels: Mapping[str, str], app: str, hosts: frozenset[str]) -> bool:
    """Whether an alert is about ``app``: its ``app`` label, or its ``instance``/``host``
    label naming one of ``hosts``; alerts about deploys (``deploy_id``) never are."""
    if labels.get("deploy_id"):
        return False
    return labels.get("app") == app or labels.get("instance") in hosts or labels.get("host") in hosts


class CanaryAnalysis:
    """Builds the gate of each canary deploy. ``promql`` evaluates the checks;
    ``alerting`` (rule alerts) and ``alert_store`` (alerts posted through the API) give
    the firing alerts."""

    def __init__(self, promql: PromQLService, alerting: "AlertingService", alert_store: "AlertStore",
                 clock: Callable[[], float] = time.time) -> None:
        self.promql = promql
        self.alerting = alerting
        self.alert_store = alert_store
        self.clock = clock

    def gate(self, app: str, hosts: Iterable[str], config: CanaryConfig, loop: asyncio.AbstractEventLoop,
             params: Mapping[str, str]) -> "CanaryGate":
        """The gate of one deploy of ``app`` (whose own ``hosts`` are given), to be called
        from a driver thread while ``loop`` runs. ``params``: the queries' placeholders
        (``app``, ``version``, ``previous_version``, ``deploy_id``)."""
        return CanaryGate(self, app, frozenset(hosts), config, loop, params)

    def firing_alerts(self, app: str, hosts: frozenset[str], now: float) -> list[dict[str, str]]:
        """Label sets of the firing alerts about ``app`` (see :func:`alert_matches`)."""
        found: dict[tuple, dict[str, str]] = {}
        for _, rules, _, _ in self.alerting.snapshot():
            for _, alerts in rules:
                for a in alerts:
                    labels = dict(a.labels)
                    if a.state == FIRING and alert_matches(labels, app, hosts):
                        found[tuple(sorted(labels.items()))] = labels
        for na in self.alert_store.snapshot():
            if not na.resolved(now) and alert_matches(na.labels, app, hosts):
                found.setdefault(tuple(sorted(na.labels.items())), dict(na.labels))
        return list(found.values())


class CanaryGate:
    """``size(total)`` replicas/hosts form the canary stage; calling the gate runs the
    analysis (blocking): it returns when every check passed, raises GateFailed naming the
    failing check and its value, or Cancelled when the deploy is cancelled or times out."""

    def __init__(self, analysis: CanaryAnalysis, app: str, hosts: frozenset[str], config: CanaryConfig,
                 loop: asyncio.AbstractEventLoop, params: Mapping[str, str]) -> None:
        self.params = dict(params)
        self.analysis = analysis
        self.app = app
        self.hosts = hosts
        self.config = config
        self.loop = loop

    def size(self, total: int) -> int:
        return self.config.size(total)

    def __call__(self, emit: Emit, cancel: CancelToken, hosts: Iterable[str] = ()) -> None:
        c = self.config
        targets = self.hosts | frozenset(hosts)
        names = [k.name for k in c.checks] + ([ALERT_CHECK] if c.no_firing_alerts else [])
        emit(DriverEvent("step", tx("canary analysis: {checks} every {interval} s for {duration} s ({evaluations} "
                                    "evaluation(s))", checks=", ".join(names), interval=f"{c.interval:g}",
                                    duration=f"{c.duration:g}", evaluations=c.evaluations),
                         step="canary", state="running",
                         data={"checks": names, "interval": c.interval, "duration": c.duration}))
        for round_no in range(1, c.evaluations + 1):
            if cancel.wait(c.interval):
                emit(DriverEvent("step", tx("canary analysis stopped: {reason}", reason=cancel.reason), step="canary",
                                 state="failed",
                                 level="warning", data={"verdict": "cancelled"}))
                raise Cancelled(cancel.reason)
            failed = None
            for ev in self.evaluate(targets):
                emit(DriverEvent("analysis", tx("canary {check}: passed", check=ev.describe()) if ev.passed
                                 else tx("canary {check}: FAILED", check=ev.describe()),
                                 level="info" if ev.passed else "error", data=ev.data()))
                if not ev.passed and failed is None:
                    failed = ev
            if failed is not None:
                reason = tx("canary analysis failed: {check}", check=failed.describe())
                emit(DriverEvent("step", reason, step="canary", state="failed", level="error",
                                 data={"verdict": "failed", "check": failed.check, "value": failed.value}))
                raise GateFailed(reason)
            emit(DriverEvent("log", tx("canary evaluation {round}/{evaluations}: every check passed", round=round_no,
                                      evaluations=c.evaluations)))
        emit(DriverEvent("step", tx("canary passed: {evaluations} evaluation(s) of {checks} check(s)",
                                    evaluations=c.evaluations, checks=len(names)),
                         step="canary", state="succeeded", data={"verdict": "passed"}))

    def evaluate(self, hosts: frozenset[str]) -> list[Evaluation]:
        """One evaluation of every check, now."""
        now = self.analysis.clock()
        out = [self._promql(check, now) for check in self.config.checks]
        if self.config.no_firing_alerts:
            firing = self.analysis.firing_alerts(self.app, hosts, now)
            names = sorted({a.get("alertname", "?") for a in firing})
            out.append(Evaluation(ALERT_CHECK, f"firing alerts with app={self.app!r} or instance in the deploy's hosts",
                                  "<=", 0.0, now, float(len(firing)), not firing,
                                  detail=", ".join(names)))
        return out

    def _promql(self, check: CanaryCheck, now: float) -> Evaluation:
        promql = self.analysis.promql
        check = check.model_copy(update={"query": substitute(check.query, self.params)})
        try:
            future = asyncio.run_coroutine_threadsafe(promql.query(check.query, now, primary=True), self.loop)
            data, _ = future.result(promql.timeout_s + QUERY_GRACE_S)
            return judge(check, _values(data), now)
        except (PromError, ValueError, TypeError, KeyError, IndexError, TimeoutError) as exc:
            message = exc.message if isinstance(exc, PromError) else str(exc) or type(exc).__name__
            return Evaluation(check.name, check.query, check.op, check.threshold, now, None, False, error=message)


def analysis_of(events: Iterable[tuple[str, str | None, str, dict]]) -> tuple[list[dict], dict | None]:
    """``(analysis, canary)`` of a deploy from its events ``(kind, step, message, data)``,
    oldest first: ``analysis`` ``[{"check", "query", "op", "threshold", "values":
    [[t, v], ...], "passed"}]`` in the order the checks first ran (``v`` None for no
    data; ``passed`` False once any evaluation failed, True when the canary passed, else
    None while it runs); ``canary`` ``{"state", "verdict", "message"}`` of the ``canary``
    step (verdict running | passed | failed | cancelled), or None for a deploy without one."""
    checks: dict[str, dict] = {}
    canary: dict | None = None
    for kind, step, message, data in events:
        if kind == "analysis" and "check" in data:
            entry = checks.setdefault(data["check"], {"check": data["check"], "query": data.get("query"),
                                                      "op": data.get("op"), "threshold": data.get("threshold"),
                                                      "values": [], "passed": None})
            entry["values"].append([data.get("t"), data.get("value")])
            if not data.get("passed"):
                entry["passed"] = False
        elif kind == "step" and step == "canary" and data.get("state"):
            state = data["state"]
            verdict = data.get("verdict") or {"succeeded": "passed"}.get(state, state)
            canary = {"state": state, "verdict": verdict, "message": message,
                      **({"i18n": data["i18n"]} if "i18n" in data else {})}
    if canary is not None and canary["verdict"] == "passed":
        for entry in checks.values():
            if entry["passed"] is None:
                entry["passed"] = True
    return list(checks.values()), canary


__all__ = ["ALERT_CHECK", "CanaryAnalysis", "CanaryCheck", "CanaryConfig", "CanaryGate", "Evaluation",
           "alert_matches", "analysis_of", "judge"]
