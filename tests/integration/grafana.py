"""Grafana's Prometheus data source (Grafana 10/11) as a client: the HTTP requests it sends
for "Save & test", for a dashboard's query variables and for its panel targets.

Sources, grafana/grafana: ``pkg/promlib/healthcheck.go`` and ``heuristics.go`` (health
check), ``pkg/promlib/models/query.go`` (step, ``$__interval``, ``$__rate_interval``,
``$__range``, alignment of start and end), ``pkg/promlib/client/client.go`` (form POST,
time formatting), ``pkg/promlib/intervalv2`` and grafana-plugin-sdk-go ``backend/gtime``
(interval rounding and formatting), ``packages/grafana-prometheus/src/metric_find_query.ts``
(``label_values()`` variables), ``datasource.ts`` ``interpolateQueryExpr`` and
``public/app/features/templating/template_srv.ts`` (dashboard variables and formats),
``packages/grafana-data/src/datetime/rangeutil.ts`` (the interval a panel asks for).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# gtime.RoundInterval: (upper bound ms, rounded ms), the first bound the interval does not exceed.
_ROUNDING = ((15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
             (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
             (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
             (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
             (32400000, 21600000), (86400000, 43200000), (604800000, 86400000))
SAFE_RESOLUTION = 11000  # promlib: at most 11,000 points per series
DEFAULT_RESOLUTION = 1500  # intervalv2.DefaultRes, when a query has no maxDataPoints
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)\s*$")
_UNITS = (("y", 365 * 86400000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000), ("ms", 1))


def round_interval(ms: float) -> int:
    for bound, rounded in _ROUNDING:
        if ms <= bound:
            return rounded
    raise ValueError(f"interval {ms} ms beyond what these tests use")


def format_interval(ms: int) -> str:
    """gtime.FormatInterval: the largest whole unit (``1m`` for 90 s)."""
    for unit, size in _UNITS:
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def go_duration(ms: int) -> str:
    """Go's ``time.Duration.String()`` of a whole number of milliseconds (``4s``, ``1m0s``,
    ``1m1.5s``, ``500ms``): how ``$__rate_interval`` is written into the expression."""
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3600000)
    minutes, rest = divmod(rest, 60000)
    seconds = str(rest // 1000) + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{seconds}s"


def prom_time(ms: int) -> str:
    """client.formatTime: Unix seconds, shortest form (``1700000000``, ``1700000000.123``)."""
    return repr(ms / 1000).removesuffix(".0")


def parse_interval_ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not match:
        raise ValueError(f"unsupported interval {text!r}")
    return int(match[1]) * dict(_UNITS)[match[2]]


@dataclass
class Variable:
    """A dashboard variable's current value (a list when several are selected)."""

    value: str | list[str]
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    options: list[str] = field(default_factory=list)


def _regex_escape(value: str) -> str:
    """grafana-prometheus prometheusSpecialRegexEscape: inside a PromQL string, so doubled."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m[0], value)


def _format(var: Variable, fmt: str | None) -> str:
    values = var.value if isinstance(var.value, list) else [var.value]
    if values == ["$__all"]:
        if var.all_value is not None:
            return var.all_value
        values = var.options
    if fmt is None:  # the Prometheus data source's own format (interpolateQueryExpr)
        if not var.multi and not var.include_all:
            return values[0].replace("\\", "\\\\").replace("'", "\\\\'")
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "regex":
        escaped = [re.sub(r"[\\^$*+?.()|{}\[\]/]", lambda m: "\\" + m[0], v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return ",".join(values)
    raise ValueError(f"variable format {fmt!r} is not emulated")


def interpolate(expr: str, variables: dict[str, Variable]) -> str:
    """The dashboard's variables in ``expr`` (templateSrv.replace); ``$__…`` built-ins are
    left for the back end, as the data source does."""

    def sub(match: re.Match) -> str:
        name = match[1] or match[2] or match[4]
        fmt = match[3] or match[5]
        if name.startswith("__") or name not in variables:
            return match[0]
        return _format(variables[name], fmt)

    return _VARIABLE.sub(sub, expr)


@dataclass
class TimeRange:
    """A dashboard time range in Unix ms."""

    start_ms: int
    end_ms: int


@dataclass
class DataSource:
    """The data source settings that shape requests: ``time_interval`` is "Scrape interval"
    (jsonData.timeInterval), ``method`` the HTTP method for queries (POST by default)."""

    time_interval: str = "15s"
    method: str = "POST"
    query_timeout: str | None = None  # jsonData.queryTimeout, sent as ``timeout`` with every query

    def _query(self, params: dict) -> dict:
        return {**params, "timeout": self.query_timeout} if self.query_timeout else params

    # -- Save & test ------------------------------------------------------------------
    def health_check(self) -> list[tuple[str, str, dict]]:
        """CheckHealth: the instant query ``1+1`` over the range [1 s, 4 s] (sent at its end),
        then buildinfo for the heuristics (GET: an endpoint Grafana never POSTs to)."""
        return [(self.method, "/api/v1/query", self._query({"query": "1+1", "time": "4"})),
                ("GET", "/api/v1/status/buildinfo", {})]

    # -- variables ----------------------------------------------------------------------
    def variable_request(self, query: str, variables: dict[str, Variable], rng: TimeRange,
                         labels_match_api: bool = True, snap: bool = False) -> tuple[str, str, dict, str]:
        """``label_values(metric, label)`` -> (method, path, params, label). With a
        Prometheus new enough for ``match[]`` on label values (>= 2.24, Grafana's
        ``hasLabelsMatchAPISupport``): that endpoint; otherwise ``/series``, whose label
        values Grafana collects. Times in whole seconds, rounded up (getPrometheusTime);
        ``snap``: start and end moved out to whole minutes, as the language provider does
        at its default cache level (getRangeSnapInterval), so ``end`` may be ahead."""
        match = _LABEL_VALUES.match(interpolate(query, variables))
        if not match:
            raise ValueError(f"variable query {query!r} is not emulated")
        metric, label = match[1], match[2]
        start, end = math.ceil(rng.start_ms / 1000), math.ceil(rng.end_ms / 1000)
        if snap:
            start, end = start // 60 * 60, -(-end // 60) * 60 + (60 if end % 60 == 0 else 0)
        params = {"start": str(start), "end": str(end)}
        if metric and metric.replace(" ", "") != "{}":
            params["match[]"] = metric
        if labels_match_api or "match[]" not in params:
            return "GET", f"/api/v1/label/{label}/values", params, label
        return self.method, "/api/v1/series", params, label

    # -- panels ---------------------------------------------------------------------------
    def target_request(self, panel: dict, target: dict, variables: dict[str, Variable], rng: TimeRange,
                       max_data_points: int) -> tuple[str, str, dict]:
        """The query one panel target sends: (method, path, form parameters)."""
        range_ms = rng.end_ms - rng.start_ms
        scrape_ms = parse_interval_ms(self.time_interval)
        # Front end (rangeutil.calculateInterval): the panel's interval, at least its min
        # interval or else the data source's scrape interval.
        low_limit = panel.get("interval") or self.time_interval
        interval_ms = max(round_interval(range_ms / max_data_points), parse_interval_ms(low_limit))
        # Back end (models.calculatePrometheusInterval): a target's own min step, else intervalMs.
        own = target.get("interval") or ""
        if own.startswith("$"):
            raise ValueError(f"target interval {own!r} is not emulated")
        min_ms = parse_interval_ms(own) if own else interval_ms
        calculated = range_ms / max_data_points
        calculated_ms = min_ms if calculated < min_ms else round_interval(calculated)
        step_ms = max(calculated_ms, round_interval(range_ms / SAFE_RESOLUTION)) * (target.get("intervalFactor") or 1)
        rate_ms = max(interval_ms + (parse_interval_ms(own) if own else scrape_ms),
                      4 * (parse_interval_ms(own) if own else scrape_ms))
        range_s = round(range_ms / 1000)
        expr = interpolate(target["expr"], variables)
        for name, value in (("__interval_ms", str(step_ms)), ("__interval", format_interval(step_ms)),
                            ("__range_ms", str(range_ms)), ("__range_s", str(range_s)),
                            ("__range", f"{range_s}s"), ("__rate_interval_ms", str(rate_ms)),
                            ("__rate_interval", go_duration(rate_ms))):
            expr = expr.replace(f"${name}", value).replace(f"${{{name}}}", value)
        if target.get("instant") and not target.get("range"):
            return self.method, "/api/v1/query", self._query({"query": expr, "time": prom_time(rng.end_ms)})
        # AlignTimeRange (UTC, offset 0): start and end rounded down to a multiple of the step.
        start, end = rng.start_ms // step_ms * step_ms, rng.end_ms // step_ms * step_ms
        return self.method, "/api/v1/query_range", self._query({
            "query": expr, "start": prom_time(start), "end": prom_time(end),
            "step": repr(step_ms / 1000).removesuffix(".0")})


def panels(dashboard: dict) -> list[dict]:
    """Every panel with targets, rows' nested panels included, in dashboard order."""
    out = []
    for panel in dashboard["panels"]:
        if panel.get("targets"):
            out.append(panel)
        out.extend(p for p in panel.get("panels", []) if p.get("targets"))
    return out


def max_data_points(panel: dict, screen_px: int = 1920) -> int:
    """The panel's maxDataPoints, else its width in pixels (of a 24-column grid)."""
    return panel.get("maxDataPoints") or max(1, panel["gridPos"]["w"] * screen_px // 24 - 16)
