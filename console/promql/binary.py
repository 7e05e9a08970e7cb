"""Binary operators (Prometheus 2.x ``engine.go`` ``VectorBinop``, ``VectorscalarBinop``,
``VectorAnd/Or/Unless``): arithmetic ``+ - * / % ^ atan2``, comparisons ``== != > < >= <=``
(filters, or 0/1 with ``bool``), set operators ``and or unless``, with vector matching by
``on``/``ignoring`` and ``group_left``/``group_right``. Go float semantics: ``x/0`` is
an infinity or NaN, ``%`` is ``math.Mod``, ``^`` is ``math.Pow``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from console.promql.ast import Binary
from console.promql.values import NAME, Sample, drop_name

NAN = float("nan")
INF = float("inf")
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
DROPS_NAME = {"+", "-", "*", "/", "%", "^"}  # Prometheus 2.x shouldDropMetricName: not atan2


class MatchingError(Exception):
    """Vector matching Prometheus refuses: many-to-many, or ambiguous group matches."""


def go_div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return NAN
        return math.copysign(INF, a) * math.copysign(1.0, b)
    return a / b


def _mod(a: float, b: float) -> float:
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return NAN
    return math.fmod(a, b)


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return INF if a > 0 or float(b).is_integer() and int(b) % 2 == 0 else -INF
    except ValueError:  # 0 ** negative: Go gives +Inf (or -Inf for -0 and an odd power); negative ** fraction: NaN
        if a == 0:
            odd = float(b).is_integer() and int(b) % 2 == 1
            return -INF if odd and math.copysign(1.0, a) < 0 else INF
        return NAN


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": go_div, "%": _mod, "^": _pow,
    "atan2": math.atan2,
}
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
    "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
}


def scalar_op(op: str, a: float, b: float) -> float:
    if op in ARITHMETIC:
        return float(ARITHMETIC[op](a, b))
    return 1.0 if COMPARE[op](a, b) else 0.0  # scalar comparisons always carry ``bool``


def _signature(node: Binary):
    if node.on:
        keep = set(node.matching)
        return lambda labels: tuple(p for p in labels if p[0] in keep)
    drop = set(node.matching) | {NAME}
    return lambda labels: tuple(p for p in labels if p[0] not in drop)


def binary(ev, node: Binary, t: int):  # noqa: ANN201 - float or list[Sample]
    lhs = ev.eval(node.lhs, t)
    rhs = ev.eval(node.rhs, t)
    op = node.op
    if isinstance(lhs, float) and isinstance(rhs, float):
        return scalar_op(op, lhs, rhs)
    if op in ("and", "or", "unless"):
        return _set_op(node, lhs, rhs)
    if isinstance(rhs, float):
        return ev.unique(_vector_scalar(node, lhs, rhs, swap=False, t=t), op)
    if isinstance(lhs, float):
        return ev.unique(_vector_scalar(node, rhs, lhs, swap=True, t=t), op)
    return ev.unique(_vector_vector(node, lhs, rhs, t), op)


def _vector_scalar(node: Binary, vector: list[Sample], scalar: float, swap: bool, t: int) -> list[Sample]:
    op = node.op
    out = []
    comparison = op in COMPARISONS
    for s in vector:
        a, b = (scalar, s.value) if swap else (s.value, scalar)
        if comparison:
            keep = COMPARE[op](a, b)
            if node.return_bool:
                out.append(Sample(drop_name(s.labels), 1.0 if keep else 0.0, t))
            elif keep:
                out.append(Sample(s.labels, s.value, t))  # the vector's value, on either side
        else:
            labels = drop_name(s.labels) if op in DROPS_NAME else s.labels
            out.append(Sample(labels, float(ARITHMETIC[op](a, b)), t))
    return out


def _result_labels(node: Binary, many: tuple, one: tuple) -> tuple:
    """Prometheus' ``resultMetric``: the metric name goes for arithmetic (not ``atan2``) and ``bool``; a
    one-to-one ``on`` keeps only the ``on`` labels, ``ignoring`` drops its labels; group
    modifiers copy their listed labels from the "one" side (or drop them there absent)."""
    labels = dict(many)
    if node.op in DROPS_NAME or node.return_bool:
        labels.pop(NAME, None)
    if node.card == "one-to-one":
        if node.on:
            labels = {k: v for k, v in labels.items() if k in node.matching}
        else:
            for name in node.matching:
                labels.pop(name, None)
    one_labels = dict(one)
    for name in node.include:
        value = one_labels.get(name, "")
        if value:
            labels[name] = value
        else:
            labels.pop(name, None)
    return tuple(sorted(labels.items()))


def _vector_vector(node: Binary, lhs: list[Sample], rhs: list[Sample], t: int) -> list[Sample]:
    if not lhs or not rhs:
        return []  # nothing can match, and duplicates on one side are no error then (as Prometheus)
    op = node.op
    sig = _signature(node)
    many, one = lhs, rhs
    if node.card == "one-to-many":
        many, one = rhs, lhs
    one_by_sig: dict[tuple, Sample] = {}
    for s in one:
        key = sig(s.labels)
        if key in one_by_sig:
            side = "left" if node.card == "one-to-many" else "right"
            raise MatchingError(f"found duplicate series for the match group {dict(key)} on the {side} hand-side "
                                "of the operation; many-to-many matching not allowed: matching labels must be "
                                "unique on one side")
        one_by_sig[key] = s
    matched: dict[tuple, set] = {}  # match signature -> label sets it produced
    out = []
    for s in many:
        key = sig(s.labels)
        other = one_by_sig.get(key)
        if other is None:
            continue
        a, b = (s.value, other.value) if node.card != "one-to-many" else (other.value, s.value)
        if op in COMPARISONS:
            keep = COMPARE[op](a, b)
            if node.return_bool:
                value = 1.0 if keep else 0.0
            elif not keep:
                continue
            else:
                value = a
        else:
            value = float(ARITHMETIC[op](a, b))
        labels = _result_labels(node, s.labels, other.labels)
        if node.card == "one-to-one":
            if key in matched:
                raise MatchingError("multiple matches for labels: many-to-one matching must be explicit "
                                    "(group_left/group_right)")
            matched[key] = set()
        else:
            produced = matched.setdefault(key, set())
            if labels in produced:
                raise MatchingError("multiple matches for labels: grouping labels must ensure unique matches")
            produced.add(labels)
        out.append(Sample(labels, value, t))
    return out


def _set_op(node: Binary, lhs: list[Sample], rhs: list[Sample]) -> list[Sample]:
    sig = _signature(node)
    if node.op == "and":
        right = {sig(s.labels) for s in rhs}
        return [s for s in lhs if sig(s.labels) in right]
    if node.op == "unless":
        right = {sig(s.labels) for s in rhs}
        return [s for s in lhs if sig(s.labels) not in right]
    left = {sig(s.labels) for s in lhs}
    return list(lhs) + [s for s in rhs if sig(s.labels) not in left]
