"""Value types of the evaluator and their Prometheus JSON form.

A label set is a ``Labels`` tuple of ``(name, value)`` pairs sorted by name (hashable, so
it keys dicts); the metric name is the ``__name__`` label. An instant vector is a list of
``Sample``; a range vector a list of ``SeriesPoints``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import orjson

Labels = tuple  # tuple[tuple[str, str], ...], sorted by label name
NAME = "__name__"


def make_labels(mapping: dict[str, str]) -> Labels:
    """``{"b": "2", "a": "1"}`` -> ``(("a", "1"), ("b", "2"))``; empty values are dropped
    (in Prometheus a label with an empty value does not exist)."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != NAME)


def get(labels: Labels, name: str) -> str:
    for k, v in labels:
        if k == name:
            return v
    return ""


@dataclass(slots=True)
class Sample:
    """One element of an instant vector. ``ts`` (Unix ms) is the sample's own time where
    it came straight from storage (``timestamp()`` reads it), else the evaluation time."""

    labels: Labels
    value: float
    ts: int = 0


@dataclass(slots=True)
class SeriesPoints:
    """One series of a range vector: parallel lists of Unix ms and values, time-ordered."""

    labels: Labels
    ts: list
    values: list


def format_value(value: float) -> str:
    """A float as Prometheus writes it (Go ``strconv.FormatFloat(v, 'f', -1, 64)``):
    the shortest decimal that reads back exactly, never an exponent; ``+Inf``, ``-Inf``,
    ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "-0" if text == "-0" else text


def format_values(values: list[float]) -> list[str]:
    """``[format_value(v) for v in values]``, formatted in one ``orjson`` call: its floats
    are the same shortest round-trip digits as ``repr``; values it writes with an exponent,
    or as ``null`` (NaN, +-Inf), go through :func:`format_value`."""
    if not values:
        return []
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode()
    if "e" not in text and "n" not in text:  # no exponent, no null: whole numbers lose ".0", in C
        # A shortest round-trip float ends in ".0" only when it is whole, and "1.05" has no
        # ".0," in it: so every ".0," is the end of a whole number.
        return (text + ",").replace(".0,", ",")[:-1].split(",")
    out = text.split(",")
    for i, item in enumerate(out):
        if item.endswith(".0"):
            out[i] = item[:-2]
        elif "e" in item or item == "null":
            out[i] = format_value(values[i])
    return out


def format_time(ts_ms: int) -> float | int:
    """Unix ms -> the JSON number Prometheus writes (seconds, up to ms precision)."""
    return ts_ms // 1000 if ts_ms % 1000 == 0 else ts_ms / 1000
