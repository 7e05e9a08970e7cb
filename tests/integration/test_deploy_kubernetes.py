"""The kubernetes driver through the real console, with the official client talking real
HTTP to a KMock Kubernetes API mock (tests/k8s_mock.py) that holds the Deployment and its
ReplicaSets; the test advances their status. Verified only against this mock. Each test
gets a mock and a console of its own and deploys the history it starts from, so the tests
pass alone and in any order."""
from __future__ import annotations

import time

import pytest
import yaml

from tests.harness import ConsoleHarness
from tests.k8s_mock import KubeMock

NS, NAME = "prod", "web"


@pytest.fixture
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("k8s-deploy")
    mock = KubeMock().start()
    try:
        mock.seed(NS, NAME, "registry.example.com/web:1.0", replicas=2)
        kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "mock",
                      "clusters": [{"name": "mock", "cluster": {"server": mock.url}}],
                      "users": [{"name": "ci", "user": {"token": "test-token"}}],
                      "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "ci", "namespace": NS}}]}
        apps = {"web": {"driver": "kubernetes", "timeout": 60, "target": {
            "image": "registry.example.com/web", "deployment": NAME, "kubeconfig_secret": "kube-mock",
            "context": "mock", "poll_interval": 0.05}}}
        harness = ConsoleHarness(root / "console", apps=apps).start()
        s = harness.services
        s.db.run(s.secrets.put, "kube-mock", "kubeconfig", yaml.safe_dump(kubeconfig), "test")
        harness.token = harness.api_token("deployer", "ci")
        harness.mock = mock
        yield harness
        harness.close()
    finally:
        mock.stop()


def start(env, version: str, path: str = "deploys", body: dict | None = None) -> dict:
    resp = env.request("POST", f"/api/v1/apps/web/{path}", body or {"version": version}, token=env.token)
    assert resp.status == 202, resp.body
    return resp.json()


def wait(env, deploy: dict, timeout: float = 60) -> tuple[dict, list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = env.request("GET", f"/api/v1/deploys/{deploy['id']}", token=env.token).json()
        if d["state"] not in ("queued", "running"):
            events = env.request("GET", f"/api/v1/deploys/{d['id']}/events", token=env.token).json()["events"]
            return d, [e["message"] for e in events]
        time.sleep(0.1)
    raise AssertionError(f"deploy {deploy['id']} still {d['state']}")


def image(dep: dict) -> str:
    return dep["spec"]["template"]["spec"]["containers"][0]["image"]


def deployed(env, version: str) -> None:
    """A successful deploy of ``version`` (the history a test starts from)."""
    deploy = start(env, version)
    env.mock.wait_for(NS, NAME, lambda d: image(d) == f"registry.example.com/web:{version}")
    env.mock.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert final["state"] == "succeeded", messages


def test_success_sets_image_annotates_and_follows_the_rollout(env):
    m = env.mock
    deploy = start(env, "2.0")
    m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:2.0")
    m.progress(NS, NAME, updated=1, available=1, total=3)
    time.sleep(0.3)
    m.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert final["state"] == "succeeded", messages
    assert "waiting for rollout to finish: 1 out of 2 new replicas have been updated" in messages
    assert f"deployment {NAME!r} successfully rolled out" in messages
    dep = m.deployment(NS, NAME)
    assert dep["metadata"]["annotations"]["kubernetes.io/change-cause"] == f"fleetdeck deploy #{deploy['id']}: web 2.0"
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    # the patch carried the resourceVersion it was built from
    assert m.patches[-1]["metadata"]["resourceVersion"]


def test_progress_deadline_exceeded_is_undone_automatically(env):
    m = env.mock
    deployed(env, "2.0")  # revision 2
    deploy = start(env, "3.0")
    m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:3.0")
    m.deadline_exceeded(NS, NAME)
    # the driver copies revision 2's template back (kubectl rollout undo); the controller re-labels it
    dep = m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:2.0")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    m.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert final["state"] == "rolled_back", messages
    assert "exceeded its progress deadline" in final["error"]
    assert "revision 2 serves again" in messages
    revisions = {rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]:
                 rs["spec"]["template"]["spec"]["containers"][0]["image"] for rs in m.replica_sets(NS, NAME)}
    assert revisions == {"1": "registry.example.com/web:1.0", "3": "registry.example.com/web:3.0",
                         "4": "registry.example.com/web:2.0"}
    assert "pod-template-hash" not in m.deployment(NS, NAME)["spec"]["template"]["metadata"]["labels"]


def test_conflict_409_is_retried(env):
    m = env.mock
    m.conflicts = 1
    before = len(m.patches)
    deploy = start(env, "4.0")
    m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:4.0")
    m.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert final["state"] == "succeeded", messages
    assert len(m.patches) - before == 2
    assert any(msg.startswith("409 Conflict") and "retrying (1/5)" in msg for msg in messages)


def test_forbidden_403_is_reported(env):
    m = env.mock
    before = image(m.deployment(NS, NAME))
    m.forbidden = True
    try:
        final, messages = wait(env, start(env, "5.0"))
    finally:
        m.forbidden = False
    assert final["state"] == "failed"
    assert final["error"].startswith("Kubernetes API refused: 403 Forbidden: deployments.apps \"web\" is forbidden")
    assert image(m.deployment(NS, NAME)) == before == "registry.example.com/web:1.0"
    assert not any("rolling back" in msg for msg in messages)


def test_manual_rollback_to_a_chosen_revision(env):
    m = env.mock
    deployed(env, "2.0")  # revision 2
    deployed(env, "4.0")  # revision 3
    deploy = start(env, "", "rollback", {"to": "2.0"})
    dep = m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:2.0")
    m.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert final["state"] == "succeeded" and final["kind"] == "rollback", messages
    assert any(msg.startswith("rolling back to revision 2 (registry.example.com/web:2.0)") for msg in messages)
    # kubectl rollout undo semantics: revision 2's template comes back as the newest revision
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"


def test_undo_replaces_the_pod_template_whole(env):
    """kubectl rollout undo replaces spec.template: a field only the newer template has
    (here a nodeSelector and a template annotation someone added during the rollout) is
    gone after the automatic undo to the previous revision."""
    m = env.mock
    deployed(env, "2.0")  # revision 2
    deploy = start(env, "3.0")
    m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:3.0")
    m.edit_template(NS, NAME, lambda t: (t["spec"].__setitem__("nodeSelector", {"disk": "ssd"}),
                                         t["metadata"].setdefault("annotations", {}).__setitem__("team", "blue")))
    assert m.deployment(NS, NAME)["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}
    m.deadline_exceeded(NS, NAME)
    dep = m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:2.0")
    m.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert final["state"] == "rolled_back", messages
    template = dep["spec"]["template"]
    assert "nodeSelector" not in template["spec"]
    assert "team" not in (template["metadata"].get("annotations") or {})
    assert template["metadata"]["labels"] == {"app": NAME}
    # sent as a JSON patch guarded by the resourceVersion, as kubectl's rollbacker does
    undo = m.patches[-1]
    assert m.patch_types[-1].startswith("application/json-patch+json")
    assert undo[0]["op"] == "test" and undo[0]["path"] == "/metadata/resourceVersion"
    assert {"op": "replace", "path": "/spec/template"} == {k: undo[1][k] for k in ("op", "path")}


def test_manual_rollback_replaces_the_template(env):
    m = env.mock
    deployed(env, "2.0")  # revision 2
    deployed(env, "3.0")  # revision 3
    m.edit_template(NS, NAME, lambda t: t["spec"]["containers"][0].__setitem__("args", ["--debug"]))  # revision 4
    deploy = start(env, "", "rollback", {"to": "2.0"})
    dep = m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:2.0")
    m.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert final["state"] == "succeeded", messages
    assert dep["spec"]["template"]["spec"]["containers"] == [{"name": "app", "image": "registry.example.com/web:2.0"}]


@pytest.mark.parametrize("reason,message", [
    ("ImagePullBackOff", 'Back-off pulling image "registry.example.com/web:9.9"'),
    ("ErrImagePull", 'rpc error: code = NotFound desc = failed to pull "registry.example.com/web:9.9": not found'),
    ("CrashLoopBackOff", "back-off 10s restarting failed container=app pod=web-x"),
])
def test_a_failing_new_pod_fails_fast_and_is_undone(env, reason, message):
    m = env.mock
    deployed(env, "2.0")  # revision 2
    old_rs = m.newest_replica_set(NS, NAME)
    # noise the driver must not act on: another app's crashing pod, an old ReplicaSet's pod
    m.pods(NS, old_rs, 1, waiting=("CrashLoopBackOff", "old pod crashing"))
    m.seed(NS, "other", "registry.example.com/other:1", replicas=1)
    m.pods(NS, m.newest_replica_set(NS, "other"), 1, waiting=("ImagePullBackOff", "other app"))
    m.event(NS, "Deployment", "other", "Noise", "an event of another app")
    started = time.monotonic()
    deploy = start(env, "9.9")
    m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:9.9")
    m.progress(NS, NAME, updated=1, available=2, total=3)
    new_rs = m.newest_replica_set(NS, NAME)
    pod = m.pods(NS, new_rs, 1, waiting=(reason, message), restarts=3 if reason == "CrashLoopBackOff" else 0)[0]
    m.event(NS, "Pod", pod, "Failed", f"Error: {reason}")
    # the undo to revision 2 happens at once (the progress deadline is 600 s)
    m.wait_for(NS, NAME, lambda d: image(d) == "registry.example.com/web:2.0", timeout=20)
    m.complete(NS, NAME)
    final, messages = wait(env, deploy)
    assert time.monotonic() - started < 30
    assert final["state"] == "rolled_back", messages
    assert final["error"] == f"pod {pod} container 'app': {reason}: {message} " \
                             f"(restarts {3 if reason == 'CrashLoopBackOff' else 0})"
    assert f"event Pod/{pod}: Failed: Error: {reason}" in messages
    assert not any("another app" in msg or "other app" in msg or "old pod" in msg for msg in messages)
    # every Pod and Event list carried a selector: never the whole namespace
    pod_lists = [q for plural, q in m.lists if plural == "pods"]
    event_lists = [q for plural, q in m.lists if plural == "events"]
    assert pod_lists and all(q.get("labelSelector") == f"app={NAME},pod-template-hash={new_rs.rsplit('-', 1)[1]}"
                             or "pod-template-hash=" in q.get("labelSelector", "") for q in pod_lists)
    assert event_lists and all(q.get("fieldSelector", "").startswith("involvedObject.uid=") for q in event_lists)


def test_a_paused_deployment_is_refused_before_anything_changes(env):
    m = env.mock
    m.pause(NS, NAME)
    before = m.deployment(NS, NAME)
    patches = len(m.patches)
    final, messages = wait(env, start(env, "6.0"))
    assert final["state"] == "failed", messages
    assert final["error"] == (f"deployment {NS}/{NAME} is paused (spec.paused): a rollout would not start; nothing "
                              f"was changed. Resume it first: kubectl rollout resume deployment/{NAME} -n {NS}")
    assert len(m.patches) == patches
    assert m.deployment(NS, NAME) == before


def test_force_is_refused_for_an_app_that_is_not_ssh(env):
    resp = env.request("POST", "/api/v1/apps/web/deploys", {"version": "7.0", "force": True}, token=env.token)
    assert resp.status == 422 and resp.json()["error"]["code"] == "invalid_force", resp.body
    assert not env.mock.patches
