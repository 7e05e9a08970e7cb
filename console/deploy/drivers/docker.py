"""The Docker driver: health-gated rolling updates (or recreate) of an app's containers
through the Docker Engine API (docker-py), with automatic rollback.

Containers are found by their labels, never by guessed names:
``fleetdeck.app`` (app name), ``fleetdeck.version``, ``fleetdeck.deploy`` (deploy id)
and ``fleetdeck.slot`` (which host port of each published pool the container holds).

Rolling update, Kubernetes-style: with R replicas, maxSurge S and maxUnavailable U, each
round stops old containers while at least R-U stay available, then starts as many new
ones as R+S allows and waits until they pass their health check. Old containers are
only *stopped* during the update and removed once every new one is healthy, so a failed
health check can put the old version back exactly as it was.

Rolling back (a failed health check, a cancel, a timeout, or ``recover`` after the
console died mid-deploy) runs the update backwards: the new containers that never passed
their health check go first (they never counted as available), then each stopped old
container is started again *and health-checked* before a healthy new one is removed, so
the number of answering replicas never falls below ``replicas - maxUnavailable``. A new
container is only removed earlier when it holds the host port a stopped old container
needs and nothing else can move (logged as a warning).

Containers that are not running when a deploy starts (stopped, crashed: ``Exited (137)``)
belong to the release they were created for: they are removed with the other old
containers once the deploy succeeds, and left alone by a rollback.

With a ``load_balancer`` (``console/deploy/balancers``) the balancer is driven too: a new
container is added only once healthy, an old one is drained and taken out before it is
stopped, in both directions.

Every method here blocks; the deploy service runs them on its worker threads.
"""
from __future__ import annotations

import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

import docker
import docker.errors
import requests.exceptions

from console.deploy.apps import AppDefinition, image_reference
from console.deploy.balancers import Balancer, BalancerError, Server, balancer_for
from console.deploy.targets import DockerTarget
from console.deploy.drivers.base import (CANCELLED, FAILED, ROLLED_BACK, SUCCEEDED, CancelToken, Cancelled,
                                         DeployOutcome, DeployRequest, DriverEvent, DriverUnavailable, Emit,
                                         GateFailed)
from console.deploy.drivers.probes import probe_http, probe_tcp
from console.errors import DriverFailure
from console.i18n import message_of, tx

log = logging.getLogger(__name__)

LABEL_APP, LABEL_VERSION, LABEL_DEPLOY, LABEL_SLOT = ("fleetdeck.app", "fleetdeck.version",
                                                      "fleetdeck.deploy", "fleetdeck.slot")
DOCKER_HEALTH_POLL_S = 0.25  # how often the daemon's health status is read (its own interval applies)
UNREACHABLE = (requests.exceptions.RequestException, ConnectionError)
REMOVAL_WAIT_S = 60.0  # how long a removal dockerd reports as already in progress may take
RESTORE_MARGIN_S = 30.0  # added to the health check's own bound when an old container is restored


class RollbackFailed(Exception):
    """A restored old container did not pass its health check."""


class HealthCheckFailed(Exception):
    """A new container exited or failed its health check."""


class DockerDriverError(DriverFailure):
    """The engine answered, but refused or failed the operation (bad image, port taken): 502
    ``driver_failed``."""


@dataclass
class _Run:
    """State of one deploy while it runs (kept per call: the driver object is shared)."""

    request: DeployRequest
    emit: Emit
    cancel: CancelToken
    client: Any = None
    image: str = ""
    started: list = field(default_factory=list)  # containers this deploy created
    ready: list = field(default_factory=list)  # those of ``started`` that passed their health check
    old_running: list = field(default_factory=list)  # old containers still running (never stopped)
    stopped_old: list = field(default_factory=list)  # old containers this deploy stopped
    stale: list = field(default_factory=list)  # containers of earlier releases not running at the start
    counter: Any = field(default_factory=lambda: itertools.count(1))

    def log(self, message: str, level: str = "info", **data: Any) -> None:
        self.emit(DriverEvent("log", message, level=level, data=data))

    def step(self, name: str, state: str, message: str = "", level: str = "info", **data: Any) -> None:
        self.emit(DriverEvent("step", message or tx("{step}: {state}", step=name, state=state), step=name, state=state, level=level, data=data))

    def check_cancel(self) -> None:
        if self.cancel.cancelled:
            raise Cancelled(self.cancel.reason)


def _short(container: Any) -> str:
    return container.name if getattr(container, "name", None) else container.id[:12]


def _unreachable_reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return tx("Docker engine unreachable: {error}", error=text[:300])


class DockerDriver:
    """Deploys one app (``AppDefinition``) to the Docker engine its target names.

    ``connect`` is injectable for tests and benchmarks; by default a docker-py client is
    opened per operation (so a restarted daemon is picked up) with the target's TLS/SSH
    settings and ``api_timeout`` seconds per call.
    """

    def __init__(self, app: AppDefinition, connect: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.target = app.target_of(DockerTarget)
        self._connect = connect or self._default_connect
        self._clock = clock
        self.balancer: Balancer | None = balancer_for(app.load_balancer) if app.load_balancer else None

    # -- engine ---------------------------------------------------------------------------
    def _default_connect(self) -> Any:
        t = self.target
        kwargs: dict[str, Any] = {"base_url": t.engine, "timeout": t.api_timeout}
        if t.tls is not None:
            cert = (t.tls.client_cert, t.tls.client_key) if t.tls.client_cert else None
            verify = (t.tls.ca_cert or True) if t.tls.verify else False
            kwargs["tls"] = docker.tls.TLSConfig(client_cert=cert, verify=verify)
        if t.engine.startswith("ssh://"):
            # The system ssh client: its known_hosts checking applies (no auto-accept).
            kwargs["use_ssh_client"] = True
        return docker.DockerClient(**kwargs)

    def client(self) -> Any:
        """An open client; raises DriverUnavailable when the engine cannot be reached."""
        try:
            client = self._connect()
            client.ping()
            return client
        except (docker.errors.DockerException, *UNREACHABLE) as exc:
            raise DriverUnavailable(_unreachable_reason(exc)) from None

    def _containers(self, client: Any, **labels: Any) -> list:
        filters = [f"{LABEL_APP}={self.app.name}"] + [f"{k}={v}" for k, v in labels.items()]
        return client.containers.list(all=True, filters={"label": filters})

    def instances(self, app: str) -> list[dict]:
        client = self.client()
        try:
            out = []
            for c in self._containers(client):
                state = c.attrs.get("State", {})
                out.append({"id": c.id[:12], "name": c.name, "version": c.labels.get(LABEL_VERSION),
                            "deploy": c.labels.get(LABEL_DEPLOY), "slot": c.labels.get(LABEL_SLOT),
                            "state": state.get("Status", c.status),
                            "health": (state.get("Health") or {}).get("Status")})
            return sorted(out, key=lambda i: (i["version"] or "", i["name"]))
        except (docker.errors.DockerException, *UNREACHABLE) as exc:
            raise DriverUnavailable(_unreachable_reason(exc)) from None
        finally:
            client.close()

    # -- deploy ---------------------------------------------------------------------------
    def deploy(self, request: DeployRequest, emit: Emit, cancel: CancelToken) -> DeployOutcome:
        run = _Run(request, emit, cancel)
        try:
            run.step("connect", "running", tx("connecting to {engine}", engine=self._engine_shown()))
            run.client = self.client()
            run.step("connect", "succeeded", tx("engine reachable"))
            self._prepare_image(run)
            run.check_cancel()
            existing = self._containers(run.client)
            old = [c for c in existing if c.status == "running"]
            run.old_running = list(old)
            run.stale = [c for c in existing if c.status != "running"]
            if run.stale:
                run.log(tx("{count} container(s) of earlier releases are not running ({containers}); they are "
                           "removed once this deploy succeeds", count=len(run.stale),
                           containers=", ".join(f"{_short(c)}: {c.status}" for c in run.stale)),
                        containers=[c.id[:12] for c in run.stale])
            self._lb_sync(run, old)
            if self.app.strategy.type == "recreate":
                self._recreate(run, old)
            else:
                self._rolling(run, old)
            self._remove_stopped_old(run)
            return DeployOutcome(SUCCEEDED)
        except DriverUnavailable as exc:
            run.step("connect", "failed", message_of(exc), level="error")
            return DeployOutcome(FAILED, message_of(exc))
        except (HealthCheckFailed, GateFailed) as exc:
            return self._undo(run, ROLLED_BACK, message_of(exc))
        except Cancelled as exc:
            state = FAILED if run.cancel.kind == "timeout" else CANCELLED
            return self._undo(run, state, message_of(exc))
        except (DockerDriverError, BalancerError) as exc:
            return self._undo(run, FAILED, message_of(exc))
        except docker.errors.APIError as exc:
            return self._undo(run, FAILED, tx("Docker engine error: {error}", error=str(exc.explanation or exc)))
        except (docker.errors.DockerException, *UNREACHABLE) as exc:
            return self._undo(run, FAILED, _unreachable_reason(exc))
        finally:
            if run.client is not None:
                run.client.close()

    def _engine_shown(self) -> str:
        parsed = urlparse(self.target.engine)
        return self.target.engine.replace(parsed.password, "***") if parsed.password else self.target.engine

    def _prepare_image(self, run: _Run) -> None:
        t = self.target
        run.image = image_reference(t.image, run.request.version)
        run.step("image", "running", tx("checking image {image}", image=run.image))
        image = None
        if t.pull != "always":
            try:
                image = run.client.images.get(run.image)
            except docker.errors.ImageNotFound:
                if t.pull == "never":
                    raise DockerDriverError(tx("image {image} is not on the engine and pull is 'never'",
                                                image=run.image)) from None
        if image is None:
            run.log(tx("pulling {image}", image=run.image))
            try:
                image = self._pull(run)
            except docker.errors.NotFound:
                raise DockerDriverError(tx("image {image} not found in its registry", image=run.image)) from None
            except docker.errors.APIError as exc:
                raise DockerDriverError(tx("cannot pull {image}: {error}", image=run.image,
                                            error=str(exc.explanation or exc))) from None
        if self.app.health_check.type == "docker" and not (image.attrs.get("Config") or {}).get("Healthcheck"):
            raise DockerDriverError(tx("image {image} has no HEALTHCHECK; set health_check.type to http, tcp "
                                       "or none for this app", image=run.image))
        run.step("image", "succeeded", tx("image {image} ready", image=run.image), image_id=image.id)

    def _pull(self, run: _Run) -> Any:
        last = 0.0
        # The API takes a tag or a digest as ``tag``.
        for progress in run.client.api.pull(self.target.image, tag=run.request.version, stream=True,
                                            decode=True):
            run.check_cancel()
            if "error" in progress:
                raise DockerDriverError(tx("cannot pull {image}: {error}", image=run.image, error=str(progress["error"])))
            now = self._clock()
            if now - last >= 2.0:  # progress for long pulls, without flooding the log
                last = now
                run.log(tx("pull: {status}", status=f"{progress.get('status', '')} {progress.get('progress', '')}".strip()))
        return run.client.images.get(run.image)

    # -- strategies -----------------------------------------------------------------------
    def _rolling(self, run: _Run, old: list) -> None:
        replicas = self.target.replicas
        unavailable, surge = self.app.strategy.resolve(replicas)
        run.step("rolling update", "running",
                 tx("rolling update to {version}: {old} old, {replicas} wanted (maxSurge {surge}, "
                    "maxUnavailable {unavailable})", version=run.request.version, old=len(old), replicas=replicas,
                    surge=surge, unavailable=unavailable),
                 replicas=replicas, max_surge=surge, max_unavailable=unavailable, old=len(old))
        old_running = run.old_running  # kept on the run: a rollback counts what still serves
        new_ready = run.ready
        round_no = 0
        gate = run.request.gate
        canary = gate.size(replicas) if gate is not None else 0  # new replicas before the analysis
        while len(new_ready) < replicas or old_running:
            run.check_cancel()
            round_no += 1
            available = len(old_running) + len(new_ready)
            to_stop = min(len(old_running), available - (replicas - unavailable))
            if to_stop > 0:
                self._stop_old(run, old_running[:to_stop])
            to_start = min(replicas - len(new_ready), replicas + surge - len(old_running) - len(new_ready))
            if canary:
                to_start = min(to_start, canary - len(new_ready))
            if to_start > 0:
                busy = old_running + new_ready
                batch = [self._start_new(run, busy + [c for c in run.started if c not in busy])
                         for _ in range(to_start)]
                self._wait_healthy(run, batch)
                self._lb_enable(run.log, batch)
                new_ready.extend(batch)
            if canary and gate is not None and len(new_ready) >= canary:
                canary = 0
                gate(run.emit, run.cancel)
            if to_stop <= 0 and to_start <= 0:
                raise DockerDriverError(tx("rolling update cannot progress (maxSurge and maxUnavailable are 0)"))
            run.log(tx("round {round}: {ready}/{replicas} new healthy, {old} old running", round=round_no,
                       ready=len(new_ready), replicas=replicas, old=len(old_running)),
                    new_ready=len(new_ready), old_running=len(old_running))
        run.step("rolling update", "succeeded", tx("{count} replicas of {version} healthy", count=len(new_ready),
                                                     version=run.request.version))

    def _recreate(self, run: _Run, old: list) -> None:
        replicas = self.target.replicas
        run.step("recreate", "running", tx("recreate: stopping {old} old, then starting {replicas} new", old=len(old),
                                             replicas=replicas))
        run.check_cancel()
        self._stop_old(run, list(old))
        batch: list[Any] = []
        for _ in range(replicas):
            batch.append(self._start_new(run, list(batch)))
        self._wait_healthy(run, batch)
        self._lb_enable(run.log, batch)
        run.ready.extend(batch)
        run.step("recreate", "succeeded", tx("{count} replicas of {version} healthy", count=replicas,
                                               version=run.request.version))

    def _remove_stopped_old(self, run: _Run) -> None:
        """Remove the old containers this deploy stopped and those of earlier releases
        that were not running when it started (stopped or crashed replicas)."""
        old = run.stopped_old + run.stale
        run.step("cleanup", "running", tx("removing {count} old container(s)", count=len(old)))
        for container in old:
            self._remove(container, force=container in run.stale)
            run.log(tx("removed old container {container}", container=_short(container)), container=container.id[:12])
        run.stopped_old.clear()
        run.stale.clear()
        run.step("cleanup", "succeeded", tx("old containers removed"))

    # -- containers -----------------------------------------------------------------------
    def _stop_old(self, run: _Run, containers: list) -> None:
        """Take ``containers`` out of the load balancer (drained), then stop them."""
        self._lb_disable(run.log, containers)
        for container in containers:
            run.log(tx("stopping old container {container} ({version})", container=_short(container),
                       version=container.labels.get(LABEL_VERSION)),
                    container=container.id[:12])
            container.stop(timeout=self.target.stop_timeout)
            run.old_running.remove(container)
            run.stopped_old.append(container)

    def _remove(self, container: Any, force: bool = True) -> None:
        """Remove ``container``; gone already is success. dockerd answers 409 "removal of
        container … is already in progress" while another removal of it runs (a retried
        call, a concurrent ``docker rm``): wait for that one to finish, retrying, up to
        REMOVAL_WAIT_S. Raises docker.errors.APIError for other refusals."""
        deadline = self._clock() + REMOVAL_WAIT_S
        while True:
            try:
                container.remove(v=False, force=force)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code != 409 or "in progress" not in str(exc.explanation or exc):
                    raise
                if self._clock() >= deadline:
                    raise DockerDriverError(tx("{container}: removal still in progress after {seconds} s",
                                               container=_short(container), seconds=f"{REMOVAL_WAIT_S:g}")) from None
            time.sleep(0.1)

    def _free_slots(self, busy: list) -> list[int]:
        taken = {int(c.labels.get(LABEL_SLOT, -1)) for c in busy if str(c.labels.get(LABEL_SLOT, "")).isdigit()}
        limit = self.target.slots
        if limit is None:  # nothing published: slots only number the replicas
            return [next(s for s in itertools.count() if s not in taken)]
        return [s for s in range(limit) if s not in taken]

    def _start_new(self, run: _Run, busy: list) -> Any:
        """Create and start one container of the new version in a free slot; a host port
        taken by something else moves it to the next free slot."""
        t = self.target
        slots = self._free_slots(busy)
        if not slots:
            raise DockerDriverError(tx("no free host port left in the app's port pool"))
        last_error = ""
        for slot in slots:
            run.check_cancel()
            container = self._create(run, slot)
            try:
                container.start()
            except docker.errors.APIError as exc:
                text = str(exc.explanation or exc)
                if "already allocated" in text or "address already in use" in text:
                    last_error = text
                    run.log(tx("slot {slot}: host port taken ({error}); trying the next", slot=slot, error=text[:120]),
                            level="warning")
                    self._remove(container)
                    run.started.remove(container)
                    continue
                raise
            ports = [f"{p.host_port(slot)}->{p.container}/{p.protocol}" for p in t.ports if p.published]
            run.log(tx("started {container} ({version}) in slot {slot}, ports {ports}", container=container.name,
                       version=run.request.version, slot=slot, ports=", ".join(ports)) if ports else
                    tx("started {container} ({version}) in slot {slot}", container=container.name,
                       version=run.request.version, slot=slot),
                    container=container.id[:12], name=container.name, slot=slot, ports=ports)
            return container
        raise DockerDriverError(tx("every free host port of the pool is taken: {error}", error=last_error))

    def _create(self, run: _Run, slot: int) -> Any:
        t = self.target
        name = f"{t.name_prefix}-{run.request.deploy_id}-{next(run.counter)}-{secrets.token_hex(2)}"
        labels = dict(t.labels)
        labels.update({LABEL_APP: self.app.name, LABEL_VERSION: run.request.version,
                       LABEL_DEPLOY: str(run.request.deploy_id), LABEL_SLOT: str(slot)})
        ports = {f"{p.container}/{p.protocol}": ((p.host_ip, p.host_port(slot)) if p.host_ip else p.host_port(slot))
                 for p in t.ports if p.published}
        # No restart policy until the container has passed its health check (set in
        # _wait_healthy): a crash during the gate must show as "exited" with its real exit
        # code, not as a container that is already running again.
        kwargs: dict[str, Any] = {
            "name": name, "labels": labels, "environment": dict(t.env), "detach": True,
        }
        if ports:
            kwargs["ports"] = ports
        if t.volumes:
            kwargs["volumes"] = list(t.volumes)
        if t.command:
            kwargs["command"] = list(t.command)
        if t.network:
            kwargs["network"] = t.network
            if t.network_alias:
                kwargs["networking_config"] = {
                    t.network: run.client.api.create_endpoint_config(aliases=[t.network_alias])}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        container = run.client.containers.create(run.image, **kwargs)
        run.started.append(container)  # recorded before start, so a failed start is cleaned up too
        return container

    # -- health ---------------------------------------------------------------------------
    def _wait_healthy(self, run: _Run, batch: list) -> None:
        """Block until every container of ``batch`` passes its health check; raises
        HealthCheckFailed for the first that exits or fails, Cancelled on cancel."""
        def pause(seconds: float) -> None:
            if run.cancel.wait(seconds):
                raise Cancelled(run.cancel.reason)

        self._health_gate(batch, run.log, pause)

    def _health_gate(self, batch: list, log: Callable[..., None], pause: Callable[[float], None],
                     deadline: float | None = None) -> None:
        """The health gate of ``_wait_healthy``; ``pause(seconds)`` sleeps between rounds
        (and may raise), ``deadline`` (clock time) bounds the wait with HealthCheckFailed.
        A restart counts as a failure only when it happens during the gate."""
        hc = self.app.health_check
        pending = {c.id: c for c in batch}
        failures = {c.id: 0 for c in batch}
        restarts = {c.id: int(c.attrs.get("RestartCount") or 0) for c in batch}
        started = self._clock()
        log(tx("waiting for {count} container(s) to pass the {type} health check", count=len(batch), type=hc.type))
        poll = DOCKER_HEALTH_POLL_S if hc.type in ("docker", "none") else hc.interval
        while pending:
            for cid, container in list(pending.items()):
                container.reload()
                state = container.attrs.get("State", {})
                if (state.get("Status") in ("exited", "dead", "restarting")
                        or int(container.attrs.get("RestartCount") or 0) > restarts[cid]):
                    tail = self._log_tail(container)
                    raise HealthCheckFailed(
                        tx("{container} exited with code {code}: {output}", container=container.name,
                           code=state.get("ExitCode"), output=tail) if tail else
                        tx("{container} exited with code {code}", container=container.name, code=state.get("ExitCode")))
                ok, detail = self._probe(container, state)
                if ok:
                    del pending[cid]
                    if self.target.restart != "no":
                        container.update(restart_policy={"Name": self.target.restart})
                    log(tx("{container} is healthy ({detail})", container=container.name, detail=detail), container=cid[:12])
                    continue
                if ok is None:
                    if deadline is not None and self._clock() >= deadline:
                        raise HealthCheckFailed(tx("{container} is still starting: {detail}", container=container.name,
                                                              detail=detail))
                    continue  # still starting
                if self._clock() - started >= hc.start_period:
                    failures[cid] += 1
                if hc.type == "docker" or failures[cid] >= hc.retries:
                    raise HealthCheckFailed(tx("{container} failed its health check: {detail}", container=container.name,
                                               detail=detail))
            if pending:
                pause(poll)

    def _probe(self, container: Any, state: dict) -> tuple[bool | None, str]:
        """(True, detail) healthy, (False, detail) a failed probe, (None, detail) undecided."""
        hc = self.app.health_check
        if hc.type == "none":
            return True, "running"
        if hc.type == "docker":
            health = state.get("Health") or {}
            status = health.get("Status")
            if status == "healthy":
                return True, "docker HEALTHCHECK healthy"
            if status == "unhealthy":
                logs = health.get("Log") or []
                output = (logs[-1].get("Output") or "").strip()[:200] if logs else ""
                return False, f"docker HEALTHCHECK unhealthy{': ' + output if output else ''}"
            return None, "starting"
        host, port = self._probe_address(container)
        if host is None:
            return False, f"container port {hc.port} has no address reachable from the console"
        if hc.type == "tcp":
            return probe_tcp(host, port, hc.timeout)
        return probe_http(host, port, hc.path, hc.timeout, hc.expect_status)

    def _probe_address(self, container: Any) -> tuple[str | None, int]:
        t, hc = self.target, self.app.health_check
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        if hc.type == "tcp" and t.engine.startswith("unix://") and not t.health_host:
            # Docker's userland proxy accepts connections on a published port whether or not
            # anything listens in the container, so a connect there proves nothing: on a
            # local engine, connect to the container's own address.
            for net in networks.values():
                if net.get("IPAddress"):
                    return net["IPAddress"], hc.probe_port
        for mapping in t.ports:
            if mapping.published and mapping.container == hc.port:
                slot = int(container.labels.get(LABEL_SLOT, 0))
                host: str | None = t.health_host or (mapping.host_ip if mapping.host_ip not in ("", "0.0.0.0", "::") else "")
                if not host:
                    host = urlparse(t.engine).hostname if not t.engine.startswith("unix://") else "127.0.0.1"
                return host, mapping.host_port(slot)
        for net in networks.values():
            if net.get("IPAddress"):
                return net["IPAddress"], hc.probe_port
        return None, hc.port or 0

    def _log_tail(self, container: Any) -> str:
        try:
            raw = container.logs(tail=3)
        except docker.errors.DockerException:
            return ""
        return raw.decode("utf-8", "replace").strip().replace("\n", " | ")[:300]

    # -- rollback -------------------------------------------------------------------------
    def _undo(self, run: _Run, state: str, reason: str) -> DeployOutcome:
        """Put the old version back (``_restore``) and end in ``state``. Runs even when
        cancelled. An unreachable engine leaves cleanup pending for ``recover``."""
        level = "warning" if state == CANCELLED else "error"
        run.log(reason, level=level)
        if not run.started and not run.stopped_old:
            return DeployOutcome(state, reason)
        run.step("rollback", "running", tx("rolling back: restarting {old} old container(s), then removing {new} "
                                           "new one(s)", old=len(run.stopped_old), new=len(run.started)))
        unready = [c for c in run.started if c not in run.ready]
        try:
            self._restore(run.log, len(run.old_running), run.stopped_old, run.ready, unready, run.started)
        except (RollbackFailed, BalancerError, DockerDriverError) as exc:
            run.step("rollback", "failed", tx("rollback incomplete: {error}", error=message_of(exc)), level="error")
            return DeployOutcome(FAILED, tx("{reason}; rollback incomplete: {error}", reason=reason,
                                                error=message_of(exc)))
        except (docker.errors.DockerException, *UNREACHABLE) as exc:
            detail = _unreachable_reason(exc) if not isinstance(exc, docker.errors.APIError) else str(exc)
            run.step("rollback", "failed", tx("rollback incomplete: {error}; it is retried when the engine answers",
                                              error=detail), level="error")
            return DeployOutcome(FAILED, tx("{reason}; rollback incomplete: {error}", reason=reason, error=detail),
                                 cleanup_pending=True)
        run.step("rollback", "succeeded", tx("previous version left serving"))
        return DeployOutcome(state, reason)

    def _restore(self, log: Callable[..., None], serving_old: int, stopped: list, ready: list, unready: list,
                 started: list | None = None) -> int:
        """Run an update backwards. ``serving_old`` old containers still run; ``stopped``
        are old containers to start again, ``ready`` new ones that passed their health
        check (serving), ``unready`` new ones that did not. The lists are emptied as the
        work is done (and ``started`` kept in step), so an engine lost half-way leaves
        exactly the rest to ``recover``.

        Unready containers go first; then, repeatedly, an old container whose host ports
        are free is started, health-checked and put back in the load balancer, and only
        when none can be, a ready new one is drained and removed (one holding ports a
        stopped old container needs first). Returns how many new containers were removed;
        raises RollbackFailed when a restored container fails its health check."""
        replicas = self.target.replicas
        unavailable, _ = self.app.strategy.resolve(replicas)
        floor = replicas - unavailable if self.app.strategy.type == "rolling" else 0
        removed = 0

        def drop(container: Any) -> None:
            nonlocal removed
            self._remove(container)
            removed += 1
            if started is not None and container in started:
                started.remove(container)
            log(tx("removed {container}", container=container.name), container=container.id[:12])

        if unready:
            self._lb_disable(log, unready)  # never added; disabling makes sure after a crash
            for container in list(unready):
                drop(container)
                unready.remove(container)
        restored = 0
        while stopped or ready:
            held = {_slot(c) for c in ready}
            startable = [c for c in stopped if self.target.slots is None or _slot(c) not in held]
            if startable:
                container = startable[0]
                container.start()
                log(tx("restarted old container {container}; checking its health", container=_short(container)),
                    container=container.id[:12])
                hc = self.app.health_check
                bound = hc.start_period + hc.retries * (hc.interval + hc.timeout) + RESTORE_MARGIN_S
                try:
                    self._health_gate([container], log, time.sleep, self._clock() + bound)
                except HealthCheckFailed as exc:
                    raise RollbackFailed(tx("restored old container: {error}", error=message_of(exc))) from None
                self._lb_enable(log, [container])
                stopped.remove(container)
                restored += 1
                continue
            wanted = {_slot(c) for c in stopped}
            victim = next((c for c in ready if _slot(c) in wanted), ready[0])
            if stopped and serving_old + restored + len(ready) - 1 < floor:
                log(tx("{container} holds the host ports old container(s) need: removing it before they are back "
                       "leaves {count} replica(s) answering", container=_short(victim),
                       count=serving_old + restored + len(ready) - 1), level="warning")
            self._lb_disable(log, [victim])
            drop(victim)
            ready.remove(victim)
        return removed

    def recover(self, app: str, deploy_id: int, current_deploy_id: int | None, emit: Emit) -> int:
        """Undo ``deploy_id`` after the console died or the engine went away mid-deploy,
        in the same order as a rollback (``_restore``): the deploy's running containers
        that answer their health check now count as serving until the current release's
        stopped containers are back."""
        client = self.client()

        def log(message: str, level: str = "info", **data: Any) -> None:
            emit(DriverEvent("log", tx("recovery: {message}", message=message), level=level, data=data))

        try:
            new = self._containers(client, **{LABEL_DEPLOY: deploy_id})
            current = (self._containers(client, **{LABEL_DEPLOY: current_deploy_id})
                       if current_deploy_id is not None else [])
            stopped = [c for c in current if c.status in ("created", "exited")]
            serving_old = sum(c.status == "running" for c in current)
            ready = [c for c in new if c.status == "running" and self._probe(c, c.attrs.get("State", {}))[0]]
            unready = [c for c in new if c not in ready]
            return self._restore(log, serving_old, stopped, ready, unready)
        except (RollbackFailed, BalancerError, DockerDriverError) as exc:
            # Left pending: the cleanup task tries again later.
            raise DriverUnavailable(tx("recovery of deploy {id} incomplete: {error}", id=deploy_id,
                                       error=message_of(exc))) from None
        except (docker.errors.DockerException, *UNREACHABLE) as exc:
            raise DriverUnavailable(_unreachable_reason(exc)) from None
        finally:
            client.close()

    # -- load balancer --------------------------------------------------------------------
    def _lb_server(self, container: Any) -> Server | None:
        """Where the balancer reaches ``container``: its published host port for the
        balancer's container port (on ``load_balancer.host``, the mapping's host IP or
        127.0.0.1), else the container's own address on the engine's network; None when
        it has none (not running, no published port)."""
        lb, t = self.app.load_balancer, self.target
        if lb is None:
            raise TypeError(f"app {self.app.name} has no load balancer")
        port = lb.port or self.app.health_check.port
        slot = _slot(container)
        for mapping in t.ports:
            if mapping.published and mapping.container == port:
                host = lb.host or (mapping.host_ip if mapping.host_ip not in ("", "0.0.0.0", "::") else "127.0.0.1")
                return Server(slot, host.strip("[]"), mapping.host_port(slot), container.name)
        if not container.attrs.get("NetworkSettings"):
            container.reload()
        for net in ((container.attrs.get("NetworkSettings") or {}).get("Networks") or {}).values():
            if net.get("IPAddress"):
                return Server(slot, net["IPAddress"], int(port or 0), container.name)
        return None

    def _lb_servers(self, containers: list, required: bool) -> list[Server]:
        servers = []
        for container in containers:
            server = self._lb_server(container)
            if server is None and required:
                raise BalancerError(tx("{container} has no address the load balancer can reach", container=container.name))
            if server is not None:
                servers.append(server)
        return servers

    def _lb_sync(self, run: _Run, running: list) -> None:
        if self.balancer is not None:
            self.balancer.sync(self._lb_servers(running, True), self._lb_slots(), run.log)

    def _lb_slots(self) -> int:
        _, surge = self.app.strategy.resolve(self.target.replicas)
        return self.target.slots or self.target.replicas + surge

    def _lb_enable(self, log: Callable[..., None], containers: list) -> None:
        if self.balancer is not None and containers:
            self.balancer.enable(self._lb_servers(containers, True), log)

    def _lb_disable(self, log: Callable[..., None], containers: list) -> None:
        """Drain ``containers``; one with no address (it exited before it had one) was
        never added."""
        if self.balancer is not None and containers:
            self.balancer.disable(self._lb_servers(containers, False), log)


def _slot(container: Any) -> int:
    """The container's slot (``fleetdeck.slot`` label); -1 when it has none."""
    text = str(container.labels.get(LABEL_SLOT, ""))
    return int(text) if text.isdigit() else -1
