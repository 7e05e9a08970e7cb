"""The Kubernetes driver: sets a Deployment's container image with the official
``kubernetes`` client, follows the rollout the way ``kubectl rollout status`` does and
undoes it the way ``kubectl rollout undo`` does.

- **Connect**: a kubeconfig file (``target.kubeconfig``, else ``$KUBECONFIG`` or
  ``~/.kube/config``) or a kubeconfig stored as an encrypted secret
  (``kubeconfig_secret``), with ``context`` and ``namespace``; or the pod's service
  account (``in_cluster``). Each deploy builds its own ``Configuration`` (no global one).
  A stored kubeconfig is checked again before use (console/deploy/kubeconfig.py): inline
  token or client certificate only, never an exec/auth-provider plugin or a file path.
- **Only deploys reach the cluster.** ``instances`` (``GET /api/v1/apps/{app}``, a
  viewer's read) answers from what the last deploy of this console saw; a read never
  builds a client, runs a credential plugin or calls the API server.
- **Set image**: one strategic merge patch (the client's choice for a dict body) of ``spec.template.spec.containers`` (the whole list,
  with the new image) and the ``kubernetes.io/change-cause`` annotation, carrying the
  ``metadata.resourceVersion`` just read, so a concurrent writer makes the API answer
  409 Conflict; the driver re-reads and retries (``conflict_retries``).
- **Paused**: a Deployment with ``spec.paused`` is refused before anything changes (the
  controller would not roll it out; ``kubectl rollout undo`` refuses it likewise).
- **Rollout status** (kubectl's ``DeploymentStatusViewer``): done when
  ``observedGeneration >= generation``, ``updatedReplicas == replicas`` (spec),
  ``status.replicas == updatedReplicas`` and ``availableReplicas == updatedReplicas``;
  failed when the ``Progressing`` condition has reason ``ProgressDeadlineExceeded``
  (``progressDeadlineSeconds``).
- **The new ReplicaSet's Pods** (once the controller has observed the new generation, so
  the revision annotation names the new ReplicaSet) are listed at each poll with a label
  selector (the Deployment's ``matchLabels`` plus the new ReplicaSet's
  ``pod-template-hash``), never all Pods of the namespace. A container (or init
  container) waiting with a reason of ``fail_on`` (default ``ImagePullBackOff``,
  ``ErrImagePull``, ``CrashLoopBackOff``, ``InvalidImageName``, ``ErrImageNeverPull``)
  fails the rollout at once with the Pod, the container and the kubelet's message,
  instead of waiting out ``progressDeadlineSeconds``; the Pods of older ReplicaSets and of
  other apps never do.
- **Events** of the Deployment, the new ReplicaSet and its Pods are read with a field
  selector (``involvedObject.uid=``) each time that object changes (its
  ``resourceVersion``), and streamed into the deploy's log; the namespace's events are
  never listed whole.
- **Undo**: like ``kubectl rollout undo``, the pod template of the ReplicaSet holding
  the wanted revision (``deployment.kubernetes.io/revision``; the previous one by
  default) replaces the Deployment's whole: a JSON patch (RFC 6902) ``replace`` of
  ``/spec/template``, without its ``pod-template-hash`` label, guarded by a ``test`` of
  the ``resourceVersion`` read. A field only the newer template had is gone afterwards (a
  strategic merge patch would have kept it). A deploy of kind ``rollback`` to a version
  that an existing ReplicaSet runs is such an undo to that revision.

403 Forbidden and other API refusals fail the deploy with the API's own message.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any, Callable

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from console.deploy.apps import AppDefinition, image_reference
from console.deploy.kubeconfig import KubeconfigRefused, check_kubeconfig
from console.deploy.drivers.base import (CANCELLED, FAILED, ROLLED_BACK, SUCCEEDED, CancelToken, Cancelled,
                                         DeployOutcome, DeployRequest, DriverEvent, DriverUnavailable, Emit,
                                         GateFailed)
from console.deploy.drivers.k8s_canary import CanaryDeployment
from console.deploy.targets import KubernetesTarget
from console.errors import DriverFailure
from console.i18n import message_of, tx

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
UNDO_WAIT_MAX_S = 300.0
MAX_WATCHED_PODS = 20  # Pods of the new ReplicaSet whose events are read (their states are all checked)
UNREACHABLE = (urllib3.exceptions.HTTPError, OSError)


class RolloutFailed(Exception):
    """The rollout stopped making progress (ProgressDeadlineExceeded, or a new Pod's
    container waiting with a ``fail_on`` reason)."""


class KubernetesDriverError(DriverFailure):
    """The API refused an operation (403, 404, 422, conflicts beyond the retries): 502
    ``driver_failed``."""


def api_error(exc: ApiException) -> str:
    """``403 Forbidden: <the API's message>``."""
    message = ""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except ValueError:
        message = (exc.body or "")[:200] if isinstance(exc.body, str) else ""
    return f"{exc.status} {exc.reason}: {message or 'no message'}"


def rollout_status(dep: dict) -> tuple[bool, str]:
    """(done, message) of a Deployment (API JSON, camelCase), as ``kubectl rollout status``
    words it. Raises RolloutFailed when the progress deadline was exceeded."""
    meta, spec, status = dep.get("metadata", {}), dep.get("spec", {}), dep.get("status") or {}
    name = meta.get("name")
    if (meta.get("generation") or 0) <= (status.get("observedGeneration") or 0):
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                raise RolloutFailed(tx("deployment {deployment} exceeded its progress deadline: {message}",
                                           deployment=repr(name), message=cond.get("message", "")))
        wanted = spec.get("replicas", 1)
        updated = status.get("updatedReplicas") or 0
        if updated < wanted:
            return False, f"waiting for rollout to finish: {updated} out of {wanted} new replicas have been updated"
        if (status.get("replicas") or 0) > updated:
            return False, (f"waiting for rollout to finish: {(status.get('replicas') or 0) - updated} old replicas "
                           "are pending termination")
        available = status.get("availableReplicas") or 0
        if available < updated:
            return False, f"waiting for rollout to finish: {available} of {updated} updated replicas are available"
        return True, f"deployment {name!r} successfully rolled out"
    return False, "waiting for deployment spec update to be observed"


class _Api:
    """The clients of one deploy."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str, timeout: float) -> None:
        self.client = api_client
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.namespace = namespace
        self.timeout = timeout

    def json(self, obj: Any) -> dict:
        return self.client.sanitize_for_serialization(obj)

    def items(self, list_call: Callable[..., Any], **query: Any) -> list[dict]:
        """``items`` of a namespaced list call as the API's JSON, not the client's models
        (which refuse objects missing fields they call required, e.g. a waiting
        container's ``imageID``). Raises ValueError for a body that is not JSON."""
        response = list_call(self.namespace, _preload_content=False, _request_timeout=self.timeout, **query)
        return json.loads(response.data).get("items") or []


class KubernetesDriver:
    """Deploys one app's Deployment. ``reveal(secret_name)`` returns a stored secret's
    plaintext (for ``kubeconfig_secret``)."""

    def __init__(self, app: AppDefinition, reveal: Callable[[str], str] | None = None) -> None:
        self.app = app
        self.target = app.target_of(KubernetesTarget)
        self._reveal = reveal
        # What the last deploy saw (``instances``); replaced whole, read from other threads.
        self._seen: list[dict] | None = None

    # -- connection ------------------------------------------------------------------------
    def api(self) -> _Api:
        t = self.target
        configuration = k8s.Configuration()
        namespace = t.namespace
        try:
            if t.in_cluster:
                loader = k8s_config.incluster_config.InClusterConfigLoader(
                    token_filename=k8s_config.incluster_config.SERVICE_TOKEN_FILENAME,
                    cert_filename=k8s_config.incluster_config.SERVICE_CERT_FILENAME)
                loader.load_and_set(configuration)
                if not namespace:
                    try:
                        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
                            namespace = fh.read().strip()
                    except OSError:
                        namespace = "default"
            else:
                if t.kubeconfig_secret:
                    if self._reveal is None:
                        raise DriverUnavailable("no secret store to read kubeconfig_secret from")
                    try:
                        document = check_kubeconfig(self._reveal(t.kubeconfig_secret))
                    except KubeconfigRefused as exc:
                        raise DriverUnavailable(tx("stored kubeconfig {secret} refused: {error}",
                                                   secret=repr(t.kubeconfig_secret), error=message_of(exc))) from None
                else:
                    import os

                    path = t.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or \
                        os.path.expanduser("~/.kube/config")
                    with open(path) as fh:
                        document = yaml.safe_load(fh)
                k8s_config.load_kube_config_from_dict(document, context=t.context or None,
                                                      client_configuration=configuration, persist_config=False)
                if not namespace:
                    ctx_name = t.context or document.get("current-context")
                    ctx = next((c.get("context") or {} for c in document.get("contexts") or []
                                if c.get("name") == ctx_name), {})
                    namespace = ctx.get("namespace") or "default"
        except (OSError, ValueError, yaml.YAMLError, k8s_config.ConfigException) as exc:
            raise DriverUnavailable(tx("cannot load the cluster configuration: {error}", error=str(exc))) from None
        return _Api(k8s.ApiClient(configuration), namespace, t.api_timeout)

    # -- deploy ---------------------------------------------------------------------------
    def deploy(self, request: DeployRequest, emit: Emit, cancel: CancelToken) -> DeployOutcome:
        t = self.target

        def step(name: str, state: str, message: str, level: str = "info", **data: Any) -> None:
            emit(DriverEvent("step", message, step=name, state=state, level=level, data=data))

        api = None
        canary: CanaryDeployment | None = None
        previous_revision = None
        changed = False
        reachable = False  # the API answered, so listing the ReplicaSets afterwards is worth it
        try:
            api = self.api()
            where = f"{api.namespace}/{t.deployment}"
            step("connect", "running", tx("reading deployment {deployment} at {server}", deployment=where,
                                            server=api.client.configuration.host))
            dep = self._read(api)
            reachable = True
            if (dep.get("spec") or {}).get("paused"):
                raise KubernetesDriverError(tx(
                    "deployment {deployment} is paused (spec.paused): a rollout would not start; nothing was "
                    "changed. Resume it first: {command}", deployment=where,
                    command=f"kubectl rollout resume deployment/{t.deployment} -n {api.namespace}"))
            previous_revision = (dep["metadata"].get("annotations") or {}).get(REVISION)
            step("connect", "succeeded", tx("deployment {deployment} at revision {revision}", deployment=where,
                                            revision=previous_revision or "-"),
                 revision=previous_revision)
            image = image_reference(t.image, request.version)
            target_rs = self._revision_for_image(api, dep, image) if request.kind == "rollback" else None
            if target_rs is not None:
                rev = target_rs["metadata"]["annotations"][REVISION]
                step("undo", "running", tx("rolling back to revision {revision} ({image})", revision=rev, image=image),
                     revision=rev)
                self._undo_to(api, target_rs, emit)
                step("undo", "succeeded", tx("deployment template set to revision {revision}", revision=rev))
            else:
                if request.gate is not None:  # a canary Deployment first; the app's changes once it passed
                    canary = CanaryDeployment(api, dep, self._container_index(dep), image, request.gate, emit,
                                              t.poll_interval)
                    canary.run(cancel)
                step("set image", "running", tx("setting image {image}", image=image))
                self._set_image(api, image, request, emit)
                step("set image", "succeeded", tx("image {image} set", image=image))
            changed = True
            step("rollout", "running", tx("following the rollout"))
            self._follow(api, emit, cancel, time.monotonic() + 10 ** 9)
            step("rollout", "succeeded", tx("rollout complete"))
            return DeployOutcome(SUCCEEDED)
        except DriverUnavailable as exc:
            step("connect", "failed", message_of(exc), level="error")
            return DeployOutcome(FAILED, message_of(exc))
        except ApiException as exc:
            message = tx("Kubernetes API refused: {error}", error=api_error(exc))
            emit(DriverEvent("log", message, level="error", data={"status": exc.status}))
            return self._fail(api, changed, previous_revision, emit, FAILED, message)
        except KubernetesDriverError as exc:
            if not changed:
                step("connect", "failed", message_of(exc), level="error")
            emit(DriverEvent("log", message_of(exc), level="error"))
            return self._fail(api, changed, previous_revision, emit, FAILED, message_of(exc))
        except GateFailed as exc:  # only the canary Deployment ran the new version: removed below
            return DeployOutcome(ROLLED_BACK, message_of(exc))
        except RolloutFailed as exc:
            step("rollout", "failed", message_of(exc), level="error")
            return self._fail(api, changed, previous_revision, emit, ROLLED_BACK, message_of(exc))
        except Cancelled as exc:
            step("rollout", "failed", message_of(exc), level="error")
            return self._fail(api, changed, previous_revision, emit,
                              FAILED if cancel.kind == "timeout" else CANCELLED, message_of(exc))
        except UNREACHABLE as exc:
            reachable = False
            message = tx("Kubernetes API unreachable: {error}", error=str(exc)[:300])
            return self._fail(api, changed, previous_revision, emit, FAILED, message)
        finally:
            if canary is not None:
                canary.remove()
            if api is not None:
                if reachable:
                    self._remember_instances(api)
                api.client.close()

    def _remember_instances(self, api: _Api) -> None:
        try:
            self._seen = self._read_instances(api)
        except (ApiException, KubernetesDriverError, *UNREACHABLE) as exc:
            log.debug("cannot list the ReplicaSets after the deploy: %s", exc)

    def _fail(self, api: _Api | None, changed: bool, previous: str | None, emit: Emit, state: str,
              error: str) -> DeployOutcome:
        """Undo a changed Deployment to ``previous`` (when configured); the outcome."""
        if not changed or api is None:
            return DeployOutcome(FAILED if state == ROLLED_BACK else state, error)
        if not self.target.undo_on_failure or previous is None:
            why = (tx("not rolling back: undo_on_failure is false") if previous
                   else tx("not rolling back: there is no previous revision"))
            emit(DriverEvent("log", why, level="warning"))
            return DeployOutcome(FAILED, error)
        emit(DriverEvent("step", tx("rolling back to revision {revision} (kubectl rollout undo)", revision=previous),
                         step="undo",
                         state="running", data={"revision": previous}))
        try:
            dep = self._read(api)
            rs = next((r for r in self._replica_sets(api, dep)
                       if (r["metadata"].get("annotations") or {}).get(REVISION) == previous), None)
            if rs is None:
                raise KubernetesDriverError(tx("no ReplicaSet with revision {revision} is left to roll back to",
                                                  revision=previous))
            self._undo_to(api, rs, emit)
            deadline = time.monotonic() + min(float(dep["spec"].get("progressDeadlineSeconds") or 600),
                                              UNDO_WAIT_MAX_S)
            self._follow(api, emit, CancelToken(), deadline)
        except (ApiException, KubernetesDriverError, RolloutFailed, Cancelled, *UNREACHABLE) as exc:
            text = api_error(exc) if isinstance(exc, ApiException) else message_of(exc)
            emit(DriverEvent("step", tx("rollback failed: {error}", error=text), step="undo", state="failed",
                             level="error"))
            return DeployOutcome(FAILED, tx("{reason}; rollback failed: {error}", reason=error, error=text))
        emit(DriverEvent("step", tx("revision {revision} serves again", revision=previous), step="undo",
                         state="succeeded"))
        return DeployOutcome(state, error)

    # -- API operations ----------------------------------------------------------------------
    def _read(self, api: _Api) -> dict:
        try:
            return api.json(api.apps.read_namespaced_deployment(self.target.deployment, api.namespace,
                                                                _request_timeout=api.timeout))
        except ApiException as exc:
            if exc.status == 404:
                raise KubernetesDriverError(tx("deployment {deployment} not found",
                                               deployment=f"{api.namespace}/{self.target.deployment}")) from None
            raise

    def _patch(self, api: _Api, build: Callable[[dict], dict | list], emit: Emit) -> dict:
        """Read, build a patch carrying the read resourceVersion, send it; on 409
        Conflict read again and retry up to ``conflict_retries`` times. A dict is sent
        as a strategic merge patch with ``metadata.resourceVersion``; a list as a JSON
        patch (the client picks the content type by the body's type) led by a ``test``
        op of ``/metadata/resourceVersion``."""
        for attempt in range(self.target.conflict_retries + 1):
            dep = self._read(api)
            body = build(dep)
            version = dep["metadata"].get("resourceVersion")
            if isinstance(body, list):
                body = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *body]
            else:
                body.setdefault("metadata", {})["resourceVersion"] = version
            try:
                return api.json(api.apps.patch_namespaced_deployment(
                    self.target.deployment, api.namespace, body, _request_timeout=api.timeout))
            except ApiException as exc:
                if exc.status != 409 or attempt == self.target.conflict_retries:
                    raise
                emit(DriverEvent("log", tx("409 Conflict (the deployment changed since it was read); retrying "
                                           "({attempt}/{attempts})", attempt=attempt + 1,
                                           attempts=self.target.conflict_retries), level="warning",
                                 data={"status": 409, "attempt": attempt + 1}))
        raise AssertionError("unreachable")

    def _container_index(self, dep: dict) -> int:
        containers = dep["spec"]["template"]["spec"].get("containers") or []
        if self.target.container:
            for i, c in enumerate(containers):
                if c.get("name") == self.target.container:
                    return i
            raise KubernetesDriverError(tx("deployment has no container {container} (it has {containers})",
                                           container=repr(self.target.container),
                                           containers=", ".join(c.get("name", "?") for c in containers)))
        if len(containers) != 1:
            raise KubernetesDriverError("the deployment has several containers: set target.container")
        return 0

    def _set_image(self, api: _Api, image: str, request: DeployRequest, emit: Emit) -> None:
        cause = f"fleetdeck deploy #{request.deploy_id}: {self.app.name} {request.version}"

        def build(dep: dict) -> dict:
            containers = copy.deepcopy(dep["spec"]["template"]["spec"]["containers"])
            containers[self._container_index(dep)]["image"] = image
            return {"metadata": {"annotations": {CHANGE_CAUSE: cause}},
                    "spec": {"template": {"spec": {"containers": containers}}}}

        self._patch(api, build, emit)
        emit(DriverEvent("log", tx("image set, change-cause {cause}", cause=repr(cause))))

    def _replica_sets(self, api: _Api, dep: dict) -> list[dict]:
        """The ReplicaSets the Deployment controls (selector, then controller owner uid)."""
        labels = (dep["spec"].get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        items = api.json(api.apps.list_namespaced_replica_set(api.namespace, label_selector=selector,
                                                              _request_timeout=api.timeout)).get("items") or []
        uid = dep["metadata"].get("uid")
        return [rs for rs in items
                if any(o.get("controller") and o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])]

    def _revision_for_image(self, api: _Api, dep: dict, image: str) -> dict | None:
        """The newest ReplicaSet whose pod template runs ``image`` in our container."""
        best = None
        for rs in self._replica_sets(api, dep):
            containers = rs["spec"]["template"]["spec"].get("containers") or []
            names = [c.get("image") for c in containers
                     if not self.target.container or c.get("name") == self.target.container]
            rev = int((rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0)
            if image in names and (best is None or rev > best[0]):
                best = (rev, rs)
        return best[1] if best else None

    def _undo_to(self, api: _Api, rs: dict, emit: Emit) -> None:
        template = copy.deepcopy(rs["spec"]["template"])
        (template.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
        cause = (rs["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)

        def build(dep: dict) -> list:
            # kubectl's DeploymentRollbacker: replace the template whole, carry the change-cause over.
            annotations = dict(dep["metadata"].get("annotations") or {})
            if cause:
                annotations[CHANGE_CAUSE] = cause
            else:
                annotations.pop(CHANGE_CAUSE, None)
            return [{"op": "replace", "path": "/spec/template", "value": template},
                    {"op": "add", "path": "/metadata/annotations", "value": annotations}]

        self._patch(api, build, emit)
        emit(DriverEvent("log", tx("pod template of ReplicaSet {replicaset} (revision {revision}) restored",
                                   replicaset=rs["metadata"]["name"],
                                   revision=rs["metadata"]["annotations"][REVISION])))

    def _follow(self, api: _Api, emit: Emit, cancel: CancelToken, deadline: float) -> None:
        """Poll until the rollout is done (returns), fails (RolloutFailed: progress
        deadline, or a new Pod's container waiting with a ``fail_on`` reason), is
        cancelled (Cancelled) or ``deadline`` (monotonic) passes (RolloutFailed)."""
        last = None
        watched: dict[str, str] = {}  # object uid -> resourceVersion whose events were read
        seen_events: set[str] = set()
        while True:
            dep = self._read(api)
            done, message = rollout_status(dep)
            if message != last:
                last = message
                st = dep.get("status") or {}
                emit(DriverEvent("log", message, data={k: st.get(k) for k in (
                    "observedGeneration", "replicas", "updatedReplicas", "availableReplicas")}))
            self._watch(api, dep, watched, seen_events, emit, check=not done)
            if done:
                return
            if time.monotonic() > deadline:
                raise RolloutFailed(tx("rollout not done in time: {message}", message=message))
            if cancel.wait(self.target.poll_interval):
                raise Cancelled(cancel.reason)

    def _new_replica_set(self, api: _Api, dep: dict) -> dict | None:
        """The ReplicaSet of the Deployment's current revision, once the controller has
        observed its newest generation (before that the annotation names the old one)."""
        status = dep.get("status") or {}
        if (status.get("observedGeneration") or 0) < (dep["metadata"].get("generation") or 0):
            return None
        revision = (dep["metadata"].get("annotations") or {}).get(REVISION)
        return next((rs for rs in self._replica_sets(api, dep)
                     if (rs["metadata"].get("annotations") or {}).get(REVISION) == revision), None)

    def _watch(self, api: _Api, dep: dict, watched: dict[str, str], seen: set[str], emit: Emit,
               check: bool) -> None:
        """Events of the Deployment, its new ReplicaSet and that ReplicaSet's Pods (each
        read when the object changed), and, when ``check``, the Pods' container states:
        RolloutFailed for a ``fail_on`` waiting reason."""
        objects = [dep]
        pods: list[dict] = []
        try:
            rs = self._new_replica_set(api, dep)
            if rs is not None:
                objects.append(rs)
                labels = dict((dep["spec"].get("selector") or {}).get("matchLabels") or {})
                pod_hash = (rs["metadata"].get("labels") or {}).get("pod-template-hash")
                if pod_hash:
                    labels["pod-template-hash"] = pod_hash
                    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                    pods = api.items(api.core.list_namespaced_pod, label_selector=selector)
                    objects.extend(pods[:MAX_WATCHED_PODS])
        except (ApiException, ValueError, *UNREACHABLE) as exc:  # the status poll goes on; the deadline holds
            log.debug("cannot list the new ReplicaSet's pods: %s", exc)
        for obj in objects:
            meta = obj.get("metadata") or {}
            uid, version = meta.get("uid"), meta.get("resourceVersion") or ""
            if uid and watched.get(uid) != version:
                watched[uid] = version
                self._stream_events(api, obj, seen, emit)
        if check:
            for pod in pods:
                reason = self._failing(pod)
                if reason:
                    raise RolloutFailed(reason)

    def _failing(self, pod: dict) -> str | None:
        """Why a Pod of the new ReplicaSet cannot come up (a ``fail_on`` waiting reason), or None."""
        status = pod.get("status") or {}
        for kind, statuses in (("init container", status.get("initContainerStatuses")),
                               ("container", status.get("containerStatuses"))):
            for cs in statuses or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in self.target.fail_on:
                    restarts = cs.get("restartCount") or 0
                    last = ((cs.get("lastState") or {}).get("terminated") or {})
                    exited = f"; last exit code {last.get('exitCode')}" if "exitCode" in last else ""
                    return (f"pod {pod['metadata'].get('name')} {kind} {cs.get('name')!r}: {waiting['reason']}: "
                            f"{waiting.get('message') or 'no message'} (restarts {restarts}{exited})")
        return None

    def _stream_events(self, api: _Api, obj: dict, seen: set[str], emit: Emit) -> None:
        """Kubernetes Events of one object (``involvedObject.uid`` field selector) not seen
        yet, as log lines."""
        uid = obj["metadata"]["uid"]
        try:
            items = api.items(api.core.list_namespaced_event, field_selector=f"involvedObject.uid={uid}")
        except (ApiException, ValueError, *UNREACHABLE) as exc:  # events are a nicety; the rollout goes on
            log.debug("cannot list events: %s", exc)
            return
        for ev in items or []:
            involved = ev.get("involvedObject") or {}
            key = (ev.get("metadata") or {}).get("uid") or \
                f"{involved.get('name')}/{ev.get('reason')}/{ev.get('message')}"
            if key in seen:
                continue
            seen.add(key)
            emit(DriverEvent("log", tx("event {object}: {reason}: {message}",
                                       object=f"{involved.get('kind')}/{involved.get('name')}",
                                       reason=ev.get("reason"), message=ev.get("message")),
                             level="warning" if ev.get("type") == "Warning"
                             else "info", data={"k8s_event": ev.get("reason")}))

    # -- the protocol's other methods ----------------------------------------------------------
    def recover(self, app: str, deploy_id: int, current_deploy_id: int | None, emit: Emit) -> int:
        """Nothing to clean up: the Deployment controller owns the pods."""
        return 0

    def instances(self, app: str) -> list[dict]:
        """The ReplicaSets the last deploy of this console saw (see :meth:`_read_instances`).
        Never contacts the cluster: raises DriverUnavailable until a deploy has run."""
        seen = self._seen
        if seen is None:
            raise DriverUnavailable("the cluster is read by deploys only; no deploy of this app has run "
                                    "since the console started")
        return seen

    def _read_instances(self, api: _Api) -> list[dict]:
        """One entry per ReplicaSet with replicas: ``{"id", "name", "version" (image tag),
        "deploy" (revision), "state", "health"}``."""
        dep = self._read(api)
        out = []
        for rs in self._replica_sets(api, dep):
            st = rs.get("status") or {}
            if not (st.get("replicas") or 0):
                continue
            images = [c.get("image", "") for c in rs["spec"]["template"]["spec"].get("containers") or []]
            out.append({"id": rs["metadata"].get("uid", "")[:12], "name": rs["metadata"]["name"],
                        "version": images[0].rsplit(":", 1)[-1] if images else None,
                        "deploy": (rs["metadata"].get("annotations") or {}).get(REVISION),
                        "state": f"{st.get('readyReplicas') or 0}/{st.get('replicas') or 0} ready",
                        "health": None})
        return out
