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

Patches follow their ``Content-Type`` as the API server does: a JSON patch (RFC 6902,
``application/json-patch+json``, its ``test`` ops included) is applied op by op, so a
``replace`` of ``/spec/template`` replaces it whole; a strategic merge or merge patch
merges mappings into the stored object (KMock's merge), so a field the patch does not
name survives. ``patch_types`` records each patch's content type.

Lists of ReplicaSets, Pods and Events honour ``labelSelector`` (``k=v``, ``k==v``,
``k!=v``, comma-separated) and ``fieldSelector`` (dotted paths with ``=``/``==``/``!=``),
as the API server does; ``lists`` records ``(plural, query)`` of every list request so a
test can show what the driver asked for. ``pods``/``event`` add the objects a test needs.
"""
from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from typing import Any, Callable

import aiohttp.web
import kmock

DEPLOYMENTS = kmock.resource(group="apps", version="v1", plural="deployments")
REPLICASETS = kmock.resource(group="apps", version="v1", plural="replicasets")
PODS = kmock.resource(group="", version="v1", plural="pods")
EVENTS = kmock.resource(group="", version="v1", plural="events")
SELECTABLE = {REPLICASETS: "ReplicaSetList", PODS: "PodList", EVENTS: "EventList"}
REVISION = "deployment.kubernetes.io/revision"


def forbidden() -> kmock.KubernetesError:
    return kmock.KubernetesError(status=403, reason="Forbidden", details={"kind": "deployments"}, message=(
        'deployments.apps "web" is forbidden: User "system:serviceaccount:ci:fleetdeck" cannot patch '
        'resource "deployments" in API group "apps" in the namespace "prod"'))


def conflict() -> kmock.KubernetesError:
    return kmock.KubernetesError(status=409, reason="Conflict", details={"kind": "deployments"}, message=(
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        'please apply your changes to the latest version and try again'))


def _requirements(text: str) -> list[tuple[str, str, str]]:
    """``k=v,k!=v`` -> ``[(key, op, value)]``; ValueError for other selector forms."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                out.append((key.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise ValueError(f"unsupported selector requirement {part!r}")
    return out


def _field(obj: dict, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def selected(obj: dict, labels: str, fields: str) -> bool:
    """Whether ``obj`` matches a labelSelector and a fieldSelector (equality forms)."""
    own = (obj.get("metadata") or {}).get("labels") or {}
    for key, op, value in _requirements(labels):
        if (own.get(key) == value) != (op == "="):
            return False
    for key, op, value in _requirements(fields):
        if (_field(obj, key) == value) != (op == "="):
            return False
    return True


def _deep_merge(old: dict, new: dict) -> dict:
    out = copy.deepcopy(old)
    for key, value in new.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def strategic(stored: Any, patch: dict) -> None:
    """Rewrite ``patch`` in place so that KMock's merge of it gives a strategic merge patch's
    result: lists of named mappings (containers, env, volumes: ``patchMergeKey`` ``name``)
    merge item by item, keeping stored items the patch does not name."""
    if not isinstance(stored, dict):
        return
    for key, value in patch.items():
        old = stored.get(key)
        if isinstance(value, dict):
            strategic(old, value)
        elif isinstance(value, list) and isinstance(old, list) and value and old and all(
                isinstance(i, dict) and "name" in i for i in value + old):
            by_name = {i["name"]: i for i in value}
            merged = []
            for item in old:
                if item["name"] in by_name:
                    new = by_name.pop(item["name"])
                    strategic(item, new)
                    merged.append(_deep_merge(item, new))
                else:
                    merged.append(copy.deepcopy(item))
            patch[key] = merged + list(by_name.values())


def _template_key(template: dict) -> Any:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return json.dumps(t, sort_keys=True)


class _Emulator(kmock.KubernetesEmulator):
    mock: "KubeMock"

    async def _handle(self, request: Any):  # noqa: ANN201 - KMock's signature
        self.mock.requests += 1
        if request.method == "PATCH" and request.resource == DEPLOYMENTS and request.name:
            return await self.mock._patch_deployment(self, request, super()._handle)
        if request.method == "GET" and request.resource in SELECTABLE and request.name is None \
                and request.params.get("watch") not in ("true", "1"):
            return await self.mock._list(self, request)
        return await super()._handle(request)


class KubeMock:
    """``start()``/``stop()``; ``url`` is ``http://127.0.0.1:PORT``. Sync helpers run on the
    mock's loop and return plain dicts."""

    def __init__(self) -> None:
        self.conflicts = 0
        self.forbidden = False
        self.patches: list[Any] = []  # bodies of the Deployment patches received (dict, or list for a JSON patch)
        self.patch_types: list[str] = []  # their Content-Type
        self.lists: list[tuple[str, dict]] = []  # (plural, query) of every list request
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
        for declared in ("apps/v1/deployments", "apps/v1/replicasets", "v1/events", "v1/pods"):
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

    async def _list(self, emulator: _Emulator, request: Any) -> Any:
        """A list filtered by ``labelSelector`` and ``fieldSelector``, as the API server's."""
        self.lists.append((request.resource.plural, dict(request.params)))
        labels, fields = request.params.get("labelSelector", ""), request.params.get("fieldSelector", "")
        try:
            _requirements(labels), _requirements(fields)
        except ValueError as exc:
            return await emulator._render_error(kmock.KubernetesError(status=400, reason="BadRequest",
                                                                      message=str(exc)))
        async with emulator._lock:
            items = [copy.deepcopy(obj.raw) for (resource, ns, _name), obj in emulator.objects.items()
                     if resource == request.resource and (request.namespace is None or ns == request.namespace)
                     and not obj.deleted and selected(obj.raw, labels, fields)]
        return aiohttp.web.json_response({"apiVersion": "v1" if request.resource.group == "" else "apps/v1",
                                          "kind": SELECTABLE[request.resource],
                                          "metadata": {"resourceVersion": str(self._rv)}, "items": items})

    async def _patch_deployment(self, emulator: _Emulator, request: Any, handle: Callable) -> Any:
        body = request.data if isinstance(request.data, (dict, list)) else {}
        self.patches.append(copy.deepcopy(body))
        self.patch_types.append(request.headers.get("Content-Type", ""))
        if self.forbidden:
            return await emulator._render_error(forbidden())
        async with emulator._lock:
            stored = self._obj(DEPLOYMENTS, request.namespace, request.name)
            if self.conflicts > 0:  # another writer got there first
                self.conflicts -= 1
                stored.patch({"metadata": {"resourceVersion": self._next_rv()}})
            if isinstance(body, list):  # a JSON patch: its `test` of the resourceVersion is the precondition
                sent = next((op.get("value") for op in body if op.get("op") == "test"
                             and op.get("path") == "/metadata/resourceVersion"), None)
            else:
                sent = (body.get("metadata") or {}).pop("resourceVersion", None)
            if sent is not None and sent != stored.raw["metadata"].get("resourceVersion"):
                return await emulator._render_error(conflict())
            if isinstance(body, dict) and "strategic-merge-patch" in self.patch_types[-1]:
                strategic(stored.raw, request.data)
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

    def edit_template(self, namespace: str, name: str, change: Callable[[dict], None]) -> None:
        """Someone else edits the pod template (``kubectl edit``): ``change`` mutates a copy,
        the controller makes a new revision for it."""
        def edit() -> None:
            dep = self._obj(DEPLOYMENTS, namespace, name)
            template = copy.deepcopy(dep.raw["spec"]["template"])
            change(template)
            dep.update(dict(dep.raw, spec=dict(dep.raw["spec"], template=template)))
            self._reconcile(namespace, name, True)
        self._run(edit)

    def pause(self, namespace: str, name: str) -> None:
        """``kubectl rollout pause``: ``spec.paused: true``."""
        self._run(lambda: self._obj(DEPLOYMENTS, namespace, name).patch(
            {"spec": {"paused": True}, "metadata": {"resourceVersion": self._next_rv()}}))

    def pods(self, namespace: str, owner: str, count: int, waiting: tuple[str, str] | None = None,
             restarts: int = 0, ready: bool = False, labels: dict | None = None) -> list[str]:
        """``count`` Pods of the ReplicaSet ``owner`` (its name), their container ``app``
        waiting with ``(reason, message)`` or running; returns their names."""
        def make() -> list[str]:
            rs = self._obj(REPLICASETS, namespace, owner).raw
            pod_labels = dict(labels if labels is not None else rs["spec"]["template"]["metadata"]["labels"])
            names = []
            for _ in range(count):
                pod = f"{owner}-{uuid.uuid4().hex[:5]}"
                state = {"waiting": {"reason": waiting[0], "message": waiting[1]}} if waiting else \
                    {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
                self.emulator.objects[PODS, namespace, pod] = {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod, "namespace": namespace, "uid": str(uuid.uuid4()),
                                 "resourceVersion": self._next_rv(), "labels": pod_labels,
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                                      "uid": rs["metadata"]["uid"], "controller": True}]},
                    "spec": copy.deepcopy(rs["spec"]["template"]["spec"]),
                    "status": {"phase": "Pending" if waiting else "Running", "containerStatuses": [
                        {"name": "app", "ready": ready, "restartCount": restarts, "state": state,
                         "image": rs["spec"]["template"]["spec"]["containers"][0]["image"]}]}}
                names.append(pod)
            return names
        return self._run(make)

    def event(self, namespace: str, kind: str, name: str, reason: str, message: str,
              type_: str = "Warning") -> None:
        """An Event about the object ``kind``/``name`` (its uid looked up when it exists)."""
        resource = {"Pod": PODS, "ReplicaSet": REPLICASETS, "Deployment": DEPLOYMENTS}.get(kind)

        def make() -> None:
            key = (resource, namespace, name)
            uid = self.emulator.objects[key].raw["metadata"]["uid"] if key in self.emulator.objects else ""
            ev = f"{name}.{uuid.uuid4().hex[:8]}"
            self.emulator.objects[EVENTS, namespace, ev] = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": ev, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "resourceVersion": self._next_rv()},
                "involvedObject": {"kind": kind, "name": name, "namespace": namespace, "uid": uid},
                "reason": reason, "message": message, "type": type_}
        self._run(make)

    def newest_replica_set(self, namespace: str, name: str) -> str:
        """The name of the ReplicaSet of the Deployment's current revision."""
        rev = self.deployment(namespace, name)["metadata"]["annotations"][REVISION]
        return next(rs["metadata"]["name"] for rs in self.replica_sets(namespace, name)
                    if rs["metadata"]["annotations"][REVISION] == rev)
