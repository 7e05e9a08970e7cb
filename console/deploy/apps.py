"""App definitions: the ``apps:`` section of config.yaml, parsed into typed, validated objects.

Every option and its default is documented in the repository's ``config.yaml`` and in
``docs/deploys.md``. Parsing raises ``ConfigError`` naming the offending key, so a bad
file stops the console at start-up instead of failing a deploy later.

Names and versions that reach Docker (container names, labels, image references) are
checked here and again on every request with the ``valid_*`` helpers, so shell
metacharacters, ``../`` and the like never get near the engine.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlparse

from console.config import ConfigError

APP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A Docker tag, or an image digest.
VERSION_RE = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[a-f0-9]{64})$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^(?:[A-Za-z0-9.-]+(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
PORT_RE = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:]+\]|\d{1,3}(?:\.\d{1,3}){3}):)?(?:(?P<host>\d{1,5}(?:-\d{1,5})?):)?"
                     r"(?P<container>\d{1,5})(?:/(?P<proto>tcp|udp))?$")

DRIVERS = ("docker", "ssh", "kubernetes")
HEALTH_TYPES = ("docker", "http", "tcp", "command", "none")
STRATEGIES = ("rolling", "recreate")
CONFLICT_POLICIES = ("reject", "queue")
PULL_POLICIES = ("missing", "always", "never")
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def valid_app_name(name: Any) -> bool:
    return isinstance(name, str) and bool(APP_NAME_RE.fullmatch(name))


def valid_version(version: Any) -> bool:
    return isinstance(version, str) and bool(VERSION_RE.fullmatch(version))


def image_reference(repository: str, version: str) -> str:
    """``repository:version``, or ``repository@sha256:…`` when the version is a digest.
    Raises ValueError when either part is malformed."""
    if not REPOSITORY_RE.fullmatch(repository) or not valid_version(version):
        raise ValueError(f"invalid image reference {repository!r} {version!r}")
    return f"{repository}@{version}" if version.startswith("sha256:") else f"{repository}:{version}"


@dataclass(frozen=True)
class PortMapping:
    """A container port, optionally published on a host port pool ``host_first..host_last``.

    Each replica occupies one *slot*; slot ``k`` publishes on ``host_first + k``. A pool
    of one port allows one container at a time."""

    container: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_first: int | None = None
    host_last: int | None = None

    @property
    def published(self) -> bool:
        return self.host_first is not None

    @property
    def pool_size(self) -> int | None:
        return None if self.host_first is None else self.host_last - self.host_first + 1

    def describe(self) -> str:
        if not self.published:
            return f"{self.container}/{self.protocol}"
        host = str(self.host_first) if self.host_first == self.host_last else f"{self.host_first}-{self.host_last}"
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{host}:{self.container}/{self.protocol}"


@dataclass(frozen=True)
class TlsConfig:
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""
    verify: bool = True


@dataclass(frozen=True)
class DockerTarget:
    """Where and how the app's containers run (the docker driver's ``target:``)."""

    image: str  # repository without tag
    engine: str = "unix:///var/run/docker.sock"
    tls: TlsConfig | None = None
    replicas: int = 1
    name_prefix: str = ""
    ports: tuple[PortMapping, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[str, ...] = ()
    network: str = ""
    network_alias: str = ""
    command: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    restart: str = "unless-stopped"
    stop_timeout: int = 10  # seconds
    pull: str = "missing"
    api_timeout: float = 60.0  # seconds, per Docker API call
    health_host: str = ""  # address of published ports for http/tcp health checks

    @property
    def slots(self) -> int | None:
        """How many containers the published port pools allow at once (None: unlimited)."""
        sizes = [p.pool_size for p in self.ports if p.published]
        return min(sizes) if sizes else None


@dataclass(frozen=True)
class HealthCheck:
    """``type``: ``docker`` (the image's HEALTHCHECK), ``http``, ``tcp`` or ``none``.
    Times in seconds. A new container is healthy at its first passing probe; it is
    unhealthy after ``retries`` consecutive failures once ``start_period`` has passed,
    or at once when it exits."""

    type: str = "docker"
    path: str = "/"
    port: int | None = None  # container port probed by http/tcp
    expect_status: tuple[int, int] = (200, 399)
    interval: float = 1.0
    timeout: float = 2.0
    retries: int = 3
    start_period: float = 10.0
    command: tuple[str, ...] = ()  # argv run on each host (ssh driver, type command): exit 0 is healthy


@dataclass(frozen=True)
class Strategy:
    type: str = "rolling"
    max_unavailable: int | str = 0  # replicas, or a percentage like "25%"
    max_surge: int | str = 1

    def resolve(self, replicas: int) -> tuple[int, int]:
        """(max_unavailable, max_surge) as replica counts, Kubernetes-style: percentages
        round maxUnavailable down and maxSurge up."""
        def count(value: int | str, round_up: bool) -> int:
            if isinstance(value, int):
                return value
            pct = int(value[:-1])
            whole, rest = divmod(replicas * pct, 100)
            return whole + (1 if round_up and rest else 0)

        return count(self.max_unavailable, False), count(self.max_surge, True)


@dataclass(frozen=True)
class AppDefinition:
    name: str
    driver: str
    target: Any  # DockerTarget | SshTarget | KubernetesTarget (console/deploy/targets.py)
    health_check: HealthCheck = field(default_factory=HealthCheck)
    strategy: Strategy = field(default_factory=Strategy)
    timeout: float = 600.0  # seconds, a whole deploy
    on_conflict: str = "reject"
    hosts: tuple[str, ...] = ()
    description: str = ""

    def summary(self) -> dict:
        """The public view for ``GET /api/v1/apps``: no env values, no credentials."""
        t = self.target
        if self.driver != "docker":
            hc = self.health_check
            return {"name": self.name, "driver": self.driver, "description": self.description,
                    "hosts": list(self.hosts), "target": t.summary(),
                    "health_check": {"type": hc.type, "path": hc.path, "port": hc.port, "command": list(hc.command),
                                     "interval": hc.interval, "timeout": hc.timeout, "retries": hc.retries,
                                     "start_period": hc.start_period},
                    "timeout": self.timeout, "on_conflict": self.on_conflict}
        engine = urlparse(t.engine)
        shown_engine = t.engine if not engine.password else t.engine.replace(engine.password, "***")
        unavailable, surge = self.strategy.resolve(t.replicas)
        return {
            "name": self.name, "driver": self.driver, "description": self.description, "hosts": list(self.hosts),
            "target": {"engine": shown_engine, "image": t.image, "replicas": t.replicas,
                       "name_prefix": t.name_prefix, "ports": [p.describe() for p in t.ports],
                       "network": t.network or "bridge", "env_keys": sorted(k for k, _ in t.env),
                       "volumes": list(t.volumes)},
            "health_check": {"type": self.health_check.type, "path": self.health_check.path,
                             "port": self.health_check.port, "interval": self.health_check.interval,
                             "timeout": self.health_check.timeout, "retries": self.health_check.retries,
                             "start_period": self.health_check.start_period},
            "strategy": {"type": self.strategy.type, "max_unavailable": unavailable, "max_surge": surge},
            "timeout": self.timeout, "on_conflict": self.on_conflict,
        }


# -- parsing -----------------------------------------------------------------------------
class _Section:
    """Typed reads from one mapping with errors that name the full key path."""

    def __init__(self, path: str, raw: Any) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(raw).__name__}")
        self.path = path
        self.raw = dict(raw)
        self.used: set[str] = set()

    def get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        value = self.raw.get(key)
        return default if value is None else value

    def string(self, key: str, default: str = "", choices: tuple[str, ...] | None = None) -> str:
        value = self.get(key, default)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{self.path}.{key}: expected a string, got {value!r}")
        value = str(value)
        if choices and value not in choices:
            raise ConfigError(f"{self.path}.{key}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f" between {minimum} and {maximum}" if maximum is not None else f" >= {minimum}"
            raise ConfigError(f"{self.path}.{key}: expected an integer{bound}, got {value!r}")
        return value

    def seconds(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ConfigError(f"{self.path}.{key}: expected a number of seconds >= {minimum}, got {value!r}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.path}.{key}: expected true or false, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, [])
        if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.path}.{key}: expected a list of strings, got {value!r}")
        return tuple(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.path}.{key}: expected a mapping, got {value!r}")
        out = {}
        for k, v in value.items():
            if isinstance(v, (dict, list)) or v is None:
                raise ConfigError(f"{self.path}.{key}.{k}: expected a scalar value, got {v!r}")
            out[str(k)] = "true" if v is True else "false" if v is False else str(v)
        return out

    def section(self, key: str) -> "_Section":
        return _Section(f"{self.path}.{key}", self.get(key, {}))

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(f"{self.path}: unknown key(s) {', '.join(unknown)}")


def _parse_port(path: str, raw: Any) -> PortMapping:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, Mapping):
        s = _Section(path, raw)
        container = s.integer("container", 0, 1, 65535)
        protocol = s.string("protocol", "tcp", ("tcp", "udp"))
        host_ip = s.string("host_ip", "")
        host = s.string("host", "")
        s.done()
        text = f"{host_ip + ':' if host_ip else ''}{host + ':' if host else ''}{container}/{protocol}"
    elif isinstance(raw, str):
        text = raw
    else:
        raise ConfigError(f"{path}: expected \"[HOST_IP:][HOST_PORT[-LAST]:]CONTAINER_PORT[/tcp|udp]\", got {raw!r}")
    m = PORT_RE.fullmatch(text)
    if not m:
        raise ConfigError(f"{path}: expected \"[HOST_IP:][HOST_PORT[-LAST]:]CONTAINER_PORT[/tcp|udp]\", got {raw!r}")
    container = int(m.group("container"))
    first = last = None
    if m.group("host"):
        first_s, _, last_s = m.group("host").partition("-")
        first, last = int(first_s), int(last_s or first_s)
        if not (1 <= first <= last <= 65535):
            raise ConfigError(f"{path}: host port range {m.group('host')!r} is not within 1-65535 and ascending")
    if not 1 <= container <= 65535:
        raise ConfigError(f"{path}: container port {container} is not within 1-65535")
    return PortMapping(container=container, protocol=m.group("proto") or "tcp",
                       host_ip=(m.group("ip") or "").strip("[]"), host_first=first, host_last=last)


def _parse_count_or_percent(path: str, value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}%", value) and int(value[:-1]) <= 100:
        return value
    raise ConfigError(f"{path}: expected a replica count >= 0 or a percentage like \"25%\", got {value!r}")


def _parse_target(s: _Section, app: str) -> DockerTarget:
    engine = s.string("engine", "unix:///var/run/docker.sock")
    scheme = urlparse(engine).scheme
    if scheme not in ("unix", "tcp", "ssh", "http", "https"):
        raise ConfigError(f"{s.path}.engine: expected unix://PATH, tcp://HOST:PORT or ssh://USER@HOST, got {engine!r}")
    tls = None
    if s.raw.get("tls") is not None:
        t = s.section("tls")
        tls = TlsConfig(ca_cert=t.string("ca_cert"), client_cert=t.string("client_cert"),
                        client_key=t.string("client_key"), verify=t.boolean("verify", True))
        t.done()
        if bool(tls.client_cert) != bool(tls.client_key):
            raise ConfigError(f"{t.path}: client_cert and client_key go together")
        if scheme not in ("tcp", "https"):
            raise ConfigError(f"{t.path}: TLS applies to tcp:// engines only")
    image = s.string("image", "")
    if not image:
        raise ConfigError(f"{s.path}.image: required (the image repository, without a tag)")
    if not REPOSITORY_RE.fullmatch(image):
        raise ConfigError(f"{s.path}.image: {image!r} is not an image repository (no tag or digest; "
                          "the deploy's version is the tag)")
    prefix = s.string("name_prefix", app)
    if not APP_NAME_RE.fullmatch(prefix):
        raise ConfigError(f"{s.path}.name_prefix: {prefix!r} must match {APP_NAME_RE.pattern}")
    ports = s.get("ports", [])
    if not isinstance(ports, list):
        raise ConfigError(f"{s.path}.ports: expected a list, got {ports!r}")
    env = s.mapping("env")
    for key in env:
        if not ENV_KEY_RE.fullmatch(key):
            raise ConfigError(f"{s.path}.env: {key!r} is not a valid variable name")
    labels = s.mapping("labels")
    for key in labels:
        if not LABEL_KEY_RE.fullmatch(key) or key.startswith("fleetdeck."):
            raise ConfigError(f"{s.path}.labels: {key!r} is not allowed (fleetdeck.* labels are reserved)")
    volumes = s.strings("volumes")
    for vol in volumes:
        if vol.count(":") not in (1, 2) or not all(vol.split(":")[:2]):
            raise ConfigError(f"{s.path}.volumes: {vol!r} must be SOURCE:TARGET[:ro|rw]")
        if vol.count(":") == 2 and vol.rsplit(":", 1)[1] not in ("ro", "rw"):
            raise ConfigError(f"{s.path}.volumes: mode of {vol!r} must be ro or rw")
    network = s.string("network", "")
    alias = s.string("network_alias", app if network not in ("", "bridge", "host", "none") else "")
    return DockerTarget(
        image=image, engine=engine, tls=tls,
        replicas=s.integer("replicas", 1, 0, 100), name_prefix=prefix,
        ports=tuple(_parse_port(f"{s.path}.ports[{i}]", p) for i, p in enumerate(ports)),
        env=tuple(sorted(env.items())), volumes=volumes, network=network, network_alias=alias,
        command=s.strings("command"), labels=tuple(sorted(labels.items())),
        restart=s.string("restart", "unless-stopped", RESTART_POLICIES),
        stop_timeout=s.integer("stop_timeout", 10, 0, 3600), pull=s.string("pull", "missing", PULL_POLICIES),
        api_timeout=s.seconds("api_timeout", 60.0, 1.0), health_host=s.string("health_host", ""),
    )


def _parse_health(s: _Section, driver: str = "docker") -> HealthCheck:
    kind = s.string("type", {"docker": "docker", "ssh": "none", "kubernetes": "none"}[driver], HEALTH_TYPES)
    allowed = {"docker": ("docker", "http", "tcp", "none"), "ssh": ("http", "tcp", "command", "none"),
               "kubernetes": ("none",)}[driver]
    if kind not in allowed:
        raise ConfigError(f"{s.path}.type: {kind!r} does not apply to the {driver} driver "
                          + ("(readiness probes of the pods gate a Kubernetes rollout)" if driver == "kubernetes"
                             else ""))
    command = s.strings("command")
    if (kind == "command") != bool(command):
        raise ConfigError(f"{s.path}.command: an argv list goes with type command, and only with it")
    expect = s.string("expect_status", "200-399")
    m = re.fullmatch(r"(\d{3})(?:-(\d{3}))?", expect)
    if not m:
        raise ConfigError(f"{s.path}.expect_status: expected a status or range like 200-399, got {expect!r}")
    low, high = int(m.group(1)), int(m.group(2) or m.group(1))
    path = s.string("path", "/")
    if not path.startswith("/") or any(c in path for c in " \r\n#"):
        raise ConfigError(f"{s.path}.path: expected a URL path starting with /, got {path!r}")
    port = s.get("port", None)
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise ConfigError(f"{s.path}.port: expected a container port 1-65535, got {port!r}")
    if kind in ("http", "tcp") and port is None:
        raise ConfigError(f"{s.path}.port: required for {kind} health checks (the container port to probe)")
    return HealthCheck(type=kind, path=path, port=port, expect_status=(low, high),
                       interval=s.seconds("interval", 1.0, 0.05), timeout=s.seconds("timeout", 2.0, 0.05),
                       retries=s.integer("retries", 3, 1, 1000), start_period=s.seconds("start_period", 10.0),
                       command=command)


def parse_app(name: Any, raw: Any) -> AppDefinition:
    """One app from its config mapping; raises ConfigError."""
    if not valid_app_name(name):
        raise ConfigError(f"apps: app name {name!r} must match {APP_NAME_RE.pattern}")
    s = _Section(f"apps.{name}", raw)
    driver = s.string("driver", "docker", DRIVERS)
    if s.raw.get("target") is None:
        raise ConfigError(f"apps.{name}.target: required (where and how the app runs)")
    t_section = s.section("target")
    if driver == "ssh":
        from console.deploy.targets import parse_ssh_target

        target = parse_ssh_target(t_section)
    elif driver == "kubernetes":
        from console.deploy.targets import parse_kubernetes_target

        target = parse_kubernetes_target(t_section, name)
    else:
        target = _parse_target(t_section, name)
    t_section.done()
    health_section = s.section("health_check")
    health = _parse_health(health_section, driver)
    health_section.done()
    st = s.section("strategy")
    strategy = Strategy(type=st.string("type", "rolling", STRATEGIES),
                        max_unavailable=_parse_count_or_percent(f"{st.path}.max_unavailable",
                                                                st.get("max_unavailable", 0)),
                        max_surge=_parse_count_or_percent(f"{st.path}.max_surge", st.get("max_surge", 1)))
    st.done()
    app = AppDefinition(name=name, driver=driver, target=target, health_check=health, strategy=strategy,
                        timeout=s.seconds("timeout", 600.0, 1.0),
                        on_conflict=s.string("on_conflict", "reject", CONFLICT_POLICIES),
                        hosts=s.strings("hosts"), description=s.string("description", ""))
    s.done()
    if driver == "docker":
        _check_consistency(app)
    elif driver == "ssh" and health.type in ("http", "tcp") and health.port is None:
        raise ConfigError(f"apps.{name}.health_check.port: required for {health.type} health checks")
    return app


def _check_consistency(app: AppDefinition) -> None:
    t, path = app.target, f"apps.{app.name}"
    unavailable, surge = app.strategy.resolve(t.replicas)
    if app.strategy.type == "rolling" and t.replicas > 0 and unavailable == 0 and surge == 0:
        raise ConfigError(f"{path}.strategy: max_unavailable and max_surge cannot both be 0 "
                          "(the rolling update could never make progress)")
    slots = t.slots
    if slots is not None:
        needed = t.replicas + (surge if app.strategy.type == "rolling" else 0)
        if slots < needed:
            raise ConfigError(
                f"{path}.target.ports: {t.replicas} replicas with max_surge {surge} need {needed} host ports "
                f"per published port, the pool has {slots}; widen the range (e.g. 8080-{8080 + needed - 1}:80), "
                "lower max_surge or use the recreate strategy")
    hc = app.health_check
    published = {p.container for p in t.ports if p.published}
    # Container addresses are only reachable from the console when the engine is local.
    if hc.type in ("http", "tcp") and hc.port not in published and not t.engine.startswith("unix://"):
        raise ConfigError(f"{path}.health_check.port: {hc.port} must be published in target.ports "
                          "when the engine is remote")


def parse_apps(raw: Any) -> dict[str, AppDefinition]:
    """All apps of the ``apps:`` section, by name; raises ConfigError."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"apps: expected a mapping of app name to definition, got {type(raw).__name__}")
    return {name: parse_app(name, value) for name, value in raw.items()}
