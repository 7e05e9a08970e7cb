"""The deploy pages in headless Chromium with a Docker app (the real dockerd, busybox images
FROM scratch), an SSH app (a real sshd, tests/sshd.py) and a Kubernetes app (the KMock API
server, tests/k8s_mock.py) configured together: the list loads and shows each driver's
target; a viewer sees no action; a deployer limited to the Docker app deploys, rolls back
and cancels it from the pages, each after a confirmation, and sees the API's refusals in
the dialog; an admin deploys the SSH and the Kubernetes app from the page and rolls each
back to the older of two earlier versions; the pages stay within the viewport on a desktop
and on a phone."""
from __future__ import annotations

import re
import time
import uuid

import pytest
import yaml

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness
from tests.k8s_mock import KubeMock

DOCKER = run_app("webui")  # this run's app: the driver never touches a user's containers
SSH, K8S = "blog", "api"
NS, DEPLOYMENT = "prod", "api-server"
DEPLOY_PAGE = re.compile(r"/deploys/\d+$")
DEPLOY_MS = 60_000  # how long an expectation waits for a deploy against the real dockerd to end


def wait_final(console, token: str, deploy_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (d := console.request("GET", f"/api/v1/deploys/{deploy_id}", token=token).json())["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, d
        time.sleep(0.2)
    return d


def api_deploy(console, app: str, version: str) -> dict:
    resp = console.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version}, token=console.token)
    assert resp.status == 202, resp.body
    return resp.json()


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_client, docker_images, sshd):
    root = tmp_path_factory.mktemp("deploy-actions")
    mock = KubeMock().start()
    remove_run_containers(docker_client, DOCKER)
    console = None
    try:
        mock.seed(NS, DEPLOYMENT, "registry.example.com/api:1.0", replicas=2)
        kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "mock",
                      "clusters": [{"name": "mock", "cluster": {"server": mock.url}}],
                      "users": [{"name": "ci", "user": {"token": "test-token"}}],
                      "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "ci", "namespace": NS}}]}
        inventory = {"hosts": {"box": {"address": "127.0.0.1", "port": sshd.port, "user": sshd.user, "key": "box-key"}}}
        apps = {
            DOCKER: {"target": {"image": docker_images, "stop_timeout": 1, "labels": run_labels()}, "timeout": 60},
            SSH: {"driver": "ssh", "timeout": 60, "target": {"hosts": ["box"], "deploy_to": str(root / "srv" / "blog")}},
            K8S: {"driver": "kubernetes", "timeout": 60, "target": {
                "image": "registry.example.com/api", "deployment": DEPLOYMENT, "kubeconfig_secret": "kube-mock",
                "context": "mock", "poll_interval": 0.05}},
        }
        console = ConsoleHarness(root / "console", apps=apps, inventory=inventory).start()
        s = console.services
        s.db.run(s.secrets.put, "kube-mock", "kubeconfig", yaml.safe_dump(kubeconfig), "test")
        s.db.run(s.secrets.put, "box-key", "ssh_key", sshd.client_key.read_text(), "test")
        key_type, key_b64 = sshd.known_hosts_line.split()[1:3]
        s.db.run(s.known_hosts.trust, s.inventory.hosts["box"], key_type, key_b64, "test")
        console.token = console.api_token("admin", "setup")
        # A history on every driver: Docker 2.0 then 1.0, SSH 1.0, Kubernetes 2.0.
        for app, version in ((DOCKER, "2.0"), (DOCKER, "1.0"), (SSH, "1.0")):
            done = wait_final(console, console.token, api_deploy(console, app, version)["id"])
            assert done["state"] == "succeeded", done
        k8s = api_deploy(console, K8S, "2.0")
        mock.wait_for(NS, DEPLOYMENT, k8s_image("2.0"))
        mock.complete(NS, DEPLOYMENT)
        assert wait_final(console, console.token, k8s["id"])["state"] == "succeeded"
        console.root, console.mock = root, mock
        yield console
    finally:
        if console is not None:
            console.close()
        mock.stop()
        remove_run_containers(docker_client, DOCKER)


@pytest.fixture
def page_timeout_ms() -> int:
    return 30_000  # deploys against a real dockerd take longer than a page load


def user(console, role: str, apps: list[str] | None = None) -> tuple[str, str]:
    name, password = f"{role}-{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    console.services.db.run(console.services.users.create, name, password, role, apps)
    return name, password


def log_in_as(page, console, name: str, password: str) -> None:  # noqa: ANN001
    page.goto(console.url + "/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_url(console.url + "/")


def app_row(page, app: str):  # noqa: ANN001, ANN201
    return page.locator(f'#apps-table tbody tr[data-app="{app}"]')


def latest(console, app: str) -> dict:
    return console.request("GET", f"/api/v1/deploys?app={app}&limit=1", token=console.token).json()["deploys"][0]


def test_the_list_shows_every_driver_with_its_target(env, page):
    errors = PageErrors(page)
    log_in_as(page, env, *user(env, "viewer"))
    page.goto(f"{env.url}/deploys")
    expect(page.locator("#apps-table tbody tr")).to_have_count(3)
    docker, ssh, k8s = app_row(page, DOCKER), app_row(page, SSH), app_row(page, K8S)
    expect(docker).to_contain_text("(1 replicas)")
    expect(docker).to_contain_text("rolling")
    expect(ssh).to_contain_text(f"{env.root / 'srv' / 'blog'} on box")
    expect(ssh).to_contain_text("serial")
    expect(k8s).to_contain_text(f"{DEPLOYMENT} (context namespace) (registry.example.com/api)")
    # Current: the last succeeded deploy of each (the history other tests may have added to)
    for row, app in ((docker, DOCKER), (ssh, SSH), (k8s, K8S)):
        succeeded = [d for d in env.request("GET", f"/api/v1/deploys?app={app}", token=env.token).json()["deploys"]
                     if d["state"] == "succeeded"]
        expect(row.locator("td").nth(4)).to_have_text(succeeded[0]["version"])
    for app in (DOCKER, SSH, K8S):  # the history holds each app's deploys (tests may run in any order)
        expect(page.locator("#deploys-table tbody tr", has_text=app).first).to_be_visible()
    # styled like the other tables (app.css .data-table), not left to the browser's defaults
    assert page.locator("#apps-table").evaluate("t => getComputedStyle(t).borderCollapse") == "collapse"
    errors.assert_clean()


def test_a_viewer_sees_no_action_and_a_limited_deployer_only_its_apps(env, page):
    errors = PageErrors(page)
    log_in_as(page, env, *user(env, "viewer"))
    page.goto(f"{env.url}/deploys")
    expect(app_row(page, DOCKER)).to_contain_text("1.0")
    assert page.locator("#deploys-page button").count() == 0
    assert page.locator("#apps-table th", has_text="Actions").count() == 0
    assert page.locator("#deploy-dialog, #confirm-dialog").count() == 0
    docker_deploy = next(d for d in env.request("GET", f"/api/v1/deploys?app={DOCKER}", token=env.token).json()[
        "deploys"] if d["kind"] == "deploy" and d["previous_version"])  # a deployer would see "Roll back"
    page.goto(f"{env.url}/deploys/{docker_deploy['id']}")
    expect(page.locator("#deploy-state")).to_have_text(docker_deploy["state"])
    expect(page.locator("#deploy-log li").first).to_be_visible()  # the page has read what it reads
    assert page.locator("#rollback, #cancel-deploy, #confirm-dialog").count() == 0
    errors.assert_clean()

    page.goto("about:blank")  # the deploy page polls no more once the session is gone
    page.context.clear_cookies()
    log_in_as(page, env, *user(env, "deployer", [DOCKER]))
    page.goto(f"{env.url}/deploys")
    expect(app_row(page, DOCKER).locator("button.deploy-app")).to_be_visible()
    expect(app_row(page, DOCKER).locator("button.rollback-app")).to_be_visible()
    for other in (SSH, K8S):
        expect(app_row(page, other)).to_contain_text(other)
        assert app_row(page, other).locator("button").count() == 0
    page.goto(f"{env.url}/deploys/{latest(env, SSH)['id']}")
    expect(page.locator("#deploy-state")).to_have_text("succeeded", timeout=DEPLOY_MS)
    expect(page.locator("#deploy-log li").first).to_be_visible()
    assert page.locator("#cancel-deploy, #confirm-dialog").count() == 0
    errors.assert_clean()


def test_a_deployer_deploys_and_rolls_back_from_the_page(env, page):
    errors = PageErrors(page)
    name, password = user(env, "deployer", [DOCKER])
    log_in_as(page, env, name, password)
    page.goto(f"{env.url}/deploys")
    row = app_row(page, DOCKER)
    row.locator("button.deploy-app").click()
    expect(page.locator("#deploy-dialog")).to_be_visible()
    # the version input offers the app's recent versions
    expect(page.locator("#deploy-versions option[value='1.0']")).to_have_count(1)
    assert page.get_attribute("#deploy-version", "list") == "deploy-versions"

    # a version the API refuses: its message in the confirmation dialog, nothing started
    before = latest(env, DOCKER)["id"]
    page.fill("#deploy-version", "no such/tag")
    page.click("#deploy-dialog-submit")
    page.click("#confirm-yes")
    expect(page.locator("#confirm-error")).to_contain_text("HTTP 422")
    assert latest(env, DOCKER)["id"] == before
    page.click("#confirm-no")
    expect(page.locator("#confirm-dialog")).to_be_hidden()

    page.fill("#deploy-version", "2.0")
    page.fill("#deploy-reason", "from the page")
    page.click("#deploy-dialog-submit")
    expect(page.locator("#confirm-message")).to_have_text(f"Deploy {DOCKER} to 2.0 (now 1.0).")
    assert latest(env, DOCKER)["id"] == before  # nothing before the confirmation
    page.click("#confirm-yes")
    page.wait_for_url(DEPLOY_PAGE)
    expect(page.locator("#deploy-state")).to_have_text("succeeded", timeout=DEPLOY_MS)
    deployed = latest(env, DOCKER)
    assert page.url == f"{env.url}/deploys/{deployed['id']}" and deployed["id"] > before
    assert (deployed["kind"], deployed["version"], deployed["requested_by"], deployed["reason"]) == (
        "deploy", "2.0", f"user:{name}", "from the page")

    page.goto(f"{env.url}/deploys")
    expect(row.locator("td").nth(4)).to_have_text("2.0")
    row.locator("button.rollback-app").click()
    # any earlier version that succeeded, not the current one
    expect(page.locator("#rollback-version option")).to_have_count(1)
    expect(page.locator("#rollback-version")).to_have_value("1.0")
    page.click("#deploy-dialog-submit")
    expect(page.locator("#confirm-message")).to_contain_text(f"Roll back {DOCKER} to 1.0 (now 2.0)")
    page.click("#confirm-yes")
    page.wait_for_url(lambda url: DEPLOY_PAGE.search(url) is not None and not url.endswith(f"/{deployed['id']}"))
    expect(page.locator("#deploy-state")).to_have_text("succeeded", timeout=DEPLOY_MS)
    back = latest(env, DOCKER)
    assert page.url == f"{env.url}/deploys/{back['id']}"
    assert (back["kind"], back["version"], back["requested_by"]) == ("rollback", "1.0", f"user:{name}")
    # the refused version is the only failed request (Chromium logs it as a console error)
    refused = [m for m in errors.console if "status of 422" in m and f"/api/v1/apps/{DOCKER}/deploys" in m]
    assert len(refused) == 1 == len(errors.console), errors.console
    errors.console.clear()
    errors.assert_clean()


def from_the_list(page, console, app: str, action: str, fill, confirm: str) -> None:  # noqa: ANN001
    """Open ``app``'s ``action`` (deploy, rollback) dialog on the list, ``fill(page)`` it,
    submit, check the confirmation says ``confirm`` and confirm; on the new deploy's page."""
    page.goto(f"{console.url}/deploys")
    app_row(page, app).locator(f"button.{action}-app").click()
    fill(page)
    page.click("#deploy-dialog-submit")
    expect(page.locator("#confirm-message")).to_contain_text(confirm)
    page.click("#confirm-yes")
    page.wait_for_url(DEPLOY_PAGE)


def deploy_from_the_list(page, console, app: str, version: str) -> None:  # noqa: ANN001
    from_the_list(page, console, app, "deploy", lambda p: p.fill("#deploy-version", version),
                  f"Deploy {app} to {version}")


def k8s_image(version: str):  # noqa: ANN201
    """A predicate of the mock's Deployment: its template runs the app's ``version``."""
    return lambda d: d["spec"]["template"]["spec"]["containers"][0]["image"] == f"registry.example.com/api:{version}"


def test_an_admin_deploys_the_ssh_and_the_kubernetes_app_from_the_page(env, page):
    errors = PageErrors(page)
    log_in_as(page, env, env.admin_user, env.admin_password)
    deploy_from_the_list(page, env, SSH, "2.0")
    expect(page.locator("#deploy-state")).to_have_text("succeeded", timeout=DEPLOY_MS)
    assert (env.root / "srv" / "blog" / "current").readlink().name == "2.0"  # the symlink on the sshd's host

    version = f"3.{uuid.uuid4().hex[:6]}"
    deploy_from_the_list(page, env, K8S, version)
    env.mock.wait_for(NS, DEPLOYMENT, k8s_image(version))
    env.mock.complete(NS, DEPLOYMENT)
    expect(page.locator("#deploy-state")).to_have_text("succeeded", timeout=DEPLOY_MS)
    expect(page.locator("#deploy-log")).to_contain_text("successfully rolled out")
    errors.assert_clean()


def rollback_from_the_list(page, console, app: str, current: str, to: str, earlier: list[str]) -> None:  # noqa: ANN001
    """Roll ``app`` back from the list to ``to``, picked among the earlier versions offered
    (``earlier``: versions that must be offered, newest first; the current one never is)."""
    def pick(page) -> None:  # noqa: ANN001
        offered = page.locator("#rollback-version option")
        expect(offered.first).to_be_attached()
        values = offered.evaluate_all("options => options.map(o => o.value)")
        assert current not in values and [v for v in values if v in earlier] == earlier, values
        page.select_option("#rollback-version", to)

    from_the_list(page, console, app, "rollback", pick, f"Roll back {app} to {to} (now {current})")


def test_an_admin_rolls_the_ssh_and_the_kubernetes_app_back_to_an_older_version_from_the_page(env, page):
    """Not only the previous release: the oldest of two earlier versions, on both drivers."""
    errors = PageErrors(page)
    log_in_as(page, env, env.admin_user, env.admin_password)
    run = uuid.uuid4().hex[:6]
    older, newer, now = (f"{n}.{run}" for n in ("5", "6", "7"))
    for version in (older, newer, now):
        done = wait_final(env, env.token, api_deploy(env, SSH, version)["id"])
        assert done["state"] == "succeeded", done
    rollback_from_the_list(page, env, SSH, now, older, [newer, older])
    expect(page.locator("#deploy-state")).to_have_text("succeeded", timeout=DEPLOY_MS)
    back = latest(env, SSH)
    assert (back["kind"], back["version"], back["requested_by"]) == ("rollback", older, "user:admin")
    assert (env.root / "srv" / "blog" / "current").readlink().name == older  # the symlink on the sshd's host

    for version in (older, newer, now):
        d = api_deploy(env, K8S, version)
        env.mock.wait_for(NS, DEPLOYMENT, k8s_image(version))
        env.mock.complete(NS, DEPLOYMENT)
        assert wait_final(env, env.token, d["id"])["state"] == "succeeded"
    rollback_from_the_list(page, env, K8S, now, older, [newer, older])
    env.mock.wait_for(NS, DEPLOYMENT, k8s_image(older))
    env.mock.complete(NS, DEPLOYMENT)
    expect(page.locator("#deploy-state")).to_have_text("succeeded", timeout=DEPLOY_MS)
    back = latest(env, K8S)
    assert (back["kind"], back["version"]) == ("rollback", older)
    expect(page.locator("#deploy-log")).to_contain_text("rolling back to revision")
    errors.assert_clean()


class HeldRequests:
    """The page's requests to ``url`` (a Playwright glob), held unanswered until ``release()``."""

    def __init__(self, page, url: str) -> None:  # noqa: ANN001
        self.routes: list = []
        self.released = False
        page.route(url, self._route)

    def _route(self, route) -> None:  # noqa: ANN001
        if self.released:
            route.continue_()
        else:
            self.routes.append(route)

    def release(self) -> None:
        self.released = True
        for route in self.routes:
            route.continue_()


def test_a_deployer_cancels_running_deploys_from_the_list_and_the_deploy_page(env, page):
    errors = PageErrors(page)
    log_in_as(page, env, *user(env, "deployer", [DOCKER]))
    first = api_deploy(env, DOCKER, "slow")  # stays "starting" for 600 s
    page.goto(f"{env.url}/deploys")
    cancel = app_row(page, DOCKER).locator("button.cancel-active")
    expect(cancel).to_have_text(f"Cancel #{first['id']}…")
    cancel.click()
    expect(page.locator("#confirm-message")).to_contain_text(f"Cancel deploy #{first['id']} of {DOCKER} to slow")
    page.click("#confirm-no")  # "Keep it": nothing happens
    assert env.request("GET", f"/api/v1/deploys/{first['id']}", token=env.token).json()["state"] in (
        "queued", "running")
    cancel.click()
    page.click("#confirm-yes")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    final = wait_final(env, env.token, first["id"])
    assert final["state"] == "cancelled", final
    assert final["error"].startswith("cancelled by user:deployer-")

    second = api_deploy(env, DOCKER, "slow")
    try:
        # The button shows before the page's first load of the deploy ends: a click then waits
        # for that load. The load is held here until after the click.
        held = HeldRequests(page, f"**/api/v1/deploys/{second['id']}")
        page.goto(f"{env.url}/deploys/{second['id']}", wait_until="domcontentloaded")
        page.click("#cancel-deploy")
        page.wait_for_timeout(300)
        assert held.routes, "the page did not load the deploy"
        held.release()
        expect(page.locator("#confirm-title")).to_have_text(f"Cancel deploy #{second['id']}?")
        page.click("#confirm-yes")
        expect(page.locator("#deploy-state")).to_have_text("cancelled", timeout=DEPLOY_MS)
        expect(page.locator("#cancel-deploy")).to_be_hidden()
        errors.assert_clean()
    finally:  # a slow deploy left running would hold the app's queue for the module's other tests
        env.request("POST", f"/api/v1/deploys/{second['id']}/cancel", {}, token=env.token)
        wait_final(env, env.token, second["id"])


def test_writes_without_the_xsrf_token_are_refused(env, page):
    log_in_as(page, env, *user(env, "deployer", [DOCKER]))
    before = latest(env, DOCKER)["id"]
    resp = page.request.post(f"{env.url}/api/v1/apps/{DOCKER}/deploys", data={"version": "2.0"},
                             headers={"Content-Type": "application/json"})
    assert resp.status == 403, resp.text()
    assert resp.json()["error"]["code"] == "xsrf_invalid"
    assert latest(env, DOCKER)["id"] == before


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}])
def test_the_pages_fit_the_viewport(env, browser, viewport):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        errors = PageErrors(page)
        log_in_as(page, env, *user(env, "deployer", [DOCKER]))
        for path in ("/deploys", f"/deploys/{latest(env, DOCKER)['id']}", f"/deploys/{latest(env, K8S)['id']}"):
            page.goto(env.url + path)
            if path == "/deploys":
                expect(app_row(page, DOCKER).locator("button.deploy-app")).to_be_visible()
            else:
                expect(page.locator("#deploy-log li").first).to_be_visible()
                # styled like the other tables (app.css .data-table)
                assert page.locator("#steps-table").evaluate("t => getComputedStyle(t).borderCollapse") == "collapse"
            overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} is {overflow} px wider than {viewport['width']}"
        page.goto(env.url + "/deploys")
        app_row(page, DOCKER).locator("button.deploy-app").click()
        box = page.locator("#deploy-dialog").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        errors.assert_clean()
    finally:
        context.close()
