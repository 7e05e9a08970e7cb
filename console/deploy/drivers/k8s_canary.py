"""The canary stage of a Kubernetes deploy: a second Deployment beside the app's, as in
Kubernetes' own canary pattern (https://kubernetes.io/docs/concepts/workloads/management/#canary-deployments).

``<deployment>-canary`` runs ``gate.size(spec.replicas)`` pods of the app's pod template
with the new image. Its pods carry the template's labels, so the Services that select
the app's pods send them their share of traffic, plus ``fleetdeck.io/canary: "true"``,
which is also in its selector so that neither Deployment's ReplicaSets adopt the
other's pods. Once the canary Deployment is rolled out (``kubectl rollout status``
rules), the analysis runs; the app's own Deployment is only changed after it passed.
The canary Deployment is deleted when the deploy ends, whatever the outcome (a
leftover of an interrupted deploy is replaced by the next one).

Blocking, on the driver's thread, like the driver.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from console.i18n import message_of, tx
from console.deploy.drivers.base import CancelToken, Cancelled, DriverEvent, Emit, Gate, GateFailed

CANARY_LABEL = "fleetdeck.io/canary"
MANAGED_BY = {"app.kubernetes.io/managed-by": "fleetdeck"}


class CanaryDeployment:
    """``run(cancel)`` creates the canary Deployment, waits for it and runs ``gate``;
    ``remove()`` deletes it. ``api`` is the driver's ``_Api`` (``apps``, ``namespace``,
    ``timeout``, ``json``); ``dep`` the app's Deployment as read (API JSON)."""

    def __init__(self, api: Any, dep: dict, container_index: int, image: str, gate: Gate, emit: Emit,
                 poll_interval: float) -> None:
        self.api = api
        self.dep = dep
        self.name = f"{dep['metadata']['name']}-canary"
        self.container_index = container_index
        self.image = image
        self.gate = gate
        self.emit = emit
        self.poll_interval = poll_interval
        self.created = False

    def body(self) -> dict:
        spec = self.dep["spec"]
        template = copy.deepcopy(spec["template"])
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.pop("pod-template-hash", None)
        labels[CANARY_LABEL] = "true"
        template["spec"]["containers"][self.container_index]["image"] = self.image
        selector = dict((spec.get("selector") or {}).get("matchLabels") or {})
        selector[CANARY_LABEL] = "true"
        replicas = self.gate.size(int(spec.get("replicas", 1)))
        body: dict = {"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": self.name, "namespace": self.api.namespace,
                                   "labels": {**MANAGED_BY, CANARY_LABEL: "true"}},
                      "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template}}
        if spec.get("progressDeadlineSeconds"):
            body["spec"]["progressDeadlineSeconds"] = spec["progressDeadlineSeconds"]
        return body

    def run(self, cancel: CancelToken) -> None:
        """Raises GateFailed (the analysis failed, or the canary pods never became
        available), Cancelled, ApiException."""
        from console.deploy.drivers.kubernetes import RolloutFailed, rollout_status

        body = self.body()
        self.emit(DriverEvent("step", tx("canary: deployment {deployment} with {replicas} replica(s) of {image}",
                                         deployment=self.name, replicas=body["spec"]["replicas"], image=self.image),
                              step="canary deployment", state="running",
                              data={"deployment": self.name, "replicas": body["spec"]["replicas"]}))
        self._create(body)
        deadline = time.monotonic() + float(body["spec"].get("progressDeadlineSeconds") or 600)
        last = None
        while True:
            dep = self.api.json(self.api.apps.read_namespaced_deployment(self.name, self.api.namespace,
                                                                         _request_timeout=self.api.timeout))
            try:
                done, message = rollout_status(dep)
            except RolloutFailed as exc:
                raise GateFailed(tx("canary pods not available: {error}", error=message_of(exc))) from None
            if message != last:
                last = message
                self.emit(DriverEvent("log", tx("canary: {message}", message=message)))
            if done:
                break
            if time.monotonic() > deadline:
                raise GateFailed(tx("canary pods not available in time: {message}", message=message))
            if cancel.wait(self.poll_interval):
                raise Cancelled(cancel.reason)
        self.emit(DriverEvent("step", tx("canary deployment {deployment} available", deployment=self.name),
                              step="canary deployment",
                              state="succeeded"))
        self.gate(self.emit, cancel)

    def _create(self, body: dict) -> None:
        apps = self.api.apps
        try:
            apps.create_namespaced_deployment(self.api.namespace, body, _request_timeout=self.api.timeout)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.emit(DriverEvent("log", tx("replacing {deployment} left by an earlier deploy", deployment=self.name),
                                  level="warning"))
            apps.delete_namespaced_deployment(self.name, self.api.namespace, _request_timeout=self.api.timeout)
            apps.create_namespaced_deployment(self.api.namespace, body, _request_timeout=self.api.timeout)
        self.created = True

    def remove(self) -> None:
        """Delete the canary Deployment (its pods go with it); an API error is logged, not raised."""
        if not self.created:
            return
        try:
            self.api.apps.delete_namespaced_deployment(
                self.name, self.api.namespace, body=k8s.V1DeleteOptions(propagation_policy="Background"),
                _request_timeout=self.api.timeout)
            self.emit(DriverEvent("log", tx("canary deployment {deployment} deleted", deployment=self.name),
                                  data={"deployment": self.name}))
        except ApiException as exc:
            if exc.status != 404:
                self.emit(DriverEvent("log", tx("cannot delete canary deployment {deployment}: {error}; delete it by hand",
                                                deployment=self.name, error=f"{exc.status} {exc.reason}"),
                                      level="error"))
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            self.emit(DriverEvent("log", tx("cannot delete canary deployment {deployment}: {error}; delete it by hand",
                                            deployment=self.name, error=str(exc)), level="error"))
        self.created = False
