"""The Docker driver: health-gated rolling updates (or recreate) of an app's containers
through the Docker Engine API (docker-py), with automatic rollback.

Containers are found by their labels, never by guessed names:
``fleetdeck.app`` (app name), ``fleetdeck.version``, ``fleetdeck.deploy`` (deploy id)
and ``fleetdeck.slot`` (which host port of each published pool the container holds).

Rolling update, Kubernetes-style: with R replicas, maxSurge S and maxUnavailable U, each
round stops old containers while at least R-U stay available, then starts as many new
ones as R+S allows and waits until they pass their health check. Old containers are
only *stopped* during the update and removed once every new one is healthy, so a failed
health check can put the old version back exactly as it was: the containers this
deploy started are removed and the stopped old ones started again.

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
from console.deploy.targets import DockerTarget
from console.deploy.drivers.base import (CANCELLED, FAILED, ROLLED_BACK, SUCCEEDED, CancelToken, Cancelled,
                                         DeployOutcome, DeployRequest, DriverEvent, DriverUnavailable, Emit,
                                         GateFailed)
from console.deploy.drivers.probes import probe_http, probe_tcp
from console.errors import DriverFailure

log = logging.getLogger(__name__)

LABEL_APP, LABEL_VERSION, LABEL_DEPLOY, LABEL_SLOT = ("fleetdeck.app", "fleetdeck.version",
                                                      "fleetdeck.deploy", "fleetdeck.slot")
DOCKER_HEALTH_POLL_S = 0.25  # how often the daemon's health status is read (its own interval applies)
UNREACHABLE = (requests.exceptions.RequestException, ConnectionError)


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
    stopped_old: list = field(default_factory=list)  # old containers this deploy stopped
    counter: Any = field(default_factory=lambda: itertools.count(1))

    def log(self, message: str, level: str = "info", **data: Any) -> None:
        self.emit(DriverEvent("log", message, level=level, data=data))

    def step(self, name: str, state: str, message: str = "", level: str = "info", **data: Any) -> None:
        self.emit(DriverEvent("step", message or f"{name}: {state}", step=name, state=state, level=level, data=data))

    def check_cancel(self) -> None:
        if self.cancel.cancelled:
            raise Cancelled(self.cancel.reason)


def _short(container: Any) -> str:
    return container.name if getattr(container, "name", None) else container.id[:12]


def _unreachable_reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"Docker engine unreachable: {text[:300]}"


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
            run.step("connect", "running", f"connecting to {self._engine_shown()}")
            run.client = self.client()
            run.step("connect", "succeeded", "engine reachable")
            self._prepare_image(run)
            run.check_cancel()
            old = [c for c in self._containers(run.client) if c.status == "running"]
            if self.app.strategy.type == "recreate":
                self._recreate(run, old)
            else:
                self._rolling(run, old)
            self._remove_stopped_old(run)
            return DeployOutcome(SUCCEEDED)
        except DriverUnavailable as exc:
            run.step("connect", "failed", str(exc), level="error")
            return DeployOutcome(FAILED, str(exc))
        except (HealthCheckFailed, GateFailed) as exc:
            return self._undo(run, ROLLED_BACK, str(exc))
        except Cancelled as exc:
            state = FAILED if run.cancel.kind == "timeout" else CANCELLED
            return self._undo(run, state, str(exc))
        except DockerDriverError as exc:
            return self._undo(run, FAILED, str(exc))
        except docker.errors.APIError as exc:
            return self._undo(run, FAILED, f"Docker engine error: {exc.explanation or exc}")
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
        run.step("image", "running", f"checking image {run.image}")
        image = None
        if t.pull != "always":
            try:
                image = run.client.images.get(run.image)
            except docker.errors.ImageNotFound:
                if t.pull == "never":
                    raise DockerDriverError(f"image {run.image} is not on the engine and pull is 'never'") from None
        if image is None:
            run.log(f"pulling {run.image}")
            try:
                image = self._pull(run)
            except docker.errors.NotFound:
                raise DockerDriverError(f"image {run.image} not found in its registry") from None
            except docker.errors.APIError as exc:
                raise DockerDriverError(f"cannot pull {run.image}: {exc.explanation or exc}") from None
        if self.app.health_check.type == "docker" and not (image.attrs.get("Config") or {}).get("Healthcheck"):
            raise DockerDriverError(f"image {run.image} has no HEALTHCHECK; set health_check.type to http, tcp "
                                    "or none for this app")
        run.step("image", "succeeded", f"image {run.image} ready", image_id=image.id)

    def _pull(self, run: _Run) -> Any:
        last = 0.0
        # The API takes a tag or a digest as ``tag``.
        for progress in run.client.api.pull(self.target.image, tag=run.request.version, stream=True,
                                            decode=True):
            run.check_cancel()
            if "error" in progress:
                raise DockerDriverError(f"cannot pull {run.image}: {progress['error']}")
            now = self._clock()
            if now - last >= 2.0:  # progress for long pulls, without flooding the log
                last = now
                run.log(f"pull: {progress.get('status', '')} {progress.get('progress', '')}".strip())
        return run.client.images.get(run.image)

    # -- strategies -----------------------------------------------------------------------
    def _rolling(self, run: _Run, old: list) -> None:
        replicas = self.target.replicas
        unavailable, surge = self.app.strategy.resolve(replicas)
        run.step("rolling update", "running",
                 f"rolling update to {run.request.version}: {len(old)} old, {replicas} wanted "
                 f"(maxSurge {surge}, maxUnavailable {unavailable})",
                 replicas=replicas, max_surge=surge, max_unavailable=unavailable, old=len(old))
        old_running = list(old)
        new_ready: list = []
        round_no = 0
        gate = run.request.gate
        canary = gate.size(replicas) if gate is not None else 0  # new replicas before the analysis
        while len(new_ready) < replicas or old_running:
            run.check_cancel()
            round_no += 1
            available = len(old_running) + len(new_ready)
            to_stop = min(len(old_running), available - (replicas - unavailable))
            if to_stop > 0:
                for container in old_running[:to_stop]:
                    self._stop_old(run, container)
                old_running = old_running[to_stop:]
            to_start = min(replicas - len(new_ready), replicas + surge - len(old_running) - len(new_ready))
            if canary:
                to_start = min(to_start, canary - len(new_ready))
            if to_start > 0:
                busy = old_running + new_ready
                batch = [self._start_new(run, busy + [c for c in run.started if c not in busy])
                         for _ in range(to_start)]
                self._wait_healthy(run, batch)
                new_ready.extend(batch)
            if canary and gate is not None and len(new_ready) >= canary:
                canary = 0
                gate(run.emit, run.cancel)
            if to_stop <= 0 and to_start <= 0:
                raise DockerDriverError("rolling update cannot progress (maxSurge and maxUnavailable are 0)")
            run.log(f"round {round_no}: {len(new_ready)}/{replicas} new healthy, {len(old_running)} old running",
                    new_ready=len(new_ready), old_running=len(old_running))
        run.step("rolling update", "succeeded", f"{len(new_ready)} replicas of {run.request.version} healthy")

    def _recreate(self, run: _Run, old: list) -> None:
        replicas = self.target.replicas
        run.step("recreate", "running", f"recreate: stopping {len(old)} old, then starting {replicas} new")
        for container in old:
            run.check_cancel()
            self._stop_old(run, container)
        batch: list[Any] = []
        for _ in range(replicas):
            batch.append(self._start_new(run, list(batch)))
        self._wait_healthy(run, batch)
        run.step("recreate", "succeeded", f"{replicas} replicas of {run.request.version} healthy")

    def _remove_stopped_old(self, run: _Run) -> None:
        run.step("cleanup", "running", f"removing {len(run.stopped_old)} old container(s)")
        for container in run.stopped_old:
            try:
                container.remove(v=False)
                run.log(f"removed old container {_short(container)}", container=container.id[:12])
            except docker.errors.NotFound:
                pass  # already gone: the goal is reached
        run.stopped_old.clear()
        run.step("cleanup", "succeeded", "old containers removed")

    # -- containers -----------------------------------------------------------------------
    def _stop_old(self, run: _Run, container: Any) -> None:
        run.log(f"stopping old container {_short(container)} ({container.labels.get(LABEL_VERSION)})",
                container=container.id[:12])
        container.stop(timeout=self.target.stop_timeout)
        run.stopped_old.append(container)

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
            raise DockerDriverError("no free host port left in the app's port pool")
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
                    run.log(f"slot {slot}: host port taken ({text[:120]}); trying the next", level="warning")
                    container.remove(force=True)
                    run.started.remove(container)
                    continue
                raise
            ports = [f"{p.host_port(slot)}->{p.container}/{p.protocol}" for p in t.ports if p.published]
            run.log(f"started {container.name} ({run.request.version}) in slot {slot}"
                    + (f", ports {', '.join(ports)}" if ports else ""),
                    container=container.id[:12], name=container.name, slot=slot, ports=ports)
            return container
        raise DockerDriverError(f"every free host port of the pool is taken: {last_error}")

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
        hc = self.app.health_check
        pending = {c.id: c for c in batch}
        failures = {c.id: 0 for c in batch}
        started = self._clock()
        run.log(f"waiting for {len(batch)} container(s) to pass the {hc.type} health check")
        poll = DOCKER_HEALTH_POLL_S if hc.type in ("docker", "none") else hc.interval
        while pending:
            for cid, container in list(pending.items()):
                container.reload()
                state = container.attrs.get("State", {})
                if state.get("Status") in ("exited", "dead", "restarting") or container.attrs.get("RestartCount"):
                    tail = self._log_tail(container)
                    raise HealthCheckFailed(f"{container.name} exited with code {state.get('ExitCode')}"
                                            + (f": {tail}" if tail else ""))
                ok, detail = self._probe(container, state)
                if ok:
                    del pending[cid]
                    if self.target.restart != "no":
                        container.update(restart_policy={"Name": self.target.restart})
                    run.log(f"{container.name} is healthy ({detail})", container=cid[:12])
                    continue
                if ok is None:
                    continue  # still starting
                if self._clock() - started >= hc.start_period:
                    failures[cid] += 1
                if hc.type == "docker" or failures[cid] >= hc.retries:
                    raise HealthCheckFailed(f"{container.name} failed its health check: {detail}")
            if pending and run.cancel.wait(poll):
                raise Cancelled(run.cancel.reason)

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
        """Remove what this deploy started, start the old containers it stopped. Runs even
        when cancelled. An unreachable engine leaves cleanup pending for ``recover``."""
        level = "warning" if state == CANCELLED else "error"
        run.log(reason, level=level)
        if not run.started and not run.stopped_old:
            return DeployOutcome(state, reason)
        run.step("rollback", "running", f"rolling back: removing {len(run.started)} new container(s), "
                                        f"restarting {len(run.stopped_old)} old one(s)")
        try:
            for container in list(run.started):
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
                run.started.remove(container)
                run.log(f"removed {container.name}", container=container.id[:12])
            for container in list(run.stopped_old):
                container.start()
                run.stopped_old.remove(container)
                run.log(f"restarted old container {_short(container)}", container=container.id[:12])
        except (docker.errors.DockerException, *UNREACHABLE) as exc:
            detail = _unreachable_reason(exc) if not isinstance(exc, docker.errors.APIError) else str(exc)
            run.step("rollback", "failed", f"rollback incomplete: {detail}; it is retried when the engine answers",
                     level="error")
            return DeployOutcome(FAILED, f"{reason}; rollback incomplete: {detail}", cleanup_pending=True)
        run.step("rollback", "succeeded", "previous version left serving")
        return DeployOutcome(state, reason)

    def recover(self, app: str, deploy_id: int, current_deploy_id: int | None, emit: Emit) -> int:
        client = self.client()
        try:
            removed = 0
            for container in self._containers(client, **{LABEL_DEPLOY: deploy_id}):
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    continue  # removed meanwhile: the goal is reached
                removed += 1
                emit(DriverEvent("log", f"recovery: removed {container.name}", data={"container": container.id[:12]}))
            if current_deploy_id is not None:
                for container in self._containers(client, **{LABEL_DEPLOY: current_deploy_id}):
                    if container.status in ("created", "exited"):
                        container.start()
                        emit(DriverEvent("log", f"recovery: restarted {container.name} of the current release",
                                         data={"container": container.id[:12]}))
            return removed
        except (docker.errors.DockerException, *UNREACHABLE) as exc:
            raise DriverUnavailable(_unreachable_reason(exc)) from None
        finally:
            client.close()
