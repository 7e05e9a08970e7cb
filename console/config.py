"""Console configuration: defaults, the YAML file, ``FLEETDECK_*`` environment variables, flags.

Precedence (lowest first): the defaults below (documented in the repository's
``config.yaml``), the YAML file (``--config`` or ``FLEETDECK_CONFIG``), environment
variables, then command-line flags. Every key of the ``console:`` section can be set
from the environment as ``FLEETDECK_<KEY>`` (``FLEETDECK_LISTEN``,
``FLEETDECK_DATA_DIR``, ``FLEETDECK_DATABASE_URL``, ...); an empty variable is ignored;
a list-valued key takes a comma-separated list.

Validation is the pydantic v2 model :class:`ConsoleConfig` (unknown keys refused,
types, ranges, no NaN or infinity, enumerations, cross-field checks). The layers are
merged here rather than by pydantic-settings because every error must name the source
of the value it refuses, and pydantic-settings merges its sources before validating:
each value is remembered with where it came from (``FILE line N``, ``environment
FLEETDECK_X``, ``command-line flag --x``) and a :class:`ConfigError` names the key,
the problem, the value and that source, e.g.::

    console.retention_1h_days: must be greater than 0, got '-5' (from environment FLEETDECK_RETENTION_1H_DAYS)

Sections of one shared file are each read by their owner: the console reads
``console:``, ``apps:``, ``inventory:`` and ``probes:`` (:data:`SECTIONS`); ``agent:`` belongs to
``fleetdeck-agent`` and is not read here. Any other top-level key is refused, so a
misspelt or not-yet-supported section cannot be accepted and ignored.

Adding a console setting is one line in :class:`ConsoleConfig`: a typed field with its
default, its range in ``Field(...)`` and a comment giving the unit, e.g.
``trusted_proxies: list[str] = []  # addresses whose X-Forwarded-For is believed``.
The environment variable ``FLEETDECK_TRUSTED_PROXIES`` follows from the name; then
document the key, its default and its variable in ``config.yaml`` (a test checks it).
Adding a section is one entry in :data:`SECTIONS`.
"""
from __future__ import annotations

import ipaddress
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.yamlfile import YamlDocument, YamlFileError, read_yaml
from console.errors import InvalidInput
from console.i18n import N_, Text, TextLines, choices_text, list_separator, message_of, tx
from console.notify.receivers.config import DeliveryConfig

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DAYS_MAX = 36500  # a century: the largest retention or lifetime in days (datetime arithmetic stays in range)
SECONDS_MAX = 86400 * 365  # a year, the largest interval or window in seconds
BYTES_MAX = 1 << 50


class ConfigError(InvalidInput):
    """The configuration file, an environment variable or a flag holds an invalid value
    (a ``ValueError``, 400 ``invalid_config`` when it reaches a client).

    ``keys``: the keys the message is about (used to name their sources): each a key of
    the section, or a key path below it such as ``("target", "ports")``."""

    default_code = "invalid_config"

    def __init__(self, message: str, keys: tuple[str | tuple[str | int, ...], ...] = ()) -> None:
        super().__init__(message, {"keys": [k if isinstance(k, str) else list(k) for k in keys]} if keys else None)
        self.keys = keys


def _no_bool(value: Any) -> Any:
    # pydantic reads true/false as 1/0 for numbers; a flag where a number belongs is a mistake.
    if isinstance(value, bool):
        raise ValueError(tx("expected a number, not true or false, got {value}", value=repr(value)))
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]


class ConsoleConfig(BaseModel):
    """The ``console:`` section (units in the comments; every key documented in config.yaml).

    Attributes may be reassigned after loading (``fleetdeck run`` records the bound port
    in ``listen``); assignments are not validated again."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    listen: str = "127.0.0.1:8700"  # HOST:PORT
    # `fleetdeck serve` processes sharing the listening port and the database (docs/scaling.md)
    workers: Int = Field(1, ge=1, le=64)
    data_dir: str = Field("./var", min_length=1)
    database_url: str = ""  # empty: sqlite file <data_dir>/fleetdeck.db
    database_read_url: str = ""  # a PostgreSQL streaming replica for queries (docs/scaling.md); empty: none
    public_url: str = ""  # empty: derived from listen
    max_body_bytes: Int = Field(8 * 1024 * 1024, ge=1024, le=BYTES_MAX)  # ingest body cap, compressed and inflated
    api_max_body_bytes: Int = Field(1024 * 1024, ge=1024, le=BYTES_MAX)  # body cap of every other route
    down_after_intervals: Float = Field(3.0, gt=0, le=10000)  # a host is down after this many missed intervals
    default_interval: Float = Field(10.0, gt=0, le=86400)  # seconds, for hosts whose agent did not say
    session_days: Float = Field(7.0, gt=0, le=DAYS_MAX)  # browser session lifetime
    cookie_secure: bool = False  # set true behind HTTPS
    max_series_per_query: Int = Field(2000, ge=1)
    max_points_per_query: Int = Field(1_000_000, ge=1)  # 24 h x 500 series at 1 m is 720,000
    query_cache_points: Int = Field(1_000_000, ge=0)  # closed rollup buckets kept for repeated queries (range API points; PromQL bucket sums); 0: off
    promql_timeout: Float = Field(120.0, gt=0, le=SECONDS_MAX)  # seconds a PromQL query may evaluate (Prometheus' --query.timeout)
    promql_max_samples: Int = Field(10_000_000, ge=1)  # samples one PromQL query may load and produce (~100 bytes each)
    web_dir: str = ""  # empty: the web/ folder beside the console package
    retention_raw_days: Float = Field(7.0, gt=0, le=DAYS_MAX)  # raw samples kept this many days
    retention_1m_days: Float = Field(90.0, gt=0, le=DAYS_MAX)  # 1-minute rollups
    retention_1h_days: Float = Field(730.0, gt=0, le=DAYS_MAX)  # 1-hour rollups
    rollup_interval: Float = Field(60.0, ge=0, le=SECONDS_MAX)  # seconds between rollup/retention runs; 0: off
    rollup_delay: Float = Field(120.0, ge=0, le=SECONDS_MAX)  # seconds a minute stays open for late samples
    rollup_1m_host: bool = False  # keep cross-series 1m rollups per metric and host (rollup_1m_host)
    sample_hot_window: Float = Field(3600.0, ge=60, le=SECONDS_MAX)  # seconds raw samples (and 1m rollups) stay rows before packing into blocks
    max_series_per_host: Int = Field(10000, ge=1)  # cardinality guard; new series over it are rejected
    series_active_hours: Float = Field(24.0, gt=0, le=DAYS_MAX * 24)  # the cap counts series with a sample this recent
    sample_max_age: Float = Field(518400.0, gt=0, le=SECONDS_MAX)  # seconds; older samples are rejected (6 days)
    sample_max_future: Float = Field(600.0, ge=0, le=SECONDS_MAX)  # seconds; samples further ahead are rejected
    clock_skew_max_seconds: Float = Field(60.0, gt=0, le=86400)  # an agent whose sent_at is further off is flagged
    # PostgreSQL: hours of one time partition of samples (hot rows: an emptied one is dropped) /
    # of sample_blocks, rollup_1m and rollup_1m_blocks / of log_records
    samples_partition_hours: Int = Field(1, ge=1, le=24 * 366)
    metrics_partition_hours: Int = Field(24, ge=1, le=24 * 366)
    log_partition_hours: Int = Field(24, ge=1, le=24 * 366)
    log_retention_days: Float = Field(14.0, ge=0, le=DAYS_MAX)  # log records older than this are deleted; 0: keep
    log_retention_bytes: Int = Field(1024 * 1024 * 1024, ge=0, le=BYTES_MAX)  # cap on stored log bytes; 0: none
    log_retention_check_seconds: Float = Field(300.0, gt=0, le=SECONDS_MAX)  # how often log retention runs
    batch_id_retention_days: Float = Field(4.0, gt=0, le=DAYS_MAX)  # idempotency window; >= agents' spool_max_age
    ingest_rate_per_host: Float = Field(0.0, ge=0)  # batches/s per agent host; 0: unlimited
    ingest_samples_per_host: Float = Field(20_000.0, ge=0)  # samples/s per agent host; 0: unlimited
    ingest_samples_burst_per_host: Int = Field(200_000, ge=1)  # samples a host may send at once above the rate
    ingest_lines_per_host: Float = Field(20_000.0, ge=0)  # log lines/s per agent host; 0: unlimited
    ingest_lines_burst_per_host: Int = Field(200_000, ge=1)  # log lines a host may send at once above the rate
    ingest_burst_per_host: Int = Field(30, ge=1)  # batches an agent may send at once above the rate
    ingest_max_inflight: Int = Field(64, ge=0)  # ingest requests waiting for the database; 0: unbounded
    storage_retry_after: Int = Field(5, ge=1, le=3600)  # seconds, Retry-After of a 503 storage_unavailable
    secret_key_file: str = ""  # empty: <data_dir>/secret.key; $FLEETDECK_SECRET_KEY wins over it
    login_failures_per_user: Int = Field(5, ge=1)  # failed logins per (user name, client address) in the window
    login_failures_per_ip: Int = Field(20, ge=1)  # failed logins (and enrolments) per client address
    login_window_seconds: Float = Field(300.0, gt=0, le=SECONDS_MAX)
    # Comma-separated addresses or CIDR networks of reverse proxies whose X-Forwarded-For
    # names the client; empty: the peer address is the client (the header is ignored).
    trusted_proxies: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        try:
            parse_listen(value)
        except ConfigError:
            raise ValueError(tx("must be HOST:PORT ([ADDRESS]:PORT for IPv6), got {value}", value=repr(value))) from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        try:
            parse_trusted_proxies(value)
        except ConfigError as exc:
            raise ValueError(message_of(exc)) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # The dialects the storage layer supports (console/storage/database.py).
        if value and not value.startswith(("sqlite:", "sqlite+", "postgresql:", "postgresql+")):
            raise ValueError(tx("must be a SQLAlchemy URL of SQLite or PostgreSQL (sqlite:///PATH, "
                                "postgresql+psycopg://USER:PASSWORD@HOST/DB) or empty"))
        return value

    @field_validator("database_read_url")
    @classmethod
    def _database_read_url(cls, value: str) -> str:
        if value and not value.startswith(("postgresql:", "postgresql+")):
            raise ValueError(tx("must be a SQLAlchemy URL of a PostgreSQL replica "
                                "(postgresql+psycopg://USER:PASSWORD@HOST/DB) or empty"))
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(tx("must be an http:// or https:// URL (or empty), got {value}", value=repr(value)))
        return value

    @model_validator(mode="after")
    def _read_replica_of_postgres(self) -> "ConsoleConfig":
        if self.database_read_url and not self.database_url.startswith(("postgresql:", "postgresql+")):
            raise ConfigError(tx("a read replica needs a PostgreSQL database_url (SQLite has no replicas)"),
                              ("database_read_url", "database_url"))
        return self

    @model_validator(mode="after")
    def _workers_share_a_database(self) -> "ConsoleConfig":
        # Each worker opens the database itself: an in-memory SQLite database is private to
        # the process that opened it, so the workers would not share their data.
        if self.workers > 1 and self.database_url.startswith("sqlite") and \
                self.database_url.split("///", 1)[-1] in ("", ":memory:"):
            raise ConfigError("more than one worker needs a database file or server (an in-memory "
                              "SQLite database is private to each process)", ("workers", "database_url"))
        return self

    @model_validator(mode="after")
    def _tiers_reach_further_back(self) -> "ConsoleConfig":
        # A query whose start is older than a tier's retention reads the next coarser tier
        # (console/query/service.py), so each coarser tier must reach at least as far back.
        if self.retention_1m_days < self.retention_raw_days:
            raise ConfigError(tx("must be at least {other} ({limit}), got {value}", other="retention_raw_days",
                                 limit=f"{self.retention_raw_days:g}", value=f"{self.retention_1m_days:g}"),
                              ("retention_1m_days", "retention_raw_days"))
        if self.retention_1h_days < self.retention_1m_days:
            raise ConfigError(tx("must be at least {other} ({limit}), got {value}", other="retention_1m_days",
                                 limit=f"{self.retention_1m_days:g}", value=f"{self.retention_1h_days:g}"),
                              ("retention_1h_days", "retention_1m_days"))
        return self


# Top-level sections of a configuration file, and who reads each. The console validates
# its own; "agent" is read by fleetdeck-agent alone; a key not listed is refused.
SECTIONS: dict[str, Literal["console", "agent"]] = {
    "console": "console",
    "apps": "console",  # console/deploy/apps.py
    "inventory": "console",  # console/deploy/inventory.py
    "probes": "console",  # console/probes/config.py
    "alerting": "console",  # console/alerting/ (AlertingConfig below)
    "agent": "agent",  # agents/config.py
}
# Sections of earlier releases, refused with what replaced them.
REPLACED = {"alerts": N_("replaced by the alerting: section (rule_files in Prometheus' rule format; docs/alerting.md)")}


def _seconds(raw: Any) -> Any:
    # Prometheus writes intervals as durations ("30s", "1m"); a plain number is seconds.
    if isinstance(raw, str) and not raw.replace(".", "", 1).isdigit():
        from console.alerting.rules import parse_duration

        try:
            return parse_duration(raw)
        except ValueError:
            raise ValueError(tx("must be seconds or a duration such as 30s or 1m, got {value}", value=repr(raw))) from None
    return raw


Seconds = Annotated[float, BeforeValidator(_no_bool), BeforeValidator(_seconds)]


class DeploySignal(BaseModel):
    """One signal of the post-deploy watch: ``expr`` (PromQL, its largest series is
    compared) regresses when its average over the window after the deploy exceeds the
    average over the window before by more than ``ratio`` (0.5: 50 % more) or by more
    than ``absolute`` (in the signal's unit); at least one of the two."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    expr: Annotated[str, Field(min_length=1)]
    ratio: Float | None = Field(None, ge=0)
    absolute: Float | None = Field(None, ge=0)

    @field_validator("expr")
    @classmethod
    def _promql(cls, expr: str) -> str:
        from console.promql.service import PromError, parse_expr

        try:
            parse_expr(expr)
        except PromError as exc:
            raise ValueError(tx("not a PromQL expression: {reason}", reason=exc.message)) from None
        return expr

    @model_validator(mode="after")
    def _threshold(self) -> "DeploySignal":
        if self.ratio is None and self.absolute is None:
            raise ValueError(tx("give ratio (a relative increase, 0.5 = +50 %) or absolute (an increase in the "
                                "signal's unit), or both"))
        return self


class DeployWatch(BaseModel):
    """``alerting.deploy_watch.APP``: compare ``signals`` over ``window`` seconds after a
    successful deploy of APP ended with the same window before it began."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    window: Seconds = Field(600.0, gt=0, le=86400)
    signals: list[DeploySignal] = Field(min_length=1)

    @field_validator("signals")
    @classmethod
    def _unique(cls, signals: list[DeploySignal]) -> list[DeploySignal]:
        names = [s.name for s in signals]
        if len(set(names)) != len(names):
            raise ValueError(tx("signal names must be unique per app"))
        return signals


class AlertingConfig(BaseModel):
    """The ``alerting:`` section (docs/alerting.md)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rule_files: list[Annotated[str, Field(min_length=1)]] = []  # globs; relative to the config file's folder
    # Seconds, or a duration such as "1m", for groups without their own interval.
    evaluation_interval: Float = Field(60.0, gt=0, le=SECONDS_MAX)
    default_rules: bool = True  # load the shipped rules (console/alerting/default_rules.yml)
    # Deploys (console/maintenance/deploys.py): alerts on an app's targets are held while it
    # deploys and this many seconds after (a duration such as "5m" works); the watch per app.
    deploy_settle: Seconds = Field(300.0, ge=0, le=SECONDS_MAX)
    deploy_watch: dict[Annotated[str, Field(min_length=1)], DeployWatch] = {}
    # Notifications (console/notify/config.py): Alertmanager's configuration (route,
    # receivers, inhibit_rules, time_intervals) inline, or the path of a YAML file holding
    # it (relative to the config file's folder); none: no notifications are sent.
    notifications: dict[str, Any] | Annotated[str, Field(min_length=1)] | None = None
    default_inhibit_rules: bool = True  # a HostDown alert inhibits the other alerts of its host
    # Sending notifications: timeouts, retries and backoff (console/notify/receivers/config.py).
    delivery: DeliveryConfig = DeliveryConfig()

    @field_validator("evaluation_interval", mode="before")
    @classmethod
    def _duration(cls, raw: Any) -> Any:
        # Prometheus writes intervals as durations ("30s", "1m"); a plain number is seconds.
        if isinstance(raw, str) and not raw.replace(".", "", 1).isdigit():
            from console.alerting.rules import parse_duration

            try:
                return parse_duration(raw)
            except ValueError:
                raise ValueError(tx("must be seconds or a duration such as 30s or 1m, got {value}", value=repr(raw))) from None
        return raw

    @field_validator("default_rules", "default_inhibit_rules", mode="before")
    @classmethod
    def _strict_bool(cls, raw: Any) -> Any:
        if not isinstance(raw, bool):
            raise ValueError(tx("must be true or false, got {value}", value=repr(raw)))
        return raw


def _alerting_from(document: YamlDocument, base_dir: Path | None) -> AlertingConfig:
    """The ``alerting:`` section validated, rule file globs made absolute against the
    config file's folder. Raises ConfigError naming each bad key and its line."""
    values = {k: v for k, v in (document.data.get("alerting") or {}).items() if v is not None}
    try:
        config = AlertingConfig.model_validate(values)
    except ValidationError as exc:
        where = (lambda loc: file_where(document, ("alerting",) + tuple(loc))) if base_dir is not None else (lambda loc: None)
        raise ConfigError(TextLines(validation_messages(exc, "alerting", where))) from None
    if base_dir is not None:
        config.rule_files = [f if os.path.isabs(f) else str(base_dir / f) for f in config.rule_files]
        if isinstance(config.notifications, str) and not os.path.isabs(config.notifications):
            config.notifications = str(base_dir / config.notifications)
    from console.notify.config import load_notifications

    load_notifications(config.notifications, document if base_dir is not None else None, base_dir)  # refuse bad ones
    return config


@dataclass
class Config:
    """The sections of the file the console reads: ``console`` validated, ``apps`` and
    ``inventory`` as written (validated by :func:`console.services.build_services`).
    ``path``, ``document``: the file they came from and its key lines (None: defaults and
    environment only)."""

    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    apps: dict[str, Any] = field(default_factory=dict)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    inventory: dict[str, Any] = field(default_factory=dict)  # SSH hosts and groups (console/deploy/inventory.py)
    probes: dict[str, Any] = field(default_factory=dict)  # blackbox probes (console/probes/config.py)
    path: str | None = None
    document: YamlDocument | None = field(default=None, repr=False, compare=False)
    # console key -> where its value came from ("FILE line N", "environment NAME",
    # "command-line flag --name"); a key missing here has its default.
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def source_of(self, section: str) -> Callable[[tuple], str | None] | None:
        """For the validators of ``section``: key path below it -> ``"FILE line N"``;
        None when the configuration came from no file."""
        document = self.document
        if document is None:
            return None
        return lambda loc: file_where(document, (section,) + tuple(loc))

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
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``console.trusted_proxies`` parsed (validated by :func:`load_config`)."""
        return parse_trusted_proxies(self.console.trusted_proxies)

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
        raise ConfigError(tx("listen must be HOST:PORT, got {value}", value=repr(value)))
    return host.strip("[]"), int(port)


def parse_trusted_proxies(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.5, 192.168.0.0/16, ::1"`` -> networks (an address is a /32 or /128);
    raises ConfigError naming the first entry that is not an IP address or
    network (host names are refused: a proxy is trusted by address, never by DNS)."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(tx("{entry} is not an IP address or CIDR network", entry=repr(entry))) from None
    return tuple(networks)


def _is_list(name: str) -> bool:
    annotation = ConsoleConfig.model_fields[name].annotation
    return typing.get_origin(annotation) in (list, tuple, set)


def _env_value(name: str, raw: str) -> Any:
    return [part.strip() for part in raw.split(",") if part.strip()] if _is_list(name) else raw


def key_path(*parts: Any) -> str:
    """``("apps", "web", "target", "ports", 0)`` -> ``"apps.web.target.ports[0]"``."""
    out = ""
    for part in parts:
        if part == "[key]":  # pydantic's marker for a mapping key that failed validation
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# pydantic's messages of the problems configuration meets, as they read here ("Input should
# be" -> "must be", tuples read from YAML lists) and as translatable templates filled from
# the problem's ``ctx`` (N_ marks them for `make messages`). A template that does not
# reproduce the English of a problem is not used: that problem keeps pydantic's English.
_PROBLEMS = {
    "greater_than": N_("must be greater than {gt}"),
    "greater_than_equal": N_("must be greater than or equal to {ge}"),
    "less_than": N_("must be less than {lt}"),
    "less_than_equal": N_("must be less than or equal to {le}"),
    "multiple_of": N_("must be a multiple of {multiple_of}"),
    "finite_number": N_("must be a finite number"),
    "int_type": N_("must be a valid integer"),
    "int_parsing": N_("must be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("must be a valid integer, got a number with a fractional part"),
    "float_type": N_("must be a valid number"),
    "float_parsing": N_("must be a valid number, unable to parse string as a number"),
    "bool_type": N_("must be a valid boolean"),
    "bool_parsing": N_("must be a valid boolean, unable to interpret input"),
    "string_type": N_("must be a valid string"),
    "literal_error": N_("must be {expected}"),
    "enum": N_("must be {expected}"),
    "list_type": N_("must be a valid list"),
    "tuple_type": N_("must be a list"),
    "set_type": N_("must be a valid set"),
    "dict_type": N_("must be a valid dictionary"),
    "model_type": N_("must be a valid dictionary or instance of {class_name}"),
    "model_attributes_type": N_("must be a valid dictionary or object to extract fields from"),
    "none_required": N_("must be None"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "url_parsing": N_("must be a valid URL, {error}"),
    "url_scheme": N_("URL scheme should be {expected_schemes}"),
}
# Problems whose English depends on a count: (singular, plural) by ctx "expected_plural".
_COUNTED = {
    "string_too_short": (N_("String should have at least {min_length} character"),
                         N_("String should have at least {min_length} characters")),
    "string_too_long": (N_("String should have at most {max_length} character"),
                        N_("String should have at most {max_length} characters")),
    "too_short": (N_("{field_type} should have at least {min_length} item after validation, not {actual_length}"),
                  N_("{field_type} should have at least {min_length} items after validation, not {actual_length}")),
    "too_long": (N_("{field_type} should have at most {max_length} item after validation, not {actual_length}"),
                 N_("{field_type} should have at most {max_length} items after validation, not {actual_length}")),
}
# pydantic's names of collection types in too_short/too_long.
_FIELD_TYPES = {"List": N_("List"), "Tuple": N_("Tuple"), "Set": N_("Set"), "Dictionary": N_("Dictionary"),
                "Data": N_("Data")}


def file_where(document: YamlDocument, loc: tuple) -> str:
    """``"FILE line N"`` of the key path ``loc`` in ``document`` (``"FILE"`` when no line
    is known), translatable (console/i18n.py ``Text``)."""
    line = document.line(loc)
    return tx("{file} line {line}", file=str(document.path), line=line) if line else str(document.path)


def _shown(value: Any) -> str:
    # pydantic_core writes a whole float bound without its fraction ("greater than 0").
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def problem_text(err: Mapping[str, Any]) -> str:
    """pydantic's message of the problem ``err`` as it reads in a configuration error: a
    translatable ``Text`` for the problems of :data:`_PROBLEMS` and :data:`_COUNTED` and a
    validator's ``ValueError(tx(...))``, else pydantic's English."""
    message = err["msg"].replace("a valid tuple", "a list")  # tuples are read from YAML lists
    for old, new in (("Input should be ", "must be "), ("Value error, ", ""), ("Assertion failed, ", "")):
        if message.startswith(old):
            message = new + message[len(old):]
    ctx = dict(err.get("ctx") or {})
    kind = err["type"]
    if kind == "value_error" and isinstance(ctx.get("error"), Exception):
        reason = message_of(ctx["error"])
        return reason if reason == message else message
    if kind in _COUNTED:
        template = _COUNTED[kind][1 if ctx.pop("expected_plural", "") else 0]
        if ctx.get("field_type") in _FIELD_TYPES:
            ctx["field_type"] = tx(_FIELD_TYPES[ctx["field_type"]])
    else:
        template = _PROBLEMS.get(kind, "")
    if kind in ("literal_error", "enum") and isinstance(ctx.get("expected"), str):
        ctx["expected"] = choices_text(ctx["expected"])
    if not template:
        return message
    try:
        text = tx(template, **{k: v if isinstance(v, Text) else _shown(v) for k, v in ctx.items()})
    except (KeyError, IndexError, ValueError):
        return message
    return text if text == message else message


def with_source(message: str, source: str | None) -> str:
    """``MESSAGE (from SOURCE)``, translatable; ``message`` alone when the source is None."""
    return tx("{message} (from {source})", message=message, source=source) if source else message


def validation_messages(exc: ValidationError, prefix: str, source_of) -> list[str]:
    """One line per pydantic error: ``PREFIX.KEY: problem, got VALUE (from SOURCE)``, each a
    translatable ``Text`` (console/i18n.py) whose English is that text.

    ``source_of(loc)`` names where the value at ``loc`` (a key path tuple below
    ``prefix``) came from, or returns None. A :class:`ConfigError` raised by a model
    validator about several keys keeps its message, is shown under its first key, and
    names the source of each key it lists."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError) and cause.keys:
            keys = [loc + (k if isinstance(k, tuple) else (k,)) for k in cause.keys]
            sources = [(key, source_of(key)) for key in keys]
            named = [tx("from {source}", source=src) if i == 0
                     else tx("{key} from {source}", key=key_path(*key[len(loc):]), source=src)
                     for i, (key, src) in enumerate(sources) if src]
            line = tx("{key}: {problem}", key=key_path(prefix, *keys[0]), problem=message_of(cause))
            lines.append(tx("{message} ({sources})", message=line, sources=TextLines(named, list_separator())) if named else line)
            continue
        key = key_path(prefix, *loc)
        if err["type"] == "extra_forbidden":
            line = tx("{key}: unknown key", key=key)
        elif err["type"] == "missing":
            line = tx("{key}: required", key=key)
        elif err["type"] != "value_error":  # our own validators name the value themselves
            value = err.get("input")
            if not isinstance(value, (Mapping, list)) or len(repr(value)) <= 60:
                line = tx("{key}: {problem}, got {value}", key=key, problem=problem_text(err), value=repr(value))
            else:
                line = tx("{key}: {problem}", key=key, problem=problem_text(err))
        else:
            line = tx("{key}: {problem}", key=key, problem=problem_text(err))
        lines.append(with_source(line, source_of(loc)))
    return lines


def _read_file(path: str) -> YamlDocument:
    try:
        document = read_yaml(path)
    except YamlFileError as exc:
        raise ConfigError(message_of(exc)) from None
    if document.data is None:
        document.data = {}
    if not isinstance(document.data, dict):
        raise ConfigError(tx("{path}: must hold a mapping of sections (console, apps, ...) at the top level", path=path))
    for name, why in REPLACED.items():
        if name in document.data:
            raise ConfigError(tx("{key} ({source}): {problem}", key=name, source=file_where(document, (name,)),
                                 problem=tx(why)))
    unknown = [str(k) for k in document.data if k not in SECTIONS]
    if unknown:
        raise ConfigError(tx("{path}: unknown top-level section {section} (line {line}); known: {known}", path=path,
                             section=repr(unknown[0]), line=document.line((unknown[0],)), known=", ".join(SECTIONS)))
    for name, owner in SECTIONS.items():
        value = document.data.get(name)
        if owner == "console" and value is not None and not isinstance(value, dict):
            raise ConfigError(tx("{key} ({source}): must be a mapping, got {type}", key=name,
                                 source=file_where(document, (name,)), type=type(value).__name__))
    return document


def load_config(path: str | os.PathLike | None = None,
                env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read the configuration.

    ``path`` falls back to ``$FLEETDECK_CONFIG``; with neither, only defaults and the
    environment apply. ``overrides`` are console keys from command-line flags (None
    values are ignored). Raises ConfigError for a missing file, bad YAML, an unknown
    section or key, a value of the wrong type or out of range; the message names the
    key, and the file and line, environment variable or flag its value came from.
    """
    env = os.environ if env is None else env
    path = path or env.get("FLEETDECK_CONFIG") or None
    document = _read_file(str(path)) if path else YamlDocument("", {}, {})
    section = document.data.get("console") or {}
    values: dict[str, Any] = {k: v for k, v in section.items() if v is not None}  # `key:` alone: the default
    sources: dict[str, str] = {str(k): file_where(document, ("console", k)) for k in values}
    for name in ConsoleConfig.model_fields:
        raw = env.get(f"FLEETDECK_{name.upper()}")
        if raw:
            values[name] = _env_value(name, raw)
            sources[name] = tx("environment {variable}", variable=f"FLEETDECK_{name.upper()}")
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
            sources[name] = tx("command-line flag {flag}", flag=f"--{name.replace('_', '-')}")
    try:
        console = ConsoleConfig.model_validate(values)
    except ValidationError as exc:
        lines = validation_messages(exc, "console", lambda loc: sources.get(str(loc[0]), tx("the default")) if loc else None)
        raise ConfigError(TextLines(lines)) from None
    return Config(console=console, apps=dict(document.data.get("apps") or {}),
                  inventory=dict(document.data.get("inventory") or {}),
                  alerting=_alerting_from(document, Path(path).resolve().parent if path else None),
                  probes=dict(document.data.get("probes") or {}), path=str(path) if path else None,
                  document=document if path else None, sources=sources)


__all__ = ["Config", "ConfigError", "ConsoleConfig", "SECTIONS", "file_where", "key_path", "load_config",
           "parse_listen", "validation_messages", "with_source"]
