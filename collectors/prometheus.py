"""The ``prometheus`` input: scrape exporters' and applications' ``/metrics`` pages.

Each configured target is fetched over HTTP(S) every ``interval`` seconds (a whole
multiple of the agent's interval: it is scraped on every n-th agent cycle) and parsed
with ``prometheus_client.parser`` (text exposition format 0.0.4, which every exporter
serves). Label handling follows Prometheus' ``scrape_config``
(https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config):

- target labels: ``job`` (the target's ``job_name``), ``instance`` (``host:port`` of the
  URL, the scheme's default port when the URL has none) and the target's ``labels``;
- ``honor_labels: false`` (the default): an exposed label that collides with a target
  label is kept as ``exported_<name>``; ``true``: the exposed value wins;
- ``metric_relabel_configs``: ``keep``/``drop`` rules, applied in order to every sample
  after the target labels: ``source_labels`` (``__name__`` is the metric name) joined
  with ``separator``, matched by ``regex`` anchored at both ends (RE2 syntax, the
  google-re2 package);
- per target and scrape: ``up``, ``scrape_duration_seconds``, ``scrape_samples_scraped``
  and ``scrape_samples_post_metric_relabeling``, with the target labels.

Deviations: samples carry the agent's cycle time, not timestamps the target exposes;
labels with an empty value are dropped (Prometheus does the same); NaN and ±Inf values
are dropped by the agent and counted (``fleetdeck_agent_dropped_samples_total``).

``prometheus_client`` and ``google-re2`` are imported only when the input is enabled
(the agent itself needs neither).
"""
from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collectors.base import Collector, Sample
from collectors.relabel import RelabelError, Relabeller, RelabelRule, label_name, parse_rules

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024  # a larger page fails the scrape (up 0)
MAX_SECONDS = 86400
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
_TARGET_KEYS = ("job_name", "url", "interval", "timeout", "honor_labels", "labels", "metric_relabel_configs")
_RESERVED_TARGET_LABELS = ("job", "instance")


class ScrapeOptionsError(ValueError):
    """Invalid ``prometheus:`` options; the message names the key."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One target: ``url`` (http or https), ``job_name``, ``interval`` and ``timeout`` in
    seconds (None: the agent's interval, and min(10, interval)), ``honor_labels``, extra
    target ``labels`` and ``metric_relabel_configs``."""

    job_name: str
    url: str
    interval: float | None = None
    timeout: float | None = None
    honor_labels: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    metric_relabel_configs: tuple[RelabelRule, ...] = ()

    @property
    def instance(self) -> str:
        """``host:port`` of the URL, the scheme's default port added when missing (as
        Prometheus' ``__address__``)."""
        parts = urllib.parse.urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class PrometheusOptions:
    """The agent's ``prometheus:`` settings: ``targets``, a list of :class:`ScrapeTarget`."""

    targets: list[ScrapeTarget] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, value: Any, source: str = "config") -> "PrometheusOptions":
        """Validate the YAML ``prometheus:`` section; raises :class:`ScrapeOptionsError`
        naming the key (``prometheus.targets[0].interval``) and ``source``."""
        if value is None:
            return cls()
        if isinstance(value, PrometheusOptions):
            return value
        _check_keys(value, "prometheus", source, ("targets",))
        items = value.get("targets") or []
        if not isinstance(items, list):
            raise ScrapeOptionsError(f"prometheus.targets (from {source}) must be a list of targets")
        targets = [_target(item, f"prometheus.targets[{i}]", source) for i, item in enumerate(items)]
        seen: set[tuple[str, str]] = set()
        for i, target in enumerate(targets):
            if (target.job_name, target.url) in seen:
                raise ScrapeOptionsError(f"prometheus.targets[{i}] (from {source}): job {target.job_name!r} "
                                         f"already scrapes {target.url}")
            seen.add((target.job_name, target.url))
        return cls(targets)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_SECONDS:
        raise ScrapeOptionsError(f"{where} must be a number of seconds in (0, {MAX_SECONDS}]")
    return float(value)


def _check_keys(value: Any, path: str, source: str, known: tuple[str, ...]) -> None:
    """``value`` must be a mapping of ``known`` keys only."""
    if not isinstance(value, Mapping):
        raise ScrapeOptionsError(f"{path} (from {source}) must be a mapping")
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ScrapeOptionsError(f"{path}.{unknown[0]} (from {source}) is not a known option; "
                                 f"known: {', '.join(known)}")


def _rules(value: Any, path: str, source: str) -> tuple[RelabelRule, ...]:
    try:
        return parse_rules(value, path, source)
    except RelabelError as exc:
        raise ScrapeOptionsError(str(exc)) from None


def _target(value: Any, path: str, source: str) -> ScrapeTarget:
    _check_keys(value, path, source, _TARGET_KEYS)
    job = value.get("job_name")
    if not isinstance(job, str) or not job.strip() or "\x00" in job or len(job) > 255:
        raise ScrapeOptionsError(f"{path}.job_name (from {source}) must be a non-empty string (at most 255)")
    url = value.get("url")
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ScrapeOptionsError(f"{path}.url (from {source}) must be an http:// or https:// URL, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ScrapeOptionsError(f"{path}.url (from {source}) has an invalid port: {url!r}") from None
    interval = _seconds(value["interval"], f"{path}.interval (from {source})") if "interval" in value else None
    timeout = _seconds(value["timeout"], f"{path}.timeout (from {source})") if "timeout" in value else None
    if interval is not None and timeout is not None and timeout > interval:
        raise ScrapeOptionsError(f"{path}.timeout (from {source}) must not exceed its interval ({interval:g} s)")
    honor = value.get("honor_labels", False)
    if not isinstance(honor, bool):
        raise ScrapeOptionsError(f"{path}.honor_labels (from {source}) must be true or false")
    labels = value.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise ScrapeOptionsError(f"{path}.labels (from {source}) must be a mapping of label name to value")
    for name, label_value in labels.items():
        if not label_name(name) or name.startswith("__"):
            raise ScrapeOptionsError(f"{path}.labels (from {source}): invalid label name {name!r}")
        if name in _RESERVED_TARGET_LABELS:
            raise ScrapeOptionsError(f"{path}.labels.{name} (from {source}): {name} is set from "
                                     f"{'job_name' if name == 'job' else 'url'}")
        if not isinstance(label_value, str) or not label_value:
            raise ScrapeOptionsError(f"{path}.labels.{name} (from {source}) must be a non-empty string")
    rules = _rules(value.get("metric_relabel_configs") or [], f"{path}.metric_relabel_configs", source)
    return ScrapeTarget(job, url, interval, timeout, honor, dict(labels), rules)


def sample_type(family_type: str, sample_name: str, family_name: str) -> str:
    """``counter`` for samples that only grow (a counter; a histogram's ``_bucket``,
    ``_count`` and ``_sum``; a summary's ``_count`` and ``_sum``), else ``gauge``."""
    if family_type == "counter":
        return "counter" if sample_name != family_name + "_created" else "gauge"
    if family_type in ("histogram", "summary"):
        suffix = sample_name[len(family_name):]
        return "counter" if suffix in ("_bucket", "_count", "_sum") else "gauge"
    return "gauge"


class _Target:
    """A configured target with its compiled rules and its cadence in agent cycles."""

    def __init__(self, target: ScrapeTarget, agent_interval: float) -> None:
        self.target = target
        interval = target.interval or agent_interval
        self.every = max(1, round(interval / agent_interval))
        self.timeout = target.timeout or min(10.0, interval)
        self.labels = {"job": target.job_name, "instance": target.instance, **target.labels}
        self.rules = Relabeller(target.metric_relabel_configs)


class PrometheusCollector(Collector):
    """Scrapes ``options.targets`` (:class:`PrometheusOptions`), each on every n-th call
    of :meth:`collect` (n = target interval / ``agent_interval``), several at once.
    A failing target reports ``up`` 0 and nothing else; it never fails the collector.
    Raises ValueError when ``prometheus_client`` or ``google-re2`` is missing."""

    name = "prometheus"

    def __init__(self, options: PrometheusOptions, agent_interval: float, max_parallel: int = 8) -> None:
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            raise ValueError("the prometheus input needs the prometheus-client package "
                             "(pip install prometheus-client)") from None
        self._parse = text_string_to_metric_families
        try:
            self._targets = [_Target(t, agent_interval) for t in options.targets]
        except ScrapeOptionsError as exc:
            raise ValueError(str(exc)) from None
        self._max_parallel = max_parallel
        self._cycle = 0

    def collect(self) -> Iterable[Sample]:
        due = [t for t in self._targets if self._cycle % t.every == 0]
        self._cycle += 1
        if not due:
            return []
        if len(due) == 1:
            return self.scrape(due[0])
        from concurrent.futures import ThreadPoolExecutor  # only with several targets due at once

        out: list[Sample] = []
        with ThreadPoolExecutor(max_workers=min(self._max_parallel, len(due)),
                                thread_name_prefix="scrape") as pool:
            for samples in pool.map(self.scrape, due):
                out.extend(samples)
        return out

    def scrape(self, target: _Target) -> list[Sample]:
        """One scrape of ``target``: its samples (labelled and filtered) and its ``up``,
        ``scrape_duration_seconds``, ``scrape_samples_scraped`` and
        ``scrape_samples_post_metric_relabeling`` samples."""
        started = time.perf_counter()
        try:
            families = list(self._parse(self._fetch(target)))
        except Exception as exc:  # noqa: BLE001 - any failure of one target is its up 0
            log.warning("scrape of %s (job %s) failed: %s", target.target.url, target.target.job_name, exc)
            return self._health(target, False, time.perf_counter() - started, 0, 0)
        samples = []
        scraped = 0
        for family in families:
            for raw in family.samples:
                scraped += 1
                labels = self._labels(target, raw.labels)
                if target.rules and not target.rules.kept(raw.name, labels):
                    continue
                samples.append(Sample(raw.name, labels, raw.value, sample_type(family.type, raw.name, family.name)))
        return samples + self._health(target, True, time.perf_counter() - started, scraped, len(samples))

    def _fetch(self, target: _Target) -> str:
        """The target's page as text. Proxies from the environment are not used (Prometheus
        does not use them unless told to); a page over MAX_BODY_BYTES, sent or inflated,
        raises ValueError."""
        import urllib.request
        import zlib

        request = urllib.request.Request(target.target.url, headers={
            "Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "fleetdeck-agent",
            "X-Prometheus-Scrape-Timeout-Seconds": f"{target.timeout:g}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=target.timeout) as resp:
            body = resp.read(MAX_BODY_BYTES + 1)
            if (resp.headers.get("Content-Encoding") or "").lower() == "gzip":
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = inflater.decompress(body, MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise ValueError(f"the page exceeds {MAX_BODY_BYTES} bytes")
            charset = resp.headers.get_content_charset() or "utf-8"
        return body.decode(charset)

    @staticmethod
    def _labels(target: _Target, exposed: dict[str, str]) -> dict[str, str]:
        labels = {k: v for k, v in exposed.items() if v != ""}
        for name, value in target.labels.items():
            if name in labels:
                if target.target.honor_labels:
                    continue
                labels[f"exported_{name}"] = labels[name]
            labels[name] = value
        return labels

    @staticmethod
    def _health(target: _Target, up: bool, duration: float, scraped: int, kept: int) -> list[Sample]:
        labels = dict(target.labels)
        return [Sample("up", labels, 1.0 if up else 0.0),
                Sample("scrape_duration_seconds", labels, duration),
                Sample("scrape_samples_scraped", labels, float(scraped)),
                Sample("scrape_samples_post_metric_relabeling", labels, float(kept))]
