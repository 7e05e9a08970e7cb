"""``target:`` sections of the ssh and kubernetes drivers (the docker one lives in apps.py).

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
from dataclasses import dataclass, field

from console.config import ConfigError

PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
BUILTIN_PARAMS = ("version", "release_dir", "deploy_to", "previous_release", "host", "current")
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
BATCH_TYPES = ("serial", "fixed", "percent")
ON_FAILURE = ("rollback", "stop")


@dataclass(frozen=True)
class Step:
    """One remote command: ``argv`` (a list, run with each element quoted) or a local
    ``script`` uploaded and run with ``args``. ``timeout`` in seconds."""

    name: str
    argv: tuple[str, ...] = ()
    script: str = ""
    args: tuple[str, ...] = ()
    timeout: float = 300.0

    def describe(self) -> str:
        return " ".join(self.argv) if self.argv else f"script {self.script}"


@dataclass(frozen=True)
class Batches:
    """``serial`` (one host at a time), ``fixed`` (``size`` hosts) or ``percent`` (``size``
    percent of the hosts, rounded up, at least one)."""

    type: str = "serial"
    size: int = 1
    on_failure: str = "rollback"  # rollback: undo the hosts already changed; stop: leave them

    def split(self, hosts: list) -> list[list]:
        if self.type == "serial":
            n = 1
        elif self.type == "fixed":
            n = self.size
        else:
            n = max(1, -(-len(hosts) * self.size // 100))
        return [hosts[i:i + n] for i in range(0, len(hosts), n)]


@dataclass(frozen=True)
class SshTarget:
    """Where and how the app's releases live on plain servers (driver ``ssh``)."""

    hosts: tuple[str, ...]  # inventory host or group names
    deploy_to: str  # absolute base directory: releases/<version>/ and the current symlink
    artifact: str = ""  # local file on the console; {version} is substituted; '' = nothing uploaded
    extract: bool = False  # unpack the artifact (a tar archive) into the release directory
    vars: tuple[tuple[str, str], ...] = ()
    steps: tuple[Step, ...] = ()  # before the switch, in the new release directory
    restart: tuple[Step, ...] = ()  # after the switch
    rollback_steps: tuple[Step, ...] = ()  # after switching back
    keep_releases: int = 5
    batches: Batches = field(default_factory=Batches)
    max_parallel: int = 10  # connections and hosts at work at once within a batch
    connect_timeout: float = 10.0  # seconds, TCP + SSH handshake + authentication

    def summary(self) -> dict:
        return {"hosts": list(self.hosts), "deploy_to": self.deploy_to, "artifact": self.artifact,
                "steps": [s.name for s in self.steps], "restart": [s.name for s in self.restart],
                "rollback_steps": [s.name for s in self.rollback_steps], "keep_releases": self.keep_releases,
                "batches": {"type": self.batches.type, "size": self.batches.size,
                            "on_failure": self.batches.on_failure},
                "max_parallel": self.max_parallel}


@dataclass(frozen=True)
class KubernetesTarget:
    """A Deployment whose container image a deploy sets (driver ``kubernetes``)."""

    image: str  # repository without a tag; the deploy's version is the tag
    deployment: str
    container: str  # '' = the Deployment's only container
    namespace: str = ""  # '' = the context's namespace, else "default"
    kubeconfig: str = ""  # path; '' = $KUBECONFIG or ~/.kube/config
    kubeconfig_secret: str = ""  # name of a stored secret (kind kubeconfig); wins over kubeconfig
    context: str = ""
    in_cluster: bool = False
    poll_interval: float = 1.0  # seconds between rollout status reads
    api_timeout: float = 30.0  # seconds per API request
    conflict_retries: int = 5  # 409 Conflict: re-read and retry this many times
    undo_on_failure: bool = True

    def summary(self) -> dict:
        return {"image": self.image, "deployment": self.deployment, "container": self.container,
                "namespace": self.namespace or "(context default)", "context": self.context,
                "in_cluster": self.in_cluster, "undo_on_failure": self.undo_on_failure}


def check_template(path: str, text: str, allowed: set[str]) -> None:
    for name in PLACEHOLDER_RE.findall(text):
        if name not in allowed:
            raise ConfigError(f"{path}: unknown parameter {{{name}}} (known: {', '.join(sorted(allowed))})")


def _steps(s, key: str, allowed: set[str]) -> tuple[Step, ...]:
    from console.deploy.apps import _Section

    raw = s.get(key, [])
    if not isinstance(raw, list):
        raise ConfigError(f"{s.path}.{key}: expected a list of steps")
    out = []
    for i, item in enumerate(raw):
        path = f"{s.path}.{key}[{i}]"
        if isinstance(item, list):  # shorthand: a bare argv list
            item = {"run": item}
        st = _Section(path, item)
        argv, script = st.strings("run"), st.string("script", "")
        if bool(argv) == bool(script):
            raise ConfigError(f"{path}: give either run (an argv list) or script (a local file), not both")
        args = st.strings("args")
        for j, part in enumerate(argv + args):
            check_template(f"{path}.{'run' if j < len(argv) else 'args'}", part, allowed)
        name = st.string("name", (argv[0] if argv else posixpath.basename(script)) + f" #{i + 1}")
        step = Step(name=name[:60], argv=argv, script=script, args=args,
                    timeout=st.seconds("timeout", 300.0, 0.1))
        st.done()
        out.append(step)
    return tuple(out)


def parse_ssh_target(s) -> SshTarget:
    """The ssh driver's target (``s`` is apps._Section); raises ConfigError."""
    hosts = s.strings("hosts")
    if not hosts:
        raise ConfigError(f"{s.path}.hosts: required (inventory host or group names)")
    deploy_to = s.string("deploy_to", "")
    if not deploy_to.startswith("/") or ".." in deploy_to.split("/") or any(c in deploy_to for c in "\n\0"):
        raise ConfigError(f"{s.path}.deploy_to: expected an absolute path without '..', got {deploy_to!r}")
    check_template(f"{s.path}.deploy_to", deploy_to, {"host"})
    variables = s.mapping("vars")
    for key in variables:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", key) or key in BUILTIN_PARAMS:
            raise ConfigError(f"{s.path}.vars: {key!r} must be lower_snake_case and not one of "
                              f"{', '.join(BUILTIN_PARAMS)}")
    allowed = set(BUILTIN_PARAMS) | set(variables)
    artifact = s.string("artifact", "")
    check_template(f"{s.path}.artifact", artifact, {"version"})
    b = s.section("batches")
    btype = b.string("type", "serial", BATCH_TYPES)
    size_default = 25 if btype == "percent" else 1
    size = b.integer("size", size_default, 1, 100 if btype == "percent" else 10000)
    batches = Batches(type=btype, size=size, on_failure=b.string("on_failure", "rollback", ON_FAILURE))
    b.done()
    return SshTarget(
        hosts=hosts, deploy_to=deploy_to.rstrip("/") or "/", artifact=artifact, extract=s.boolean("extract", False),
        vars=tuple(sorted(variables.items())), steps=_steps(s, "steps", allowed),
        restart=_steps(s, "restart", allowed), rollback_steps=_steps(s, "rollback_steps", allowed),
        keep_releases=s.integer("keep_releases", 5, 2, 1000), batches=batches,
        max_parallel=s.integer("max_parallel", 10, 1, 1000), connect_timeout=s.seconds("connect_timeout", 10.0, 0.1))


def parse_kubernetes_target(s, app: str) -> KubernetesTarget:
    """The kubernetes driver's target (``s`` is apps._Section); raises ConfigError."""
    from console.deploy.apps import REPOSITORY_RE

    image = s.string("image", "")
    if not REPOSITORY_RE.fullmatch(image):
        raise ConfigError(f"{s.path}.image: required, an image repository without a tag, got {image!r}")
    names = {}
    for key, default in (("deployment", app.replace("_", "-")), ("container", ""), ("namespace", "")):
        value = s.string(key, default)
        if value and (not K8S_NAME_RE.fullmatch(value) or len(value) > 253):
            raise ConfigError(f"{s.path}.{key}: {value!r} is not a Kubernetes name")
        names[key] = value
    target = KubernetesTarget(
        image=image, deployment=names["deployment"], container=names["container"], namespace=names["namespace"],
        kubeconfig=s.string("kubeconfig", ""), kubeconfig_secret=s.string("kubeconfig_secret", ""),
        context=s.string("context", ""), in_cluster=s.boolean("in_cluster", False),
        poll_interval=s.seconds("poll_interval", 1.0, 0.05), api_timeout=s.seconds("api_timeout", 30.0, 1.0),
        conflict_retries=s.integer("conflict_retries", 5, 0, 100), undo_on_failure=s.boolean("undo_on_failure", True))
    if target.in_cluster and (target.kubeconfig or target.kubeconfig_secret or target.context):
        raise ConfigError(f"{s.path}.in_cluster: cannot be combined with kubeconfig, kubeconfig_secret or context")
    return target
