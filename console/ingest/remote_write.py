"""Prometheus remote write 1.0 bodies -> the ingest service's :class:`Batch`.

Protocol (https://prometheus.io/docs/concepts/remote_write_spec/): the body is a
``prometheus.WriteRequest`` protobuf (console/ingest/prompb.py), compressed with snappy's
*block* format, sent with ``Content-Encoding: snappy`` and ``Content-Type:
application/x-protobuf``. Every problem with a body raises :class:`IngestError` 400
(415 for a remote write 2.0 body or another encoding, 413 over ``max_bytes``) before
anything is stored, so the sender does not retry it.

Label model: a series keeps exactly the labels Prometheus sent, less ``__name__``, which
is its name (``instance`` and ``job`` included); nothing is added. Label names with an
empty value are left out, as Prometheus treats ``x=""`` as no label ``x``.

Values: a stale marker (the NaN with bits ``0x7ff0000000000002`` Prometheus writes when
a series disappears from its target) is not a sample and is not stored: it is counted in
:attr:`RemoteWrite.stale_markers`. Other NaN and ±Inf values cannot be stored either
(as for agent ingest): they are counted per host as ``non_finite`` rejections.
Exemplars and metadata are not stored (counted); native histograms are refused (400).
"""
from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import cramjam
from google.protobuf.message import DecodeError

from console.ingest import prompb
from console.ingest.batch import (LABEL_NAME_RE, MAX_LABEL_VALUE, MAX_LABELS, METRIC_NAME_RE, Batch, IngestError,
                                  MetricIn, canonical_labels)

STALE_NAN_BITS = 0x7FF0000000000002  # Prometheus' value.StaleNaN
_DOUBLE = struct.Struct("<d")
_UINT64 = struct.Struct("<Q")
# Series names whose samples only grow: the rollups then keep their increase (counter).
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
MAX_TIMESTAMP = 2**53  # as agent ingest: Unix ms that a JSON number holds exactly


@dataclass
class RemoteWrite:
    """A decoded request: the batch to store and what was left out of it (counts)."""

    batch: Batch
    stale_markers: int = 0
    exemplars: int = 0
    metadata: int = 0


def _bad(message: str, code: str = "invalid_write_request") -> IngestError:
    return IngestError(400, code, message)


def decode_body(body: bytes, content_encoding: str | None, content_type: str | None, max_bytes: int):
    """Snappy block-compressed bytes -> ``prompb.WriteRequest``. Raises IngestError:
    415 for another encoding or a remote write 2.0 body, 413 when the body inflates
    beyond ``max_bytes``, 400 for bad snappy or bad protobuf."""
    encoding = (content_encoding or "").strip().lower()
    if encoding != "snappy":
        raise IngestError(415, "unsupported_encoding",
                          f"Content-Encoding must be snappy (remote write 1.0), got {content_encoding!r}")
    media, _, params = (content_type or "application/x-protobuf").partition(";")
    if media.strip().lower() != "application/x-protobuf":
        raise IngestError(415, "unsupported_media_type",
                          f"Content-Type must be application/x-protobuf, got {content_type!r}")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto" and value.strip() not in ("prometheus.WriteRequest", ""):
            raise IngestError(415, "unsupported_media_type",
                              f"only remote write 1.0 (prometheus.WriteRequest) is accepted, got {value.strip()!r}")
    try:
        size = cramjam.snappy.decompress_raw_len(body)  # the length the block's header states
    except cramjam.DecompressionError as exc:
        raise _bad(f"body is not snappy block format: {exc}", "invalid_snappy") from None
    if size > max_bytes:
        raise IngestError(413, "body_too_large", f"decompressed body exceeds {max_bytes} bytes",
                          {"limit_bytes": max_bytes})
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise _bad(f"body is not snappy block format: {exc}", "invalid_snappy") from None
    try:
        return prompb.WriteRequest.FromString(raw)
    except DecodeError as exc:
        raise _bad(f"body is not a prometheus.WriteRequest: {exc}", "invalid_protobuf") from None


@functools.lru_cache(maxsize=65536)
def _names_problem(name: str, label_names: tuple[str, ...]) -> str | None:
    """Why a series name and its label names are invalid, or None. A pure function of a
    few strings, memoised: a Prometheus sends the same few name sets again and again."""
    if not METRIC_NAME_RE.fullmatch(name) or len(name) > 255:
        return (f"__name__ {name!r} is missing or not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, "
                "at most 255 characters)")
    if len(label_names) > MAX_LABELS:
        return f"more than {MAX_LABELS} labels"
    for key in label_names:
        if not LABEL_NAME_RE.fullmatch(key):
            return f"label name {key!r} must match [a-zA-Z_][a-zA-Z0-9_]*"
    return None


def _series_key(labels, index: int) -> tuple[str, str]:  # noqa: ANN001 - repeated prompb.Label
    """-> (name, canonical labels JSON) of one TimeSeries; raises IngestError 400."""
    named = {label.name: label.value for label in labels}
    if len(named) != len(labels):
        raise _bad(f"timeseries[{index}]: a label name appears twice", "invalid_labels")
    name = named.pop("__name__", "")
    problem = _names_problem(name, tuple(named))
    if problem:
        raise _bad(f"timeseries[{index}]: {problem}", "invalid_labels")
    values = named.values()
    if values and (max(map(len, values)) > MAX_LABEL_VALUE or "\x00" in "".join(values)):
        raise _bad(f"timeseries[{index}]: a label value holds NUL or is longer than {MAX_LABEL_VALUE} "
                   "characters", "invalid_labels")
    if "" in values:
        named = {key: value for key, value in named.items() if value}
    return name, canonical_labels(named)


class RemoteWriteDecoder:
    """Turns request bodies into batches (:meth:`decode`), remembering the series it has
    validated: a Prometheus sends the same label sets every scrape interval, and a label
    set's wire bytes (the ``TimeSeries`` less its samples) are cheaper to look up than its
    labels are to read, check and serialise again. Used on the IOLoop thread only.

    ``max_cached``: label sets remembered; the memory is dropped whole when full."""

    def __init__(self, max_cached: int = 200_000) -> None:
        self.max_cached = max_cached
        self._keys: dict[bytes, tuple[str, str]] = {}

    def decode(self, body: bytes, content_encoding: str | None, content_type: str | None, max_bytes: int,
               host: str) -> RemoteWrite:
        """The body of one request -> :class:`RemoteWrite` for ``host``; raises IngestError
        (see :func:`decode_body` and :meth:`to_batch`)."""
        return self.to_batch(decode_body(body, content_encoding, content_type, max_bytes), host)

    def to_batch(self, request, host: str) -> RemoteWrite:  # noqa: ANN001 - prompb.WriteRequest
        """One WriteRequest -> a :class:`Batch` for ``host`` (no batch id: not deduplicated,
        all or nothing). Series sent twice in one request are merged. Raises IngestError
        400 for invalid labels, timestamps or a native histogram."""
        metrics: dict[tuple[str, str], MetricIn] = {}
        out = RemoteWrite(Batch(host=host, batch_id="", sent_at=None, agent_version=None, interval=None,
                                labels_json="{}", all_or_nothing=True))
        keys = self._keys
        isfinite = math.isfinite
        for index, series in enumerate(request.timeseries):
            if series.histograms:
                raise _bad(f"timeseries[{index}]: native histograms are not supported; send classic histograms",
                           "unsupported_histogram")
            if series.exemplars:
                out.exemplars += len(series.exemplars)
                series.ClearField("exemplars")
            samples = series.samples
            non_finite = 0
            if len(samples) == 1:  # the usual case: one sample per series and request
                sample = samples[0]
                ts, value = sample.timestamp, sample.value
                points = [(ts, value)] if 0 <= ts < MAX_TIMESTAMP and isfinite(value) else None
            else:
                points = None
            if points is None:
                points = []
                for sample in samples:
                    ts, value = sample.timestamp, sample.value
                    if 0 <= ts < MAX_TIMESTAMP and isfinite(value):
                        points.append((ts, value))
                    elif not 0 <= ts < MAX_TIMESTAMP:
                        raise _bad(f"timeseries[{index}]: timestamp {ts} is not Unix ms in [0, 2^53)",
                                   "invalid_timestamp")
                    elif _UINT64.unpack(_DOUBLE.pack(value))[0] == STALE_NAN_BITS:
                        out.stale_markers += 1
                    else:
                        non_finite += 1
            series.ClearField("samples")
            wire = series.SerializeToString()  # the labels alone, as sent
            key = keys.get(wire)
            if key is None:
                key = _series_key(series.labels, index)
                if len(keys) >= self.max_cached:
                    keys.clear()
                keys[wire] = key
            if not points and not non_finite:
                continue  # no samples, or stale markers only: nothing to store, no series to create
            metric = metrics.get(key)
            if metric is None:
                kind = "counter" if key[0].endswith(COUNTER_SUFFIXES) else "gauge"
                metrics[key] = MetricIn(key[0], kind, key[1], points, non_finite)
            else:
                metric.points.extend(points)
                metric.non_finite += non_finite
        out.metadata = len(request.metadata)
        out.batch.metrics = list(metrics.values())
        return out
