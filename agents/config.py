"""Agent configuration: defaults < YAML file < environment < command line.

The YAML file is either the agent's own settings as a top-level mapping, or the
project's shared ``config.yaml``. In a shared file (one with an ``agent:`` section or
any of the console's sections, :data:`CONSOLE_SECTIONS`) the agent reads ``agent:``
only and ignores the other sections, which the console validates::

    agent:
      console_url: https://fleetdeck.example.com
      token: "..."
      interval: 10
      labels: {env: prod, zone: eu-1}
      collectors: [host]
      collector_options:
        host: {proc_root: /host/proc, sys_root: /host/sys, rootfs: /host/root}

Environment: ``FLEETDECK_AGENT_CONSOLE``, ``FLEETDECK_AGENT_TOKEN``,
``FLEETDECK_AGENT_HOST``, ``FLEETDECK_AGENT_INTERVAL``, ``FLEETDECK_AGENT_STATE_DIR`` (empty values are
ignored). Every problem raises :class:`ConfigError` naming the offending key,
the value, and where it came from (``FILE line N``, ``environment NAME`` or
``command-line flag --name``).

Validation is a small table of checks here rather than pydantic: the agent
distribution depends on psutil and PyYAML only, so it installs in a few MiB on every
host. Each field of :class:`AgentConfig` carries its check in its metadata (type,
range, finiteness: NaN and infinity are refused); :func:`validate` holds the checks
that involve several fields. Adding a setting is one line in :class:`AgentConfig`,
e.g. ``scrape_timeout: float = setting(5.0, seconds())``; then document it in
``config.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import partial
from typing import Any

from agents.errors import AgentError
from collectors import available_collectors
from collectors import option_problem as collector_option_problem
from collectors.logs import LogOptions, LogOptionsError
from collectors.prometheus import PrometheusOptions, ScrapeOptionsError
from collectors.relabel import RelabelError, RelabelRule, parse_rules
from collectors.textfile import TextfileOptions, TextfileOptionsError

ENV_OVERRIDES = {
    "FLEETDECK_AGENT_CONSOLE": "console_url",
    "FLEETDECK_AGENT_TOKEN": "token",
    "FLEETDECK_AGENT_HOST": "host",
    "FLEETDECK_AGENT_INTERVAL": "interval",
    "FLEETDECK_AGENT_STATE_DIR": "state_dir",
}
# Command-line flags of `fleetdeck-agent` whose name differs from the setting's.
FLAGS = {"console_url": "--console"}
# Top-level sections of a shared config.yaml that belong to the console (console/config.py
# SECTIONS; the agent imports nothing from the console, so the names are repeated here).
CONSOLE_SECTIONS = frozenset({"console", "apps", "inventory", "alerts", "alerting", "probes"})
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# What the console accepts as a host name (console/ingest/batch.py).
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
MAX_SECONDS = 86400  # the console's upper bound for an agent interval
MAX_AGE = 365 * 86400.0  # the longest a batch may wait in the spool


class ConfigError(AgentError, ValueError):
    """The agent configuration is unreadable or invalid; the message says where and why."""


Check = Callable[[str, Any, str], Any]  # (key, raw value, source) -> value; raises ConfigError


def _fail(key: str, source: str, problem: str, value: Any = MISSING) -> ConfigError:
    got = "" if value is MISSING else f", got {value!r}"
    return ConfigError(f"{key} (from {source}) {problem}{got}")


def number(lo: float, hi: float, *, lo_open: bool = False, unit: str = "a number") -> Check:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); numeric strings accepted
    (environment variables)."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def check(key: str, value: Any, source: str) -> float:
        problem = f"must be {unit} in {span}"
        if isinstance(value, bool):
            raise _fail(key, source, problem, value)
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise _fail(key, source, problem, value) from None
        if not math.isfinite(result) or not (lo < result if lo_open else lo <= result) or result > hi:
            raise _fail(key, source, problem, value)
        return result

    return check


def seconds(hi: float = MAX_SECONDS) -> Check:
    """A number of seconds in ``(0, hi]``."""
    return number(0, hi, lo_open=True, unit="a number of seconds")


def whole(lo: int, hi: int, unit: str = "a whole number") -> Check:
    """An integer in ``[lo, hi]`` (from YAML, or a string of digits)."""

    def check(key: str, value: Any, source: str) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok or (isinstance(value, str) and value.isascii() and value.isdigit())
        if not ok or not lo <= int(value) <= hi:
            raise _fail(key, source, f"must be {unit} from {lo} to {hi}", value)
        return int(value)

    return check


def text(key: str, value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise _fail(key, source, f"must be a string, got {type(value).__name__}")
    return value


def flag(key: str, value: Any, source: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise _fail(key, source, "must be true or false", value)
    return value


def _labels(key: str, value: Any, source: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} (from {source}) must be a mapping of name to value")
    labels = {}
    for name, label_value in value.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ConfigError(f"{key} (from {source}): invalid label name {name!r} (use [a-zA-Z_][a-zA-Z0-9_]*)")
        if isinstance(label_value, bool) or not isinstance(label_value, (str, int, float)):
            raise ConfigError(f"{key} (from {source}): value of {name!r} must be a string, got {label_value!r}")
        labels[name] = str(label_value)
    return labels


def _logs(key: str, value: Any, source: str) -> LogOptions:
    try:
        return LogOptions.from_mapping(value, source)
    except LogOptionsError as exc:
        raise ConfigError(str(exc)) from None


def _prometheus(key: str, value: Any, source: str) -> PrometheusOptions:
    try:
        return PrometheusOptions.from_mapping(value, source)
    except ScrapeOptionsError as exc:
        raise ConfigError(str(exc)) from None


def _textfile(key: str, value: Any, source: str) -> TextfileOptions:
    try:
        return TextfileOptions.from_mapping(value, source)
    except TextfileOptionsError as exc:
        raise ConfigError(str(exc)) from None


def _collectors(key: str, value: Any, source: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, source, "must be a list of at least one collector name", value)
    known = available_collectors()
    for name in value:
        if name not in known:
            raise _fail(key, source, f"names an unknown collector {name!r}; available: {', '.join(known)}")
        if value.count(name) > 1:
            raise _fail(key, source, f"lists {name!r} more than once")
    return list(value)


def _collector_options(key: str, value: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) or v is None for v in value.values()):
        raise ConfigError(f"{key} (from {source}) must map collector names to mappings")
    out = {}
    for name, opts in value.items():
        # An option with no value takes its default, as every key of this file does.
        given = {str(option): v for option, v in (opts or {}).items() if v is not None}
        for option, v in given.items():
            problem = collector_option_problem(str(name), option, v)
            if problem:
                raise _fail(f"{key}.{name}.{option}", source, problem, v)
        out[str(name)] = given
    return out


def _relabel_configs(key: str, value: Any, source: str) -> dict[str, tuple[RelabelRule, ...]]:
    if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
        raise ConfigError(f"{key} (from {source}) must map input names to lists of rules")
    try:
        return {name: parse_rules(rules, f"{key}.{name}", source) for name, rules in value.items()}
    except RelabelError as exc:
        raise ConfigError(str(exc)) from None


def setting(default: Any, check: Check) -> Any:
    """A field of :class:`AgentConfig` with its check; a list, dict or callable default is a factory."""
    if callable(default):
        return field(default_factory=default, metadata={"check": check})
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"check": check})
    return field(default=default, metadata={"check": check})


@dataclass
class AgentConfig:
    """Validated agent settings.

    - ``console_url``: base URL of the console (http or https), no trailing slash.
    - ``token``: agent token sent as ``Authorization: Bearer``.
    - ``host``: the name this host reports under (default, or empty: the hostname).
    - ``interval``: seconds between collect cycles; ``timeout``: seconds per HTTP push.
    - ``collectors``: collector names (see :func:`collectors.available_collectors`);
      ``collector_options``: per-collector keyword arguments.
    - ``state_dir``: directory for the agent's local state (the spool in
      ``<state_dir>/spool/``, dead letters in ``<state_dir>/dead-letter.jsonl``).
    - ``labels``: host-level labels sent with every batch.
    - ``logs``: log files to tail (:class:`collectors.logs.LogOptions`; no paths: none).
    - ``spool_max_bytes``: cap of the spool on disk, bytes (oldest batches are
      dropped beyond it); ``spool_max_age``: seconds a batch may wait in the
      spool (keep it at or below the console's ``batch_id_retention_days``);
      ``spool_fsync``: fsync every batch before it counts as durable.
    - ``retry_min_backoff``/``retry_max_backoff``: seconds, exponential backoff
      bounds of a failed push; ``drain_rate``: at most this many batches per
      second while a backlog drains.
    - ``auth_retry_min_backoff``/``auth_retry_max_backoff``: seconds, backoff bounds
      while the console refuses the token (401/403); the spool keeps every batch.
    - ``spool_full_hold_batches``: batches whose samples wait in memory while the
      spool cannot be written (disk full); beyond it the oldest are dropped, counted.
    - ``ca_file``: PEM CA bundle to verify an https console with (empty: the
      system store); ``client_cert``/``client_key``: PEM client certificate and key.
    - ``token_file``: file holding the agent token (written by ``fleetdeck-agent enrol``),
      read when ``token`` is empty; empty: ``<state_dir>/token``.
    - ``prometheus``: scrape targets of the ``prometheus`` input
      (:class:`collectors.prometheus.PrometheusOptions`); ``textfile``: the directory of
      the ``textfile`` input (:class:`collectors.textfile.TextfileOptions`). Each is set
      exactly when its input is in ``collectors``.
    - ``metric_relabel_configs``: input name -> Prometheus-style ``keep``/``drop`` rules
      (:mod:`collectors.relabel`, RE2) applied to every sample of that input;
      ``series_limit``: at most this many series per batch (0: no limit), series of the
      previous batch first (:mod:`agents.cardinality`).
    """

    console_url: str = setting("http://127.0.0.1:8700", text)
    token: str = setting("", text)
    host: str = setting(socket.gethostname, text)
    interval: float = setting(10.0, seconds())
    timeout: float = setting(10.0, seconds())
    collectors: list[str] = setting(["host"], _collectors)
    collector_options: dict[str, dict[str, Any]] = setting({}, _collector_options)
    state_dir: str = setting("./var/agent", text)
    labels: dict[str, str] = setting({}, _labels)
    logs: LogOptions = setting(LogOptions, _logs)
    spool_max_bytes: int = setting(256 * 1024 * 1024, whole(64 * 1024, 1 << 50, "a whole number of bytes"))
    spool_max_age: float = setting(3 * 86400.0, seconds(MAX_AGE))
    spool_fsync: bool = setting(True, flag)
    retry_min_backoff: float = setting(0.5, seconds())
    retry_max_backoff: float = setting(30.0, seconds())
    drain_rate: float = setting(5.0, number(0, 100000, lo_open=True, unit="a number of batches per second"))
    auth_retry_min_backoff: float = setting(30.0, seconds())  # after a 401/403: the token is wrong or revoked
    auth_retry_max_backoff: float = setting(600.0, seconds())
    spool_full_hold_batches: int = setting(360, whole(0, 100_000))  # batches of samples held while the spool is full
    ca_file: str = setting("", text)
    client_cert: str = setting("", text)
    client_key: str = setting("", text)
    token_file: str = setting("", text)
    prometheus: PrometheusOptions = setting(PrometheusOptions, _prometheus)
    textfile: TextfileOptions = setting(TextfileOptions, _textfile)
    metric_relabel_configs: dict[str, tuple[RelabelRule, ...]] = setting({}, _relabel_configs)
    # The console's default per-host cap (console.max_series_per_host) is 10,000 too.
    series_limit: int = setting(10_000, whole(0, 10_000_000))

    @property
    def token_path(self) -> str:
        """Where the agent token file is (``token_file`` or ``<state_dir>/token``)."""
        return self.token_file or os.path.join(self.state_dir, "token")


def read_token_file(config: AgentConfig) -> str:
    """The token from :attr:`AgentConfig.token_path`, or "" when the file does not exist.
    Raises ConfigError when it exists but cannot be read."""
    try:
        with open(config.token_path, encoding="utf-8") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"token file {config.token_path}: cannot read: {exc.strerror or exc}") from None


# Fields that identify this host or carry a secret, not how the agent behaves: they differ
# between hosts of one fleet by design, so they stay out of the drift hash.
_HASH_EXCLUDED = frozenset({"host", "token"})


def config_hash(config: AgentConfig) -> str:
    """Hash of the effective settings, for drift detection across a fleet.

    sha256 (hex, first 16 characters) of the canonical JSON (sorted keys, no
    spaces) of every :class:`AgentConfig` field except ``host`` and ``token``.
    Two agents with the same file, environment and command line report the
    same hash whatever their host name; any other difference changes it.
    """
    # asdict recurses into nested settings dataclasses, so no object repr (with its memory
    # address) can reach the hash; default=str covers plain values JSON lacks.
    values = {k: v for k, v in asdict(config).items() if k not in _HASH_EXCLUDED}
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def field_names() -> list[str]:
    """The keys accepted in the file and in ``overrides``."""
    return [f.name for f in fields(AgentConfig)]


def _from_environment(name: str, key: str) -> str:
    """Where a key's value came from, for a value of the environment variable ``name``."""
    return f"environment {name}"


def _read_file(path: str) -> tuple[dict[str, Any], Callable[[str], str]]:
    """The agent's settings in ``path`` and a function naming the source of a key."""
    from agents.yamlfile import YamlFileError, read_yaml  # PyYAML only with a config file

    try:
        document = read_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None
    data = document.data
    if data is None:
        return {}, lambda key: document.path
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    if "agent" not in data and not CONSOLE_SECTIONS.intersection(data):
        return data, lambda key: document.where((key,))  # the agent's own file
    # A shared file: the agent reads its section only; the console owns the others.
    stray = [str(k) for k in data if k in set(field_names())]
    if stray:
        raise ConfigError(f"{stray[0]} (from {document.where((stray[0],))}): agent settings go under 'agent:' "
                          "in a file that has other sections")
    section = data.get("agent")
    if section is None:
        return {}, lambda key: document.path
    if not isinstance(section, dict):
        raise ConfigError(f"{document.where(('agent',))}: 'agent' must be a mapping, got {type(section).__name__}")
    return section, lambda key: document.where(("agent", key))


def validate(config: AgentConfig, sources: Mapping[str, str] | None = None) -> None:
    """Check what involves several settings or the file system; raise :class:`ConfigError`.
    (Each setting's own type and range are checked as it is read.)"""
    sources = sources or {}

    def where(key: str) -> str:
        return f" (from {sources.get(key, 'the default')})"

    url = urllib.parse.urlsplit(config.console_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(
            f"console_url{where('console_url')} must be an http:// or https:// URL, got {config.console_url!r}"
        )
    if url.query or url.fragment:
        raise ConfigError(f"console_url{where('console_url')} must not have a query or fragment")
    if not _HOST_NAME.fullmatch(config.host):
        raise ConfigError(
            f"host{where('host')} must be a name of letters, digits, '.', '_' and '-' "
            f"starting with a letter or digit, got {config.host!r}"
        )
    if not config.state_dir:
        raise ConfigError(f"state_dir{where('state_dir')} must name a directory")
    if config.retry_min_backoff > config.retry_max_backoff:
        raise ConfigError(f"retry_min_backoff{where('retry_min_backoff')} ({config.retry_min_backoff:g}) must not "
                          f"exceed retry_max_backoff{where('retry_max_backoff')} ({config.retry_max_backoff:g})")
    if config.auth_retry_min_backoff > config.auth_retry_max_backoff:
        raise ConfigError(f"auth_retry_min_backoff{where('auth_retry_min_backoff')} ({config.auth_retry_min_backoff:g}) "
                          f"must not exceed auth_retry_max_backoff{where('auth_retry_max_backoff')} "
                          f"({config.auth_retry_max_backoff:g})")
    for key in ("ca_file", "client_cert", "client_key"):
        path = getattr(config, key)
        if path and not os.path.isfile(path):
            raise ConfigError(f"{key}{where(key)}: no such file {path!r}")
    if config.client_key and not config.client_cert:
        raise ConfigError(f"client_key{where('client_key')} needs client_cert")
    for key in ("collector_options", "metric_relabel_configs"):
        stray = sorted(set(getattr(config, key)) - set(config.collectors))
        if stray:
            raise ConfigError(f"{key}{where(key)}: options for {stray[0]!r}, "
                              f"which is not in collectors{where('collectors')}")
    _validate_inputs(config, where)


def _validate_inputs(config: AgentConfig, where: Callable[[str], str]) -> None:
    """The ``prometheus`` and ``textfile`` sections against ``collectors`` and ``interval``."""
    for name, configured, what in (("prometheus", bool(config.prometheus.targets), "prometheus.targets"),
                                   ("textfile", bool(config.textfile.directory), "textfile.directory")):
        if name in config.collector_options:
            raise ConfigError(f"collector_options.{name}{where('collector_options')}: set the {name} input "
                              f"in its own `{name}:` section")
        if configured and name not in config.collectors:
            raise ConfigError(f"{what}{where(name)} is set but the {name} input is not in collectors")
        if name in config.collectors and not configured:
            raise ConfigError(f"collectors{where('collectors')} names the {name} input but {what} is not set")
    for i, target in enumerate(config.prometheus.targets):
        path = f"prometheus.targets[{i}]"
        interval = target.interval or config.interval
        cycles = interval / config.interval
        if abs(cycles - round(cycles)) > 1e-9 or round(cycles) < 1:
            raise ConfigError(f"{path}.interval{where('prometheus')} must be a whole multiple of the agent's "
                              f"interval ({config.interval:g} s), got {interval:g}")
        if target.timeout is not None and target.timeout > interval:
            raise ConfigError(f"{path}.timeout{where('prometheus')} must not exceed the target's interval "
                              f"({interval:g} s)")


def load_agent_config(
    path: str | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Build and validate the agent configuration.

    ``path``: YAML file, or None for defaults only. ``overrides``: command-line
    values by field name (``None`` values are ignored). ``environ``: defaults
    to ``os.environ``. Precedence: defaults < file < environment < overrides.

    Raises :class:`ConfigError` for an unreadable file, an unknown key, a
    value of the wrong type, out of range or not finite, or an invalid combination;
    the message names the key, the value and its source.
    """
    environ = os.environ if environ is None else environ
    checks = {f.name: f.metadata["check"] for f in fields(AgentConfig)}
    layers: list[tuple[Callable[[str], str], Mapping[str, Any]]] = []
    if path:
        file_values, where = _read_file(path)
        unknown = sorted(str(k) for k in file_values if k not in checks)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in agent settings (from {where(unknown[0])}); "
                              f"known keys: {', '.join(sorted(checks))}")
        layers.append((where, {k: v for k, v in file_values.items() if v is not None}))  # `key:` alone: default
    for env_name, key in ENV_OVERRIDES.items():
        if environ.get(env_name):
            layers.append((partial(_from_environment, env_name), {key: environ[env_name]}))
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(k for k in cli if k not in checks)
    if unknown:
        raise ConfigError(f"unknown override {unknown[0]!r}")
    layers.append((lambda key: f"command-line flag {FLAGS.get(key, '--' + key.replace('_', '-'))}", cli))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for where, layer in layers:
        for key, value in layer.items():
            sources[key] = where(key)
            values[key] = checks[key](key, value, sources[key])
    if "console_url" in values:
        values["console_url"] = values["console_url"].strip().rstrip("/")
    if not values.get("host", "x").strip():
        del values["host"]  # config.yaml's documented "empty: this machine's name"
    config = AgentConfig(**values)
    validate(config, sources)
    return config
