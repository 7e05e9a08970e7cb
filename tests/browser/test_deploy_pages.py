"""Deploy pages in headless Chromium against a real console deploying to the real dockerd:
the history table, the live step log of a running deploy, and deploy markers on the
host page's charts."""
from __future__ import annotations

import time

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, host_metrics, log_in
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness

SHOP = run_app("shop")  # this run's app: the driver never touches a user's app "shop"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def deploy_console(tmp_path_factory, docker_client, docker_images):
    apps = {SHOP: {"hosts": ["web-1"], "target": {"image": docker_images, "stop_timeout": 1, "labels": run_labels()},
                   "timeout": 60}}
    remove_run_containers(docker_client, SHOP)
    harness = ConsoleHarness(tmp_path_factory.mktemp("deploy-pages"), apps=apps).start()
    harness.deployer = harness.api_token("deployer", "pages")
    yield harness
    harness.close()
    remove_run_containers(docker_client, SHOP)


@pytest.fixture
def page_timeout_ms() -> int:
    return 30_000  # deploys against a real dockerd take longer than a page load


def start_deploy(console, version: str, reason: str = "") -> int:
    resp = console.request("POST", f"/api/v1/apps/{SHOP}/deploys", {"version": version, "reason": reason},
                           token=console.deployer)
    assert resp.status == 202, resp.body
    return resp.json()["id"]


def test_detail_page_streams_the_step_log_live(deploy_console, page):
    errors = PageErrors(page)
    log_in(page, deploy_console)
    deploy_id = start_deploy(deploy_console, "1.0", reason=XSS)
    page.goto(f"{deploy_console.url}/deploys/{deploy_id}")
    expect(page.locator("#deploy-state")).to_have_text("succeeded")
    events = deploy_console.request("GET", f"/api/v1/deploys/{deploy_id}/events",
                                    token=deploy_console.deployer).json()["events"]
    # Every stored event exactly once, in order, whatever arrived live or by catch-up.
    expect(page.locator("#deploy-log li")).to_have_count(len(events))
    seqs = [int(s) for s in page.locator("#deploy-log li").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == [e["seq"] for e in events]
    expect(page.locator("#deploy-log")).to_contain_text("is healthy")
    expect(page.locator("#steps-table tbody tr")).to_have_count(4)
    expect(page.locator("#live-status")).to_have_text("finished")
    assert XSS in page.content().replace("&lt;", "<").replace("&gt;", ">")
    assert page.locator("img[src=x]").count() == 0
    errors.assert_clean()


def test_log_grows_while_the_deploy_runs(deploy_console, page):
    errors = PageErrors(page)
    log_in(page, deploy_console)
    deploy_id = start_deploy(deploy_console, "slow")
    page.goto(f"{deploy_console.url}/deploys/{deploy_id}")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#deploy-log")).to_contain_text("waiting for 1 container")
    before = page.locator("#deploy-log li").count()
    cancel = deploy_console.request("POST", f"/api/v1/deploys/{deploy_id}/cancel", token=deploy_console.deployer)
    assert cancel.status == 202
    expect(page.locator("#deploy-state")).to_have_text("cancelled")  # arrived over the socket
    assert page.locator("#deploy-log li").count() > before
    expect(page.locator("#deploy-error")).to_contain_text("cancelled by api:pages")
    errors.assert_clean()


def test_history_table_and_host_chart_markers(deploy_console, page):
    errors = PageErrors(page)
    deploy_id = start_deploy(deploy_console, "2.0", reason=XSS)
    deadline = time.monotonic() + 60
    while deploy_console.request("GET", f"/api/v1/deploys/{deploy_id}",
                                 token=deploy_console.deployer).json()["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    log_in(page, deploy_console)
    page.goto(f"{deploy_console.url}/deploys")
    row = page.locator("#deploys-table tbody tr", has_text=f"#{deploy_id}")
    expect(row).to_contain_text(SHOP)
    expect(row).to_contain_text("2.0")
    expect(row).to_contain_text("api:pages")
    expect(row).to_contain_text(XSS)  # the reason, as text
    assert page.locator("img[src=x]").count() == 0
    expect(page.locator("#apps-table tbody")).to_contain_text(SHOP)

    now_ms = int(time.time() * 1000)
    token = deploy_console.agent_token("web-1")
    status, _ = deploy_console.push("web-1", token, host_metrics([now_ms - 20_000, now_ms - 10_000]))
    assert status == 200
    total = len(deploy_console.request("GET", "/api/v1/deploys?host=web-1", token=deploy_console.deployer)
                .json()["deploys"])
    page.goto(f"{deploy_console.url}/hosts/web-1")
    expect(page.locator("#host-page")).to_have_attribute("data-deploy-markers", str(total))
    assert total >= 1
    errors.assert_clean()


def test_deploy_markers_are_labelled_and_a_failed_fetch_clears_on_recovery(deploy_console, page):
    """Each marker carries "app version" as text at its line on every chart; a marker
    fetch that fails (the network dropped it, and its two retries) shows the banner, and
    the next chart update, brought by the agent's next push, fetches again and clears it."""
    errors = PageErrors(page)
    deploy_id = start_deploy(deploy_console, "3.1")
    deadline = time.monotonic() + 60
    while deploy_console.request("GET", f"/api/v1/deploys/{deploy_id}",
                                 token=deploy_console.deployer).json()["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    token = deploy_console.agent_token("web-1")
    now_ms = int(time.time() * 1000)
    assert deploy_console.push("web-1", token, host_metrics([now_ms - 20_000, now_ms - 10_000]))[0] == 200
    log_in(page, deploy_console)
    failed = {"n": 0}

    def drop_once(route) -> None:  # noqa: ANN001
        if failed["n"] < 3:  # the fetch and both of its retries (common.js fetchJSON)
            failed["n"] += 1
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/api/v1/deploys?*", drop_once)
    page.goto(f"{deploy_console.url}/hosts/web-1")
    expect(page.locator("#error")).to_contain_text("Deploy markers")
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")
    assert deploy_console.push("web-1", token, host_metrics([int(time.time() * 1000)]))[0] == 200
    expect(page.locator("#error")).not_to_contain_text("Deploy markers")
    label = page.locator("#chart-load .deploy-label", has_text=f"{SHOP} 3.1")
    expect(label).to_have_count(1)
    expect(label).to_be_visible()
    # Within the plot area, left of its end: the deploy started inside the shown range.
    box = label.bounding_box()
    over = page.locator("#chart-load .u-over").bounding_box()
    assert box is not None and over is not None
    assert over["x"] <= box["x"] <= over["x"] + over["width"]
    assert [m for m in errors.console if "internetdisconnected" not in m.lower()
            and "err_internet_disconnected" not in m.lower()] == [], errors.console
    assert errors.exceptions == [] and errors.dialogs == []
