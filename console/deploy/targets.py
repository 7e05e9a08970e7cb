"""``target:`` sections of the three drivers: docker, ssh and kubernetes (pydantic models).

Each model is the schema of its YAML mapping (options and defaults in config.yaml and
docs/deploys.md) and the frozen object its driver reads. The validation context holds
the app's name (``{"app": NAME}``) for defaults derived from it.

Steps are argv lists, never shell strings: each element may hold ``{placeholder}``
parameters (``version``, ``release_dir``, ``deploy_to``, ``previous_release``, ``host``
and the app's ``vars``), substituted into that one element and quoted as one word with
``shlex.quote`` when the command line is sent, so a value like ``x; rm -rf /`` arrives
as a literal argument. A step may also be a local ``script`` file, uploaded into the
release and run as ``sh SCRIPT ARG...`` with the same quoting.
"""
from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal, Mapping, get_args
from urllib.parse import urlparse

from pydantic import BeforeValidator, Field, field_validator, model_validator

from console.config import ConfigError
from console.i18n import tx
from console.deploy.schema import (APP_NAME_RE, REPOSITORY_RE, Flag, Int, ScalarMap, Seconds, Section, Strings,
                                   Text)

PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
BUILTIN_PARAMS = ("version", "release_dir", "deploy_to", "previous_release", "host", "current")
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
PORT_RE = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:]+\]|\d{1,3}(?:\.\d{1,3}){3}):)?(?:(?P<host>\d{1,5}(?:-\d{1,5})?):)?"
                     r"(?P<container>\d{1,5})(?:/(?P<proto>tcp|udp))?$")
PORT_FORM = '"[HOST_IP:][HOST_PORT[-LAST]:]CONTAINER_PORT[/tcp|udp]"'
BatchType = Literal["serial", "fixed", "percent"]
BATCH_TYPES: tuple[str, ...] = get_args(BatchType)
OnFailure = Literal["rollback", "stop"]
ON_FAILURE: tuple[str, ...] = get_args(OnFailure)
PullPolicy = Literal["missing", "always", "never"]
PULL_POLICIES: tuple[str, ...] = get_args(PullPolicy)
RestartPolicy = Literal["no", "on-failure", "always", "unless-stopped"]
RESTART_POLICIES: tuple[str, ...] = get_args(RestartPolicy)
# Reasons the kubelet gives a waiting container (kubelet's images and kuberuntime packages).
WaitingReason = Literal["ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
                        "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
                        "RunContainerError"]
DEFAULT_FAIL_ON: tuple[WaitingReason, ...] = ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff",
                                              "InvalidImageName", "ErrImageNeverPull")


def _template(key: Any, text: str, allowed: set[str]) -> None:
    """Refuse a ``{parameter}`` of ``text`` outside ``allowed``; the error names ``key``."""
    for name in PLACEHOLDER_RE.findall(text):
        if name not in allowed:
            raise ConfigError(tx("unknown parameter {parameter} (known: {known})", parameter="{" + name + "}",
                                 known=", ".join(sorted(allowed))), (key,))


# -- docker ------------------------------------------------------------------------------
def _port_text(raw: Any) -> Any:
    """A port in either form -> the fields of :class:`PortMapping`."""
    if isinstance(raw, PortMapping):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, Mapping):
        unknown = sorted(str(k) for k in raw if k not in ("container", "protocol", "host_ip", "host"))
        if unknown:
            raise ValueError(tx("unknown key(s) {names} (container, protocol, host_ip, host)",
                                names=', '.join(unknown)))
        container = raw.get("container")
        if isinstance(container, bool) or not isinstance(container, int) or not 1 <= container <= 65535:
            raise ValueError(tx("container: expected a port 1-65535, got {container}", container=repr(container)))
        protocol, host_ip, host = (raw.get(k) or d for k, d in (("protocol", "tcp"), ("host_ip", ""), ("host", "")))
        if protocol not in ("tcp", "udp"):
            raise ValueError(tx("protocol: expected tcp or udp, got {protocol}", protocol=repr(protocol)))
        text = f"{str(host_ip) + ':' if host_ip else ''}{str(host) + ':' if host else ''}{container}/{protocol}"
    elif isinstance(raw, str):
        text = raw
    else:
        raise ValueError(tx("expected {form}, got {raw}", form=PORT_FORM, raw=repr(raw)))
    m = PORT_RE.fullmatch(text)
    if not m:
        raise ValueError(tx("expected {form}, got {raw}", form=PORT_FORM, raw=repr(raw)))
    container = int(m.group("container"))
    first = last = None
    if m.group("host"):
        first_s, _, last_s = m.group("host").partition("-")
        first, last = int(first_s), int(last_s or first_s)
        if not (1 <= first <= last <= 65535):
            raise ValueError(tx("host port range {host} is not within 1-65535 and ascending",
                                host=repr(m.group('host'))))
    if not 1 <= container <= 65535:
        raise ValueError(tx("container port {container} is not within 1-65535", container=container))
    return {"container": container, "protocol": m.group("proto") or "tcp",
            "host_ip": (m.group("ip") or "").strip("[]"), "host_first": first, "host_last": last}


class PortMapping(Section):
    """A container port, optionally published on a host port pool ``host_first..host_last``.

    Written ``"[HOST_IP:][HOST_PORT[-LAST]:]CONTAINER_PORT[/tcp|udp]"`` or as a mapping of
    ``container``, ``protocol``, ``host_ip``, ``host``. Each replica occupies one *slot*;
    slot ``k`` publishes on ``host_first + k``. A pool of one port allows one container."""

    container: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = ""
    host_first: int | None = None
    host_last: int | None = None

    @property
    def published(self) -> bool:
        return self.host_first is not None

    def host_port(self, slot: int) -> int:
        """The host port of ``slot`` in the pool (a published mapping only)."""
        if self.host_first is None:
            raise ValueError(tx("container port {container} is not published", container=self.container))
        return self.host_first + slot

    @property
    def pool_size(self) -> int | None:
        return None if self.host_first is None or self.host_last is None else self.host_last - self.host_first + 1

    def describe(self) -> str:
        if not self.published:
            return f"{self.container}/{self.protocol}"
        host = str(self.host_first) if self.host_first == self.host_last else f"{self.host_first}-{self.host_last}"
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{host}:{self.container}/{self.protocol}"


class TlsConfig(Section):
    """TLS client settings of a ``tcp://`` Docker engine (PEM files)."""

    ca_cert: Text = ""
    client_cert: Text = ""
    client_key: Text = ""
    verify: Flag = True

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError(tx("client_cert and client_key go together"))
        return self


def _volume(value: Any) -> Any:
    if isinstance(value, str):
        if value.count(":") not in (1, 2) or not all(value.split(":")[:2]):
            raise ValueError(tx("{value} must be SOURCE:TARGET[:ro|rw]", value=repr(value)))
        if value.count(":") == 2 and value.rsplit(":", 1)[1] not in ("ro", "rw"):
            raise ValueError(tx("mode of {value} must be ro or rw", value=repr(value)))
    return value


class DockerTarget(Section):
    """Where and how the app's containers run (the docker driver's ``target:``)."""

    image: Text = Field("", validate_default=True)  # repository without tag (required)
    engine: Text = "unix:///var/run/docker.sock"
    tls: TlsConfig | None = None
    replicas: Int = Field(1, ge=0, le=100)
    name_prefix: Text = ""  # default: the app's name
    ports: tuple[Annotated[PortMapping, BeforeValidator(_port_text)], ...] = ()
    env: ScalarMap = ()
    volumes: tuple[Annotated[str, BeforeValidator(_volume)], ...] = ()
    network: Text = ""
    network_alias: Text = ""  # default: the app's name on a user-defined network
    command: Strings = ()
    labels: ScalarMap = ()
    restart: RestartPolicy = "unless-stopped"
    stop_timeout: Int = Field(10, ge=0, le=3600)  # seconds
    pull: PullPolicy = "missing"
    api_timeout: Seconds = Field(60.0, ge=1.0)  # seconds, per Docker API call
    health_host: Text = ""  # address of published ports for http/tcp health checks

    @classmethod
    def fill(cls, data: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        app = context.get("app", "")
        network = data.get("network", "")
        user_network = isinstance(network, str) and network not in ("", "bridge", "host", "none")
        return {"name_prefix": app, "network_alias": app if user_network else "", **data}

    @field_validator("engine")
    @classmethod
    def _engine(cls, engine: str) -> str:
        if urlparse(engine).scheme not in ("unix", "tcp", "ssh", "http", "https"):
            raise ValueError(tx("expected unix://PATH, tcp://HOST:PORT or ssh://USER@HOST, got {engine}",
                                engine=repr(engine)))
        return engine

    @field_validator("image")
    @classmethod
    def _image(cls, image: str) -> str:
        if not image:
            raise ValueError(tx("required (the image repository, without a tag)"))
        if not REPOSITORY_RE.fullmatch(image):
            raise ValueError(tx("{image} is not an image repository (no tag or digest; the deploy's version is the "
                                "tag)", image=repr(image)))
        return image

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not APP_NAME_RE.fullmatch(prefix):
            raise ValueError(tx("{prefix} must match {pattern}", prefix=repr(prefix), pattern=APP_NAME_RE.pattern))
        return prefix

    @field_validator("env")
    @classmethod
    def _env(cls, env: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for key, _ in env:
            if not ENV_KEY_RE.fullmatch(key):
                raise ValueError(tx("{key} is not a valid variable name", key=repr(key)))
        return env

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for key, _ in labels:
            if not LABEL_KEY_RE.fullmatch(key) or key.startswith("fleetdeck."):
                raise ValueError(tx("{key} is not allowed (fleetdeck.* labels are reserved)", key=repr(key)))
        return labels

    @model_validator(mode="after")
    def _tls_needs_tcp(self) -> "DockerTarget":
        if self.tls is not None and urlparse(self.engine).scheme not in ("tcp", "https"):
            raise ConfigError(tx("TLS applies to tcp:// engines only"), ("tls",))
        return self

    @property
    def slots(self) -> int | None:
        """How many containers the published port pools allow at once (None: unlimited)."""
        sizes = [p.pool_size for p in self.ports if p.pool_size is not None]
        return min(sizes) if sizes else None


# -- ssh ---------------------------------------------------------------------------------
class Step(Section):
    """One remote command: ``argv`` (written ``run:``, a list, run with each element
    quoted) or a local ``script`` uploaded and run with ``args``. ``timeout`` in seconds
    (unset: the target's ``command_timeout``). A bare argv list is short for ``{run: [...]}``."""

    name: Text = ""  # default: the command's first word (or the script's name) and its position
    argv: Strings = Field((), alias="run")
    script: Text = ""
    args: Strings = ()
    timeout: Seconds | None = Field(None, ge=0.1, le=86400.0)

    @field_validator("name")
    @classmethod
    def _short(cls, name: str) -> str:
        return name[:60]

    @model_validator(mode="after")
    def _one_command(self) -> "Step":
        if bool(self.argv) == bool(self.script):
            raise ValueError(tx("give either run (an argv list) or script (a local file), not both"))
        return self

    def describe(self) -> str:
        return " ".join(self.argv) if self.argv else f"script {self.script}"


def _steps(value: Any) -> Any:
    """Bare argv lists -> ``{run: ...}``; a default name from the command and position."""
    if not isinstance(value, list):
        return value
    out = []
    for i, item in enumerate(value):
        if isinstance(item, list):
            item = {"run": item}
        if isinstance(item, Mapping) and item.get("name") is None:
            run, script = item.get("run"), item.get("script")
            first = run[0] if isinstance(run, list) and run and isinstance(run[0], str) else (
                posixpath.basename(script) if isinstance(script, str) else "")
            item = {**item, "name": f"{first} #{i + 1}"}
        out.append(item)
    return out


Steps = Annotated[tuple[Step, ...], BeforeValidator(_steps)]


class Batches(Section):
    """``serial`` (one host at a time), ``fixed`` (``size`` hosts) or ``percent`` (``size``
    percent of the hosts, rounded up, at least one)."""

    type: BatchType = "serial"
    size: Int = Field(1, ge=1, le=10000)  # default 25 for percent
    on_failure: OnFailure = "rollback"  # rollback: undo changed hosts

    @classmethod
    def fill(cls, data: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        return {"size": 25 if data.get("type") == "percent" else 1, **data}

    @model_validator(mode="after")
    def _percent(self) -> "Batches":
        if self.type == "percent" and self.size > 100:
            raise ConfigError(tx("must be a percentage from 1 to 100 with type percent, got {value}", value=self.size),
                              ("size",))
        return self

    def split(self, hosts: list) -> list[list]:
        if self.type == "serial":
            n = 1
        elif self.type == "fixed":
            n = self.size
        else:
            n = max(1, -(-len(hosts) * self.size // 100))
        return [hosts[i:i + n] for i in range(0, len(hosts), n)]


class Retry(Section):
    """Transient failures of a host (connection refused, reset or lost; a timeout of the
    driver's own commands or SFTP transfers) are retried on that host: ``attempts`` tries
    in all, ``backoff`` seconds before the second, doubling before each next one."""

    attempts: Int = Field(3, ge=1, le=20)
    backoff: Seconds = Field(1.0, ge=0.0, le=300.0)


class SshTarget(Section):
    """Where and how the app's releases live on plain servers (driver ``ssh``)."""

    hosts: Strings = Field((), validate_default=True)  # inventory host or group names (required)
    deploy_to: Text = Field("", validate_default=True)  # absolute base directory: releases/<version>/, current
    artifact: Text = ""  # local file on the console; {version} is substituted; '' = nothing uploaded
    extract: Flag = False  # unpack the artifact (a tar archive) into the release directory
    vars: ScalarMap = ()
    steps: Steps = ()  # before the switch, in the new release directory
    restart: Steps = ()  # after the switch
    rollback_steps: Steps = ()  # after switching back
    keep_releases: Int = Field(5, ge=2, le=1000)
    batches: Batches = Batches()
    max_parallel: Int = Field(10, ge=1, le=1000)  # connections and hosts at work at once within a batch
    connect_timeout: Seconds = Field(10.0, ge=0.1, le=600.0)  # seconds, TCP + SSH handshake + authentication
    command_timeout: Seconds = Field(300.0, ge=0.1, le=86400.0)  # seconds, steps/restart without their own timeout
    internal_timeout: Seconds = Field(60.0, ge=0.1, le=86400.0)  # seconds, the driver's mkdir/rm/tar/df and SFTP ops
    health_timeout: Seconds = Field(300.0, ge=0.1, le=86400.0)  # seconds a host has to become healthy after restart
    retry: Retry = Retry()
    min_free_disk_mb: Int = Field(100, ge=0, le=10 ** 9)  # pre-flight: free MiB needed under deploy_to (0: no check)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        if not hosts:
            raise ValueError(tx("required (inventory host or group names)"))
        return hosts

    @field_validator("deploy_to")
    @classmethod
    def _deploy_to(cls, deploy_to: str) -> str:
        if not deploy_to.startswith("/") or ".." in deploy_to.split("/") or any(c in deploy_to for c in "\n\0"):
            raise ValueError(tx("expected an absolute path without '..', got {deploy_to}", deploy_to=repr(deploy_to)))
        return deploy_to.rstrip("/") or "/"

    @field_validator("vars")
    @classmethod
    def _vars(cls, variables: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for key, _ in variables:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", key) or key in BUILTIN_PARAMS:
                raise ValueError(tx("{key} must be lower_snake_case and not one of {names}",
                                    key=repr(key), names=', '.join(BUILTIN_PARAMS)))
        return variables

    @model_validator(mode="after")
    def _parameters(self) -> "SshTarget":
        _template("deploy_to", self.deploy_to, {"host"})
        _template("artifact", self.artifact, {"version"})
        allowed = set(BUILTIN_PARAMS) | {k for k, _ in self.vars}
        for key in ("steps", "restart", "rollback_steps"):
            for i, step in enumerate(getattr(self, key)):
                for part in step.argv:
                    _template((key, i, "run"), part, allowed)
                for part in step.args:
                    _template((key, i, "args"), part, allowed)
        return self

    def summary(self) -> dict:
        return {"hosts": list(self.hosts), "deploy_to": self.deploy_to, "artifact": self.artifact,
                "steps": [s.name for s in self.steps], "restart": [s.name for s in self.restart],
                "rollback_steps": [s.name for s in self.rollback_steps], "keep_releases": self.keep_releases,
                "batches": {"type": self.batches.type, "size": self.batches.size,
                            "on_failure": self.batches.on_failure},
                "max_parallel": self.max_parallel,
                "timeouts": {"connect": self.connect_timeout, "command": self.command_timeout,
                             "internal": self.internal_timeout, "health": self.health_timeout},
                "retry": {"attempts": self.retry.attempts, "backoff": self.retry.backoff},
                "min_free_disk_mb": self.min_free_disk_mb}


# -- kubernetes --------------------------------------------------------------------------
class KubernetesTarget(Section):
    """A Deployment whose container image a deploy sets (driver ``kubernetes``)."""

    image: Text = Field("", validate_default=True)  # repository without a tag (required); version = the tag
    deployment: Text = ""  # default: the app's name with _ as -
    container: Text = ""  # '' = the Deployment's only container
    namespace: Text = ""  # '' = the context's namespace, else "default"
    kubeconfig: Text = ""  # path; '' = $KUBECONFIG or ~/.kube/config
    kubeconfig_secret: Text = ""  # name of a stored secret (kind kubeconfig); wins over kubeconfig
    context: Text = ""
    in_cluster: Flag = False
    poll_interval: Seconds = Field(1.0, ge=0.05)  # seconds between rollout status reads
    api_timeout: Seconds = Field(30.0, ge=1.0)  # seconds per API request
    conflict_retries: Int = Field(5, ge=0, le=100)  # 409 Conflict: re-read and retry this many times
    undo_on_failure: Flag = True
    # a new Pod's container waiting with one of these reasons fails the rollout at once; [] = wait for the deadline
    fail_on: tuple[WaitingReason, ...] = DEFAULT_FAIL_ON

    @classmethod
    def fill(cls, data: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
        return {"deployment": str(context.get("app", "")).replace("_", "-"), **data}

    @field_validator("image")
    @classmethod
    def _image(cls, image: str) -> str:
        if not REPOSITORY_RE.fullmatch(image):
            raise ValueError(tx("required, an image repository without a tag, got {image}", image=repr(image)))
        return image

    @field_validator("deployment", "container", "namespace")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and (not K8S_NAME_RE.fullmatch(value) or len(value) > 253):
            raise ValueError(tx("{value} is not a Kubernetes name", value=repr(value)))
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "KubernetesTarget":
        if self.in_cluster and (self.kubeconfig or self.kubeconfig_secret or self.context):
            raise ConfigError(tx("cannot be combined with kubeconfig, kubeconfig_secret or context"), ("in_cluster",))
        return self

    def summary(self) -> dict:
        return {"image": self.image, "deployment": self.deployment, "container": self.container,
                "namespace": self.namespace or "(context default)", "context": self.context,
                "in_cluster": self.in_cluster, "undo_on_failure": self.undo_on_failure,
                "fail_on": list(self.fail_on)}


TARGETS: dict[str, type[Section]] = {"docker": DockerTarget, "ssh": SshTarget, "kubernetes": KubernetesTarget}
