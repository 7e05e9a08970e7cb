"""Parsing and validation of ingest bodies (the ingest body in the README).

A body is rejected whole, with the JSON path of the first problem, before anything is
stored; nothing of a rejected body is kept.
"""
from __future__ import annotations

import functools
import math
import re
import sys
import zlib
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Annotated, Any, Literal, get_args

import msgspec
import orjson

from console.errors import ApiError
from console.logs.levels import normalise_level

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")  # Prometheus data model
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
HOST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
BATCH_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MetricType = Literal["gauge", "counter"]
METRIC_TYPES: tuple[str, ...] = get_args(MetricType)
MAX_LABELS = 64
MAX_LABEL_VALUE = 4096  # characters
MAX_LOG_LINE = 64 * 1024  # characters
# JSON has no NaN or Inf; a value sent as one of these strings (Prometheus' JSON spelling)
# is dropped on its own and counted as ``non_finite``; any other non-number fails the body.
NON_FINITE_STRINGS = frozenset(("NaN", "Inf", "+Inf", "-Inf"))


class IngestError(ApiError):
    """A rejected body: ``status`` (400/413/415), ``code`` (snake_case), message, details."""


class MetricIn(msgspec.Struct, gc=False):
    """One series of a batch. A Struct, not a dataclass: built in C (~0.25 us less per
    series of a batch) and not tracked by the cyclic collector (it holds no cycle: strings
    and a list of number pairs)."""

    name: str
    type: str
    labels_json: str  # canonical JSON, sorted keys
    points: list[tuple[int, float]]  # (Unix ms, value)
    non_finite: int = 0  # points dropped because their value was "NaN"/"Inf"/"+Inf"/"-Inf"


@dataclass(slots=True)
class LogIn:
    ts: int  # Unix ms
    source: str
    line: str
    labels_json: str
    level: str | None = None  # normalised from labels["level"] (console/logs/levels.py)


_metric_points = attrgetter("points")
_stamp = itemgetter(0)
_log_ts = attrgetter("ts")


@dataclass
class Batch:
    host: str
    batch_id: str
    sent_at: float | None
    agent_version: str | None
    interval: float | None
    labels_json: str
    metrics: list[MetricIn] = field(default_factory=list)
    logs: list[LogIn] = field(default_factory=list)
    config_hash: str | None = None  # agent's effective-config hash (drift); None from older agents
    # Remote write: no batch id (batch_id ""), and a sample outside the time window or of a
    # series over the cap fails the whole batch (IngestRejected) instead of being skipped.
    all_or_nothing: bool = False

    # Both are read on the ingest path for every batch; the iteration runs in C (map,
    # chain): a Python loop over 500 points cost ~6 % of the writer's time.
    @functools.cached_property
    def sample_count(self) -> int:
        """Points in ``metrics``; read first once the batch is built (decoded, or converted
        from remote write), and cached: read three times per batch."""
        return sum(map(len, map(_metric_points, self.metrics)))

    @property
    def last_ts(self) -> int | None:
        """The newest sample's or log line's time (Unix ms); None for an empty batch."""
        newest = max(map(_stamp, chain.from_iterable(map(_metric_points, self.metrics))), default=None)
        if self.logs:
            newest_log = max(map(_log_ts, self.logs))
            newest = newest_log if newest is None else max(newest, newest_log)
        return newest


def canonical_labels(labels: dict[str, str]) -> str:
    """Labels as stored and compared: compact JSON with sorted keys, UTF-8 kept as is."""
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def inflate(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Bytes (optionally gzip) -> the JSON text. Raises IngestError 413 when the inflated
    body exceeds ``max_bytes``, 400 for bad gzip, 415 for other encodings."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise IngestError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from None
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise IngestError(413, "body_too_large",
                              f"decompressed body exceeds {max_bytes} bytes",
                              {"limit_bytes": max_bytes})
        if not inflater.eof:
            raise IngestError(400, "invalid_gzip", "gzip stream is truncated")
    elif encoding != "identity":
        raise IngestError(415, "unsupported_encoding",
                          f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    return body


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> Any:
    """Bytes (optionally gzip) -> JSON value. Raises IngestError 413 when the inflated body
    exceeds ``max_bytes``, 400 for bad gzip or bad JSON, 415 for other encodings."""
    return load_json(inflate(body, content_encoding, max_bytes))


def load_json(body: bytes) -> Any:
    """JSON text -> value; IngestError 400 ``invalid_json`` when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {exc}") from None


def _fail(path: str, message: str) -> IngestError:
    return IngestError(400, "invalid_batch", f"{path}: {message}", {"path": path})


def _labels(value: Any, path: str) -> str:
    if value is None or value == {}:  # most log records carry none
        return "{}"
    if not isinstance(value, dict):
        raise _fail(path, "labels must be an object of string values")
    if len(value) > MAX_LABELS:
        raise _fail(path, f"at most {MAX_LABELS} labels")
    for key, item in value.items():
        if not LABEL_NAME_RE.fullmatch(key):
            raise _fail(f"{path}.{key}", "label name must match [a-zA-Z_][a-zA-Z0-9_]*")
        if not isinstance(item, str):
            raise _fail(f"{path}.{key}", "label value must be a string")
        if len(item) > MAX_LABEL_VALUE:
            raise _fail(f"{path}.{key}", f"label value longer than {MAX_LABEL_VALUE} characters")
    return canonical_labels(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _points(value: Any, path: str) -> tuple[list[tuple[int, float]], int]:
    """-> (points, count of non-finite values dropped). The hot loop of ingest: exact type
    checks (bool is not a number here) keep it cheap."""
    if type(value) is not list:
        raise _fail(path, "points must be a list of [ts_ms, value]")
    points: list[tuple[int, float]] = []
    append = points.append
    dropped = 0
    for i, point in enumerate(value):
        if type(point) is not list or len(point) != 2:
            raise _fail(f"{path}[{i}]", "a point is [ts_ms, value]")
        ts, val = point
        if type(ts) is float and ts.is_integer():  # JSON Schema's integer: 5.0 is 5 (rare; ints stay fast)
            ts = int(ts)
        if type(ts) is not int or not 0 <= ts < 9007199254740992:  # 2**53
            raise _fail(f"{path}[{i}]", "timestamp must be a non-negative integer of Unix ms")
        kind = type(val)
        if kind is float:
            if not math.isfinite(val):
                raise _fail(f"{path}[{i}]", "value must be a finite number")
        elif kind is int:
            val = float(val)
        elif kind is str and val in NON_FINITE_STRINGS:
            dropped += 1
            continue
        else:
            raise _fail(f"{path}[{i}]", "value must be a finite number")
        append((ts, val))
    return points, dropped


def parse_batch(doc: Any) -> Batch:
    """Validate a decoded ingest body and return a Batch. Raises IngestError (400)."""
    if not isinstance(doc, dict):
        raise _fail("$", "body must be a JSON object")
    host = doc.get("host")
    if not isinstance(host, str) or not HOST_NAME_RE.fullmatch(host):
        raise _fail("host", "host must be a name of letters, digits, '.', '_' and '-'")
    batch_id = doc.get("batch_id")
    if not isinstance(batch_id, str) or not BATCH_ID_RE.fullmatch(batch_id):
        raise _fail("batch_id", "batch_id must be 1 to 64 characters of [A-Za-z0-9_-]")
    sent_at = doc.get("sent_at")
    if sent_at is not None and not _number(sent_at):
        raise _fail("sent_at", "sent_at must be Unix seconds")
    agent = doc.get("agent")
    if agent is None:
        agent = {}
    elif not isinstance(agent, dict):  # false, 0 or "" are not an absent agent
        raise _fail("agent", "agent must be an object")
    version = agent.get("version")
    if version is not None and (not isinstance(version, str) or len(version) > 64 or "\x00" in version):
        raise _fail("agent.version", "version must be a string of at most 64 characters, without NUL")
    interval = agent.get("interval")
    if interval is not None and (not _number(interval) or not 0 < interval <= 86400):
        raise _fail("agent.interval", "interval must be seconds in (0, 86400]")
    config_hash = agent.get("config_hash")
    if config_hash is not None and (not isinstance(config_hash, str) or not 0 < len(config_hash) <= 64
                                    or "\x00" in config_hash):
        raise _fail("agent.config_hash", "config_hash must be a string of 1 to 64 characters, without NUL")
    batch = Batch(host=host, batch_id=batch_id, sent_at=sent_at, agent_version=version,
                  interval=float(interval) if interval is not None else None,
                  labels_json=_labels(doc.get("labels"), "labels"), config_hash=config_hash)
    metrics = doc.get("metrics", [])
    if not isinstance(metrics, list):
        raise _fail("metrics", "metrics must be a list")
    for i, metric in enumerate(metrics):
        path = f"metrics[{i}]"
        if not isinstance(metric, dict):
            raise _fail(path, "a metric is an object")
        name = metric.get("name")
        if not isinstance(name, str) or not METRIC_NAME_RE.fullmatch(name) or len(name) > 255:
            raise _fail(f"{path}.name", "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*")
        kind = metric.get("type", "gauge")
        if kind not in METRIC_TYPES:
            raise _fail(f"{path}.type", f"type must be one of {', '.join(METRIC_TYPES)}")
        points, dropped = _points(metric.get("points"), f"{path}.points")
        batch.metrics.append(MetricIn(name, kind, _labels(metric.get("labels"), f"{path}.labels"),
                                      points, dropped))
    logs = doc.get("logs", [])
    if not isinstance(logs, list):
        raise _fail("logs", "logs must be a list")
    for i, record in enumerate(logs):
        path = f"logs[{i}]"
        if not isinstance(record, dict):
            raise _fail(path, "a log record is an object")
        ts, source, line = record.get("ts"), record.get("source", ""), record.get("line")
        if type(ts) is float and ts.is_integer():  # JSON Schema's integer: 5.0 is 5
            ts = int(ts)
        if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < 2**53:
            raise _fail(f"{path}.ts", "ts must be a non-negative integer of Unix ms")
        if not isinstance(source, str) or len(source) > 1024:
            raise _fail(f"{path}.source", "source must be a string of at most 1024 characters")
        if not isinstance(line, str) or len(line) > MAX_LOG_LINE:
            raise _fail(f"{path}.line", f"line must be a string of at most {MAX_LOG_LINE} characters")
        # PostgreSQL text cannot hold NUL; both back-ends store U+FFFD so they answer alike.
        if "\x00" in line:
            line = line.replace("\x00", "\ufffd")
        if "\x00" in source:
            source = source.replace("\x00", "\ufffd")
        labels = record.get("labels")
        level = normalise_level(labels.get("level")) if isinstance(labels, dict) else None
        batch.logs.append(LogIn(ts, source, line, _labels(labels, f"{path}.labels"), level))
    return batch


# -- one-pass decoding -----------------------------------------------------------------------
# The ingest body as msgspec types: msgspec decodes and checks a body of the usual shape in
# one pass in C (https://jcristharif.com/msgspec/structs.html, /constraints.html). These
# types are stricter than the ingest body: whatever they refuse (a malformed body, but also
# a value sent as "NaN", a timestamp written 5.0) goes through :func:`parse_batch`, which
# either accepts it or gives today's error answer, so both paths answer alike.
Timestamp = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]  # Unix ms
FiniteValue = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
Interval = Annotated[float, msgspec.Meta(gt=0, le=86400)]
MAX_CACHED_LABELS_TEXT = 1024  # bytes; a longer label set is canonicalised each time


class _Metric(msgspec.Struct, gc=False):
    name: str
    points: list[tuple[Timestamp, FiniteValue]]
    type: MetricType = "gauge"
    # Kept as the JSON text: an agent sends a series' labels the same way every time, so the
    # text (with the name) keys the cache of canonical label sets (BatchDecoder).
    labels: msgspec.Raw = msgspec.Raw(b"{}")


class _Log(msgspec.Struct, gc=False):
    ts: Timestamp
    line: Annotated[str, msgspec.Meta(max_length=MAX_LOG_LINE)]
    source: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    labels: dict[str, str] | None = None


class _Agent(msgspec.Struct):
    version: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    interval: Interval | None = None
    config_hash: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class _Body(msgspec.Struct):
    host: str
    batch_id: str
    sent_at: float | None = None
    agent: _Agent | None = None
    labels: dict[str, str] | None = None
    metrics: list[_Metric] = []
    logs: list[_Log] = []


class BatchDecoder:
    """Ingest body bytes -> Batch in one pass (:class:`_Body`), with a cache of canonical
    label sets keyed by (metric name, the labels' JSON text as sent): a steady agent's
    series are validated and canonicalised once, not once per batch. ``max_cached`` bounds
    the cache (cleared when full). Used on the IOLoop thread only."""

    def __init__(self, max_cached: int = 200_000) -> None:
        self._decoder = msgspec.json.Decoder(_Body)
        self._labels: dict[tuple[str, bytes], str] = {}
        self.max_cached = max_cached

    def decode(self, body: bytes, content_encoding: str | None, max_bytes: int) -> Batch:
        """Inflate, decode and validate; raises IngestError (400/413/415) as
        :func:`decode_body` + :func:`parse_batch` do."""
        text = inflate(body, content_encoding, max_bytes)
        try:
            doc = self._decoder.decode(text)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return parse_batch(load_json(text))
        return self._batch(doc) or parse_batch(load_json(text))

    def _batch(self, doc: _Body) -> Batch | None:
        """The Batch of ``doc``, or None when a check outside the types fails (the caller
        then gives the exact answer through :func:`parse_batch`)."""
        if not HOST_NAME_RE.fullmatch(doc.host) or not BATCH_ID_RE.fullmatch(doc.batch_id):
            return None
        agent = doc.agent or _Agent()
        if (agent.version and "\x00" in agent.version) or (agent.config_hash and "\x00" in agent.config_hash):
            return None
        if doc.labels and not self._valid_labels(doc.labels):
            return None
        metrics = []
        cache = self._labels
        for m in doc.metrics:
            key = (m.name, bytes(m.labels))
            labels_json = cache.get(key)
            if labels_json is None:
                labels_json = self._series_labels(m.name, key[1])
                if labels_json is None:
                    return None
                if len(key[1]) <= MAX_CACHED_LABELS_TEXT:  # bounds the cache's memory
                    if len(cache) >= self.max_cached:
                        cache.clear()
                    cache[key] = labels_json
            metrics.append(MetricIn(m.name, m.type, labels_json, m.points))
        logs = []
        for r in doc.logs:
            line, source = r.line, r.source
            # PostgreSQL text cannot hold NUL; both back-ends store U+FFFD so they answer alike.
            if "\x00" in line:
                line = line.replace("\x00", "\ufffd")
            if "\x00" in source:
                source = source.replace("\x00", "\ufffd")
            if r.labels:
                if not self._valid_labels(r.labels):
                    return None
                logs.append(LogIn(r.ts, source, line, canonical_labels(r.labels), normalise_level(r.labels.get("level"))))
            else:
                logs.append(LogIn(r.ts, source, line, "{}", None))
        return Batch(host=doc.host, batch_id=doc.batch_id, sent_at=doc.sent_at, agent_version=agent.version,
                     interval=agent.interval, labels_json=canonical_labels(doc.labels) if doc.labels else "{}",
                     metrics=metrics, logs=logs, config_hash=agent.config_hash)

    @staticmethod
    def _valid_labels(labels: dict[str, str]) -> bool:
        return len(labels) <= MAX_LABELS and all(
            LABEL_NAME_RE.fullmatch(k) and len(v) <= MAX_LABEL_VALUE for k, v in labels.items())

    def _series_labels(self, name: str, raw: bytes) -> str | None:
        """Canonical labels of a series first seen, or None when its name or labels are invalid."""
        if not METRIC_NAME_RE.fullmatch(name) or len(name) > 255:
            return None
        try:
            labels = msgspec.json.decode(raw, type=dict[str, str] | None)
        except msgspec.ValidationError:
            return None
        if labels and not self._valid_labels(labels):
            return None
        return canonical_labels(labels) if labels else "{}"
