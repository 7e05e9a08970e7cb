"""A Kubernetes API mock over real HTTP for the kubernetes deploy driver: KMock's
``KubernetesEmulator`` (an in-memory object store speaking the Kubernetes REST
conventions, https://github.com/nolar/kmock) served on a loopback port from its own
thread and event loop, so the official (blocking) client talks real HTTP to it.

KMock stores, lists and merges objects; it runs no controllers. The little the driver
needs from the deployment controller is added here, and nothing more:

- a PATCH of a Deployment carrying ``metadata.resourceVersion`` must match the stored
  one, else 409 Conflict (the API server's optimistic concurrency);
- every accepted PATCH bumps ``resourceVersion``; a changed pod template bumps
  ``generation`` and, like the real controller, either re-labels the ReplicaSet that
  already has that template with the next revision or creates a new ReplicaSet;
- ``status`` never moves by itself: the test advances it (``progress``, ``complete``,
  ``deadline_exceeded``).

``conflicts = N`` makes the next N patches lose a race against another writer (409);
``forbidden = True`` answers every patch 403 like RBAC would.
"""
from __future__ import annotations

import asyncio
import copy
import threading
import time
import uuid
from typing import Any, Callable

import kmock

DEPLOYMENTS = kmock.resource(group="apps", version="v1", plural="deployments")
REPLICASETS = kmock.resource(group="apps", version="v1", plural="replicasets")
REVISION = "deployment.kubernetes.io/revision"


def forbidden() -> kmock.KubernetesError:
    return kmock.KubernetesError(status=403, reason="Forbidden", details={"kind": "deployments"}, message=(
        'deployments.apps "web" is forbidden: User "system:serviceaccount:ci:fleetdeck" cannot patch '
        'resource "deployments" in API group "apps" in the namespace "prod"'))


def conflict() -> kmock.KubernetesError:
    return kmock.KubernetesError(status=409, reason="Conflict", details={"kind": "deployments"}, message=(
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        'please apply your changes to the latest version and try again'))


def _template_key(template: dict) -> Any:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return repr(sorted(t.items(), key=lambda kv: kv[0]))


class _Emulator(kmock.KubernetesEmulator):
    mock: "KubeMock"

    async def _handle(self, request: Any):  # noqa: ANN201 - KMock's signature
        self.mock.requests += 1
        if request.method == "PATCH" and request.resource == DEPLOYMENTS and request.name:
            return await self.mock._patch_deployment(self, request, super()._handle)
        return await super()._handle(request)


class KubeMock:
    """``start()``/``stop()``; ``url`` is ``http://127.0.0.1:PORT``. Sync helpers run on the
    mock's loop and return plain dicts."""

    def __init__(self) -> None:
        self.conflicts = 0
        self.forbidden = False
        self.patches: list[dict] = []  # bodies of the Deployment patches received
        self.requests = 0  # API requests received, of any kind
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True, name="kmock")
        self._rv = 100

    def start(self) -> "KubeMock":
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("KMock did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.emulator = _Emulator()
        self.emulator.mock = self
        for declared in ("apps/v1/deployments", "apps/v1/replicasets", "v1/events"):
            self.emulator.resources[declared] = {}
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def _run(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            async with self.emulator._lock:
                return fn()
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(20)

    # -- objects -----------------------------------------------------------------------
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _obj(self, resource: Any, namespace: str, name: str) -> Any:
        return self.emulator.objects[resource, namespace, name]

    def _replica_sets(self, namespace: str, owner_uid: str) -> list[Any]:
        out = []
        for (resource, ns, _name), obj in self.emulator.objects.items():
            if resource == REPLICASETS and ns == namespace and not obj.deleted:
                owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
                if any(o.get("uid") == owner_uid for o in owners):
                    out.append(obj)
        return out

    def _reconcile(self, namespace: str, name: str, template_changed: bool) -> None:
        """The deployment controller's part: resourceVersion, generation, ReplicaSets."""
        dep = self._obj(DEPLOYMENTS, namespace, name)
        raw = dep.raw
        meta = raw["metadata"]
        patch: dict = {"metadata": {"resourceVersion": self._next_rv()}}
        if template_changed:
            patch["metadata"]["generation"] = int(meta.get("generation") or 1) + 1
            sets = self._replica_sets(namespace, meta["uid"])
            top = max((int(rs.raw["metadata"]["annotations"][REVISION]) for rs in sets), default=0)
            key = _template_key(raw["spec"]["template"])
            same = next((rs for rs in sets if _template_key(rs.raw["spec"]["template"]) == key), None)
            cause = (meta.get("annotations") or {}).get("kubernetes.io/change-cause")
            annotations = {REVISION: str(top + 1)}
            if cause:
                annotations["kubernetes.io/change-cause"] = cause
            patch["metadata"]["annotations"] = {REVISION: str(top + 1)}
            if same is not None:
                same.patch({"metadata": {"annotations": annotations, "resourceVersion": self._next_rv()}})
            else:
                pod_hash = uuid.uuid4().hex[:10]
                template = copy.deepcopy(raw["spec"]["template"])
                template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
                rs_name = f"{name}-{pod_hash}"
                self.emulator.objects[REPLICASETS, namespace, rs_name] = {
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": namespace, "uid": str(uuid.uuid4()),
                                 "resourceVersion": self._next_rv(), "annotations": annotations,
                                 "labels": dict(template["metadata"]["labels"]),
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                                      "uid": meta["uid"], "controller": True}]},
                    "spec": {"replicas": 0, "selector": raw["spec"]["selector"], "template": template},
                    "status": {"replicas": 0}}
        dep.patch(patch)

    async def _patch_deployment(self, emulator: _Emulator, request: Any, handle: Callable) -> Any:
        body = request.data if isinstance(request.data, dict) else {}
        self.patches.append(copy.deepcopy(body))
        if self.forbidden:
            return await emulator._render_error(forbidden())
        async with emulator._lock:
            stored = self._obj(DEPLOYMENTS, request.namespace, request.name)
            if self.conflicts > 0:  # another writer got there first
                self.conflicts -= 1
                stored.patch({"metadata": {"resourceVersion": self._next_rv()}})
            sent = (body.get("metadata") or {}).pop("resourceVersion", None)
            if sent is not None and sent != stored.raw["metadata"].get("resourceVersion"):
                return await emulator._render_error(conflict())
            before = _template_key(stored.raw["spec"]["template"])
        response = await handle(request)  # KMock merges the patch into the stored object
        async with emulator._lock:
            changed = _template_key(self._obj(DEPLOYMENTS, request.namespace, request.name).raw["spec"]["template"]) != before
            self._reconcile(request.namespace, request.name, changed)
        return response

    # -- for tests ---------------------------------------------------------------------
    def seed(self, namespace: str, name: str, image: str, replicas: int = 2, deadline: int = 600) -> None:
        """A Deployment fully rolled out at revision 1 with one container ``app`` running ``image``."""
        def make() -> None:
            labels = {"app": name}
            template = {"metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "app", "image": image}]}}
            self.emulator.objects[DEPLOYMENTS, namespace, name] = {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1,
                             "resourceVersion": self._next_rv(), "annotations": {}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template,
                         "progressDeadlineSeconds": deadline},
                "status": {}}
            self._reconcile(namespace, name, True)
            self._obj(DEPLOYMENTS, namespace, name).patch({"metadata": {"generation": 1}})
        self._run(make)
        self.complete(namespace, name)

    def deployment(self, namespace: str, name: str) -> dict:
        return self._run(lambda: copy.deepcopy(self._obj(DEPLOYMENTS, namespace, name).raw))

    def replica_sets(self, namespace: str, name: str) -> list[dict]:
        def get() -> list[dict]:
            uid = self._obj(DEPLOYMENTS, namespace, name).raw["metadata"]["uid"]
            return [copy.deepcopy(rs.raw) for rs in self._replica_sets(namespace, uid)]
        return self._run(get)

    def wait_for(self, namespace: str, name: str, predicate: Callable[[dict], bool], timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dep = self.deployment(namespace, name)
            if predicate(dep):
                return dep
            time.sleep(0.05)
        raise AssertionError(f"deployment {name} never matched; last: {dep}")

    def _set_status(self, namespace: str, name: str, status: dict, new_rs_replicas: int | None = None) -> None:
        def change() -> None:
            dep = self._obj(DEPLOYMENTS, namespace, name)
            dep.patch({"status": status, "metadata": {"resourceVersion": self._next_rv()}})
            if new_rs_replicas is not None:
                uid, rev = dep.raw["metadata"]["uid"], dep.raw["metadata"]["annotations"][REVISION]
                for rs in self._replica_sets(namespace, uid):
                    n = new_rs_replicas if rs.raw["metadata"]["annotations"][REVISION] == rev else 0
                    rs.patch({"spec": {"replicas": n}, "status": {"replicas": n, "readyReplicas": n}})
        self._run(change)

    def progress(self, namespace: str, name: str, updated: int, available: int, total: int) -> None:
        gen = self.deployment(namespace, name)["metadata"]["generation"]
        self._set_status(namespace, name, {"observedGeneration": gen, "replicas": total, "updatedReplicas": updated,
                                           "availableReplicas": available, "conditions": [
                                               {"type": "Progressing", "status": "True",
                                                "reason": "ReplicaSetUpdated"}]})

    def complete(self, namespace: str, name: str) -> None:
        dep = self.deployment(namespace, name)
        n = dep["spec"]["replicas"]
        self._set_status(namespace, name, {
            "observedGeneration": dep["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
            "readyReplicas": n, "availableReplicas": n,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                           {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]},
            new_rs_replicas=n)

    def deadline_exceeded(self, namespace: str, name: str) -> None:
        dep = self.deployment(namespace, name)
        n = dep["spec"]["replicas"]
        self._set_status(namespace, name, {
            "observedGeneration": dep["metadata"]["generation"], "replicas": n + 1, "updatedReplicas": 1,
            "availableReplicas": n, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": f'ReplicaSet "{name}-x" has timed out progressing.'}]})
