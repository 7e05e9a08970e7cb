"""PromQL functions (Prometheus 2.x ``promql/functions.go``), with Go's float semantics:
a domain error is NaN or an infinity, never a Python exception.

Each entry of FUNCTIONS gives the return type and the implementation
``impl(ev, call, t)``; a function the parser knows but this table lacks is refused by
:mod:`console.promql.ast` as unsupported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from console.promql.ast import SCALAR, VECTOR, Call, Selector, Subquery
from console.promql.binary import go_div
from console.promql.storage import BadRegex, compile_regex
from console.query.series_math import extrapolated_rate
from console.promql.values import NAME, Sample, get, make_labels

NAN = float("nan")
INF = float("inf")


class FunctionError(Exception):
    """An argument Prometheus refuses at evaluation time (execution error)."""


@dataclass(frozen=True)
class Fn:
    returns: str
    impl: Callable


# -- Go float semantics -----------------------------------------------------------------
def go(fn: Callable[[float], float], domain_error: Callable[[float], float] = lambda x: NAN):
    """Wrap a ``math`` function so it answers like Go's: NaN (or ``domain_error(x)``)
    where Python raises, an infinity on overflow."""
    def wrapped(x: float) -> float:
        if math.isnan(x):
            return NAN
        try:
            return fn(x)
        except OverflowError:
            return INF
        except ValueError:
            return domain_error(x)
    return wrapped


def _log_domain(x: float) -> float:
    return -INF if x == 0 else NAN


def _atanh_domain(x: float) -> float:
    return math.copysign(INF, x) if abs(x) == 1 else NAN


def go_max(x: float, y: float) -> float:
    """Go's ``math.Max``: +Inf wins, then NaN propagates (Python's ``max`` does neither)."""
    if x == INF or y == INF:
        return INF
    if math.isnan(x) or math.isnan(y):
        return NAN
    return x if x > y else y


def go_min(x: float, y: float) -> float:
    """Go's ``math.Min``: -Inf wins, then NaN propagates."""
    if x == -INF or y == -INF:
        return -INF
    if math.isnan(x) or math.isnan(y):
        return NAN
    return x if x < y else y


def _sgn(x: float) -> float:
    if math.isnan(x):
        return NAN
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def _round_half_up(x: float) -> float:
    return math.floor(x + 0.5) if math.isfinite(x) else x


SIMPLE = {
    "abs": abs, "ceil": go(lambda x: float(math.ceil(x)) if math.isfinite(x) else x),
    "floor": go(lambda x: float(math.floor(x)) if math.isfinite(x) else x),
    "exp": go(math.exp), "sqrt": go(math.sqrt),
    "ln": go(math.log, _log_domain), "log2": go(math.log2, _log_domain), "log10": go(math.log10, _log_domain),
    "sgn": _sgn, "deg": go(math.degrees), "rad": go(math.radians),
    "acos": go(math.acos), "acosh": go(math.acosh), "asin": go(math.asin), "asinh": go(math.asinh),
    "atan": go(math.atan), "atanh": go(math.atanh, _atanh_domain),
    "cos": go(math.cos), "cosh": go(math.cosh), "sin": go(math.sin), "sinh": go(math.sinh),
    "tan": go(math.tan), "tanh": go(math.tanh),
}


def _simple(name: str) -> Callable:
    fn = SIMPLE[name]

    def impl(ev, node: Call, t: int) -> list[Sample]:
        return ev.unique([Sample(ev.drop_name(s.labels), float(fn(s.value)), t) for s in ev.eval(node.args[0], t)],
                         name)
    return impl


def _scalar_arg(ev, node: Call, i: int, t: int, default: float) -> float:
    if i >= len(node.args):
        return default
    return ev.eval(node.args[i], t)


# -- range-vector functions -------------------------------------------------------------
def _range_bounds(ev, arg: Selector | Subquery, t: int) -> tuple[int, int]:
    """``(rangeStart, rangeEnd)`` in Unix ms of a range selector or subquery at ``t``."""
    end = ev.selector_time(arg, t)
    return end - arg.window_ms, end


def _rate_fn(is_counter: bool, is_rate: bool) -> Callable:
    def impl(ev, node: Call, t: int) -> list[Sample]:
        arg = node.args[0]
        if not isinstance(arg, (Selector, Subquery)):
            raise FunctionError(f"{node.name}: expected a range vector")
        start, end = _range_bounds(ev, arg, t)
        out = []
        if isinstance(arg, Selector):  # straight off the stored arrays: no copies per step
            for s, lo, hi in ev.windows(arg, t):
                value = extrapolated_rate(s.ts, s.values, lo, hi, start, end, is_counter, is_rate, arg.window_ms,
                                          s.resets if is_counter else None)
                if value is not None:
                    out.append(Sample(ev.drop_name(s.labels), value, t))
            return out if ev.single_name(arg) else ev.unique(out, node.name)
        for s in ev.eval(arg, t):
            value = extrapolated_rate(s.ts, s.values, 0, len(s.ts), start, end, is_counter, is_rate, arg.window_ms)
            if value is not None:
                out.append(Sample(ev.drop_name(s.labels), value, t))
        return ev.unique(out, node.name)
    return impl


def _instant_rate(is_rate: bool) -> Callable:
    def fn(ts: list, vs: list, args: list) -> float | None:
        if len(ts) < 2:
            return None
        last, prev = vs[-1], vs[-2]
        result = last if is_rate and last < prev else last - prev
        interval = ts[-1] - ts[-2]
        if interval == 0:
            return None
        return result / (interval / 1000) if is_rate else result
    return fn


def linear_regression(ts: list, vs: list, intercept_ms: int) -> tuple[float, float]:
    """Least-squares ``(slope per second, intercept at intercept_ms)`` (Prometheus'
    ``linearRegression``: a constant series has slope 0)."""
    if all(v == vs[0] for v in vs):
        if math.isinf(vs[0]):
            return NAN, NAN
        return 0.0, vs[0]
    n = float(len(ts))
    sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    for t, v in zip(ts, vs):
        x = (t - intercept_ms) / 1000
        sum_x, c_x = kahan_inc(x, sum_x, c_x)
        sum_y, c_y = kahan_inc(v, sum_y, c_y)
        sum_xy, c_xy = kahan_inc(x * v, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_inc(x * x, sum_x2, c_x2)
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = go_div(cov_xy, var_x)
    return slope, sum_y / n - slope * sum_x / n


def _deriv(ts, vs, args) -> float | None:
    if len(ts) < 2:
        return None
    return linear_regression(ts, vs, ts[0])[0]


def _out_of_range_quantile(q: float) -> float | None:
    """The answer for a φ outside [0, 1] (NaN, -Inf below, +Inf above), else None."""
    if math.isnan(q):
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    return None


def quantile_of(q: float, values: list[float]) -> float:
    """Prometheus' ``quantile``: linear interpolation between the closest ranks."""
    if not values:
        return NAN
    special = _out_of_range_quantile(q)
    if special is not None:
        return special
    ordered = sorted(values)
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """One step of Neumaier's compensated sum, as Prometheus' ``kahanSumInc``: the new
    running total and compensation (add them at the end)."""
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def _sum_over_time(ts, vs, args) -> float:
    total = c = 0.0
    for v in vs:
        total, c = kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def _avg(ts, vs, args) -> float:
    mean = c = 0.0
    for i, v in enumerate(vs, 1):
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean, c = kahan_inc(v / i - mean / i, mean, c)
    return mean if math.isinf(mean) else mean + c


def _stdvar(ts, vs, args) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for v in vs:
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _min(ts, vs, args) -> float:
    out = vs[0]
    for v in vs:
        if v < out or math.isnan(out):
            out = v
    return out


def _max(ts, vs, args) -> float:
    out = vs[0]
    for v in vs:
        if v > out or math.isnan(out):
            out = v
    return out


def _changes(ts, vs, args) -> float:
    n = 0
    for a, b in zip(vs, vs[1:]):
        if a != b and not (math.isnan(a) and math.isnan(b)):
            n += 1
    return float(n)


def _resets(ts, vs, args) -> float:
    return float(sum(1 for a, b in zip(vs, vs[1:]) if b < a))


def _holt_winters(ts, vs, args) -> float | None:
    """Double exponential smoothing (Prometheus' ``holt_winters``): smoothing factor
    ``args[0]`` and trend factor ``args[1]``, both in (0, 1)."""
    sf, tf = args
    if not 0 < sf < 1:
        raise FunctionError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:f}")
    if not 0 < tf < 1:
        raise FunctionError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf:f}")
    if len(vs) < 2:
        return None
    s0, s1, b = 0.0, vs[0], vs[1] - vs[0]
    for i in range(1, len(vs)):
        x = sf * vs[i]
        if i > 1:  # the trend from the second step on (calcTrendValue)
            b = tf * (s1 - s0) + (1 - tf) * b
        s0, s1 = s1, x + (1 - sf) * (s1 + b)
    return s1


def _mad(ts, vs, args) -> float:
    median = quantile_of(0.5, vs)
    return quantile_of(0.5, [abs(v - median) for v in vs])


OVER_TIME: dict[str, Callable] = {
    "avg_over_time": _avg,
    "sum_over_time": _sum_over_time,
    "count_over_time": lambda ts, vs, args: float(len(vs)),
    "min_over_time": _min,
    "max_over_time": _max,
    "last_over_time": lambda ts, vs, args: vs[-1],
    "present_over_time": lambda ts, vs, args: 1.0,
    "stdvar_over_time": _stdvar,
    "stddev_over_time": lambda ts, vs, args: math.sqrt(_stdvar(ts, vs, args)),
    "quantile_over_time": lambda ts, vs, args: quantile_of(args[0], vs),
    "mad_over_time": _mad,
    "holt_winters": _holt_winters,
    "double_exponential_smoothing": _holt_winters,  # Prometheus 3's name for holt_winters
    "irate": _instant_rate(True),
    "idelta": _instant_rate(False),
    "deriv": _deriv,
    "changes": _changes,
    "resets": _resets,
}


def _over_time(name: str) -> Callable:
    fn = OVER_TIME[name]
    keep_name = name == "last_over_time"

    def impl(ev, node: Call, t: int) -> list[Sample]:
        # quantile_over_time(φ, v): the scalar comes first
        matrix_at = 1 if name == "quantile_over_time" else 0
        args = [ev.eval(a, t) for i, a in enumerate(node.args) if i != matrix_at]
        out = []
        for s in ev.eval(node.args[matrix_at], t):
            value = fn(s.ts, s.values, args)
            if value is not None:
                out.append(Sample(s.labels if keep_name else ev.drop_name(s.labels), value, t))
        return ev.unique(out, name)
    return impl


def _predict_linear(ev, node: Call, t: int) -> list[Sample]:
    arg = node.args[0]
    duration = ev.eval(node.args[1], t)
    out = []
    for s in ev.eval(arg, t):
        if len(s.ts) < 2:
            continue
        slope, intercept = linear_regression(s.ts, s.values, t)
        out.append(Sample(ev.drop_name(s.labels), slope * duration + intercept, t))
    return ev.unique(out, "predict_linear")


# -- instant-vector functions ----------------------------------------------------------
def _round(ev, node: Call, t: int) -> list[Sample]:
    to_nearest = _scalar_arg(ev, node, 1, t, 1.0)
    inverse = 1 / to_nearest if to_nearest != 0 else math.copysign(INF, to_nearest)
    out = []
    for s in ev.eval(node.args[0], t):
        out.append(Sample(ev.drop_name(s.labels), go_div(_round_half_up(s.value * inverse), inverse), t))
    return ev.unique(out, "round")


def _clamp(ev, node: Call, t: int) -> list[Sample]:
    lo, hi = ev.eval(node.args[1], t), ev.eval(node.args[2], t)
    if hi < lo:
        return []
    return ev.unique([Sample(ev.drop_name(s.labels), go_max(lo, go_min(hi, s.value)), t)
                      for s in ev.eval(node.args[0], t)], "clamp")


def _clamp_one(use_max: bool) -> Callable:
    bound_fn = go_min if use_max else go_max

    def impl(ev, node: Call, t: int) -> list[Sample]:
        bound = ev.eval(node.args[1], t)
        return ev.unique([Sample(ev.drop_name(s.labels), bound_fn(s.value, bound), t)
                          for s in ev.eval(node.args[0], t)], "clamp_max" if use_max else "clamp_min")
    return impl


def _time(ev, node: Call, t: int) -> float:
    return t / 1000


def _pi(ev, node: Call, t: int) -> float:
    return math.pi


def _vector(ev, node: Call, t: int) -> list[Sample]:
    return [Sample((), float(ev.eval(node.args[0], t)), t)]


def _scalar(ev, node: Call, t: int) -> float:
    vector = ev.eval(node.args[0], t)
    return vector[0].value if len(vector) == 1 else NAN


def _timestamp(ev, node: Call, t: int) -> list[Sample]:
    # A plain selector argument keeps each sample's own time (engine.go special-cases it);
    # any other expression's samples carry the evaluation time.
    arg = node.args[0]
    vector = ev.eval(arg, t)
    plain = isinstance(arg, Selector)
    return ev.unique([Sample(ev.drop_name(s.labels), (s.ts if plain else t) / 1000, t) for s in vector], "timestamp")


def _date_fn(part: Callable[[datetime], float]) -> Callable:
    def impl(ev, node: Call, t: int) -> list[Sample]:
        if node.args:
            vector = ev.eval(node.args[0], t)
        else:
            vector = [Sample((), t / 1000, t)]
        out = []
        for s in vector:
            try:  # Go's time.Unix(int64(v), 0): whole seconds, truncated towards zero
                value = float(part(datetime.fromtimestamp(int(s.value), tz=timezone.utc)))
            except (ValueError, OverflowError, OSError):  # NaN, infinite, or beyond the calendar
                value = NAN
            out.append(Sample(ev.drop_name(s.labels), value, t))
        return ev.unique(out, "date function")
    return impl


def _days_in_month(d: datetime) -> int:
    nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=timezone.utc)
    return (nxt - datetime(d.year, d.month, 1, tzinfo=timezone.utc)).days


def _sort(descending: bool) -> Callable:
    def impl(ev, node: Call, t: int) -> list[Sample]:
        vector = ev.eval(node.args[0], t)
        # NaN sorts last either way, as Prometheus' vectorByValueHeap/vectorByReverseValueHeap
        nan = [s for s in vector if math.isnan(s.value)]
        rest = sorted((s for s in vector if not math.isnan(s.value)), key=lambda s: s.value, reverse=descending)
        return rest + nan
    return impl


def absent_labels(arg) -> tuple:
    """The labels ``absent()`` gives: the ``=`` matchers of a selector argument, except
    ``__name__`` and labels matched more than once."""
    if not isinstance(arg, Selector):
        return ()
    seen: dict[str, str] = {}
    twice = set()
    for m in arg.matchers:
        if m.name == NAME:
            continue
        if m.name in seen or m.name in twice:
            twice.add(m.name)
            seen.pop(m.name, None)
            continue
        if m.op == "=":
            seen[m.name] = m.value
    return make_labels(seen)


def _absent(ev, node: Call, t: int) -> list[Sample]:
    if ev.eval(node.args[0], t):
        return []
    arg = node.args[0]
    if isinstance(arg, Subquery):
        return [Sample((), 1.0, t)]
    return [Sample(absent_labels(arg), 1.0, t)]


def expand(template: str, match) -> str:  # noqa: ANN001 - re2 match
    """Go ``Regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``. A name is the
    longest run of letters, digits and ``_`` (``$1x`` is the group named ``1x``); an
    unknown group expands to nothing."""
    out = []
    i = 0
    n = len(template)
    while i < n:
        c = template[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            close = template.find("}", i + 2)
            name = template[i + 2:close] if close != -1 else ""
            if close == -1 or not name or not all(ch.isalnum() or ch == "_" for ch in name):
                out.append(c)
                i += 1
                continue
            i = close + 1
        else:
            j = i + 1
            while j < n and (template[j].isascii() and (template[j].isalnum() or template[j] == "_")):
                j += 1
            name = template[i + 1:j]
            if not name:
                out.append(c)
                i += 1
                continue
            i = j
        out.append(_group(match, name))
    return "".join(out)


def _group(match, name: str) -> str:  # noqa: ANN001
    try:
        if name.isdigit():
            value = match.group(int(name))
        else:
            value = match.group(name)
    except (IndexError, KeyError, ValueError):
        return ""
    return value or ""


def _valid_label_name(name: str) -> bool:
    return bool(name) and (name[0].isascii() and (name[0].isalpha() or name[0] == "_")) and all(
        ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)


def _label_replace(ev, node: Call, t: int) -> list[Sample]:
    vector = ev.eval(node.args[0], t)
    dst, replacement, src, pattern = (ev.eval(a, t) for a in node.args[1:5])
    try:
        rx = compile_regex(f"^(?:{pattern})$")
    except BadRegex as exc:
        raise FunctionError(f"label_replace(): {exc}") from None
    if not _valid_label_name(dst):
        raise FunctionError(f"invalid destination label name in label_replace(): {dst}")
    out = []
    for s in vector:
        match = rx.search(get(s.labels, src))
        if match is None:
            out.append(Sample(s.labels, s.value, s.ts))
            continue
        labels = dict(s.labels)
        labels[dst] = expand(replacement, match)
        out.append(Sample(make_labels(labels), s.value, s.ts))
    return ev.unique(out, "label_replace")


def _label_join(ev, node: Call, t: int) -> list[Sample]:
    vector = ev.eval(node.args[0], t)
    dst, sep = ev.eval(node.args[1], t), ev.eval(node.args[2], t)
    sources = [ev.eval(a, t) for a in node.args[3:]]
    if not _valid_label_name(dst):
        raise FunctionError(f"invalid destination label name in label_join(): {dst}")
    for src in sources:
        if not _valid_label_name(src):
            raise FunctionError(f"invalid source label name in label_join(): {src}")
    out = []
    for s in vector:
        labels = dict(s.labels)
        labels[dst] = sep.join(get(s.labels, src) for src in sources)
        out.append(Sample(make_labels(labels), s.value, s.ts))
    return ev.unique(out, "label_join")


# -- histograms -------------------------------------------------------------------------
def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' ``bucketQuantile`` over classic ``(upper bound, cumulative count)``
    buckets: NaN without a ``+Inf`` bucket or observations; counts made monotonic;
    linear interpolation inside the bucket holding the rank."""
    special = _out_of_range_quantile(q)
    if special is not None:
        return special
    buckets = sorted(buckets, key=lambda b: b[0])
    if not buckets or buckets[-1][0] != INF:
        return NAN
    merged: list[list[float]] = []  # buckets with the same bound (after label changes) add up
    for bound, count in buckets:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    top = -INF
    for b in merged:
        if b[1] > top:
            top = b[1]
        elif b[1] < top:
            b[1] = top
    if len(merged) < 2:
        return NAN
    observations = merged[-1][1]
    if observations == 0:
        return NAN
    rank = q * observations
    idx = len(merged) - 1
    for i in range(len(merged) - 1):
        if merged[i][1] >= rank:
            idx = i
            break
    if idx == len(merged) - 1:
        return merged[-2][0]
    if idx == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[idx][0], merged[idx][1]
    if idx > 0:
        start = merged[idx - 1][0]
        count -= merged[idx - 1][1]
        rank -= merged[idx - 1][1]
    return start + (end - start) * (rank / count)


def _histogram_quantile(ev, node: Call, t: int) -> list[Sample]:
    q = ev.eval(node.args[0], t)
    groups: dict = {}
    for s in ev.eval(node.args[1], t):
        le = get(s.labels, "le")
        try:
            bound = float(le)
        except ValueError:
            continue  # not a bucket: Prometheus ignores it
        key = tuple(p for p in s.labels if p[0] != "le")  # the metric name too, as Prometheus
        groups.setdefault(key, []).append((bound, s.value))
    return ev.unique([Sample(ev.drop_name(key), bucket_quantile(q, buckets), t) for key, buckets in groups.items()],
                     "histogram_quantile")


FUNCTIONS: dict[str, Fn] = {
    **{name: Fn(VECTOR, _simple(name)) for name in SIMPLE},
    **{name: Fn(VECTOR, _over_time(name)) for name in OVER_TIME},
    "rate": Fn(VECTOR, _rate_fn(True, True)),
    "increase": Fn(VECTOR, _rate_fn(True, False)),
    "delta": Fn(VECTOR, _rate_fn(False, False)),
    "predict_linear": Fn(VECTOR, _predict_linear),
    "round": Fn(VECTOR, _round),
    "clamp": Fn(VECTOR, _clamp),
    "clamp_min": Fn(VECTOR, _clamp_one(False)),
    "clamp_max": Fn(VECTOR, _clamp_one(True)),
    "time": Fn(SCALAR, _time),
    "pi": Fn(SCALAR, _pi),
    "vector": Fn(VECTOR, _vector),
    "scalar": Fn(SCALAR, _scalar),
    "timestamp": Fn(VECTOR, _timestamp),
    "minute": Fn(VECTOR, _date_fn(lambda d: d.minute)),
    "hour": Fn(VECTOR, _date_fn(lambda d: d.hour)),
    "day_of_month": Fn(VECTOR, _date_fn(lambda d: d.day)),
    "day_of_week": Fn(VECTOR, _date_fn(lambda d: (d.weekday() + 1) % 7)),
    "day_of_year": Fn(VECTOR, _date_fn(lambda d: d.timetuple().tm_yday)),
    "days_in_month": Fn(VECTOR, _date_fn(_days_in_month)),
    "month": Fn(VECTOR, _date_fn(lambda d: d.month)),
    "year": Fn(VECTOR, _date_fn(lambda d: d.year)),
    "sort": Fn(VECTOR, _sort(False)),
    "sort_desc": Fn(VECTOR, _sort(True)),
    "absent": Fn(VECTOR, _absent),
    "absent_over_time": Fn(VECTOR, _absent),
    "label_replace": Fn(VECTOR, _label_replace),
    "label_join": Fn(VECTOR, _label_join),
    "histogram_quantile": Fn(VECTOR, _histogram_quantile),
}


def call(ev, node: Call, t: int):  # noqa: ANN201 - float or list[Sample]
    return FUNCTIONS[node.name].impl(ev, node, t)

