"""The agent loop: collect from every collector, build one batch, deliver it.

Collector failures are caught in exactly one place, :meth:`Agent.collect_batch`:
the failing collector is logged with its name and skipped for that cycle, the
others still report. Each cycle also reports the agent's own health as
``fleetdeck_agent_*`` series (collector success and duration, error and drop
counters), so a silent collector is visible on the dashboard.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from agents import __version__
from agents.client import PushError
from agents.config import AgentConfig, config_hash
from collectors.base import Collector, Sample

log = logging.getLogger(__name__)

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# The console's limits (console/ingest/batch.py): one bad sample would fail the whole batch.
MAX_NAME = 255
MAX_LABELS = 64
MAX_LABEL_VALUE = 4096


class BatchSender(Protocol):
    """What the agent needs from a client (:class:`agents.client.IngestClient`)."""

    def push(self, batch: dict[str, Any]) -> dict[str, Any]: ...


def _invalid_reason(sample: object) -> str | None:
    """Why the console would reject this sample, or None if it is fine."""
    if not isinstance(sample, Sample):
        return f"not a Sample: {type(sample).__name__}"
    if not _METRIC_NAME.match(sample.name):
        return f"invalid metric name {sample.name!r}"
    if not math.isfinite(sample.value):
        return f"{sample.name}: non-finite value {sample.value!r}"
    if len(sample.name) > MAX_NAME or len(sample.labels) > MAX_LABELS:
        return f"{sample.name[:MAX_NAME]}: name longer than {MAX_NAME} or more than {MAX_LABELS} labels"
    for key, value in sample.labels.items():
        if not isinstance(key, str) or not _LABEL_NAME.match(key) or not isinstance(value, str):
            return f"{sample.name}: invalid label {key!r}={value!r}"
        if len(value) > MAX_LABEL_VALUE:
            return f"{sample.name}: label {key!r} longer than {MAX_LABEL_VALUE} characters"
    return None


class Agent:
    """Runs ``collectors`` every ``config.interval`` seconds and pushes through ``client``.

    ``clock`` returns Unix seconds; it stamps samples (one Unix-ms timestamp
    per cycle) and ``sent_at``. Scheduling uses ``time.monotonic`` so wall
    clock steps neither skip nor repeat cycles.
    """

    def __init__(
        self,
        config: AgentConfig,
        collectors: Sequence[Collector],
        client: BatchSender,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.collectors = list(collectors)
        self.client = client
        self.clock = clock
        self._errors: dict[str, int] = {c.name: 0 for c in self.collectors}
        self._dropped_samples: dict[str, int] = {c.name: 0 for c in self.collectors}
        self._dropped_batches = 0
        self._failure: str | None = None  # last push failure code, to log changes only
        self._failures_in_row = 0
        self._config_hash = config_hash(config)

    # -- collect ------------------------------------------------------------

    def _collect_one(self, collector: Collector) -> tuple[list[Sample], bool, float]:
        started = time.perf_counter()
        try:
            raw = list(collector.collect())
        except Exception:  # noqa: BLE001 - the one place collector errors are caught
            self._errors[collector.name] = self._errors.get(collector.name, 0) + 1
            log.exception("collector %r failed; skipped for this cycle", collector.name)
            return [], False, time.perf_counter() - started
        samples = []
        for sample in raw:
            reason = _invalid_reason(sample)
            if reason is None:
                samples.append(sample)
                continue
            self._dropped_samples[collector.name] = self._dropped_samples.get(collector.name, 0) + 1
            log.debug("collector %r: dropped sample: %s", collector.name, reason)
        return samples, True, time.perf_counter() - started

    def _self_samples(self, results: list[tuple[str, bool, float]]) -> list[Sample]:
        out = []
        for name, ok, duration in results:
            labels = {"collector": name}
            out.append(Sample("fleetdeck_agent_collector_success", labels, 1.0 if ok else 0.0, "gauge"))
            out.append(Sample("fleetdeck_agent_collector_duration_seconds", labels, duration, "gauge"))
            out.append(Sample("fleetdeck_agent_collector_errors_total", labels, self._errors.get(name, 0), "counter"))
            out.append(Sample("fleetdeck_agent_samples_dropped_total", labels,
                              self._dropped_samples.get(name, 0), "counter"))
        out.append(Sample("fleetdeck_agent_batches_dropped_total", {}, self._dropped_batches, "counter"))
        return out

    def collect_batch(self) -> dict[str, Any]:
        """Run every collector once and build an ingest body (DESIGN.md section 3)::

            {"host": str, "batch_id": uuid4 str, "sent_at": Unix seconds float,
             "agent": {"version": str, "interval": seconds float,
                       "config_hash": 16 hex chars (agents.config.config_hash)},
             "labels": {host-level labels},
             "metrics": [{"name", "type", "labels", "points": [[ts_ms, value]]}],
             "logs": []}

        All points of one batch share one Unix-millisecond timestamp. A
        collector that raises is logged and contributes nothing; samples the
        console would reject (bad name or label, NaN or infinite value) are
        dropped and counted; a repeated series keeps its first value.
        """
        ts_ms = int(round(self.clock() * 1000))
        results: list[tuple[str, bool, float]] = []
        series: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
        for collector in self.collectors:
            samples, ok, duration = self._collect_one(collector)
            results.append((collector.name, ok, duration))
            for sample in samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key in series:
                    self._dropped_samples[collector.name] = self._dropped_samples.get(collector.name, 0) + 1
                    log.debug("collector %r: duplicate series %s dropped", collector.name, key)
                    continue
                series[key] = {"name": sample.name, "type": sample.type, "labels": dict(sample.labels),
                               "points": [[ts_ms, sample.value]]}
        for sample in self._self_samples(results):
            series.setdefault((sample.name, tuple(sorted(sample.labels.items()))), {
                "name": sample.name, "type": sample.type, "labels": dict(sample.labels),
                "points": [[ts_ms, sample.value]],
            })
        return {
            "host": self.config.host,
            "batch_id": str(uuid.uuid4()),
            "sent_at": self.clock(),
            "agent": {"version": __version__, "interval": float(self.config.interval),
                      "config_hash": self._config_hash},
            "labels": dict(self.config.labels),
            "metrics": list(series.values()),
            "logs": [],
        }

    # -- deliver ------------------------------------------------------------

    def _deliver(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Send one batch; the single path every batch takes to the console.

        Returns the console's answer; raises :class:`agents.client.PushError`.
        """
        return self.client.push({**batch, "sent_at": self.clock()})

    def run_once(self) -> dict[str, Any]:
        """Collect and push one batch; return the console's answer or raise ``PushError``."""
        return self._deliver(self.collect_batch())

    def _cycle(self) -> None:
        batch = self.collect_batch()
        try:
            answer = self._deliver(batch)
        except PushError as exc:
            self._dropped_batches += 1
            self._failures_in_row += 1
            message = "push to %s failed (%s %s: %s); batch of %d series dropped"
            status = exc.status if exc.status is not None else "no response"
            args = (self.config.console_url, status, exc.code, exc.message, len(batch["metrics"]))
            if exc.code != self._failure:
                log.warning(message, *args)
            else:
                log.debug(message, *args)  # same failure as last cycle: already reported
            self._failure = exc.code
            return
        if self._failure is not None:
            log.info("push succeeded again after %d failed cycle(s)", self._failures_in_row)
        self._failure, self._failures_in_row = None, 0
        log.debug("pushed batch %s: %s", batch["batch_id"], answer)

    def run_forever(self, stop_event: threading.Event) -> None:
        """Run a cycle every ``config.interval`` seconds until ``stop_event`` is set.

        The first cycle starts immediately; later ones keep a fixed cadence on
        the monotonic clock (no drift from cycle duration). A cycle that
        overruns skips the slots it missed instead of bursting to catch up.
        Push failures are logged and never end the loop.
        """
        interval = float(self.config.interval)
        log.info("agent %s started: host=%s console=%s interval=%gs collectors=%s",
                 __version__, self.config.host, self.config.console_url, interval,
                 ",".join(c.name for c in self.collectors))
        next_run = time.monotonic()
        while not stop_event.is_set():
            self._cycle()
            next_run += interval
            now = time.monotonic()
            if next_run <= now:
                missed = int((now - next_run) // interval) + 1
                log.warning("cycle took longer than the %gs interval; skipping %d slot(s)", interval, missed)
                next_run += missed * interval
            stop_event.wait(next_run - now)
        log.info("agent stopped")


def install_signal_handlers(stop_event: threading.Event) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set ``stop_event``; return a function restoring the old handlers.

    Only possible in the main thread; elsewhere nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        log.debug("not the main thread: signal handlers not installed")
        return lambda: None

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s, stopping after the current cycle", signal.Signals(signum).name)
        stop_event.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
