"""The agent loop: collect from every collector, build one batch, deliver it.

Collector failures are caught in exactly one place, :meth:`Agent.collect_batch`:
the failing collector is logged with its name and skipped for that cycle, the
others still report. Each cycle also reports the agent's own health as
``fleetdeck_agent_*`` series (collector success and duration, error and drop
counters, spool and delivery state), so a silent collector or a backlog is
visible on the dashboard.

Delivery (docs/agent.md): with a :class:`agents.spool.Spool`, :meth:`Agent._deliver`
writes each batch to the spool and returns; a :class:`agents.delivery.Sender`
thread sends the spool in order with retries, so collection keeps its cadence
while the console is away. A batch is *durably accepted* once the spool append
returned (fsynced under the default policy): then ``on_durable(batch)`` is
called. The log positions the batch reached are written inside the same spool
record (its extension), so they become durable together with the lines; the
positions file is saved after it, and on start the newer of the two wins
(:meth:`collectors.logs.LogCollector.recover`).

When the spool cannot take a batch (disk full), its log lines are not dropped:
the tailer rewinds and they wait in their files. Its samples wait in memory, at
most ``spool_full_hold_batches`` batches, the oldest dropped (and counted once)
first; they are written to the spool as soon as it takes writes again
(``on_durable`` is not called for them: only their compressed body is kept).

A worker thread that dies (the sender) stops the agent: :meth:`Agent.run_forever`
raises :class:`WorkerDied` and ``fleetdeck-agent`` exits with status 1, so
systemd (``Restart=on-failure``) or ``fleetdeck run`` starts it again.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from agents import __version__
from agents.cardinality import Relabelling, SeriesBudget
from agents.client import PushError
from agents.config import AgentConfig, config_hash
from agents.delivery import DeadLetterFile, RetryPolicy, Sender
from agents.errors import AgentError
from agents.spool import Spool
from collectors.base import Collector, Sample

log = logging.getLogger(__name__)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# The console's limits (console/ingest/batch.py): one bad sample would fail the whole batch.
MAX_NAME = 255
MAX_LABELS = 64
MAX_LABEL_VALUE = 4096
MAX_LOG_BATCHES_PER_CYCLE = 50
SPOOL_WARNING_INTERVAL = 60.0  # seconds between warnings while the spool refuses writes
# The agent's own series (docs/agent.md, "Self-metrics"), outside the series budget: those
# it adds itself, and these, which its own inputs report (a scraped target's series are
# the target's, whatever their names).
OWN_SERIES_PREFIX = "fleetdeck_agent_"
OWN_SERIES_INPUTS = frozenset({"logs"})


class WorkerDied(AgentError, RuntimeError):
    """A worker thread of the agent ended with an error; the agent stopped."""


class BatchSender(Protocol):
    """What the agent needs from a client (:class:`agents.client.IngestClient`); ``token``
    as :class:`agents.delivery.BodySender`'s."""

    token: str

    def push(self, batch: dict[str, Any]) -> dict[str, Any]: ...

    def push_body(self, body: bytes) -> dict[str, Any]: ...

    def encode(self, batch: dict[str, Any]) -> bytes: ...


class LogSource(Protocol):
    """What the agent needs from a log tailer (:class:`collectors.logs.LogCollector`):
    records for a batch with a checkpoint, and word of the batch's fate."""

    @property
    def has_backlog(self) -> bool: ...

    def take(self) -> tuple[list[dict[str, Any]], Any]: ...

    def acknowledge(self, checkpoint: Any, spool_seq: int | None = None) -> None: ...

    def encode_checkpoint(self, checkpoint: Any) -> bytes: ...

    def not_delivered(self, checkpoint: Any) -> None: ...


def _invalid_reason(sample: object) -> str | None:
    """Why the console would reject this sample, or None if it is fine."""
    if not isinstance(sample, Sample):
        return f"not a Sample: {type(sample).__name__}"
    if not _METRIC_NAME.fullmatch(sample.name):
        return f"invalid metric name {sample.name!r}"
    if not math.isfinite(sample.value):
        return f"{sample.name}: non-finite value {sample.value!r}"
    if len(sample.name) > MAX_NAME or len(sample.labels) > MAX_LABELS:
        return f"{sample.name[:MAX_NAME]}: name longer than {MAX_NAME} or more than {MAX_LABELS} labels"
    for key, value in sample.labels.items():
        if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key) or not isinstance(value, str):
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
        logs: LogSource | None = None,
        spool: Spool | None = None,
        on_durable: Callable[[dict[str, Any]], None] | None = None,
        token_source: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.logs = logs
        # batch_id -> log checkpoint, until the batch is handed off (or not)
        self._log_checkpoints: dict[str, Any] = {}
        self.collectors = list(collectors)
        self.client = client
        self.clock = clock
        self.spool = spool
        # Called with each batch once it is durably accepted (spooled), on the collect thread.
        self.on_durable = on_durable
        self.sender: Sender | None = None
        if spool is not None:
            self.sender = Sender(
                spool, client, RetryPolicy(config.retry_min_backoff, config.retry_max_backoff),
                DeadLetterFile(os.path.join(config.state_dir, "dead-letter.jsonl"), clock),
                drain_rate=config.drain_rate,
                auth_policy=RetryPolicy(config.auth_retry_min_backoff, config.auth_retry_max_backoff),
                token_source=token_source)
        self._errors: dict[str, int] = {c.name: 0 for c in self.collectors}
        self._dropped_samples: dict[str, int] = {c.name: 0 for c in self.collectors}
        self._valid_series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._relabelling = Relabelling(config.metric_relabel_configs)
        self._budget = SeriesBudget(config.series_limit)
        self._relabel_dropped: dict[str, int] = {c.name: 0 for c in self.collectors}
        self._limit_dropped: dict[str, int] = {c.name: 0 for c in self.collectors}
        # Batches lost before reaching the console or the spool: without a spool, a failed
        # push; with one, the oldest held batches past spool_full_hold_batches. Log lines
        # are never counted here: they are read again from their files.
        self._dropped_batches = 0
        self._dropped_batch_samples = 0
        # Encoded metric-only batches waiting for the spool to take writes again: (body, samples).
        self._held: deque[tuple[bytes, int]] = deque()
        self._spool_warned = -SPOOL_WARNING_INTERVAL  # monotonic time of the last spool-full warning
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
        samples: list[Sample] = []
        valid = self._valid_series
        for sample in raw:
            # Series repeat every cycle: names and labels are checked once, values always.
            try:
                key = (sample.name, tuple(sample.labels.items()))
                known = key in valid and math.isfinite(sample.value)
            except (AttributeError, TypeError):  # not a Sample, or unhashable labels: full check
                key, known = None, False
            if known:
                self._keep(collector.name, sample, samples)
                continue
            reason = _invalid_reason(sample)
            if reason is None:
                if key is not None and len(valid) < 200_000:
                    valid.add(key)
                self._keep(collector.name, sample, samples)
                continue
            self._dropped_samples[collector.name] = self._dropped_samples.get(collector.name, 0) + 1
            log.debug("collector %r: dropped sample: %s", collector.name, reason)
        return samples, True, time.perf_counter() - started

    def _keep(self, input_name: str, sample: Sample, into: list[Sample]) -> None:
        """Append ``sample`` unless the input's ``metric_relabel_configs`` drop it (counted)."""
        if self._relabelling.kept(input_name, sample.name, sample.labels):
            into.append(sample)
        else:
            self._relabel_dropped[input_name] = self._relabel_dropped.get(input_name, 0) + 1

    def _self_samples(self, results: list[tuple[str, bool, float]]) -> list[Sample]:
        """The agent's own health (names in docs/agent.md, "Self-metrics")."""
        out = []
        for name, ok, duration in results:
            labels = {"collector": name}
            out.append(Sample("fleetdeck_agent_collector_success", labels, 1.0 if ok else 0.0, "gauge"))
            out.append(Sample("fleetdeck_agent_collect_duration_seconds", labels, duration, "gauge"))
            out.append(Sample("fleetdeck_agent_collector_errors_total", labels, self._errors.get(name, 0), "counter"))
            out.append(Sample("fleetdeck_agent_dropped_samples_total", {"collector": name, "reason": "invalid"},
                              self._dropped_samples.get(name, 0), "counter"))
            for reason, counts in (("relabel", self._relabel_dropped), ("series_limit", self._limit_dropped)):
                out.append(Sample("fleetdeck_agent_dropped_samples_total", {"collector": name, "reason": reason},
                                  counts.get(name, 0), "counter"))
        out.append(Sample("fleetdeck_agent_series", {}, self._budget.last_count, "gauge"))
        out.append(Sample("fleetdeck_agent_series_limit", {}, self._budget.limit, "gauge"))
        dropped = {"write_error": (self._dropped_batches, self._dropped_batch_samples, 0)}
        if self.spool is not None:
            stats = self.spool.snapshot()
            dropped["spool_full"] = (stats.dropped_batches, stats.dropped_samples, stats.dropped_lines)
            out.append(Sample("fleetdeck_agent_spool_bytes", {}, stats.bytes, "gauge"))
            out.append(Sample("fleetdeck_agent_batches_queued", {}, stats.queued, "gauge"))
            out.append(Sample("fleetdeck_agent_batches_held", {}, len(self._held), "gauge"))
            out.append(Sample("fleetdeck_agent_spool_torn_records_total", {}, stats.torn_records, "counter"))
            out.append(Sample("fleetdeck_agent_spool_write_errors_total", {}, stats.write_errors, "counter"))
            out.append(Sample("fleetdeck_agent_spool_ack_write_errors_total", {}, stats.ack_write_errors,
                              "counter"))
            out.append(Sample("fleetdeck_agent_spool_recreated_total", {}, stats.recreated, "counter"))
        for reason, (batches, samples, lines) in dropped.items():
            out.append(Sample("fleetdeck_agent_batches_dropped_total", {"reason": reason}, batches, "counter"))
            out.append(Sample("fleetdeck_agent_dropped_samples_total", {"reason": reason}, samples, "counter"))
            out.append(Sample("fleetdeck_agent_dropped_log_lines_total", {"reason": reason}, lines, "counter"))
        if self.sender is not None:
            for code, count in sorted(self.sender.error_counts().items()):
                out.append(Sample("fleetdeck_agent_send_errors_total", {"code": code}, count, "counter"))
            out.append(Sample("fleetdeck_agent_dead_letter_batches_total", {}, self.sender.dead_letters_total,
                              "counter"))
            out.append(Sample("fleetdeck_agent_auth_rejected", {}, 1.0 if self.sender.auth_rejected else 0.0,
                              "gauge"))
        return out

    def collect_batch(self) -> dict[str, Any]:
        """Run every collector once and build an ingest body (docs/architecture.md, "The write path")::

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
        source: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}  # series -> the input that sent it
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
                source[key] = collector.name
        # The agent's own series are outside the budget, whichever input reports them (the
        # logs input's fleetdeck_agent_log_*): a full budget must not hide the agent's health.
        own = {k for k, name in source.items() if name in OWN_SERIES_INPUTS and k[0].startswith(OWN_SERIES_PREFIX)}
        admitted = self._budget.admit(k for k in series if k not in own)
        for key in [k for k in series if k not in admitted and k not in own]:
            del series[key]
            self._limit_dropped[source[key]] = self._limit_dropped.get(source[key], 0) + 1
        for sample in self._self_samples(results):
            series.setdefault((sample.name, tuple(sorted(sample.labels.items()))), {
                "name": sample.name, "type": sample.type, "labels": dict(sample.labels),
                "points": [[ts_ms, sample.value]],
            })
        return self._with_logs({
            "host": self.config.host,
            "batch_id": str(uuid.uuid4()),
            "sent_at": self.clock(),
            "agent": {"version": __version__, "interval": float(self.config.interval),
                      "config_hash": self._config_hash},
            "labels": dict(self.config.labels),
            "metrics": list(series.values()),
            "logs": [],
        })

    # -- logs ---------------------------------------------------------------

    def _with_logs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Fill ``batch["logs"]`` from the log source, remembering its checkpoint."""
        if self.logs is not None:
            batch["logs"], checkpoint = self.logs.take()
            self._log_checkpoints[batch["batch_id"]] = checkpoint
        return batch

    def batch_handed_off(self, batch: dict[str, Any], spool_seq: int | None = None) -> None:
        """``batch`` is durably out of the agent's hands (accepted by the console, or
        written to the spool as record ``spool_seq``): its log positions are saved."""
        checkpoint = self._log_checkpoints.pop(batch["batch_id"], None)
        if checkpoint is not None and self.logs is not None:
            self.logs.acknowledge(checkpoint, spool_seq)

    def batch_not_handed_off(self, batch: dict[str, Any]) -> None:
        """``batch`` was dropped: its log lines are read again for a later batch."""
        checkpoint = self._log_checkpoints.pop(batch["batch_id"], None)
        if checkpoint is not None and self.logs is not None:
            self.logs.not_delivered(checkpoint)

    def log_batch(self) -> dict[str, Any]:
        """A batch of log records only, for lines beyond one batch's bounds."""
        return self._with_logs({"host": self.config.host, "batch_id": str(uuid.uuid4()), "sent_at": self.clock(),
                                "agent": {"version": __version__, "interval": float(self.config.interval)},
                                "labels": dict(self.config.labels), "metrics": [], "logs": []})

    # -- deliver ------------------------------------------------------------

    def _deliver(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Hand one batch over; the single path every batch takes to the console.

        With a spool: write it there and return ``{"spooled": seq}`` (``seq`` is
        None when the batch alone exceeds the spool cap and was dropped); the
        sender thread delivers it. ``on_durable(batch)`` is called in both
        cases, since resending the same data could not do better. Raises
        ``OSError`` when the spool write failed (nothing was spooled).

        Without a spool: push now and return the console's answer; raises
        :class:`agents.client.PushError`.
        """
        if self.spool is None:
            return self._push_now(batch)
        samples = sum(len(m["points"]) for m in batch["metrics"])
        checkpoint = self._log_checkpoints.get(batch["batch_id"])
        ext = self.logs.encode_checkpoint(checkpoint) if checkpoint is not None and self.logs is not None else b""
        try:
            seq = self.spool.append(self.client.encode(batch), samples, len(batch["logs"]), ext)
        except BaseException:
            self.batch_not_handed_off(batch)
            raise
        # Spooled (fsynced) with its positions: the log tailer may save them to its file too.
        self.batch_handed_off(batch, seq)
        if self.on_durable is not None:
            self.on_durable(batch)
        return {"spooled": seq}

    def run_once(self) -> dict[str, Any]:
        """Collect and push one batch now, bypassing the spool; return the console's
        answer or raise ``PushError``."""
        return self._push_now(self.collect_batch())

    def _push_now(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Push ``batch`` and settle its log checkpoint either way; raises PushError."""
        try:
            answer = self.client.push({**batch, "sent_at": self.clock()})
        except BaseException:
            self.batch_not_handed_off(batch)
            raise
        self.batch_handed_off(batch)
        return answer

    def _cycle(self) -> None:
        batch = self.collect_batch()
        if self.spool is not None and not self._flush_held():
            self._hold(batch)
            return
        try:
            answer = self._deliver(batch)
        except PushError as exc:  # no spool: the batch's samples are lost, its lines read again
            self._count_lost(sum(len(m["points"]) for m in batch["metrics"]))
            status = exc.status if exc.status is not None else "no response"
            log.warning("push to %s failed (%s %s: %s); batch of %d series dropped",
                        self.config.console_url, status, exc.code, exc.message, len(batch["metrics"]))
            return
        except OSError as exc:
            now = time.monotonic()
            level = logging.WARNING if now - self._spool_warned >= SPOOL_WARNING_INTERVAL else logging.DEBUG
            if level == logging.WARNING:
                self._spool_warned = now
            log.log(level, "cannot write to the spool in %s: %s; %d log line(s) wait in their files, the "
                    "batch's samples wait in memory (%d batch(es) held)", self.spool.directory if self.spool else "?",
                    exc, len(batch["logs"]), len(self._held) + 1)
            self._hold(batch)
            return
        log.debug("batch %s: %s", batch["batch_id"], answer)
        # A log backlog (a burst, or lines kept while the console was away) goes out now
        # in log-only batches, a bounded number per cycle.
        for _ in range(MAX_LOG_BATCHES_PER_CYCLE):
            if self.logs is None or not self.logs.has_backlog:
                break
            try:
                self._deliver(self.log_batch())
            except (PushError, OSError) as exc:
                log.debug("log batch not handed off (%s); retried next cycle", exc)
                break

    def _hold(self, batch: dict[str, Any]) -> None:
        """Keep the samples of a batch the spool could not take (its log lines were rewound
        and are read again); past ``spool_full_hold_batches``, drop the oldest, counted once."""
        if batch["batch_id"] in self._log_checkpoints:
            self.batch_not_handed_off(batch)
        if not batch["metrics"]:
            return
        samples = sum(len(m["points"]) for m in batch["metrics"])
        self._held.append((self.client.encode({**batch, "logs": []}), samples))
        while len(self._held) > self.config.spool_full_hold_batches:
            _, dropped = self._held.popleft()
            self._count_lost(dropped)

    def _flush_held(self) -> bool:
        """Write held batches to the spool, oldest first; False when one still fails."""
        if self.spool is None:  # batches are held only for a spool
            return True
        while self._held:
            body, samples = self._held[0]
            try:
                self.spool.append(body, samples, 0)
            except OSError as exc:
                log.debug("spool still refuses writes (%s); %d batch(es) held", exc, len(self._held))
                return False
            self._held.popleft()
            if not self._held:
                log.warning("the spool takes writes again; held samples written to it")
        return True

    def _count_lost(self, samples: int) -> None:
        self._dropped_batches += 1
        self._dropped_batch_samples += samples

    def run_forever(self, stop_event: threading.Event) -> None:
        """Run a cycle every ``config.interval`` seconds until ``stop_event`` is set.

        The first cycle starts immediately; later ones keep a fixed cadence on
        the monotonic clock (no drift from cycle duration). A cycle that
        overruns skips the slots it missed instead of bursting to catch up.
        With a spool, a sender thread delivers in the background (started and
        stopped here); push failures are retried there and never end the loop.
        At a stop the complete log lines written so far are spooled. Raises
        :class:`WorkerDied` when the sender thread died of an unexpected error
        (after stopping the loop and closing the spool).
        """
        interval = float(self.config.interval)
        log.info("agent %s started: host=%s console=%s interval=%gs collectors=%s",
                 __version__, self.config.host, self.config.console_url, interval,
                 ",".join(c.name for c in self.collectors))
        sender_thread = None
        if self.sender is not None:
            sender_thread = threading.Thread(target=self.sender.run, args=(stop_event,), name="sender", daemon=True)
            sender_thread.start()
        next_run = time.monotonic()
        try:
            while not stop_event.is_set():
                self._cycle()
                next_run += interval
                now = time.monotonic()
                if next_run <= now:
                    missed = int((now - next_run) // interval) + 1
                    log.warning("cycle took longer than the %gs interval; skipping %d slot(s)", interval, missed)
                    next_run += missed * interval
                stop_event.wait(next_run - now)
            if self.sender is not None and self.sender.died is None:
                self._final_log_flush()
            if self._held and not self._flush_held():
                log.warning("stopping with the spool full: samples of %d held batch(es) dropped", len(self._held))
                while self._held:
                    self._count_lost(self._held.popleft()[1])
        finally:
            stop_event.set()
            if sender_thread is not None and self.spool is not None:
                self.spool.wake()
                # A push in flight may take up to the HTTP timeout; its batch stays spooled.
                sender_thread.join(self.config.timeout + 2)
                self.spool.close()
        if self.sender is not None and self.sender.died is not None:
            raise WorkerDied(f"the sender thread died: {self.sender.died!r}") from self.sender.died
        log.info("agent stopped")

    def _final_log_flush(self) -> None:
        """At a stop, spool the complete lines written so far (and their positions): a file
        truncated or rotated while the agent is stopped then loses none of them."""
        if self.logs is None:
            return
        for _ in range(MAX_LOG_BATCHES_PER_CYCLE):
            batch = self.log_batch()
            if not batch["logs"]:
                self.batch_not_handed_off(batch)
                return
            try:
                self._deliver(batch)
            except OSError as exc:
                log.warning("cannot spool the last log lines at stop (%s); they are read at the next start", exc)
                return
            if not self.logs.has_backlog:
                return


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
