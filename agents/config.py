"""Agent configuration: defaults < YAML file < environment < command line.

The YAML file is either the agent's own settings as a top-level mapping, or
the project's shared ``config.yaml`` with an ``agent:`` section (the other
sections, ``console:`` and ``apps:``, are ignored here)::

    agent:
      console_url: https://fleetdeck.example.com
      token: "..."
      interval: 10
      labels: {env: prod, zone: eu-1}
      collectors: [host]
      collector_options:
        host: {proc_root: /host/proc, sys_root: /host/sys, rootfs: /host/root}

Environment: ``FLEETDECK_AGENT_CONSOLE``, ``FLEETDECK_AGENT_TOKEN``,
``FLEETDECK_AGENT_HOST``, ``FLEETDECK_AGENT_INTERVAL`` (empty values are
ignored). Every problem raises :class:`ConfigError` naming the offending key
and where its value came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from collectors.logs import LogOptions, LogOptionsError

ENV_OVERRIDES = {
    "FLEETDECK_AGENT_CONSOLE": "console_url",
    "FLEETDECK_AGENT_TOKEN": "token",
    "FLEETDECK_AGENT_HOST": "host",
    "FLEETDECK_AGENT_INTERVAL": "interval",
}
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# What the console accepts as a host name (console/ingest/batch.py).
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
MAX_SECONDS = 86400  # the console's upper bound for an agent interval


class ConfigError(ValueError):
    """The agent configuration is unreadable or invalid; the message says where and why."""


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
    """

    console_url: str = "http://127.0.0.1:8700"
    token: str = ""
    host: str = field(default_factory=socket.gethostname)
    interval: float = 10.0
    timeout: float = 10.0
    collectors: list[str] = field(default_factory=lambda: ["host"])
    collector_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_dir: str = "./var/agent"
    labels: dict[str, str] = field(default_factory=dict)
    logs: LogOptions = field(default_factory=LogOptions)
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_max_age: float = 3 * 86400.0
    spool_fsync: bool = True
    retry_min_backoff: float = 0.5
    retry_max_backoff: float = 30.0
    drain_rate: float = 5.0
    auth_retry_min_backoff: float = 30.0
    auth_retry_max_backoff: float = 600.0
    spool_full_hold_batches: int = 360
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    token_file: str = ""

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


def _read_file(path: str) -> dict[str, Any]:
    import yaml  # only with a config file (~3 MiB the agent does without otherwise)

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    if "agent" in data:
        section = data["agent"]
        if section is None:
            return {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: 'agent' must be a mapping, got {type(section).__name__}")
        return section
    return data


def _number(key: str, value: Any, source: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} (from {source}) must be a number of seconds, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} (from {source}) must be a number of seconds, got {value!r}") from None


def _string(key: str, value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} (from {source}) must be a string, got {type(value).__name__}")
    return value


def _labels(value: Any, source: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"labels (from {source}) must be a mapping of name to value")
    labels = {}
    for name, label_value in value.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ConfigError(f"labels (from {source}): invalid label name {name!r} (use [a-zA-Z_][a-zA-Z0-9_]*)")
        if isinstance(label_value, bool) or not isinstance(label_value, (str, int, float)):
            raise ConfigError(f"labels (from {source}): value of {name!r} must be a string, got {label_value!r}")
        labels[name] = str(label_value)
    return labels


def _coerce(key: str, value: Any, source: str) -> Any:
    if key in ("interval", "timeout", "spool_max_age", "retry_min_backoff", "retry_max_backoff", "drain_rate",
               "auth_retry_min_backoff", "auth_retry_max_backoff"):
        return _number(key, value, source)
    if key in ("console_url", "token", "host", "state_dir", "ca_file", "client_cert", "client_key", "token_file"):
        return _string(key, value, source)
    if key == "spool_full_hold_batches":
        if isinstance(value, bool) or not isinstance(value, int) and not (
                isinstance(value, str) and value.isascii() and value.isdigit()):
            raise ConfigError(f"spool_full_hold_batches (from {source}) must be a whole number, got {value!r}")
        return int(value)
    if key == "spool_max_bytes":
        whole = isinstance(value, int) and not isinstance(value, bool)
        digits = isinstance(value, str) and value.isascii() and value.isdigit()
        if not (whole or digits):
            raise ConfigError(f"spool_max_bytes (from {source}) must be a whole number of bytes, got {value!r}")
        return int(value)
    if key == "spool_fsync":
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"spool_fsync (from {source}) must be true or false, got {value!r}")
        return value
    if key == "labels":
        return _labels(value, source)
    if key == "logs":
        try:
            return LogOptions.from_mapping(value, source)
        except LogOptionsError as exc:
            raise ConfigError(str(exc)) from None
    if key == "collectors":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"collectors (from {source}) must be a list of collector names")
        return list(value)
    if key == "collector_options":
        if not isinstance(value, dict) or not all(isinstance(v, dict) or v is None for v in value.values()):
            raise ConfigError(f"collector_options (from {source}) must map collector names to mappings")
        return {name: dict(opts or {}) for name, opts in value.items()}
    raise ConfigError(f"unknown key {key!r} (from {source})")  # guarded by the caller; kept for safety


def validate(config: AgentConfig, sources: Mapping[str, str] | None = None) -> None:
    """Check values that parse but cannot work; raise :class:`ConfigError`."""
    sources = sources or {}

    def where(key: str) -> str:
        return f" (from {sources[key]})" if key in sources else ""

    url = urllib.parse.urlsplit(config.console_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(
            f"console_url{where('console_url')} must be an http:// or https:// URL, got {config.console_url!r}"
        )
    if url.query or url.fragment:
        raise ConfigError(f"console_url{where('console_url')} must not have a query or fragment")
    for key in ("interval", "timeout"):
        value = getattr(config, key)
        if not 0 < value <= MAX_SECONDS:
            raise ConfigError(f"{key}{where(key)} must be a number of seconds in (0, {MAX_SECONDS}], got {value!r}")
    if not _HOST_NAME.match(config.host):
        raise ConfigError(
            f"host{where('host')} must be a name of letters, digits, '.', '_' and '-' "
            f"starting with a letter or digit, got {config.host!r}"
        )
    if config.spool_max_bytes < 64 * 1024:
        raise ConfigError(f"spool_max_bytes{where('spool_max_bytes')} must be at least 65536, "
                          f"got {config.spool_max_bytes}")
    for key in ("spool_max_age", "retry_min_backoff", "retry_max_backoff", "drain_rate"):
        if not getattr(config, key) > 0:
            raise ConfigError(f"{key}{where(key)} must be a positive number, got {getattr(config, key)!r}")
    if config.retry_min_backoff > config.retry_max_backoff:
        raise ConfigError(f"retry_min_backoff{where('retry_min_backoff')} must not exceed retry_max_backoff")
    for key in ("auth_retry_min_backoff", "auth_retry_max_backoff"):
        if not 0 < getattr(config, key) <= MAX_SECONDS:
            raise ConfigError(f"{key}{where(key)} must be a number of seconds in (0, {MAX_SECONDS}], "
                              f"got {getattr(config, key)!r}")
    if config.auth_retry_min_backoff > config.auth_retry_max_backoff:
        raise ConfigError(f"auth_retry_min_backoff{where('auth_retry_min_backoff')} must not exceed "
                          "auth_retry_max_backoff")
    if not 0 <= config.spool_full_hold_batches <= 100_000:
        raise ConfigError(f"spool_full_hold_batches{where('spool_full_hold_batches')} must be from 0 to 100000, "
                          f"got {config.spool_full_hold_batches}")
    for key in ("ca_file", "client_cert", "client_key"):
        path = getattr(config, key)
        if path and not os.path.isfile(path):
            raise ConfigError(f"{key}{where(key)}: no such file {path!r}")
    if config.client_key and not config.client_cert:
        raise ConfigError(f"client_key{where('client_key')} needs client_cert")
    if not config.collectors:
        raise ConfigError(f"collectors{where('collectors')} must name at least one collector")


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
    value of the wrong type, or an invalid value.
    """
    environ = os.environ if environ is None else environ
    known = set(field_names())
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path:
        file_values = _read_file(path)
        unknown = sorted(str(k) for k in file_values if k not in known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key {unknown[0]!r} in agent settings; known keys: {', '.join(sorted(known))}"
            )
        layers.append((path, file_values))
    for env_name, key in ENV_OVERRIDES.items():
        if environ.get(env_name):
            layers.append((env_name, {key: environ[env_name]}))
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(k for k in cli if k not in known)
    if unknown:
        raise ConfigError(f"unknown override {unknown[0]!r}")
    layers.append(("command line", cli))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            values[key] = _coerce(key, value, source)
            sources[key] = source
    if "console_url" in values:
        values["console_url"] = values["console_url"].strip().rstrip("/")
    if not values.get("host", "x").strip():
        del values["host"]  # config.yaml's documented "empty: this machine's name"
    config = AgentConfig(**values)
    validate(config, sources)
    return config
