"""The console's own Prometheus metrics, on a registry of its own (never the global one)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConsoleMetrics:
    """Counters and histograms the console exposes at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingest_batches = Counter(
            "fleetdeck_ingest_batches_total", "Ingest requests by result.", ["result"],
            registry=self.registry)
        self.ingest_samples = Counter(
            "fleetdeck_ingest_samples_total", "Samples committed.", registry=self.registry)
        self.ingest_logs = Counter(
            "fleetdeck_ingest_log_records_total", "Log records committed.", registry=self.registry)
        self.remote_write_ignored = Counter(
            "fleetdeck_remote_write_ignored_total", "Remote write items received and not stored, by kind "
            "(stale_marker, exemplar, metadata).", ["kind"], registry=self.registry)
        self.storage_errors = Counter(
            "fleetdeck_storage_errors_total", "Database operations that raised.", ["operation"],
            registry=self.registry)
        self.request_duration = Histogram(
            "fleetdeck_http_request_duration_seconds", "HTTP request latency.",
            ["method", "route", "code"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.host_clock_skew = Gauge(
            "fleetdeck_host_clock_skew_seconds", "Agent clock minus console clock, from the "
            "sent_at of the host's batches (negative: behind).", ["host"], registry=self.registry)
        self.live_subscribers = Gauge(
            "fleetdeck_live_subscriptions", "Open live topic subscriptions.", registry=self.registry)
