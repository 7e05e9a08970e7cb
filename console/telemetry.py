"""The console's own Prometheus metrics, on a registry of its own (never the global one).

One process (the default): every metric lives in its process and ``/metrics`` answers
``generate_latest`` of the registry.

Several workers (``serve --workers N``, console/cluster/workers.py): prometheus_client's
multiprocess mode (https://prometheus.github.io/client_python/multiprocess/). The
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` to a private directory of its run before the
library is imported; each worker's values are then kept in memory-mapped files of that
directory, one set per process id, and whichever worker answers ``/metrics`` reads every
worker's files (``MultiProcessCollector``): counters and histograms are summed (those of
workers that exited included, so no counter goes back), each gauge is combined as its
``multiprocess_mode`` says (docs/scaling.md, "One /metrics for the workers"), and the
:class:`ComputedGauge` values are computed by the answering worker itself.
"""
from __future__ import annotations

import contextlib
import glob
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector


_HEADER_BYTES = 8  # of a prometheus_client multiprocess file: the bytes used, then padding


class ComputedGauge(Collector):
    """A gauge computed when scraped by ``read() -> {label values: value}`` (or a bare
    number without labels), in the process that answers. For values every worker knows
    alike (the alert state, which followers read from the leader's rows): files would only
    hold copies. Same exposition as a ``Gauge`` with ``set_function`` children."""

    def __init__(self, name: str, documentation: str, read: Callable[[], Mapping[tuple[str, ...], float] | float],
                 labelnames: Iterable[str] = (), registry: CollectorRegistry | None = None) -> None:
        self.name, self.documentation, self.read = name, documentation, read
        self.labelnames = list(labelnames)
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[GaugeMetricFamily]:  # registering never calls ``read``
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        values = self.read()
        if isinstance(values, Mapping):
            for labelvalues, value in values.items():
                family.add_metric(list(labelvalues), float(value))
        else:
            family.add_metric([], float(values))
        return [family]


class WorkersRegistry(CollectorRegistry):
    """The registry of one worker: its metrics register here as usual, and ``collect()``
    answers for the whole console: every worker's files in ``path`` plus this worker's
    :class:`ComputedGauge` collectors."""

    def __init__(self, path: str) -> None:
        super().__init__(auto_describe=True)
        self._path = path
        self._computed: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        if isinstance(collector, ComputedGauge):
            self._computed.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        if collector in self._computed:
            self._computed.remove(collector)

    def _files(self) -> list[str]:
        """The workers' files that hold values. prometheus_client makes a worker's file
        for a kind of metric when the worker first sets one (a worker started again, a
        first histogram) empty, then sizes it: read between the two, its 4-byte header is
        missing and the library's reader raises (struct.error), which failed the scrape
        with a 500. Such a file holds nothing yet; one deleted meanwhile (a dead worker's
        live gauges) neither."""
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(path) >= _HEADER_BYTES:
                    files.append(path)
        return files

    def collect(self) -> Iterator:
        for metric in MultiProcessCollector.merge(self._files(), accumulate=True):
            if metric.type == "gauge":  # NaN marks a series removed (ConsoleMetrics.forget_host)
                metric.samples = [s for s in metric.samples if not math.isnan(s.value)]
            yield metric
        for collector in list(self._computed):
            yield from collector.collect()


class ConsoleMetrics:
    """Counters and histograms the console exposes at ``/metrics``. With ``shared_dir`` (a
    worker of ``serve --workers N``: the run's ``PROMETHEUS_MULTIPROC_DIR``), ``registry``
    answers for every worker (:class:`WorkersRegistry`)."""

    def __init__(self, shared_dir: Path | None = None) -> None:
        self.shared = shared_dir is not None
        self.registry = WorkersRegistry(str(shared_dir)) if shared_dir is not None \
            else CollectorRegistry(auto_describe=True)
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
        # Workers: the value of the worker that took the host's last batch.
        self.host_clock_skew = Gauge(
            "fleetdeck_host_clock_skew_seconds", "Agent clock minus console clock, from the "
            "sent_at of the host's batches (negative: behind).", ["host"], registry=self.registry,
            multiprocess_mode="mostrecent")
        # Workers: the sum of the workers' sockets (set by the live bus as they change).
        self.live_subscribers = Gauge(
            "fleetdeck_live_subscriptions", "Open live topic subscriptions.", registry=self.registry,
            multiprocess_mode="livesum")

    def forget_host(self, host: str) -> None:
        """Drop a retired host's clock skew. The library cannot delete an entry of the
        workers' files, so there the entry is set to NaN (the newest value wins, whichever
        worker took the host's batches) and :class:`WorkersRegistry` leaves NaN gauges out
        of the answer."""
        if not self.shared:
            with contextlib.suppress(KeyError):  # no batch of this host carried sent_at since the start
                self.host_clock_skew.remove(host)
            return
        self.host_clock_skew.labels(host).set(float("nan"))
