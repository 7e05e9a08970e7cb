"""Console configuration: defaults, the YAML file, then ``FLEETDECK_*`` environment variables.

Precedence (lowest first): the defaults below (documented in the repository's
``config.yaml``), the YAML file (``--config`` or ``FLEETDECK_CONFIG``), environment
variables, then command-line flags. Every key of the ``console:`` section can be set
from the environment as ``FLEETDECK_<KEY>`` (``FLEETDECK_LISTEN``,
``FLEETDECK_DATA_DIR``, ``FLEETDECK_DATABASE_URL``, ...).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


class ConfigError(ValueError):
    """The configuration file or an environment variable holds an invalid value."""


@dataclass
class ConsoleConfig:
    """The ``console:`` section. Units are in the field names' comments."""

    listen: str = "127.0.0.1:8700"  # HOST:PORT
    data_dir: str = "./var"
    database_url: str = ""  # empty: sqlite file <data_dir>/fleetdeck.db
    public_url: str = ""  # empty: derived from listen
    max_body_bytes: int = 8 * 1024 * 1024  # ingest body cap, compressed and decompressed
    api_max_body_bytes: int = 1024 * 1024  # body cap of every other route
    down_after_intervals: float = 3.0  # a host is down after this many missed intervals
    default_interval: float = 10.0  # seconds, for hosts whose agent did not say
    session_days: float = 7.0  # browser session lifetime
    cookie_secure: bool = False  # set true behind HTTPS
    max_series_per_query: int = 2000
    max_points_per_query: int = 500_000
    promql_timeout: float = 120.0  # seconds a PromQL query may evaluate (Prometheus' --query.timeout)
    promql_max_samples: int = 10_000_000  # samples one PromQL query may load and produce (~100 bytes each)
    web_dir: str = ""  # empty: the web/ folder beside the console package
    retention_raw_days: float = 7.0  # raw samples kept this many days
    retention_1m_days: float = 90.0  # 1-minute rollups
    retention_1h_days: float = 730.0  # 1-hour rollups
    rollup_interval: float = 60.0  # seconds between rollup/retention runs; 0 turns them off
    rollup_delay: float = 120.0  # seconds a minute stays open for late samples before its rollup
    max_series_per_host: int = 10000  # cardinality guard; new series over it are rejected
    sample_max_age: float = 518400.0  # seconds; older samples are rejected (6 days)
    sample_max_future: float = 600.0  # seconds; samples further ahead are rejected
    log_retention_days: float = 14.0  # log records older than this are deleted; 0: keep
    log_retention_bytes: int = 1024 * 1024 * 1024  # cap on stored log bytes (estimate); 0: none
    log_retention_check_seconds: float = 300.0  # how often retention runs
    batch_id_retention_days: float = 4.0  # idempotency window; >= the agents' spool_max_age
    ingest_rate_per_host: float = 10.0  # batches/s per agent host; 0: unlimited
    ingest_burst_per_host: int = 30  # batches an agent may send at once above the rate
    ingest_max_inflight: int = 64  # ingest requests waiting for the database; 0: unbounded
    storage_retry_after: int = 5  # seconds, Retry-After of a 503 storage_unavailable
    secret_key_file: str = ""  # empty: <data_dir>/secret.key; $FLEETDECK_SECRET_KEY wins over it
    login_failures_per_user: int = 5  # failed logins per user name within login_window_seconds
    login_failures_per_ip: int = 20  # failed logins (and enrolments) per client address
    login_window_seconds: float = 300.0


@dataclass
class AlertingConfig:
    """The ``alerting:`` section (docs/alerting.md)."""

    rule_files: list[str] = field(default_factory=list)  # globs; relative to the config file's folder
    evaluation_interval: float = 60.0  # seconds (or a duration such as "1m"), groups without interval
    default_rules: bool = True  # load the shipped rules (console/alerting/default_rules.yml)


def _alerting_from(values: Any, base_dir: Path | None) -> AlertingConfig:
    """Raises ConfigError naming the key for an unknown key or a bad value."""
    if values is None:
        return AlertingConfig()
    if not isinstance(values, dict):
        raise ConfigError("alerting: must be a mapping")
    known = {f.name for f in dataclasses.fields(AlertingConfig)}
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        raise ConfigError(f"unknown key(s) in alerting section: {', '.join(map(str, unknown))}")
    out = AlertingConfig()
    if values.get("rule_files") is not None:
        files = values["rule_files"]
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise ConfigError("alerting.rule_files: expected a list of file globs")
        out.rule_files = [f if os.path.isabs(f) or base_dir is None else str(base_dir / f) for f in files]
    if values.get("evaluation_interval") is not None:
        raw = values["evaluation_interval"]
        try:
            if isinstance(raw, str) and not raw.replace(".", "", 1).isdigit():
                from console.alerting.rules import parse_duration

                seconds = parse_duration(raw)
            elif isinstance(raw, bool):
                raise ValueError(raw)
            else:
                seconds = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"alerting.evaluation_interval: expected seconds or a duration, got {raw!r}") from None
        if not (0 < seconds < float("inf")):
            raise ConfigError(f"alerting.evaluation_interval: must be positive, got {raw!r}")
        out.evaluation_interval = seconds
    if values.get("default_rules") is not None:
        if not isinstance(values["default_rules"], bool):
            raise ConfigError(f"alerting.default_rules: expected true or false, got {values['default_rules']!r}")
        out.default_rules = values["default_rules"]
    return out


@dataclass
class Config:
    """The whole file: the console section plus sections other parts read."""

    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    agent: dict[str, Any] = field(default_factory=dict)
    apps: dict[str, Any] = field(default_factory=dict)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    inventory: dict[str, Any] = field(default_factory=dict)  # SSH hosts and groups (console/deploy/inventory.py)

    @property
    def data_dir(self) -> Path:
        return Path(self.console.data_dir)

    @property
    def database_url(self) -> str:
        if self.console.database_url:
            return self.console.database_url
        return f"sqlite:///{(self.data_dir / 'fleetdeck.db').resolve()}"

    @property
    def secret_key_file(self) -> Path:
        return Path(self.console.secret_key_file) if self.console.secret_key_file else self.data_dir / "secret.key"

    @property
    def web_dir(self) -> Path:
        return Path(self.console.web_dir) if self.console.web_dir else WEB_DIR

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return parse_listen(self.console.listen)

    @property
    def public_url(self) -> str:
        if self.console.public_url:
            return self.console.public_url.rstrip("/")
        host, port = self.listen_host_port
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}"


def parse_listen(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:8700"`` for IPv6) -> ``(host, port)``; raises ConfigError."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    """Convert a YAML or environment value to the field's type, with a clear error."""
    kind_name = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind_name == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind_name == "int":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind_name == "float":
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"console.{name}: expected {kind_name}, got {raw!r}") from None


def _console_from(values: Mapping[str, Any], env: Mapping[str, str]) -> ConsoleConfig:
    known = {f.name: f for f in dataclasses.fields(ConsoleConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in console section: {', '.join(unknown)}")
    merged: dict[str, Any] = {}
    for name, fld in known.items():
        if name in values and values[name] is not None:
            merged[name] = _coerce(name, fld.type, values[name])
        env_value = env.get(f"FLEETDECK_{name.upper()}")
        if env_value is not None and env_value != "":
            merged[name] = _coerce(name, fld.type, env_value)
    return ConsoleConfig(**merged)


def load_config(path: str | os.PathLike | None = None,
                env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read the configuration.

    ``path`` falls back to ``$FLEETDECK_CONFIG``; with neither, only defaults and the
    environment apply. ``overrides`` are console keys from command-line flags.
    Raises ConfigError for a missing file, bad YAML, unknown keys or bad values.
    """
    env = os.environ if env is None else env
    path = path or env.get("FLEETDECK_CONFIG") or None
    document: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                document = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    unknown = sorted(set(document) - {"console", "agent", "apps", "alerting", "inventory"})
    if unknown:
        raise ConfigError(f"unknown top-level key(s) in {path}: {', '.join(unknown)}")
    console_values = dict(document.get("console") or {})
    console = _console_from(console_values, env)
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(console, key, value)
    parse_listen(console.listen)
    return Config(
        console=console,
        agent=dict(document.get("agent") or {}),
        apps=dict(document.get("apps") or {}),
        alerting=_alerting_from(document.get("alerting"), Path(path).resolve().parent if path else None),
        inventory=dict(document.get("inventory") or {}),
    )
