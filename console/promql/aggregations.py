"""Aggregation operators (Prometheus 2.x ``engine.go`` ``aggregation``): ``sum avg min max
count group stddev stdvar topk bottomk quantile count_values`` with ``by``/``without``.

Grouping: ``by (a, b)`` keeps only those labels; ``without (a, b)`` drops them and the
metric name. ``topk``/``bottomk`` keep their elements' full label sets.
"""
from __future__ import annotations

import math

from console.promql.ast import Aggregate
from console.promql.functions import quantile_of
from console.promql.values import NAME, Sample, format_value, make_labels


class AggregationError(Exception):
    """A parameter Prometheus refuses at evaluation time (execution error)."""


def _group_key(labels: tuple, grouping: tuple[str, ...], without: bool) -> tuple:
    if without:
        drop = set(grouping) | {NAME}
        return tuple(p for p in labels if p[0] not in drop)
    keep = set(grouping)
    return tuple(p for p in labels if p[0] in keep)


def _sum(values: list[float]) -> float:
    total = 0.0
    for v in values:  # plain addition in order, as Prometheus 2.x (Python 3.12's sum() compensates)
        total += v
    return total


def _avg(values: list[float]) -> float:
    # Prometheus' running mean: exact enough and never overflows to Inf on large sums.
    mean = values[0]
    count = 1
    for v in values[1:]:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean += v / count - mean / count
    return mean


def _min(values: list[float]) -> float:
    out = values[0]
    for v in values[1:]:
        if out > v or math.isnan(out):
            out = v
    return out


def _max(values: list[float]) -> float:
    out = values[0]
    for v in values[1:]:
        if out < v or math.isnan(out):
            out = v
    return out


def _stdvar(values: list[float]) -> float:
    # Welford's online variance, seeded with the first value as Prometheus does (so one
    # infinite value alone has variance 0, not NaN).
    count, mean, aux = 1.0, values[0], 0.0
    for v in values[1:]:
        count += 1
        delta = v - mean
        mean += delta / count
        aux += delta * (v - mean)
    return aux / count


SIMPLE = {
    "sum": _sum, "avg": _avg, "min": _min, "max": _max,
    "count": lambda values: float(len(values)),
    "group": lambda values: 1.0,
    "stdvar": _stdvar,
    "stddev": lambda values: math.sqrt(_stdvar(values)),
}
AGGREGATIONS = set(SIMPLE) | {"topk", "bottomk", "quantile", "count_values"}


def _k(value: float) -> int:
    if not -(2.0**63) <= value <= 2.0**63 - 1:  # NaN fails both comparisons
        shown = "NaN" if math.isnan(value) else format_value(value) if math.isinf(value) else repr(value)
        raise AggregationError(f"Scalar value {shown} overflows int64")
    return int(value)


def _top(samples: list[Sample], k: int, bottom: bool) -> list[Sample]:
    # NaN is never among the top (or bottom) unless too few others: it sorts last.
    def key(s: Sample) -> tuple:
        nan = math.isnan(s.value)
        return (nan, s.value if bottom or nan else -s.value)
    return sorted(samples, key=key)[:k]


def aggregate(ev, node: Aggregate, t: int) -> list[Sample]:
    vector = ev.eval(node.expr, t)
    groups: dict[tuple, list[Sample]] = {}
    keys = ev.node_cache(node)  # label set -> group key, reused at every step
    for s in vector:
        key = keys.get(s.labels)
        if key is None:
            key = keys[s.labels] = _group_key(s.labels, node.grouping, node.without)
        groups.setdefault(key, []).append(s)
    op = node.op
    if op in SIMPLE:
        fn = SIMPLE[op]
        return [Sample(key, fn([s.value for s in members]), t) for key, members in groups.items()]
    param = ev.eval(node.param, t)
    if op in ("topk", "bottomk"):
        k = _k(param)
        if k < 1:
            return []
        out: list[Sample] = []
        for members in groups.values():
            out.extend(Sample(s.labels, s.value, t) for s in _top(members, k, op == "bottomk"))
        return out
    if op == "quantile":
        return [Sample(key, quantile_of(param, [s.value for s in members]), t) for key, members in groups.items()]
    # count_values("label", v): one output per distinct value in each group
    label = param
    if not label or not (label[0].isalpha() or label[0] == "_") or not all(
            c.isascii() and (c.isalnum() or c == "_") for c in label):
        raise AggregationError(f"invalid label name {label!r}")
    counts: dict[tuple, float] = {}
    for key, members in groups.items():
        for s in members:
            labels = dict(key)
            labels[label] = format_value(s.value)
            out_key = make_labels(labels)
            counts[out_key] = counts.get(out_key, 0.0) + 1
    return [Sample(key, n, t) for key, n in counts.items()]

