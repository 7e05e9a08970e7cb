"""The deploy page's Approval panel in headless Chromium against a real console deploying
to the real dockerd: an admin other than the requester approves (after a confirmation) and
the deploy runs; a dismissed confirmation does nothing; a reject ends the deploy; the
buttons are shown only to users who may decide, and the API refuses a request without the
page's _xsrf token."""
from __future__ import annotations

import functools
import time

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import NETWORK_CHANGED, log_in
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness, logged_in

APP = run_app("gate")


@pytest.fixture
def page_timeout_ms() -> int:
    return 30_000  # deploys against a real dockerd take longer than a page load


def test_approve_and_reject_from_the_deploy_page(tmp_path, docker_client, docker_images, page):
    apps = {APP: {"target": {"image": docker_images, "stop_timeout": 1, "labels": run_labels()}, "timeout": 60,
                  "strategy": {"type": "recreate"}, "approval": {"approver_role": "admin", "timeout": 600}}}
    remove_run_containers(docker_client, APP)
    console = ConsoleHarness(tmp_path / "data", apps=apps).start()
    try:
        services = console.services
        services.db.run(services.users.create, "alice", "alice-password-123", "deployer")
        alice = services.db.run(functools.partial(services.tokens.create_api_token, owner="alice"),
                                "alice-ci", "deployer", None)

        def request(version: str) -> dict:
            resp = console.request("POST", f"/api/v1/apps/{APP}/deploys", {"version": version}, token=alice)
            assert resp.status == 202 and resp.json()["state"] == "awaiting_approval", resp.body
            return resp.json()

        first = request("1.0")
        # Only users who may decide see the buttons: not a viewer, not a deployer below the role.
        for role in ("viewer", "deployer"):
            body = logged_in(console, role).request("GET", f"/deploys/{first['id']}").body
            assert b'id="approval"' in body and b'id="approval-form"' not in body
        admin = logged_in(console, "admin")
        assert b'id="approve-button"' in admin.request("GET", f"/deploys/{first['id']}").body
        no_xsrf = admin.request("POST", f"/api/v1/deploys/{first['id']}/approve", {}, xsrf=False)
        assert no_xsrf.status == 403 and no_xsrf.json()["error"]["code"] == "xsrf_invalid"

        failures: list[str] = []
        page.on("console", lambda msg: failures.append(msg.text)
                if msg.type == "error" and NETWORK_CHANGED not in msg.text else None)
        page.on("pageerror", lambda exc: failures.append(str(exc)))
        dialogs: list[str] = []

        def answer(accept: bool):  # noqa: ANN202
            def handle(dialog) -> None:  # noqa: ANN001
                dialogs.append(dialog.message)
                dialog.accept() if accept else dialog.dismiss()
            return handle

        log_in(page, console)
        page.goto(f"{console.url}/deploys/{first['id']}")
        expect(page.locator("#approval-state")).to_have_text("pending")
        expect(page.locator("#deploy-state")).to_have_text("awaiting_approval")
        # The expiry in the one time format and zone of the top bar's switch.
        expires = page.locator("#approval time")
        ts = float(expires.get_attribute("data-ts") or 0)
        approval = console.request("GET", f"/api/v1/deploys/{first['id']}", token=alice).json()["approval"]
        assert ts == approval["expires_at"], approval
        expect(expires).to_have_text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)))
        page.click("#tz-switch")
        expect(expires).to_have_text(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)))
        page.fill("#approval-reason", "change reviewed")
        page.once("dialog", answer(True))
        page.click("#approve-button")
        expect(page.locator("#approval-state")).to_have_text("approved")
        assert dialogs == [f"Approve deploy of {APP} to 1.0?"]
        expect(page.locator("#approve-button")).to_have_count(0)
        expect(page.locator("#deploy-state")).to_have_text("succeeded")
        done = console.request("GET", f"/api/v1/deploys/{first['id']}", token=alice).json()
        assert done["approval"]["decided_by"] == "user:admin" and done["approval"]["reason"] == "change reviewed"
        assert [c.labels["fleetdeck.version"] for c in docker_client.containers.list(
            all=True, filters={"label": [f"fleetdeck.app={APP}"]})] == ["1.0"]

        second = request("2.0")
        page.goto(f"{console.url}/deploys/{second['id']}")
        page.once("dialog", answer(False))
        page.click("#reject-button")
        time.sleep(1)  # a dismissed confirmation sends nothing
        assert console.request("GET", f"/api/v1/deploys/{second['id']}", token=alice).json()["state"] == \
            "awaiting_approval"
        page.once("dialog", answer(True))
        page.click("#reject-button")
        expect(page.locator("#approval-state")).to_have_text("rejected")
        expect(page.locator("#deploy-state")).to_have_text("rejected")
        assert dialogs[1:] == [f"Reject deploy of {APP} to 2.0?"] * 2
        actions = [e["action"] for e in services.db.run(services.audit.entries, 200)
                   if e["action"] in ("deploy.approve", "deploy.reject")]
        assert actions == ["deploy.reject", "deploy.approve"]
        assert not failures, failures
    finally:
        console.close()
        remove_run_containers(docker_client, APP)
