"""App definitions: the ``apps:`` section of config.yaml, as validated pydantic models.

Every option and its default is documented in the repository's ``config.yaml`` and in
``docs/deploys.md``. :func:`parse_apps` raises ``ConfigError`` with one line per problem
naming the key path (``apps.shop.target.replicas``) and, given the loader's
``source_of``, the file and line, so a bad file stops the console at start-up instead
of failing a deploy later. The driver's ``target:`` models live in ``targets.py``
(this module imports it; it imports nothing from here).

Names and versions that reach Docker (container names, labels, image references) are
checked here and again on every request with the ``valid_*`` helpers, so shell
metacharacters, ``../`` and the like never get near the engine.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Mapping, TypeVar, get_args
from urllib.parse import urlparse

from pydantic import BeforeValidator, Field, SkipValidation, ValidationInfo, field_validator, model_validator

from console.config import ConfigError, with_source
from console.i18n import TextLines, message_of, replace_text, tx
from console.deploy.canary import CanaryConfig
from console.deploy.balancers.config import LoadBalancer
from console.deploy.environments import ENVIRONMENT_RE, Approval, lane_key
from console.deploy.schema import (APP_NAME_RE, REPOSITORY_RE, VERSION_RE, Int, Seconds, Section, SourceOf,
                                   Strings, Text, image_reference, parse_section, valid_app_name, valid_version)
from console.deploy.targets import (ENV_KEY_RE, LABEL_KEY_RE, PORT_RE, PULL_POLICIES, RESTART_POLICIES, TARGETS,
                                    DockerTarget, KubernetesTarget, PortMapping, SshTarget, TlsConfig)

Driver = Literal["docker", "ssh", "kubernetes"]
DRIVERS: tuple[str, ...] = get_args(Driver)
HealthType = Literal["docker", "http", "tcp", "command", "none"]
HEALTH_TYPES: tuple[str, ...] = get_args(HealthType)
# Health check types each driver runs, the first being its default.
DRIVER_HEALTH = {"docker": ("docker", "http", "tcp", "none"), "ssh": ("none", "http", "tcp", "command"),
                 "kubernetes": ("none",)}
StrategyType = Literal["rolling", "recreate"]
STRATEGIES: tuple[str, ...] = get_args(StrategyType)
ConflictPolicy = Literal["reject", "queue"]
CONFLICT_POLICIES: tuple[str, ...] = get_args(ConflictPolicy)
T = TypeVar("T", DockerTarget, SshTarget, KubernetesTarget)  # a driver's target model


def _status_range(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(tx("expected a status or range like 200-399, got {value}", value=repr(value)))
    m = re.fullmatch(r"(\d{3})(?:-(\d{3}))?", str(value))
    if not m:
        raise ValueError(tx("expected a status or range like 200-399, got {value}", value=repr(value)))
    return int(m.group(1)), int(m.group(2) or m.group(1))


def _count_or_percent(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{1,3}%", value) and int(value[:-1]) <= 100:
        return value
    raise ValueError(tx("expected a replica count >= 0 or a percentage like \"25%\", got {value}", value=repr(value)))


CountOrPercent = Annotated[int | str, BeforeValidator(_count_or_percent)]


class HealthCheck(Section):
    """``type``: ``docker`` (the image's HEALTHCHECK), ``http``, ``tcp``, ``command`` (ssh)
    or ``none``; the default depends on the driver. Times in seconds. A new container is
    healthy at its first passing probe; it is unhealthy after ``retries`` consecutive
    failures once ``start_period`` has passed, or at once when it exits."""

    type: HealthType = "docker"
    path: Text = "/"
    port: Int | None = Field(None, ge=1, le=65535)  # container port probed by http/tcp
    expect_status: Annotated[tuple[int, int], BeforeValidator(_status_range)] = (200, 399)
    interval: Seconds = Field(1.0, ge=0.05)
    timeout: Seconds = Field(2.0, ge=0.05)
    retries: Int = Field(3, ge=1, le=1000)
    start_period: Seconds = Field(10.0, ge=0.0)
    command: Strings = ()  # argv run on each host (ssh driver, type command): exit 0 is healthy

    @classmethod
    def fill(cls, data: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": DRIVER_HEALTH[context.get("driver", "docker")][0], **data}

    @property
    def probe_port(self) -> int:
        """The port an http or tcp check probes (the model requires one for them)."""
        if self.port is None:
            raise ValueError(tx("a {type} health check has no port", type=self.type))
        return self.port

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/") or any(c in path for c in " \r\n#"):
            raise ValueError(tx("expected a URL path starting with /, got {path}", path=repr(path)))
        return path

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "HealthCheck":
        driver = (info.context or {}).get("driver", "docker")
        if self.type not in DRIVER_HEALTH[driver]:
            if driver == "kubernetes":
                raise ConfigError(tx("{type} does not apply to the {driver} driver (readiness probes of the pods "
                                     "gate a Kubernetes rollout)", type=repr(self.type), driver=driver), ("type",))
            raise ConfigError(tx("{type} does not apply to the {driver} driver", type=repr(self.type), driver=driver),
                              ("type",))
        if (self.type == "command") != bool(self.command):
            raise ConfigError(tx("an argv list goes with type command, and only with it"), ("command",))
        if self.type in ("http", "tcp") and self.port is None:
            raise ConfigError(tx("required for {type} health checks (the container port to probe)", type=self.type),
                              ("port",))
        return self


class Strategy(Section):
    """``rolling`` (replace a few containers at a time) or ``recreate``; the bounds are
    replica counts or percentages like ``"25%"``. ``Strategy("rolling", 0, 1)`` works too."""

    type: StrategyType = "rolling"
    max_unavailable: CountOrPercent = 0
    max_surge: CountOrPercent = 1

    def __init__(self, type: str = "rolling", max_unavailable: int | str = 0, max_surge: int | str = 1,
                 **data: Any) -> None:
        super().__init__(**{**data, "type": type, "max_unavailable": max_unavailable, "max_surge": max_surge})

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


class AppDefinition(Section):
    """One app. ``target`` is the driver's model (``targets.py``), validated first by
    :func:`parse_app`; the checks here that involve the target run when it is valid."""

    name: str
    driver: Driver = "docker"
    target: SkipValidation[DockerTarget | SshTarget | KubernetesTarget | None] = None
    health_check: HealthCheck = Field(default_factory=dict, validate_default=True)  # defaults depend on the driver
    strategy: Strategy = Strategy()
    timeout: Seconds = Field(600.0, ge=1.0)  # seconds, a whole deploy
    on_conflict: ConflictPolicy = "reject"
    hosts: Strings = ()
    description: Text = ""
    canary: CanaryConfig | None = None  # the canary stage with its analysis (console/deploy/canary.py)
    load_balancer: LoadBalancer | None = None  # docker only: the balancer deploys drive (balancers/)
    approval: Approval | None = None  # protected: deploys wait for another user's approval
    # name -> this app as the environment's driver sees it (console/deploy/environments.py)
    environments: SkipValidation[dict[str, "AppDefinition"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "AppDefinition":
        if self.canary is not None and self.driver == "docker" and self.strategy.type == "recreate":
            raise ConfigError(tx("a canary needs the rolling strategy (recreate stops every old replica first)"),
                              ("canary",))
        if self.canary is not None and self.canary.duration >= self.timeout:
            raise ConfigError(tx("the canary's duration ({duration} s) must be shorter than the deploy's timeout "
                                 "({timeout} s), which includes it", duration=f"{self.canary.duration:g}",
                                 timeout=f"{self.timeout:g}"),
                              (("canary", "duration"), ("timeout",)))
        t = self.target
        if not isinstance(t, DockerTarget):
            if self.load_balancer is not None:
                raise ConfigError(tx("only Docker apps drive a load balancer, this app uses the {driver} driver",
                                     driver=self.driver),
                                  ("load_balancer",))
            return self
        lb = self.load_balancer
        if lb is not None and (lb.port or self.health_check.port) is None:
            raise ConfigError(tx("required: the container port the balancer sends traffic to (or set "
                                 "health_check.port)"), (("load_balancer", "port"),))
        unavailable, surge = self.strategy.resolve(t.replicas)
        if self.strategy.type == "rolling" and t.replicas > 0 and unavailable == 0 and surge == 0:
            raise ConfigError(tx("max_unavailable and max_surge cannot both be 0 "
                                 "(the rolling update could never make progress)"), ("strategy",))
        slots = t.slots
        if slots is not None:
            needed = t.replicas + (surge if self.strategy.type == "rolling" else 0)
            if slots < needed:
                raise ConfigError(tx(
                    "{replicas} replicas with max_surge {surge} need {needed} host ports per published port, "
                    "the pool has {slots}; widen the range (e.g. 8080-{last}:80), lower max_surge "
                    "or use the recreate strategy", replicas=t.replicas, surge=surge, needed=needed, slots=slots,
                    last=8080 + needed - 1), (("target", "ports"), ("target", "replicas"), ("strategy",)))
        hc = self.health_check
        published = {p.container for p in t.ports if p.published}
        # Container addresses are only reachable from the console when the engine is local.
        if hc.type in ("http", "tcp") and hc.port not in published and not t.engine.startswith("unix://"):
            raise ConfigError(tx("{port} must be published in target.ports when the engine is remote", port=hc.port),
                              (("health_check", "port"), ("target", "engine")))
        return self

    def target_of(self, kind: type[T]) -> T:
        """The target as its driver's model ``kind`` (what the driver of this app reads);
        raises TypeError when the app has another driver's target (a programming error:
        :func:`parse_app` validates the target with the app's own driver)."""
        if not isinstance(self.target, kind):
            raise TypeError(f"app {self.name} has a {type(self.target).__name__}, not a {kind.__name__}")
        return self.target

    def summary(self) -> dict:
        """The public view for ``GET /api/v1/apps``: no env values, no credentials;
        ``approval`` (null: unprotected) and ``environments`` ``{name: {"target",
        "hosts", "approval"}}`` (empty: the app has one target)."""
        out = self._summary()
        if self.environments:  # the strategy is shared; the environments' targets are below
            out["strategy"] = next(iter(self.environments.values()))._summary().get("strategy")
        out["approval"] = self.approval.model_dump() if self.approval is not None else None
        out["environments"] = {name: {"target": env._summary()["target"], "hosts": list(env.hosts),
                                      "approval": env.approval.model_dump() if env.approval is not None else None}
                               for name, env in self.environments.items()}
        return out

    def _summary(self) -> dict:
        if not isinstance(self.target, DockerTarget):
            hc = self.health_check
            return {"name": self.name, "driver": self.driver, "description": self.description,
                    "hosts": list(self.hosts), "target": self.target.summary() if self.target else None,
                    "health_check": {"type": hc.type, "path": hc.path, "port": hc.port, "command": list(hc.command),
                                     "interval": hc.interval, "timeout": hc.timeout, "retries": hc.retries,
                                     "start_period": hc.start_period},
                    "timeout": self.timeout, "on_conflict": self.on_conflict}
        t = self.target
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
            "load_balancer": self.load_balancer.summary() if self.load_balancer else None,
        }


def parse_app(name: Any, raw: Any, source_of: SourceOf | None = None) -> AppDefinition:
    """One app from its config mapping; raises ConfigError. ``source_of(path)`` names the
    file and line of a key path below ``apps.NAME`` (or returns None)."""
    if not valid_app_name(name):
        raise ConfigError(tx("apps: app name {name} must match {pattern}", name=repr(name), pattern=APP_NAME_RE.pattern))
    where = source_of or (lambda loc: None)
    if not isinstance(raw, Mapping):
        raise ConfigError(with_source(tx("{key}: expected a mapping, got {type}", key=f"apps.{name}",
                                         type=type(raw).__name__), where(())))
    driver = raw.get("driver") or "docker"
    if driver not in DRIVERS:
        raise ConfigError(with_source(tx("{key}: expected one of {known}, got {value}", key=f"apps.{name}.driver",
                                         known=", ".join(DRIVERS), value=repr(driver)), where(("driver",))))
    if raw.get("environments") is not None:
        return _parse_environments(name, raw, where)
    if raw.get("target") is None:
        raise ConfigError(with_source(tx("{key}: required (where and how the app runs)", key=f"apps.{name}.target"),
                                      where(())))
    context = {"app": name, "driver": driver}
    problems = []
    target = None
    try:
        target = parse_section(TARGETS[driver], raw["target"], f"apps.{name}.target", context,
                               lambda loc: where(("target",) + tuple(loc)))
    except ConfigError as exc:
        problems.append(message_of(exc))
    try:
        app = parse_section(AppDefinition, {**raw, "name": name, "target": target}, f"apps.{name}", context, where)
    except ConfigError as exc:
        problems.append(message_of(exc))
    if problems:
        raise ConfigError(TextLines(problems))
    return app


ENVIRONMENT_KEYS = ("target", "approval", "hosts", "description")  # what an environment may set for itself


def _parse_environments(name: str, raw: Mapping, where: SourceOf) -> AppDefinition:
    """An app with ``environments:``: the app's own keys apply to every environment, which
    sets its own ``target`` (required) and may set ``approval``, ``hosts``, ``description``."""
    def src(message: str, *path: Any) -> str:
        return with_source(message, where(tuple(path)))

    envs = raw["environments"]
    if raw.get("target") is not None:
        raise ConfigError(src(tx("{key}: an app with environments has no target of its own; give each "
                                 "environment its target", key=f"apps.{name}.target"), "target"))
    if not isinstance(envs, Mapping) or not envs:
        raise ConfigError(src(tx("{key}: expected a mapping of environment name to its target and approval",
                                 key=f"apps.{name}.environments"), "environments"))
    base = {k: v for k, v in raw.items() if k != "environments"}
    problems: list[str] = []
    definitions: dict[str, AppDefinition] = {}
    for env, env_raw in envs.items():
        at = ("environments", env)
        if not isinstance(env, str) or not ENVIRONMENT_RE.fullmatch(env):
            problems.append(src(tx("{key}: environment name {name} must match {pattern}",
                                   key=f"apps.{name}.environments", name=repr(env), pattern=ENVIRONMENT_RE.pattern),
                                *at))
            continue
        if not isinstance(env_raw, Mapping) or env_raw.get("target") is None:
            problems.append(src(tx("{key}: required (where this environment runs)",
                                   key=f"apps.{name}.environments.{env}.target"), *at))
            continue
        unknown = [str(k) for k in env_raw if k not in ENVIRONMENT_KEYS]
        if unknown:
            problems.append(src(tx("{key}: unknown key (an environment sets {known})",
                                   key=f"apps.{name}.environments.{env}.{unknown[0]}",
                                   known=", ".join(ENVIRONMENT_KEYS)), *at, unknown[0]))
            continue
        merged = {**base, **{k: v for k, v in env_raw.items() if v is not None}}
        def env_source(loc: tuple, at: tuple = at) -> str | None:  # the environment's key, else the app's
            return where(at + tuple(loc)) or where(tuple(loc))

        try:
            definitions[env] = parse_app(lane_key(name, env), merged, env_source)
        except ConfigError as exc:
            problems.append(replace_text(message_of(exc), f"apps.{lane_key(name, env)}",
                                         f"apps.{name}.environments.{env}"))
    approval = None
    if base.get("approval") is not None:
        try:
            approval = parse_section(Approval, base["approval"], f"apps.{name}.approval", {},
                                     lambda loc: where(("approval",) + tuple(loc)))
        except ConfigError as exc:
            problems.append(message_of(exc))
    if problems:
        raise ConfigError(TextLines(problems))
    first = next(iter(definitions.values()))
    # The app itself: the shared keys as validated, every environment's hosts (the host filter of the history).
    hosts = tuple(dict.fromkeys(h for d in definitions.values() for h in d.hosts))
    return first.model_copy(update={"name": name, "target": None, "environments": definitions,
                                    "approval": approval, "hosts": hosts})


def _below(source_of: SourceOf, name: str) -> SourceOf:
    """``source_of`` for the key paths below ``name``."""
    return lambda loc: source_of((name,) + tuple(loc))


def parse_apps(raw: Any, source_of: SourceOf | None = None) -> dict[str, AppDefinition]:
    """All apps of the ``apps:`` section, by name; raises ConfigError (every app's problems).
    ``source_of(path)`` names the file and line of a key path below ``apps``."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(tx("apps: expected a mapping of app name to definition, got {type}", type=type(raw).__name__))
    apps: dict[str, AppDefinition] = {}
    problems: list[str] = []
    for name, value in raw.items():
        try:
            apps[name] = parse_app(name, value, _below(source_of, name) if source_of else None)
        except ConfigError as exc:
            problems.append(message_of(exc))
    for name, app in apps.items():
        for env in app.environments:
            key = lane_key(name, env)
            if key in apps:
                problems.append(tx("{key}: its containers are named {name}, as the app {name}; rename the "
                                   "environment or the app", key=f"apps.{name}.environments.{env}", name=key))
    if problems:
        raise ConfigError(TextLines(problems))
    return apps


__all__ = ["APP_NAME_RE", "CONFLICT_POLICIES", "DRIVERS", "ENV_KEY_RE", "HEALTH_TYPES", "LABEL_KEY_RE", "PORT_RE",
           "PULL_POLICIES", "REPOSITORY_RE", "RESTART_POLICIES", "STRATEGIES", "VERSION_RE", "AppDefinition",
           "DockerTarget", "HealthCheck", "PortMapping", "Strategy", "TlsConfig", "image_reference", "parse_app",
           "parse_apps", "valid_app_name", "valid_version"]
