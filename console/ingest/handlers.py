"""``POST /api/v1/ingest`` and the Prometheus remote write receiver: streamed body with a
size cap, then validate, store, publish."""
from __future__ import annotations

from typing import Any

import tornado.web
from tornado.http1connection import HTTP1Connection

from console.errors import ApiError
from console.handlers import ApiHandler
from console.ingest.admission import retry_after_header
from console.ingest.batch import Batch, IngestError
from console.ingest.service import IngestRejected, IngestResult
from console.params import INT64_MAX, ascii_uint


@tornado.web.stream_request_body
class IngestHandler(ApiHandler):
    _streaming = True
    _body_read = False  # post() runs once the whole body has arrived

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # An error from prepare (401/403/413) comes before the body was read: Tornado then
        # closes the connection rather than read the rest, so say so (RFC 9112 section 9.6),
        # or a client keeping it alive sends its next request into a reset. Any answer
        # before post() ran (405 too) closes, the one rule being simpler than the cases.
        if not self._body_read:
            self.set_header("Connection", "close")
        super().write_error(status_code, **kwargs)

    async def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._cap = self.services.config.console.max_body_bytes
        self._too_large = False
        # A body up to 4x the cap is read and discarded so the agent receives a clean JSON 413
        # (answering mid-upload makes clients see a connection reset instead); beyond that
        # the answer comes at once.
        drain_limit = self._cap * 4
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):  # tornado's HTTP/1 server: always
            connection.set_max_body_size(drain_limit + 1)
        await super().prepare()
        length = ascii_uint(self.request.headers.get("Content-Length") or "", INT64_MAX)
        if length is not None and length > drain_limit:
            self._reject_size()

    @property
    def agent_host(self) -> str:
        """The host the calling agent token is bound to. The ingest routes need the ``agent``
        role, which only agent tokens have, and every agent token names its host."""
        host = self.principal.host
        if host is None:
            raise ApiError(403, "forbidden", "this needs the agent role")
        return host

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._cap:
            self._too_large = True
            self._chunks = []
        elif not self._too_large:
            self._chunks.append(chunk)

    async def store_batch(self, batch: Batch, busy_status: int) -> IngestResult:
        """Store ``batch`` within the bound on in-flight writes. Raises ApiError
        ``busy_status`` + Retry-After when every slot is taken, 400 ``samples_rejected``
        when an all-or-nothing batch was refused (nothing stored)."""
        metrics = self.services.metrics
        admission = self.services.admission
        if admission and not admission.try_enter():
            metrics.ingest_batches.labels("saturated").inc()
            raise ApiError(busy_status, "ingest_saturated", f"{admission.max_inflight} batches are already "
                           "waiting for the database", headers={"Retry-After": retry_after_header(1.0)})
        try:
            return await self.services.ingest.ingest(batch)
        except IngestRejected:  # 400 samples_rejected, nothing stored
            metrics.ingest_batches.labels("rejected").inc()
            raise
        except Exception:
            metrics.ingest_batches.labels("error").inc()
            raise
        finally:
            if admission:
                admission.leave()

    def _reject_size(self) -> None:
        self.services.metrics.ingest_batches.labels("too_large").inc()
        raise ApiError(413, "body_too_large", f"body exceeds {self._cap} bytes", {"limit_bytes": self._cap})

    async def post(self) -> None:
        self._body_read = True
        metrics = self.services.metrics
        if self._too_large:
            self._reject_size()
        admission = self.services.admission
        host = self.agent_host
        wait = admission.rate_wait(host) if admission else 0.0
        if wait:
            metrics.ingest_batches.labels("rate_limited").inc()
            raise ApiError(429, "rate_limited", f"host {host!r} sends faster than "
                           f"{admission.rate:g} batches/s", {"retry_after_seconds": wait},
                           headers={"Retry-After": retry_after_header(wait)})
        await self.services.ingest.writer_quiet()
        try:
            batch = self.services.ingest.decode(b"".join(self._chunks), self.request.headers.get("Content-Encoding"),
                                                self._cap)
        except IngestError:
            metrics.ingest_batches.labels("invalid").inc()
            raise
        if batch.host != host:
            metrics.ingest_batches.labels("forbidden").inc()
            raise ApiError(403, "host_mismatch",
                           f"this agent token is bound to host {host!r}, not {batch.host!r}")
        if admission:
            wait, limit = admission.volume_wait(host, batch.sample_count, len(batch.logs))
            if wait:
                metrics.ingest_batches.labels("rate_limited").inc()
                rate = admission.volume[limit][0]
                raise ApiError(429, "rate_limited", f"host {host!r} sends more than {rate:g} {limit}/s",
                               {"retry_after_seconds": wait, "limit": limit},
                               headers={"Retry-After": retry_after_header(wait)})
        result = await self.store_batch(batch, busy_status=429)
        metrics.ingest_batches.labels("duplicate" if result.duplicate else "stored").inc()
        metrics.ingest_samples.inc(result.accepted_samples)
        metrics.ingest_logs.inc(result.accepted_logs)
        if result.clock_skew_seconds is not None:
            metrics.host_clock_skew.labels(batch.host).set(result.clock_skew_seconds)
        self.write_json(result.as_json())
        if not result.duplicate:
            self.services.bus.publish(f"host:{batch.host}", {
                "host": batch.host, "last_ts": result.last_ts,
                "accepted_samples": result.accepted_samples, "accepted_logs": result.accepted_logs})
            topic = f"logs:{batch.host}"
            # The frame costs a dict per line: build it only for someone tailing this host.
            if batch.logs and self.services.logs is not None and self.services.bus.has_subscribers(topic):
                self.services.bus.publish(topic, self.services.logs.live_frame(batch.host, batch.logs))


class RemoteWriteHandler(IngestHandler):
    """``POST /api/v1/write`` (and ``/prometheus/api/v1/write``): Prometheus remote write 1.0
    (console/ingest/remote_write.py), authenticated by an agent token whose host the series
    are stored under. Answers 204 when every sample was stored; 400 (not retried by the
    sender) for a malformed body or a sample outside the time window or over the series
    cap, with nothing stored; 503 + Retry-After (retried) when the database is busy or
    unavailable. The per-host batch rate does not apply: Prometheus sends from several
    shards at once and, by default in 2.42, drops what is answered 429 without retrying."""

    machine_api = True  # Prometheus' remote write senders log the message: English

    async def post(self) -> None:
        metrics = self.services.metrics
        if self._too_large:
            self._reject_size()
        host = self.agent_host
        try:
            decoded = self.services.remote_write.decode(
                b"".join(self._chunks), self.request.headers.get("Content-Encoding"),
                self.request.headers.get("Content-Type"), self._cap, host)
        except IngestError:
            metrics.ingest_batches.labels("invalid").inc()
            raise
        metrics.remote_write_ignored.labels("stale_marker").inc(decoded.stale_markers)
        metrics.remote_write_ignored.labels("exemplar").inc(decoded.exemplars)
        metrics.remote_write_ignored.labels("metadata").inc(decoded.metadata)
        batch = decoded.batch
        if not batch.metrics:
            self.set_status(204)
            return
        # 503, not 429: Prometheus retries every 5xx, and 429 only when told to.
        result = await self.store_batch(batch, busy_status=503)
        metrics.ingest_batches.labels("stored").inc()
        metrics.ingest_samples.inc(result.accepted_samples)
        self.set_status(204)
        self.services.bus.publish(f"host:{host}", {
            "host": host, "last_ts": result.last_ts, "accepted_samples": result.accepted_samples,
            "accepted_logs": 0})
